# SPDX-License-Identifier: GPL-3.0-or-later
"""Floor pick-ups, judged by the whole body: do they reach the floor, and do they stay on their feet?

The everyday suite's box check looks at the hands (both wrists down at the floor).  A real pick-up also keeps its
feet down and its body upright; a generated one sometimes flings a leg up or turns over on the way.  Each floor
pick-up phrasing of the everyday suite is generated alone for 5 s at seeds 0-5, as shipped and with
``--unlikely-guidance 1`` (no raised guidance), and each take measured: the box check, the highest a foot rises
above its own floor level (real pick-ups keep both under about 0.3 m), whether the pelvis stays 0.3 m above the head
for 0.1 s (`action_checks.pelvis_above_head`, the ``inverted`` check's measure) and whether both feet rise above the
head (`action_checks.turns_over`; the everyday suite fails a pick-up on one foot over the head already,
`action_checks.foot_over_head`).

Run: ``python benchmarks/measure_floor_pickups.py [--checkpoint default] [--seeds 6] [--out FILE]``  (about a
minute)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_phrasings import SECONDS, SUITE, generated  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.action_checks import (  # noqa: E402
    ActionCheckThresholds,
    foot_floor_levels,
    pelvis_above_head,
    turns_over,
)
from kmm_core.evaluation.take_checks import BOX_CHECK, step_result  # noqa: E402
from kmm_core.generation.decoding_engine import GenerationOptions  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402
from kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

FEET = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
INVERTED_METRES = ActionCheckThresholds().inverted_metres  # the `inverted` check's own threshold (0.3 m)


def measure(joints: np.ndarray) -> tuple[bool, float, bool, bool]:
    """(box check passed, highest foot above its floor level in metres, pelvis 0.3 m above the head, both feet above
    the head)."""
    reached = bool(step_result(BOX_CHECK, None, joints).result.passed)
    foot = float((joints[:, FEET, 1] - foot_floor_levels(joints)).max())
    return reached, foot, pelvis_above_head(joints, MODEL_FPS) >= INVERTED_METRES, turns_over(joints)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "floor_pickups.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    rows = []
    for phrasing, label in SUITE:
        if not label.endswith("box"):
            continue
        for name, factor in (("as shipped", None), ("`--unlikely-guidance 1`", 1.0)):
            options = GenerationOptions(unlikely_guidance_factor=factor)
            takes = [measure(generated(bundle, phrasing, SECONDS, seed, options)) for seed in range(args.seeds)]
            reached, feet, inverted, over = zip(*takes, strict=True)
            rows.append(f"| {phrasing} | {name} | {sum(reached)} of {args.seeds} | {min(feet):.2f}-{max(feet):.2f} | "
                        f"{sum(inverted)} of {args.seeds} | {sum(over)} of {args.seeds} |")
    lines = ["# Floor pick-ups, judged by the whole body", "",
             f"Command: `python benchmarks/measure_floor_pickups.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}`.  Each floor pick-up phrasing of the everyday suite alone, {SECONDS:g} s, seeds "
             f"0-{args.seeds - 1}, as shipped and without the raised guidance; the box check (both wrists down at the "
             "floor), the highest a foot rises above its floor level (min-max over the takes), the takes whose pelvis "
             "stays 0.3 m above the head for 0.1 s, and those whose feet both rise above the head "
             "(`action_checks.turns_over`).", "",
             "| phrasing | guidance | box check | highest foot (m) | pelvis over the head | both feet over the head |",
             "| --- | --- | --- | --- | --- | --- |", *rows, ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
