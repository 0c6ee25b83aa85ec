# SPDX-License-Identifier: GPL-3.0-or-later
"""Does a short timeline segment still perform its action after a transition? (issue 26's retrains)

The table's columns judge whole motions of one prompt; an animator's timeline asks for an action in a short segment
right after another one.  This script generates the timeline of the Blender wild-character test (walk 2.5 s, then
"a person raises the left hand" for 2 s, 30 fps) for several seeds with each model given, and prints per seed how
far each wrist rises in the second segment above its mean height during the walk, in body heights (the test asks
the left wrist to rise more than 0.15 and three times the right one).

Run from the repository root::

    python benchmarks/measure_short_segment_action.py --checkpoint default BUNDLE ... --seeds 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kmm_core.evaluation.animator_subsets import SHORT_ACTION_TIMELINE as TIMELINE
from kmm_core.evaluation.animator_subsets import short_action
from kmm_core.motion.motion_result import MotionResult


def wrist_rises(take: Path) -> tuple[float, float]:
    """(left, right) wrist rise in the raise segment above the walk's mean, in body heights (the rule of
    `kmm-train eval`'s short-action column, kmm_core/evaluation/animator_subsets.py)."""
    result = MotionResult.load(take)
    rises = short_action(np.asarray(result.joints), int(result.segment_frames[1, 0]))
    return rises.left_rise, rises.right_rise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", default=["default"])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        timeline = Path(folder) / "timeline.json"
        timeline.write_text(json.dumps(TIMELINE))
        for checkpoint in args.checkpoint:
            rows = []
            for seed in range(args.seeds):
                take = Path(folder) / f"{seed}.npz"
                subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "--timeline", str(timeline),
                                "--seed", str(seed), "-o", str(take), "--quiet", "--checkpoint", checkpoint],
                               check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                rows.append(wrist_rises(take))
            raised = sum(left > 0.15 and left > 3 * right for left, right in rows)   # ShortAction.performed
            cells = ", ".join(f"{left:.2f}/{right:.2f}" for left, right in rows)
            print(f"{checkpoint}: left/right wrist rise per seed {cells}; raised clearly in {raised} of {len(rows)}")


if __name__ == "__main__":
    main()
