# SPDX-License-Identifier: GPL-3.0-or-later
"""Would a warning from the nearest training captions' own results say which prompts the model will not perform?

Each distinct train and val caption of the bundle is generated once (the evaluation's batched generation,
`generated_motions.generate_features`, 4 s, seed 0) and judged by its action's geometric check
(`action_checks.checks_for_action`, the side its words or its label name).  A prompt's predicted pass rate is the
pass rate of its K nearest train captions in MiniLM's sentence space (the space of the out-of-vocabulary check),
each weighted by its nearness beside the nearest (`bundle/caption_checks.py` `NEARNESS`); a warning would be given below a threshold.  Judged on the held-out val captions (their own
pass against the prediction from the train captions) and on the everyday phrasing suite
(`benchmarks/results/everyday_phrasings.md`: which phrasings fail with the shipped product, and which the product's
warnings already name).

    python benchmarks/measure_caption_warnings.py [--checkpoint default] [--cache FILE] [--out FILE]

`--cache` keeps the generated captions' results (JSON): a second run with the same file only re-reads them.  The
train captions' results are the bundle's `caption_checks.json` when it has one (`kmm-train check-captions`, the same
measurement), so only the val captions are generated.  The shipped warning (`bundle/caption_checks.py`) warns below
0.5 with 8 neighbours.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.caption_checks import (  # noqa: E402
    NEARNESS,
    NEIGHBOURS,
    caption_checks_document,
    caption_checks_from_dict,
    read_caption_checks,
)
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.bundle.vocabulary import read_vocabulary  # noqa: E402
from kmm_core.bundle.word_strength import read_word_strengths  # noqa: E402
from kmm_core.evaluation.caption_checks import caption_results as generated_caption_results  # noqa: E402
from kmm_core.generation.prompt_vocabulary import embed_texts  # noqa: E402

SUITE_RESULTS = REPO_ROOT / "benchmarks" / "results" / "everyday_phrasings.md"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)



def caption_results(bundle: ModelBundle, vocabulary, log=print) -> dict[str, list[dict]]:
    """Each val and train caption generated once and judged by its action's check (`kmm-train check-captions`'s
    measurement, `evaluation/caption_checks.py`; the val captions as generation gives them, each at its own share of
    a raised guidance); the train captions' results are the bundle's own `caption_checks.json` when it has one (the
    same measurement)."""
    shipped = read_caption_checks(bundle.path, len(vocabulary.train_captions))
    results = {}
    for split, captions, actions in (("val", vocabulary.val_captions, vocabulary.val_actions),
                                     ("train", vocabulary.train_captions, vocabulary.train_actions)):
        if split == "train" and shipped is not None:  # the share of its seeds that passed
            passed = [None if np.isnan(value) else float(value) for value in shipped.passed]
        else:
            passed = generated_caption_results(bundle, captions, actions, log=lambda m, s=split: log(f"{s}: {m}"))
        results[split] = [{"caption": caption, "action": action, "passed": value}
                          for caption, action, value in zip(captions, actions, passed, strict=True)]
    return results


def suite_outcomes(path: Path = SUITE_RESULTS) -> list[tuple[str, bool, bool]]:
    """(phrasing, passes, warned) of each row of the everyday phrasing suite's results table."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) in (5, 6) and cells[0] not in ("phrasing", "---"):  # 6: with what each is read with
            rows.append((cells[0], cells[3] == "yes", cells[4] == "yes"))
    if not rows:
        raise SystemExit(f"{path}: no suite table found")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--cache", type=Path, help="the generated captions' results (JSON), reused when present")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "caption_warnings.md")
    args = parser.parse_args(argv)
    folder = resolve_model(args.checkpoint)
    bundle = ModelBundle.load(folder, device="cpu")
    if args.cache is not None and args.cache.is_file():
        results = json.loads(args.cache.read_text())
    else:
        results = caption_results(bundle, read_vocabulary(folder))
        if args.cache is not None:
            args.cache.write_text(json.dumps(results))
    vocabulary = read_vocabulary(folder)
    if [row["caption"] for row in results["train"]] != list(vocabulary.train_captions):
        raise SystemExit(f"{args.cache}: its train captions are not the bundle's (another vocabulary)")
    shipped = read_caption_checks(folder, len(vocabulary.train_captions))
    checks = shipped if shipped is not None else caption_checks_from_dict(caption_checks_document(
        vocabulary.model, [[row["passed"] for row in results["train"]]], {}, ""), len(vocabulary.train_captions))
    known = load_file(str(folder / "vocabulary.safetensors"))["train_embeddings"].astype(np.float32)
    train = [row for row in results["train"] if row["passed"] is not None]
    passed = np.array([row["passed"] for row in train], dtype=float)

    def predicted(texts: list[str]) -> np.ndarray:
        queries = embed_texts(bundle, texts, "minilm")
        return np.array([checks.predicted(known @ query).usual for query in queries])  # what the warning reads

    val = [row for row in results["val"] if row["passed"] is not None]
    val_rate, val_passed = predicted([row["caption"] for row in val]), np.array([row["passed"] for row in val])
    suite = suite_outcomes()
    suite_rate = predicted([phrasing for phrasing, _, _ in suite])
    suite_passed = np.array([passes for _, passes, _ in suite])
    suite_warned = np.array([warned for _, _, warned in suite])
    lines = ["# A warning from the nearest captions' own results", "",
             f"Command: `python benchmarks/measure_caption_warnings.py --checkpoint {args.checkpoint}`.  "
             f"{len(train)} train captions generated at {checks.seeds} seed{'s' if checks.seeds > 1 else ''} each "
             f"and {len(val)} val captions once (4 s, from seed 0), judged by their action's check: "
             f"{passed.mean():.2f} and {val_passed.mean():.2f} pass.  A prompt's predicted pass rate: its "
             f"{NEIGHBOURS} nearest train captions' shares of seeds passed (MiniLM), each weighted by its nearness "
             "beside the nearest "
             f"(exp((similarity - best) / {NEARNESS:g}), `bundle/caption_checks.py`).", "",
             "| warn below | val failures warned | val passes warned | suite failures warned (of them not warned "
             "today) | suite passes warned (of them not warned today) |", "| --- | --- | --- | --- | --- |"]
    for threshold in THRESHOLDS:
        warn_val, warn_suite = val_rate < threshold, suite_rate < threshold
        lines.append(
            f"| {threshold:g} | {warn_val[~val_passed].mean():.2f} of {(~val_passed).sum()} | "
            f"{warn_val[val_passed].mean():.2f} of {val_passed.sum()} | "
            f"{warn_suite[~suite_passed].sum()} of {(~suite_passed).sum()} "
            f"({(warn_suite & ~suite_passed & ~suite_warned).sum()} of {(~suite_passed & ~suite_warned).sum()}) | "
            f"{warn_suite[suite_passed].sum()} of {suite_passed.sum()} "
            f"({(warn_suite & suite_passed & ~suite_warned).sum()} of {(suite_passed & ~suite_warned).sum()}) |")
    lines += ["", "The suite's failures that no warning names today, with their predicted pass rate: " + "; ".join(
        f"{phrasing!r} {rate:.2f}" for (phrasing, passes, warned), rate in zip(suite, suite_rate, strict=True)
        if not passes and not warned) + "."]
    words = read_word_strengths(folder)
    if words is not None:
        # The weak-word warning's one-sided rule (a prompt naming no side, read as a weak one-sided word of the same
        # action, bundle/word_strength.py): the val captions it warns about that the plain rule does not.
        used = {row["caption"]: words.word_in(row["caption"]) for row in val}
        added = [row for row in val if words.weak_words_in(row["caption"])
                 and (used[row["caption"]] is None or used[row["caption"]].strong)]
        lines += ["", f"The weak-word warning's one-sided rule warns about {len(added)} val captions the word they "
                      f"use would not: {sum(not row['passed'] for row in added)} of them failed"
                      + (": " + "; ".join(f"{row['caption']!r} ({'passed' if row['passed'] else 'failed'})"
                                          for row in added[:10]) if added else "") + "."]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
