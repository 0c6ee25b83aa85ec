# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot the pelvis height of a walk played on real strides of several walkers, with and without the posture rule.

"someone walks" finds CMU strides of walkers who carry the pelvis 5-10 cm higher or lower than one another
(``generation/gait_matching.py``: its candidates).  Drawn among them by duration alone, a walk switches walker at a
heel strike and its hips rise or drop by centimetres for a few strides; drawn among those of about the same pelvis
height too (`POSTURE_VARIATION`, the shipped rule), it bobs twice a stride at one height.  Seeds 0-2, 10 s at
20 fps, through `generate_timeline` (the product's smoothing and foot clean-up).

Run from the repository root::

    python benchmarks/plot_gait_posture.py --out benchmarks/results/gait_posture.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_figure  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path  # noqa: E402
from kmm_core.generation import gait_matching  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PROMPT = "someone walks"
SECONDS = 10.0
SEEDS = (0, 1, 2)


def pelvis_heights(bundle: ModelBundle, seed: int, posture_variation: float) -> np.ndarray:
    shipped = gait_matching.POSTURE_VARIATION
    gait_matching.POSTURE_VARIATION = posture_variation
    try:
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": PROMPT, "seconds": SECONDS}]})
        return np.asarray(generate_timeline(bundle, timeline, seed=seed)[0].joints)[:, 0, 1]
    finally:
        gait_matching.POSTURE_VARIATION = shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "gait_posture.png")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bundle = ModelBundle.load(args.checkpoint or default_bundle_path(), device="cpu")
    figure, axes = plt.subplots(len(SEEDS), 1, figsize=(12, 2.7 * len(SEEDS)), sharex=True)
    for axis, seed in zip(axes, SEEDS, strict=True):
        for variation, colour, label in ((np.inf, "tab:red", "each stride drawn among candidates of about its duration"),
                                         (gait_matching.POSTURE_VARIATION, "tab:blue",
                                          "... and of about its pelvis height (within 1 cm): shipped")):
            height = pelvis_heights(bundle, seed, variation)
            axis.plot(np.arange(len(height)) / MODEL_FPS, height, colour, label=label)
        axis.set_ylabel("pelvis height (m)")
        axis.set_title(f'"{PROMPT}", seed {seed}: CMU strides of several walkers')
        axis.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds")
    figure.tight_layout()
    save_figure(args.out, figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
