# SPDX-License-Identifier: GPL-3.0-or-later
"""A candidate measured and not shipped: generating a prompt far from the training captions as its nearest known
caption instead (the out-of-vocabulary check's first suggestion, MiniLM space), the rewrite shown to the user.

Two held-out measures, each prompt generated alone through the product's `generate_timeline` (clean-up on) at seeds
0..N-1, as typed and rewritten when its best similarity is below each threshold:
- the everyday phrasing suite (`measure_everyday_phrasings.py`'s SUITE and geometric checks, 5 s);
- the 40 held-out directional paraphrases (`evaluation/paraphrases.py`, 4 s), by directional accuracy: a rewrite
  that loses the prompt's side ("the woman swings her right hand" -> a caption of the left hand) fails there.

Run: ``python benchmarks/measure_prompt_rewrite.py [--seeds 3] [--thresholds 0.8 2]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_phrasings import SUITE, generated, passes, phrasing_verdicts  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.directional import directional_accuracy  # noqa: E402
from kmm_core.evaluation.paraphrases import paraphrase_prompts  # noqa: E402
from kmm_core.generation.prompt_vocabulary import PromptVocabulary  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PARAPHRASE_SECONDS = 4.0


def paraphrase_accuracies(bundle: ModelBundle, paraphrases: list[str], seeds: int,
                          generated_as: list[str] | None = None) -> list[float]:
    """Directional accuracy of the held-out `paraphrases`, one per seed 0..seeds-1, each generated alone for
    `PARAPHRASE_SECONDS` as the product does (as `generated_as`, one prompt each, where given: a rewrite)."""
    used = paraphrases if generated_as is None else generated_as
    return [directional_accuracy(paraphrases, [generated(bundle, p, PARAPHRASE_SECONDS, seed) for p in used],
                                 MODEL_FPS).overall_accuracy for seed in range(seeds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 2.0],
                        help="rewrite prompts whose best similarity is below each (2: every prompt)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "prompt_rewrite.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    vocabulary = PromptVocabulary.load(bundle)
    suite_checks = vocabulary.check([prompt for prompt, _ in SUITE])
    paraphrases = [prompt for _, prompt in paraphrase_prompts()]
    paraphrase_checks = vocabulary.check(paraphrases)
    rows = []
    for threshold in [0.0, *args.thresholds]:
        passed = 0
        for (prompt, label), check in zip(SUITE, suite_checks, strict=True):
            used = check.suggestions[0] if check.similarity < threshold and check.suggestions else prompt
            passed += passes(phrasing_verdicts(bundle, used, label, args.seeds))
        used = [check.suggestions[0] if check.similarity < threshold and check.suggestions else prompt
                for prompt, check in zip(paraphrases, paraphrase_checks, strict=True)]
        accuracy = paraphrase_accuracies(bundle, paraphrases, args.seeds, used)
        rewritten = sum(c.similarity < threshold for c in [*suite_checks, *paraphrase_checks])
        name = "as typed" if threshold == 0 else ("every prompt rewritten" if threshold > 1 else
                                                   f"rewritten below {threshold:g}")
        rows.append(f"| {name} | {rewritten} | {passed} of {len(SUITE)} | {np.mean(accuracy):.3f} "
                    f"({', '.join(f'{a:.3f}' for a in accuracy)}) |")
        print(rows[-1], flush=True)
    examples = [f"- \"{prompt}\" -> \"{check.suggestions[0]}\" ({check.similarity:.2f})"
                for prompt, check in zip(paraphrases, paraphrase_checks, strict=True)
                if check.suggestions and (("left" in prompt) != ("left" in check.suggestions[0]))][:6]
    lines = ["# Rewriting far prompts to their nearest known caption (measured, not shipped)", "",
             f"Command: `python benchmarks/measure_prompt_rewrite.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds} --thresholds {' '.join(f'{t:g}' for t in args.thresholds)}`.  Seeds 0-{args.seeds - 1}; "
             "the suite's pass rule as in everyday_phrasings.md; directional accuracy per seed.", "",
             "| prompts | rewritten (suite + paraphrases) | everyday phrasings passing | held-out paraphrases: "
             "directional accuracy |", "| --- | --- | --- | --- |", *rows, "",
             "Nearest captions that lose the prompt's side (MiniLM barely tells left from right):", "", *examples, ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
