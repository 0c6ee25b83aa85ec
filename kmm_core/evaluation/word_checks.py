# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train check-words``: every action word a bundle lists, checked on generated motion, stored in the bundle.

::

    kmm-train check-words --checkpoint BUNDLE [--seeds 10] [--phrasings 2] [--seconds 4] [--table FILE]

For each action word of ``BUNDLE/vocabulary.json`` (``Vocabulary.action_words``): ``--phrasings`` distinct example
prompts of the word (training captions, from every dataset that has the word), each generated ``--seeds`` times
(one seeded sampling stream, batched), ``--seconds`` long, and measured on the decoded joints by the word's
geometric check (``action_checks.checks_for_action``; a side named by the prompt, or else by the label, is the side
that must do it).  The word's pass rate is the share of its generations that pass; a word below ``--strong-rate``
(0.6) is WEAK, and gets a strong word as its alternative (``choose_alternatives``): one of the same check, else
of the same kind of action, else any; a plain word before a dataset label ('jumping', not 'hopBothLegs1hops'); the
closest in MiniLM's sentence space among equals; its offered prompt is the strong word's training caption nearest
the weak word's phrasings that uses no weak word itself (taking it clears the warning).  The result goes
into ``BUNDLE/word_checks.json`` (``bundle/word_strength.py``), which ``kmm vocab`` and the prompt warnings read;
``--table`` also writes the Markdown table (``benchmarks/results/``).

77 words x 2 phrasings x 10 seeds = 1,540 four-second clips: a few minutes on two CPU cores.  Bounded: at most
`MAX_SEEDS` seeds, `MAX_PHRASINGS` phrasings and `MAX_GENERATIONS` clips in all (refused before the model loads),
and the bundle folder and `--table`'s folder are checked writable before anything is generated.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic_write import check_output_folder, write_text_atomic
from ..common.errors import KMMError
from ..common.limits import thread_count_problem
from ..common.progress import command_log
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from .action_checks import CHECK_KINDS, checks_for_action, label_side, prompt_side, run_check


class WordCheckError(KMMError):
    """A bundle whose words cannot be checked (no vocabulary, a word without example prompts)."""


@dataclass(frozen=True)
class WordCheckSettings:
    seeds: int = 10
    phrasings: int = 2
    seconds: float = 4.0
    seed: int = 0
    strong_rate: float = 0.6
    batch_size: int = 64
    device: str = "cpu"


@dataclass
class WordPlan:
    word: str
    check: str
    side: str | None
    phrasings: list[str]


def plan_words(vocabulary, phrasings: int) -> tuple[list[WordPlan], list[str]]:
    """One plan per action word that a geometric check measures (its check and its first `phrasings` distinct
    example prompts), and the words no check applies to (ACCAD's "idle-armswing", "look-around": left unmeasured,
    so neither strong nor weak, rather than judged by a check of another action)."""
    plans, unchecked = [], []
    for word in vocabulary.action_words:
        examples = list(dict.fromkeys(e for action in vocabulary.actions if action.content == word
                                      for e in action.examples))
        if not examples:
            raise WordCheckError(f"{vocabulary.path or 'vocabulary.json'}: action {word!r} has no example prompts")
        (check,) = checks_for_action(word) or ("",)
        if check:
            plans.append(WordPlan(word, check, label_side(word), examples[:phrasings]))
        else:
            unchecked.append(word)
    if not plans:
        raise WordCheckError(f"{vocabulary.path or 'vocabulary.json'}: no action word has a geometric check "
                             "(evaluation/action_checks.py _CHECK_RULES)")
    return plans, unchecked


def check_generations(plan: WordPlan, prompts: Sequence[str], joints: Sequence[np.ndarray]) -> list[bool]:
    """Pass/fail of each generated motion of one word under its check."""
    return [run_check(plan.check, motion, MODEL_FPS, side=prompt_side(prompt, plan.side)).passed
            for prompt, motion in zip(prompts, joints, strict=True)]


def is_label_like(word: str) -> bool:
    """A dataset's take label rather than a word an animator would type: capitals or digits
    ('kickLFront1Reps', 'sneak2StepsLStart'), unlike 'spinkick', 'walk-turn-left' or 'zombie_walk'."""
    return bool(re.search(r"[A-Z0-9]", word))


def _action_distance(check: str, other: str) -> int:
    """0: the same check, 1: the same kind of action (action_checks.CHECK_KINDS), 2: another kind."""
    return 0 if check == other else 1 if CHECK_KINDS[check] == CHECK_KINDS[other] else 2


