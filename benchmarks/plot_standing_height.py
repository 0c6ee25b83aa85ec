# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot a calm wave's hips and head height over time: the default model against another bundle and the real clip.

"a person waves with the right hand", 6 s at 20 fps, seeds 0 and 1, through `generate_timeline` (the product's
smoothing and foot clean-up), beside the first normal-style Bandai-Namco wave of the prepared data (its first 6 s):
each joint's height about its own mean, in millimetres, so a slow rise and fall of the whole body shows where a
jerk or drift number does not.

Run from the repository root::

    python benchmarks/plot_standing_height.py --data data/prepared-all --before OTHER_BUNDLE \
        --out benchmarks/results/standing_height.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_figure  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402
from kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

PROMPT = "a person waves with the right hand"
REAL_PREFIX = "dataset-2_wave-right-hand_normal_00"
SECONDS = 6.0
JOINTS = ("pelvis", "head")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True, help="the bundle to compare the default with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    name = sorted(path.stem for path in (args.data / "new_joint_vecs").glob(f"{REAL_PREFIX}*.npy"))[0]
    real = features_to_joints(np.load(args.data / "new_joint_vecs" / f"{name}.npy"))[:int(SECONDS * MODEL_FPS)]
    bundles = (("before", args.before, "tab:orange"), ("default", default_bundle_path(), "tab:blue"))
    timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": PROMPT, "seconds": SECONDS}]})
    figure, axes = plt.subplots(len(JOINTS), 2, figsize=(12, 6), sharex=True, squeeze=False)
    for label, path, color in bundles:
        bundle = ModelBundle.load(path, device="cpu")
        for column, seed in enumerate((0, 1)):
            joints = np.asarray(generate_timeline(bundle, timeline, seed=seed)[0].joints)
            for row, joint in enumerate(JOINTS):
                height = joints[:, JOINT_INDEX[joint], 1]
                axes[row, column].plot(np.arange(len(height)) / MODEL_FPS, (height - height.mean()) * 1000.0,
                                       color=color, label=f"{label} ({path.name})")
    for column, seed in enumerate((0, 1)):
        for row, joint in enumerate(JOINTS):
            height = real[:, JOINT_INDEX[joint], 1]
            axes[row, column].plot(np.arange(len(height)) / MODEL_FPS, (height - height.mean()) * 1000.0, color="k",
                                   label=f"real ({name})")
            axes[row, column].set_title(f"'{PROMPT}', seed {seed}: {joint} height about its mean (mm)", fontsize=9)
        axes[-1, column].set_xlabel("seconds")
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    save_figure(args.out, figure)


if __name__ == "__main__":
    main()
