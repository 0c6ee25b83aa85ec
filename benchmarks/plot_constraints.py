# SPDX-License-Identifier: GPL-3.0-or-later
"""The picture of the constraints workflow: a held-out real clip's key poses, and the motion kmm-small generates
through them for the clip's own prompt (front view: the three keys and two frames between each).

    python benchmarks/plot_constraints.py [--clip 1] [--out docs/images/constraints.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from measure_constraints import POSE_AT, clip_timeline, held_out_clips  # noqa: E402
from report_file import save_figure  # noqa: E402

from kmm_core.motion.skeleton import KINEMATIC_CHAINS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=int, default=1, help="which of the benchmark's clips (0-based)")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "images" / "constraints.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.generation.timeline_generator import generate_timeline

    torch.set_num_threads(1)
    bundle = ModelBundle.load(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small", device="cpu")
    clip = held_out_clips(REPO_ROOT.parent / "shared" / "data" / "bandai-namco" / "bandai-namco-bvh.tar.xz",
                          args.clip + 1, 4.0)[args.clip]
    timeline = clip_timeline(clip, True)
    motion = generate_timeline(bundle, timeline, seed=args.clip)[0].joints
    keys = [round(share * (len(clip.joints) - 1)) for share in POSE_AT]
    between = [round(a + (b - a) * t) for a, b in zip([0, *keys], [*keys, len(motion) - 1], strict=True)
               for t in (1 / 3, 2 / 3)]
    shown = sorted(set(keys) | set(between))
    figure, axis = plt.subplots(figsize=(12, 3.6))
    for slot, frame in enumerate(shown):
        # the body seen from the front (x across, y up), each drawn frame in its own slot, centred on its pelvis
        spread = slot * 0.9
        for index, chain in enumerate(KINEMATIC_CHAINS):
            centre = motion[frame, 0, 0]
            if frame in keys:
                axis.plot(clip.joints[frame, chain, 0] - clip.joints[frame, 0, 0] + spread,
                          clip.joints[frame, chain, 1], color="tab:red", lw=4, alpha=0.45,
                          label="key pose (real clip)" if frame == keys[0] and index == 0 else None)
            axis.plot(motion[frame, chain, 0] - centre + spread, motion[frame, chain, 1],
                      color="tab:blue" if frame in keys else "0.6", lw=1.3,
                      label=("generated, at the key" if frame == keys[0] else
                             "generated, between the keys" if frame == shown[0] else None) if index == 0 else None)
        axis.text(spread, -0.12, f"frame {frame}", ha="center", fontsize=8, color="0.3")
    axis.set_aspect("equal")
    axis.axis("off")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False)
    axis.set_title(f"\"{clip.caption}\": 3 key poses of a held-out clip met by kmm-small (front view)")
    save_figure(Path(args.out), figure, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
