# SPDX-License-Identifier: GPL-3.0-or-later
"""Would a rehearsal warn before generating?  Each phrasing of the everyday suite is generated once, short, through
the product's path, and judged by the geometric check of the action its reading names: the training-action label
(`vocabulary.json` ``train_actions``) that weighs most among the captions it is read with
(`prompt_conditions.CaptionRetrieval.neighbours`).  A phrasing whose rehearsal fails would be warned; set beside the
suite's own verdicts (`benchmarks/results/everyday_phrasings.md`), that says how many failures such a warning names
and how many passing phrasings it warns about.

Run: ``python benchmarks/measure_rehearsal_warnings.py [--checkpoint default] [--seconds 4] [--seed 0]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_phrasings import SUITE  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.action_checks import checks_for_action, label_side, prompt_side, run_check  # noqa: E402
from kmm_core.generation.prompt_conditions import CaptionRetrieval  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SUITE_RESULTS = REPO_ROOT / "benchmarks" / "results" / "everyday_phrasings.md"


def suite_verdicts(path: Path) -> dict[str, bool]:
    """Each phrasing's pass (True) or failure in the suite's committed table."""
    verdicts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 5 and cells[4] in ("yes", "**no**"):
            verdicts[cells[1]] = cells[4] == "yes"
    return verdicts


def read_as(retrieval: CaptionRetrieval, prompt: str) -> str:
    """The action word (a training-action label's content) that weighs most among the prompt's neighbours."""
    ((nearest, weights, _),) = retrieval.neighbours([prompt])
    actions = retrieval.vocabulary.vocabulary.train_actions
    totals: dict[str, float] = {}
    for index, weight in zip(nearest, weights, strict=True):
        word = actions[int(index)].split("/", 1)[-1]
        totals[word] = totals.get(word, 0.0) + float(weight)
    return max(totals, key=totals.__getitem__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "rehearsal_warnings.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    retrieval = CaptionRetrieval.load(bundle)
    verdicts = suite_verdicts(SUITE_RESULTS) if SUITE_RESULTS.is_file() else {}
    missing = [phrasing for phrasing, _ in SUITE if phrasing not in verdicts]
    if missing:
        raise SystemExit(f"{SUITE_RESULTS}: no verdict for {len(missing)} of the suite's phrasings (first: "
                         f"{missing[0]!r}); run `python benchmarks/measure_everyday_phrasings.py` first")
    rows, warned = [], {True: [], False: []}
    for phrasing, _ in SUITE:
        word = read_as(retrieval, phrasing)
        (check,) = checks_for_action(word) or ("",)
        if not check:
            rows.append(f"| {phrasing} | {word} | – | – | {'yes' if verdicts[phrasing] else 'no'} |")
            continue
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": phrasing,
                                                                        "seconds": args.seconds}]})
        joints = np.asarray(generate_timeline(bundle, timeline, seed=args.seed)[0].joints, dtype=np.float64)
        rehearsed = bool(run_check(check, joints, MODEL_FPS, side=prompt_side(phrasing, label_side(word))).passed)
        if not rehearsed:
            warned[verdicts[phrasing]].append(phrasing)
        rows.append(f"| {phrasing} | {word} | {check} | {'passes' if rehearsed else '**fails**'} | "
                    f"{'yes' if verdicts[phrasing] else 'no'} |")
    failures = sum(not passed for passed in verdicts.values())
    lines = ["# A rehearsal as a warning", "",
             f"Command: `python benchmarks/measure_rehearsal_warnings.py --checkpoint {args.checkpoint} --seconds "
             f"{args.seconds:g} --seed {args.seed}`.  Each everyday phrasing generated once ({args.seconds:g} s, "
             f"seed {args.seed}) and judged by the check of the action it is read as; the suite's verdicts from "
             "`everyday_phrasings.md`.", "",
             f"**Failures whose rehearsal fails: {len(warned[False])} of {failures}** "
             f"({'; '.join(warned[False])}); passing phrasings whose rehearsal fails: "
             f"{len(warned[True])} of {len(verdicts) - failures} ({'; '.join(warned[True])}).", "",
             "| phrasing | read as (action) | its check | rehearsal | passes the suite |",
             "| --- | --- | --- | --- | --- |", *rows, ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
