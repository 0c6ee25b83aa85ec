# SPDX-License-Identifier: GPL-3.0-or-later
"""How often a generated walk plays the same recorded stride twice in a row (a machine's walk: its feet repeat
exactly, and its one asymmetry with them).

Each prompt of the gait benchmark (`benchmarks/measure_gait.py` PROMPTS) is generated through the product's
`generate_timeline` for its SECONDS, seeds 0..N-1; every stride change of the played gait cycles
(`generation/gait_matching._next_cycle`, watched as it is called) is counted: the next stride the walker's own
(its recording's successor), another, or the same stride again.

Run: ``python benchmarks/measure_stride_repeats.py [--checkpoint default] [--seeds 6]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_gait import PROMPTS, SECONDS  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.generation import gait_matching  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402


def stride_changes(bundle: ModelBundle, prompt: str, seed: int) -> list[tuple[int, int, int]]:
    """(stride, next stride, the stride's recorded successor) of every stride change in one take."""
    changes, choose = [], gait_matching._next_cycle

    def watched(cycles, cycle, candidates, rng):
        following = choose(cycles, cycle, candidates, rng)
        changes.append((int(cycle), int(following), int(cycles.successor[cycle])))
        return following

    gait_matching._next_cycle = watched
    try:
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "seconds": SECONDS}]})
        generate_timeline(bundle, timeline, seed=seed)
    finally:
        gait_matching._next_cycle = choose
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "stride_repeats.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    rows, totals = [], [0, 0, 0]
    for prompt in [prompt for prompts in PROMPTS.values() for prompt in prompts]:
        changes = [change for seed in range(args.seeds) for change in stride_changes(bundle, prompt, seed)]
        own = sum(following == successor for _, following, successor in changes)
        again = sum(following == cycle for cycle, following, _ in changes)
        totals = [totals[0] + len(changes), totals[1] + own, totals[2] + again]
        rows.append(f"| {prompt} | {len(changes)} | {own} | {again} |")
    lines = ["# The same stride twice in a row", "",
             f"Command: `python benchmarks/measure_stride_repeats.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}`.  The gait benchmark's prompts, {SECONDS:g} s each, seeds 0-{args.seeds - 1}: every "
             "change from one played stride to the next.", "",
             "| prompt | stride changes | the walker's own next stride | the same stride again |",
             "| --- | --- | --- | --- |", *rows,
             f"| **all** | {totals[0]} | {totals[1]} | {totals[2]} |", ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
