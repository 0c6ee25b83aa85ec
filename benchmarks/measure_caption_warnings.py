# SPDX-License-Identifier: GPL-3.0-or-later
"""Would a warning from the nearest training captions' own results say which prompts the model will not perform?

Each distinct train and val caption of the bundle is generated once (the evaluation's batched generation,
`generated_motions.generate_features`, 4 s, seed 0) and judged by its action's geometric check
(`action_checks.checks_for_action`, the side its words or its label name).  A prompt's predicted pass rate is the
similarity-weighted pass rate of its K nearest train captions in MiniLM's sentence space (the space of the
out-of-vocabulary check); a warning would be given below a threshold.  Judged on the held-out val captions (their own
pass against the prediction from the train captions) and on the everyday phrasing suite
(`benchmarks/results/everyday_phrasings.md`: which phrasings fail with the shipped product, and which the product's
warnings already name).

    python benchmarks/measure_caption_warnings.py [--checkpoint default] [--cache FILE] [--out FILE]

`--cache` keeps the generated captions' results (JSON): a second run with the same file only re-reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.bundle.vocabulary import read_vocabulary  # noqa: E402
from kmm_core.evaluation.action_checks import checks_for_action, label_side, run_check  # noqa: E402
from kmm_core.evaluation.generated_motions import generate_features, generated_joints  # noqa: E402
from kmm_core.evaluation.word_checks import prompt_side  # noqa: E402
from kmm_core.generation.prompt_vocabulary import embed_texts  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SUITE_RESULTS = REPO_ROOT / "benchmarks" / "results" / "everyday_phrasings.md"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
NEIGHBOURS = 8
FRAMES = 80  # 4 s at 20 fps


def caption_results(bundle: ModelBundle, vocabulary, log=print) -> dict[str, list[dict]]:
    """Each val and train caption generated once and judged by its action's check."""
    results = {}
    for split, captions, actions in (("val", vocabulary.val_captions, vocabulary.val_actions),
                                     ("train", vocabulary.train_captions, vocabulary.train_actions)):
        started = time.perf_counter()
        joints = generated_joints(generate_features(bundle, list(captions), [FRAMES] * len(captions), 0, 64),
                                  foot_lock=False)
        rows = []
        for caption, action, motion in zip(captions, actions, joints, strict=True):
            word = action.split("/", 1)[1]
            (check,) = checks_for_action(word) or ("",)
            passed = (bool(run_check(check, motion, MODEL_FPS, side=prompt_side(caption, label_side(word))).passed)
                      if check else None)
            rows.append({"caption": caption, "action": action, "check": check, "passed": passed})
        results[split] = rows
        log(f"{split}: {len(rows)} captions in {time.perf_counter() - started:.0f} s")
    return results


def suite_outcomes(path: Path = SUITE_RESULTS) -> list[tuple[str, bool, bool]]:
    """(phrasing, passes, warned) of each row of the everyday phrasing suite's results table."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("phrasing", "---"):
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
    train = [row for row in results["train"] if row["passed"] is not None]
    known = embed_texts(bundle, [row["caption"] for row in train], "minilm")
    known /= np.linalg.norm(known, axis=1, keepdims=True)
    passed = np.array([row["passed"] for row in train], dtype=float)

    def predicted(texts: list[str]) -> np.ndarray:
        queries = embed_texts(bundle, texts, "minilm")
        similarity = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ known.T
        nearest = np.argsort(-similarity, axis=1)[:, :NEIGHBOURS]
        weights = np.take_along_axis(similarity, nearest, axis=1)
        return (weights * passed[nearest]).sum(axis=1) / weights.sum(axis=1)

    val = [row for row in results["val"] if row["passed"] is not None]
    val_rate, val_passed = predicted([row["caption"] for row in val]), np.array([row["passed"] for row in val])
    suite = suite_outcomes()
    suite_rate = predicted([phrasing for phrasing, _, _ in suite])
    suite_passed = np.array([passes for _, passes, _ in suite])
    suite_warned = np.array([warned for _, _, warned in suite])
    lines = ["# A warning from the nearest captions' own results", "",
             f"Command: `python benchmarks/measure_caption_warnings.py --checkpoint {args.checkpoint}`.  "
             f"{len(train)} train and {len(val)} val captions generated once each (4 s, seed 0) and judged by their "
             f"action's check: {passed.mean():.2f} and {val_passed.mean():.2f} pass.  A prompt's predicted pass rate: "
             f"its {NEIGHBOURS} nearest train captions' (MiniLM), similarity-weighted.", "",
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
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