def _side_distance(side: str | None, other: str | None) -> int:
    """0: the same side, 1: no side on one of them, 2: the opposite side."""
    return 0 if side is not None and side == other else 1 if side is None or other is None else 2


def _alternative_rank(weak: dict[str, Any], strong: dict[str, Any]) -> tuple[bool, int, bool, int]:
    """How far `strong` is from what the animator asked for with `weak` (lower first; see choose_alternatives)."""
    side = _side_distance(weak.get("side"), strong.get("side"))
    return side == 2, _action_distance(weak["check"], strong["check"]), is_label_like(strong["word"]), side


def choose_alternatives(rows: list[dict[str, Any]], embeddings: np.ndarray,
                        prompt_choices: Mapping[int, Sequence[tuple[str, np.ndarray]]] | None = None) -> None:
    """Give every weak row the strong word an animator would try instead, with the prompt to try (in place).

    Among the strong words with a prompt to offer that the prompt warning passes (no weak word in it, so taking the
    suggestion clears the warning), the first by: never the opposite side while another will do (a side step to the
    left is not offered one to the right: 'walk-left' -> 'walk-turn-left', not 'walk-right'); the same check, else
    the same kind of action, else any; a plain word before a label-like one ('jumping', not 'hopBothLegs1hops'); the
    same side before none ('walk-right' -> 'walk-turn-right'); then the closest mean phrasing embedding
    (`embeddings`: one unit row per row).  The prompt offered: among `prompt_choices` of the chosen row (its
    training captions with their unit embeddings) that warn about no weak word, the one nearest the weak word's
    phrasings, so the suggestion keeps what it can of what was asked ("someone picks up a box from the floor" ->
    "a person puts something down on the floor ..."); without them, the row's first example prompt that warns
    about none.  A weak word with no such strong word keeps no alternative."""
    from ..bundle.word_strength import WORD_CHECKS_FORMAT_VERSION, word_strengths_from_dict

    warning = word_strengths_from_dict({"format_version": WORD_CHECKS_FORMAT_VERSION, "words": rows})
    offered: dict[int, list[tuple[str, np.ndarray | None]]] = {}
    for index, row in enumerate(rows):
        if not row["strong"]:
            continue
        choices = [(prompt, vector) for prompt, vector in (prompt_choices or {}).get(index, ())
                   if not warning.weak_words_in(prompt)]
        first = next((prompt for prompt in row["phrasings"] if not warning.weak_words_in(prompt)), None)
        offered[index] = choices or ([(first, None)] if first is not None else [])
    for index, row in enumerate(rows):
        if row["strong"]:
            continue
        candidates = [(*_alternative_rank(row, rows[other]), -float(embeddings[index] @ embeddings[other]), other)
                      for other, choices in offered.items() if choices]
        if candidates:
            best = min(candidates)[-1]
            choices = offered[best]
            prompt = (choices[0][0] if choices[0][1] is None
                      else max(choices, key=lambda choice: float(choice[1] @ embeddings[index]))[0])
            row["alternative"], row["alternative_prompt"] = rows[best]["word"], prompt


