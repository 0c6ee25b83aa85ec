# SPDX-License-Identifier: GPL-3.0-or-later
"""Each mechanism of a far prompt's reading switched off in turn, judged on both everyday-phrasing sets and the
held-out directional paraphrases: what each one earns on wording it was not chosen on.

Mechanisms (`generation/prompt_conditions.py`, `bundle/caption_checks.py`): the condition completed by the nearest
performed training captions (off: the prompt alone, ``OWN`` 1); the prompt's own share brought onto the captions
(off: its embedding as it is, ``CaptionRetrieval.onto_captions``); that step left out where the nearest captions are
ones the model fails (off: ``ONTO_GAP`` infinite, always brought onto them); the raised guidance for what the model
rarely performs (off: ``decoding.unlikely_guidance_factor`` 1).  Every phrasing generated alone through the
product's `generate_timeline` at seeds 0..N-1 and judged as `measure_everyday_phrasings.py` judges it (a phrasing
passes at two thirds of its seeds); "unwarned": failures the product's prompt warnings do not name before generating.
The 66 phrasings (`SUITE`) are the ones the settings were chosen on; the 44 (`HELD_OUT_SUITE`) were written after,
and the 16 (`STYLED_SUITE`, a direction asked for in a manner) after those.

Run: ``python benchmarks/measure_reading_mechanisms.py [--checkpoint default] [--seeds 3]`` (about 6 minutes on
2 cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_phrasings import (  # noqa: E402
    HELD_OUT_SUITE,
    SECONDS,
    STYLED_SUITE,
    SUITE,
    passes,
    phrasing_verdicts,
)
from benchmarks.measure_prompt_rewrite import PARAPHRASE_SECONDS, paraphrase_accuracies  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.paraphrases import paraphrase_prompts  # noqa: E402
from kmm_core.generation import prompt_conditions  # noqa: E402
from kmm_core.generation.prompt_vocabulary import prompt_warnings  # noqa: E402

VARIANTS = ("as shipped", "the prompt alone (no retrieval)", "the own share as embedded",
            "the own share always brought onto the captions (no ONTO_GAP)", "no raised guidance")


def switched_off(variant: str, bundle: ModelBundle) -> ExitStack:
    """The patches that switch `variant`'s mechanism off for the duration of a `with` block."""
    stack = ExitStack()
    if variant == VARIANTS[1]:
        stack.enter_context(mock.patch.object(prompt_conditions, "OWN", 1.0))
    elif variant == VARIANTS[2]:
        stack.enter_context(mock.patch.object(prompt_conditions.CaptionRetrieval, "onto_captions",
                                              lambda _self, condition: condition))
    elif variant == VARIANTS[3]:
        stack.enter_context(mock.patch.object(prompt_conditions, "ONTO_GAP", math.inf))
    elif variant == VARIANTS[4]:
        stack.enter_context(mock.patch.object(bundle, "decoding",
                                              dataclasses.replace(bundle.decoding, unlikely_guidance_factor=1.0)))
    elif variant != VARIANTS[0]:
        raise ValueError(f"unknown variant {variant!r}")
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "reading_mechanisms.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    paraphrases = [prompt for _, prompt in paraphrase_prompts()]
    suites = (SUITE, HELD_OUT_SUITE, STYLED_SUITE)
    phrasings = [entry for suite in suites for entry in suite]
    warned = {phrasing: bool(prompt_warnings(bundle, [(0, phrasing)])) for phrasing, _ in phrasings}
    rows, changes, shipped = [], [], {}
    for variant in VARIANTS:
        with switched_off(variant, bundle):
            passing = {phrasing: passes(phrasing_verdicts(bundle, phrasing, label, args.seeds))
                       for phrasing, label in phrasings}
            accuracy = paraphrase_accuracies(bundle, paraphrases, args.seeds)
        cells = []
        for suite in suites:
            passed = sum(passing[phrasing] for phrasing, _ in suite)
            unwarned = sum(not passing[phrasing] and not warned[phrasing] for phrasing, _ in suite)
            cells.append(f"{passed} of {len(suite)} ({unwarned} unwarned)")
        rows.append(f"| {variant} | {' | '.join(cells)} | {np.mean(accuracy):.3f} |")
        print(rows[-1], flush=True)
        if variant == VARIANTS[0]:
            shipped = passing
        else:
            gained = [p for p in passing if passing[p] and not shipped[p]]
            lost = [p for p in passing if shipped[p] and not passing[p]]
            changes.append(f"- {variant}: passes {', '.join(repr(p) for p in gained) or 'nothing more'}; "
                           f"fails {', '.join(repr(p) for p in lost) or 'nothing more'}")
    lines = ["# A far prompt's reading, one mechanism off at a time, on wording it was and was not chosen on", "",
             f"Command: `python benchmarks/measure_reading_mechanisms.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}`.  Seeds 0-{args.seeds - 1}; each everyday phrasing alone for {SECONDS:g} s, passing at "
             f"two thirds of its seeds (as `everyday_phrasings.md`); the 40 held-out directional paraphrases for "
             f"{PARAPHRASE_SECONDS:g} s, the mean of the seeds' directional accuracy.  \"Unwarned\": failures the "
             "product's prompt warnings do not name before generating.", "",
             f"| generated with | {len(SUITE)} phrasings (settings chosen on them) | {len(HELD_OUT_SUITE)} held-out "
             f"phrasings | {len(STYLED_SUITE)} styled phrasings (held out) | held-out paraphrases: directional "
             "accuracy |", "| --- | --- | --- | --- | --- |", *rows, "",
             "Against the shipped reading:", "", *changes, ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
