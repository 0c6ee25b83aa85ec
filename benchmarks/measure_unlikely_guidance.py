# SPDX-License-Identifier: GPL-3.0-or-later
"""Does the raised guidance for prompts the model rarely performs earn its place?  Measured on held-out captions.

A bundle with ``decoding.unlikely_guidance_factor`` above 1 generates a prompt whose nearest train captions it
rarely performs at its guidance, and performs more often at the raised one, at the raised one
(``bundle/caption_checks.py`` ``boost_weight``, read from the bundle's ``caption_checks.json``, which holds the train
captions' results at both).  Here the bundle's held-out val captions, which none of that reads, are each generated
once (4 s, seed 0, the evaluation's batched generation, as ``kmm-train check-captions`` generates the train ones)
three ways: every caption at the bundle's guidance, every caption at the raised one, and as the product does (each
its own share of the raised guidance), and judged by their action's geometric check.  The mechanism keeps its place
while the product's way performs more of the captions it raises than the bundle's guidance does, and leaves the rest
as they were.  Beside it, the guidance each everyday phrasing gets (``measure_everyday_phrasings.py``'s suite).

Run: ``python benchmarks/measure_unlikely_guidance.py [--checkpoint default] [--out FILE]``  (about 3 minutes)
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
from kmm_core.bundle.vocabulary import read_vocabulary  # noqa: E402
from kmm_core.evaluation.caption_checks import SECONDS, caption_results  # noqa: E402
from kmm_core.generation.prompt_vocabulary import check_prompts  # noqa: E402

RAISED = 0.5
"""A caption counts as raised when it takes at least this share of the raised guidance."""


def pass_rate(results: list[bool | None], rows: np.ndarray) -> str:
    judged = [bool(results[i]) for i in rows if results[i] is not None]
    return f"{np.mean(judged):.3f} of {len(judged)}" if judged else "–"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "unlikely_guidance.md")
    args = parser.parse_args(argv)
    folder = resolve_model(args.checkpoint)
    bundle = ModelBundle.load(folder, device="cpu")
    factor = bundle.decoding.unlikely_guidance_factor
    if factor == 1.0:
        raise SystemExit(f"{folder}: decodes without a raised guidance (decoding.unlikely_guidance_factor is 1)")
    vocabulary = read_vocabulary(folder)
    captions, actions = list(vocabulary.val_captions), list(vocabulary.val_actions)
    boosts = np.array([check.guidance_boost for check in check_prompts(bundle, captions) or []])
    if len(boosts) != len(captions):
        raise SystemExit(f"{folder}: the bundle cannot check prompts (no caption_checks.json?)")
    ways = {"the bundle's guidance": 0.0, f"{factor:g}x it": 1.0, "as generated (each its own share)": None}
    results = {name: caption_results(bundle, captions, actions, guidance_boost=boost) for name, boost in ways.items()}
    raised, rest, every = (np.flatnonzero(boosts >= RAISED), np.flatnonzero(boosts < RAISED),
                           np.arange(len(captions)))
    lines = ["# The raised guidance for prompts the model rarely performs, on held-out captions", "",
             f"Command: `python benchmarks/measure_unlikely_guidance.py --checkpoint {args.checkpoint}`.  The "
             f"{len(captions)} val captions of the bundle (never read by its caption checks), each generated once "
             f"({SECONDS:g} s, seed 0) three ways and judged by its action's check; \"raised\": the "
             f"{len(raised)} captions that take at least {RAISED:.0%} of the raised guidance "
             f"({factor:g}x, `bundle/caption_checks.py` `boost_weight`), {np.mean(boosts > 0):.1%} take any.", "",
             "| generated at | raised captions performed | the others performed | all performed |",
             "| --- | --- | --- | --- |"]
    for name, result in results.items():
        lines.append(f"| {name} | {pass_rate(result, raised)} | {pass_rate(result, rest)} | "
                     f"{pass_rate(result, every)} |")
    suite = check_prompts(bundle, [phrasing for phrasing, _ in SUITE]) or []
    boosted = [f"{check.prompt!r} {check.guidance_boost:.2f}" for check in suite if check.guidance_boost > 0]
    lines += ["", f"Everyday phrasings that take some of the raised guidance ({len(boosted)} of {len(SUITE)}; the "
                  f"share each takes): {'; '.join(boosted) or 'none'}.", ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