def run_word_checks(checkpoint: str | Path, settings: WordCheckSettings,
                    log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The whole measurement of one bundle: returns the ``word_checks.json`` document."""
    from ..bundle.model_bundle import ModelBundle, read_manifest
    from ..bundle.model_choice import resolve_model
    from ..bundle.vocabulary import read_vocabulary
    from ..generation.prompt_vocabulary import embed_texts
    from .evaluate import checkpoint_name
    from .generated_motions import generate_features, generated_joints

    folder = resolve_model(str(checkpoint))
    vocabulary = read_vocabulary(folder)
    plans, unchecked = plan_words(vocabulary, settings.phrasings)
    count = sum(len(plan.phrasings) for plan in plans) * settings.seeds
    if count > MAX_GENERATIONS:
        raise WordCheckError(f"{len(plans)} words x up to {settings.phrasings} phrasings x {settings.seeds} seeds "
                             f"= {count} clips, more than {MAX_GENERATIONS} one run may hold: lower --seeds or "
                             "--phrasings")
    if unchecked:
        log(f"not measured (no geometric check applies): {', '.join(unchecked)}")
    bundle = ModelBundle.load(folder, device=settings.device)
    frames = int(round(settings.seconds * MODEL_FPS)) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    prompts = [p for plan in plans for p in plan.phrasings for _ in range(settings.seeds)]
    log(f"generating {len(prompts)} motions of {frames} frames ({len(plans)} words)")
    started = time.perf_counter()
    features = generate_features(bundle, prompts, [frames] * len(prompts), settings.seed, settings.batch_size)
    joints = generated_joints(features, foot_lock=False)
    log(f"generated in {time.perf_counter() - started:.0f} s; checking")
    rows, offset = [], 0
    for plan in plans:
        count = len(plan.phrasings) * settings.seeds
        flags = check_generations(plan, prompts[offset:offset + count], joints[offset:offset + count])
        offset += count
        rate = float(np.mean(flags))
        rows.append({"word": plan.word, "check": plan.check, "side": plan.side, "phrasings": plan.phrasings,
                     "generations": count, "passed": int(sum(flags)), "rate": round(rate, 4),
                     "strong": rate >= settings.strong_rate, "alternative": "", "alternative_prompt": ""})
    mean = np.stack([embed_texts(bundle, plan.phrasings, "minilm").mean(axis=0) for plan in plans])
    choose_alternatives(rows, mean / np.linalg.norm(mean, axis=1, keepdims=True).clip(min=1e-12),
                        _caption_choices(bundle, vocabulary, rows))
    return {"format_version": 1, "model": checkpoint_name(folder, read_manifest(folder)),
            "strong_rate": settings.strong_rate, "settings": asdict(settings),
            "seconds": round(time.perf_counter() - started, 1), "words": rows, "unchecked": unchecked}


def _caption_choices(bundle: Any, vocabulary: Any, rows: list[dict[str, Any]]
                     ) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Per strong row, the distinct training captions of its word (from every dataset that has it) with their unit
    MiniLM embeddings: the prompts `choose_alternatives` may offer for it.  A caption naming the side opposite to
    the word's own is left out (a left turn's mirrored clips are captioned as right turns)."""
    from ..generation.prompt_vocabulary import embed_texts

    by_word: dict[str, list[str]] = {}
    for caption, action in zip(vocabulary.train_captions, vocabulary.train_actions, strict=False):
        by_word.setdefault(action.split("/", 1)[-1], []).append(caption)
    wanted = {index: [caption for caption in dict.fromkeys(by_word.get(row["word"], []))
                      if row.get("side") is None or prompt_side(caption, None) in (None, row["side"])]
              for index, row in enumerate(rows) if row["strong"]}
    texts = list(dict.fromkeys(caption for captions in wanted.values() for caption in captions))
    vectors = dict(zip(texts, embed_texts(bundle, texts, "minilm"), strict=True)) if texts else {}
    return {index: [(caption, vectors[caption]) for caption in captions] for index, captions in wanted.items()}


def word_table(document: dict[str, Any]) -> str:
    """The Markdown table of a ``word_checks.json`` document."""
    words = document["words"]
    strong = sum(row["strong"] for row in words)
    settings = document["settings"]
    lines = [f"# Action words of {document['model']}: each word's check on generated motion", "",
             f"**{strong} of {len(words)} words strong** (pass rate >= {document['strong_rate']:.0%}).  "
             f"Command: `{document.get('command', '?')}` ({document['seconds']:.0f} s).  Each word: "
             f"{settings['phrasings']} phrasings (its training captions) x {settings['seeds']} seeds, "
             f"{settings['seconds']:g} s each, the decoded motion measured by the word's geometric check "
             f"(kmm_core/evaluation/action_checks.py; real-clip pass rates in benchmarks/results/action_checks.md).",
             "", "| Word | Check | Passed | Rate | Strong | Try instead (strong word: its prompt) |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for row in words:
        check = row["check"] + (f" ({row['side']})" if row.get("side") else "")
        instead = f"`{row['alternative']}`: \"{row['alternative_prompt']}\"" if row["alternative"] else "–"
        lines.append(f"| `{row['word']}` | {check} | {row['passed']}/{row['generations']} | {row['rate']:.2f} | "
                     f"{'yes' if row['strong'] else '**weak**'} | {instead} |")
    if unchecked := document.get("unchecked"):
        lines += ["", f"Not measured (no geometric check applies, so neither strong nor weak): "
                      f"{', '.join(f'`{word}`' for word in unchecked)}."]
    return "\n".join(lines) + "\n"


MAX_SEEDS = 200
"""Most generations per phrasing (`--seeds`): 20 times the default."""
MAX_PHRASINGS = 20
"""Most example prompts per word (`--phrasings`): 10 times the default."""
MAX_GENERATIONS = 10_000
"""Most clips one run generates (words x phrasings x seeds): they are held together, about 130 kB each (1.3 GB)."""
MIN_SECONDS, MAX_SECONDS = 1.0, 10.0
"""Length of each clip (`--seconds`): at least the model's few tokens a check can judge, at most the longest
training windows."""
MAX_BATCH = 1024
"""Largest `--batch-size`."""


def settings_problem(args: argparse.Namespace) -> str | None:
    """The first option outside its range, named with its value (None: all fine)."""
    from ..common.limits import MAX_SEED

    for option, value, low, high in (("--seeds", args.seeds, 1, MAX_SEEDS),
                                     ("--phrasings", args.phrasings, 1, MAX_PHRASINGS),
                                     ("--batch-size", args.batch_size, 1, MAX_BATCH),
                                     ("--seed", args.seed, 0, MAX_SEED)):
        if not low <= value <= high:
            return f"{option} {value}: must be from {low} to {high}"
    if not MIN_SECONDS <= args.seconds <= MAX_SECONDS:  # NaN fails this too
        return f"--seconds {args.seconds}: must be from {MIN_SECONDS:g} to {MAX_SECONDS:g}"
    if not 0.0 <= args.strong_rate <= 1.0:
        return f"--strong-rate {args.strong_rate}: must be a share from 0 to 1"
    return None


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse, naming `what`, a folder that does not exist or cannot be written (`check_output_folder`)."""
    try:
        check_output_folder(folder, create=False)
    except KMMError as error:
        raise KMMError(f"{what} {str(folder)!r} cannot be written: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    defaults = WordCheckSettings()
    parser = argparse.ArgumentParser(prog="kmm-train check-words",
                                     description="Check every action word of a bundle on generated motion; writes "
                                                 "BUNDLE/word_checks.json (read by kmm vocab and the prompt "
                                                 "warnings).")
    parser.add_argument("--checkpoint", required=True, help="model: default, open, a shipped name, or a folder")
    parser.add_argument("--seeds", type=int, default=defaults.seeds,
                        help=f"generations per phrasing (default 10, at most {MAX_SEEDS})")
    parser.add_argument("--phrasings", type=int, default=defaults.phrasings,
                        help=f"example prompts per word (2, at most {MAX_PHRASINGS})")
    parser.add_argument("--seconds", type=float, default=defaults.seconds,
                        help=f"length of each clip (4, from {MIN_SECONDS:g} to {MAX_SECONDS:g})")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--strong-rate", type=float, default=defaults.strong_rate,
                        help="pass rate a word needs to count as strong (0.6)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--table", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 bad input (message on stderr), 2 bad command line."""
    from ..bundle.model_choice import resolve_model
    from ..bundle.word_strength import write_word_checks

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    log = command_log("kmm-train check-words", args.quiet)
    if (problem := settings_problem(args)) is not None:
        print(f"kmm-train check-words: error: {problem}", file=sys.stderr)
        return 1
    if args.threads is not None:
        if (problem := thread_count_problem(args.threads)) is not None:
            print(f"kmm-train check-words: error: {problem}", file=sys.stderr)
            return 1
        import torch

        torch.set_num_threads(args.threads)
    try:
        settings = WordCheckSettings(seeds=args.seeds, phrasings=args.phrasings, seconds=args.seconds,
                                     seed=args.seed, strong_rate=args.strong_rate, batch_size=args.batch_size,
                                     device=args.device)
        folder = resolve_model(args.checkpoint)
        for where, what in ((folder, "the bundle folder"), *(((args.table.parent, "--table's folder"),)
                                                              if args.table else ())):
            check_writable_folder(Path(where), what)  # before minutes of generation, not after them
        document = run_word_checks(args.checkpoint, settings, log)
        document["command"] = "kmm-train check-words " + " ".join(argv)
        if args.table:  # first: a table that cannot be written leaves the bundle's word checks as they were
            write_text_atomic(args.table, word_table(document))
        path = write_word_checks(folder, document)
    except KMMError as error:
        print(f"kmm-train check-words: error: {error}", file=sys.stderr)
        return 1
    strong = sum(row["strong"] for row in document["words"])
    unmeasured = f" ({len(document['unchecked'])} not measured: no check applies)" if document["unchecked"] else ""
    print(f"[kmm-train check-words] {strong} of {len(document['words'])} words strong{unmeasured}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
