# SPDX-License-Identifier: GPL-3.0-or-later
"""Does the model perform left as well as right?  Its own caption checks, split by the side each caption names.

Every training caption of a bundle was generated at a few seeds and judged by its action's geometric check
(``caption_checks.json``, ``kmm-train check-captions``: seeds 0-2, 4 s; performed: in at least ``PERFORMED_SHARE`` of
them).  The data is left/right balanced by
construction (``kmm-train prepare`` adds each take's mirrored copy, its captions' side words swapped), so a model
that learnt both sides alike performs the captions naming the left as often as those naming the right.  Per check
(the geometric check of the caption's training action, ``vocabulary.json``'s ``train_actions``: grouped by check,
not by action, since a caption and its mirror are listed under whichever take gave it first), the captions naming
one side only (``action_checks.prompt_side``): how many of each side the model performed.  Beside it, where the
generator's condition (the aligner's sentence embedding, ``vocabulary.safetensors``' ``train_conditions``) places
those captions: each one's cosine to the nearest caption of another check (the action it is most easily taken for)
and which check that is most often; a side whose captions sit nearer another action than the other side's do is one
the generator is asked to tell apart from less.  Reads the bundle's files only; no generation.

Run: ``python benchmarks/measure_side_balance.py [--checkpoint default] [--out FILE]``
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.caption_checks import PERFORMED_SHARE, CaptionChecks, read_caption_checks  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.bundle.vocabulary import Vocabulary, read_vocabulary  # noqa: E402
from kmm_core.evaluation.action_checks import checks_for_action, prompt_side  # noqa: E402

SIDES = ("left", "right")


def caption_checks_of(vocabulary: Vocabulary) -> np.ndarray:
    """(N,) the geometric check of each train caption's training action ('' where none applies)."""
    return np.array([(checks_for_action(action.split("/")[-1]) or ("",))[0] for action in vocabulary.train_actions])


def side_counts(vocabulary: Vocabulary, checks: CaptionChecks, names: np.ndarray) -> dict[str, dict[str, list[int]]]:
    """{check: {side: [performed, checked]}} over the train captions that name one side and have a check
    (`names`: `caption_checks_of`)."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: {side: [0, 0] for side in SIDES})
    for caption, name, passed, unperformed in zip(vocabulary.train_captions, names, checks.passed,
                                                  checks.unperformed, strict=True):
        side = prompt_side(caption, None)
        if side is None or passed != passed:  # no side named, or no check (NaN)
            continue
        counts[name or "?"][side][0] += int(not unperformed)
        counts[name or "?"][side][1] += 1
    return dict(counts)


def nearest_other_action(bundle_dir: Path, vocabulary: Vocabulary, names: np.ndarray
                         ) -> dict[str, dict[str, tuple[list[float], Counter]]]:
    """{check: {side: ([each sided caption's cosine to the nearest caption of another check], Counter of those
    checks)}} in the generator's condition space (the bundle's ``train_conditions``); {} without the table."""
    tensors = load_file(str(bundle_dir / "vocabulary.safetensors"))
    if "train_conditions" not in tensors:
        return {}
    conditions = tensors["train_conditions"].astype(np.float64)
    conditions /= np.linalg.norm(conditions, axis=1, keepdims=True).clip(min=1e-12)
    found: dict[str, dict[str, tuple[list[float], Counter]]] = defaultdict(
        lambda: {side: ([], Counter()) for side in SIDES})
    for index, caption in enumerate(vocabulary.train_captions):
        side = prompt_side(caption, None)
        if side is None or not names[index]:
            continue
        cosine = conditions @ conditions[index]
        cosine[(names == names[index]) | (names == "")] = -np.inf
        nearest = int(np.argmax(cosine))
        found[names[index]][side][0].append(float(cosine[nearest]))
        found[names[index]][side][1][names[nearest]] += 1
    return dict(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "side_balance.md")
    args = parser.parse_args(argv)
    bundle_dir = resolve_model(args.checkpoint)
    vocabulary = read_vocabulary(bundle_dir)
    checks = read_caption_checks(bundle_dir, len(vocabulary.train_captions))
    if checks is None:
        raise SystemExit(f"{bundle_dir}: no caption_checks.json (`kmm-train check-captions`)")
    names = caption_checks_of(vocabulary)
    counts = side_counts(vocabulary, checks, names)
    total = {side: [sum(c[side][i] for c in counts.values()) for i in (0, 1)] for side in SIDES}
    rows = []
    for check, by_side in sorted(counts.items(), key=lambda item: -sum(n for _, n in item[1].values())):
        cells = [f"{by_side[side][0]} of {by_side[side][1]}" for side in SIDES]
        rates = [by_side[side][0] / by_side[side][1] if by_side[side][1] else None for side in SIDES]
        gap = (f"{rates[0] - rates[1]:+.2f}" if None not in rates else "–")
        rows.append(f"| {check} | {cells[0]} | {cells[1]} | {gap} |")
    lines = ["# Left and right: the model's caption checks by the side a caption names", "",
             f"Command: `python benchmarks/measure_side_balance.py --checkpoint {args.checkpoint}`; the bundle's "
             f"`caption_checks.json` (each training caption generated at {checks.seeds} seed(s), 4 s, judged by its "
             f"action's check; performed: in at least {PERFORMED_SHARE:.0%} of them), the captions that name one "
             "side only.  The training data holds every take and its mirrored "
             "copy, so the two columns should match.", "",
             f"**All: left {total['left'][0]} of {total['left'][1]} performed "
             f"({total['left'][0] / max(total['left'][1], 1):.0%}), right {total['right'][0]} of "
             f"{total['right'][1]} ({total['right'][0] / max(total['right'][1], 1):.0%}).**", "",
             "| check | naming the left: performed | naming the right: performed | left - right |",
             "| --- | --- | --- | --- |", *rows, ""]
    near = nearest_other_action(bundle_dir, vocabulary, names)
    if near:
        lines += ["## Where the generator's condition places them", "",
                  "Each sided caption's cosine, in the generator's condition space, to the nearest caption of another "
                  "check: the median per side, and the check that nearest caption belongs to most often.", "",
                  "| check | left: median cosine (nearest other check) | right: median cosine (nearest other check) |",
                  "| --- | --- | --- |"]
        for check in sorted(near, key=lambda name: -sum(len(near[name][side][0]) for side in SIDES)):
            cells = []
            for side in SIDES:
                cosines, others = near[check][side]
                cells.append(f"{np.median(cosines):.2f} ({others.most_common(1)[0][0]})" if cosines else "–")
            lines.append(f"| {check} | {cells[0]} | {cells[1]} |")
        lines.append("")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
