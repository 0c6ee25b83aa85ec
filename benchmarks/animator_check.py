# SPDX-License-Identifier: GPL-3.0-or-later
"""An animator's check of the shipped default (issue 26): a walk and a right-hand wave, two seeds each, 6 s at 20 fps,
body part by body part against one real Bandai-Namco clip of the same action (the first "normal" take of the
prepared data): jerk per part as a ratio to the real clip's, frozen feet, gait regularity, pelvis speed, pelvis bob
and foot swing beside the real clip's, and for the wave each wrist's side-to-side energy as a ratio to the real
clip's (the waving hand should swing as much, the idle one stay as still).

Run from the repository root (``data/prepared-all``: training/runs/kmm-small-all/COMMAND.md)::

    python benchmarks/animator_check.py --data data/prepared-all
    python benchmarks/animator_check.py --data data/prepared-all --checkpoint runs/candidate  # another bundle
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.evaluation.body_motion import (
    foot_swing,
    frozen_share,
    gait_regularity,
    part_jerk,
    pelvis_bob,
    standing_drift,
)
from kmm_core.evaluation.directional import wrist_lateral_energy
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.humanml3d.features import features_to_joints
from kmm_core.motion.model_timing import MODEL_FPS

TAKES = (("a person walks forward", "dataset-2_walk_normal_00"),
         ("a person waves with the right hand", "dataset-2_wave-right-hand_normal_00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", default="default", help="model: default, open, a shipped name, or a folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    for prompt, prefix in TAKES:
        name = sorted(path.stem for path in (args.data / "new_joint_vecs").glob(f"{prefix}*.npy"))[0]
        real = features_to_joints(np.load(args.data / "new_joint_vecs" / f"{name}.npy"))
        real_jerk = part_jerk(real, MODEL_FPS)
        for seed in (0, 1):
            timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "seconds": 6.0}]})
            made = np.asarray(generate_timeline(bundle, timeline, seed=seed)[0].joints)
            jerk = part_jerk(made, MODEL_FPS)
            print(f"{prompt!r} seed {seed} vs {name}: jerk "
                  + ", ".join(f"{part} {jerk[part] / real_jerk[part]:.2f}x" for part in jerk)
                  + f"; frozen feet {frozen_share(made):.3f}; gait {gait_regularity(made, MODEL_FPS):.2f} (real "
                  f"{gait_regularity(real, MODEL_FPS):.2f}); pelvis speed {standing_drift(made, MODEL_FPS):.3f} (real "
                  f"{standing_drift(real, MODEL_FPS):.3f}) m/s; pelvis bob {pelvis_bob(made) * 1000:.1f} (real "
                  f"{pelvis_bob(real) * 1000:.1f}) mm; foot swing {foot_swing(made):.3f} (real {foot_swing(real):.3f}) m"
                  + ("; side-to-side wrist energy " + ", ".join(
                      f"{side} {wrist_lateral_energy(made, side, MODEL_FPS) / wrist_lateral_energy(real, side, MODEL_FPS):.2f}x"
                      for side in ("right", "left")) if "wave" in prompt else ""))


if __name__ == "__main__":
    main()
