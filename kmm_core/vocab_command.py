# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm vocab` (what the model was trained on, each action word's measured rate) and the prompt warnings of
`kmm generate`.

`kmm vocab` reads only ``BUNDLE/vocabulary.json`` and ``BUNDLE/word_checks.json`` (each action word's measured pass
rate, strong or weak; no torch, instant); `warn_about_prompts` embeds the prompts with the loaded bundle
(generation/prompt_vocabulary.py) and prints one warning per unfamiliar prompt or prompt using a weak word, and the
captions a prompt in the user's own words is read with; `kmm vocab --check PROMPT ...` does that alone, before any
generation (the worker's ``check_prompts``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from .bundle.vocabulary import format_vocabulary, read_vocabulary
from .bundle.word_strength import format_word_strengths, read_word_strengths

CHECKPOINT_HELP = ("model: default (kmm-small, non-commercial), open (kmm-small-open, commercial use allowed), a "
                   "shipped bundle's name, or a bundle folder (default: default)")


def add_vocab_parser(commands: Any) -> None:
    vocab = commands.add_parser("vocab", help="list what the model was trained on: actions, styles, example prompts")
    vocab.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    vocab.add_argument("--json", action="store_true", help="machine-readable output")
    vocab.add_argument("--captions", action="store_true", help="with --json: also every distinct training caption")
    vocab.add_argument("--check", nargs="+", metavar="PROMPT",
                       help="before generating: what the model makes of these prompts (its warnings, and the training "
                            "captions a prompt in your own words is read with), as `kmm generate` and the panel's "
                            "Check Prompts say it; nothing is generated (with --json: the worker's check_prompts "
                            "answer: warnings and conditions, each prompt's index as its segment)")


def vocabulary_summary(vocabulary, with_captions: bool = False) -> dict[str, Any]:
    data = vocabulary.to_dict()
    captions = data.pop("captions")
    data.pop("format_version")
    data["action_words"] = list(vocabulary.action_words)
    data["train_captions"] = captions["train"] if with_captions else len(captions["train"])
    return data


def command_vocab(args: argparse.Namespace) -> int:
    from .bundle.model_bundle import read_manifest
    from .bundle.model_choice import model_summary, resolve_model
    from .bundle.weight_checksums import verify_vocabulary_files

    folder = resolve_model(args.checkpoint)
    manifest = read_manifest(folder)   # a missing bundle: ModelMissingError (exit code 3)
    verify_vocabulary_files(folder, manifest)  # a damaged vocabulary file: exit code 3
    if args.check:
        return check_prompts_command(folder, args.check, args.json)
    vocabulary = read_vocabulary(folder)
    strengths = read_word_strengths(folder)
    model = model_summary(folder, manifest)
    if args.json:
        summary = vocabulary_summary(vocabulary, args.captions)
        summary["word_checks"] = (None if strengths is None else
                                  {"strong_rate": strengths.strong_rate,
                                   "words": {w.word: {"check": w.check, "rate": w.rate, "strong": w.strong,
                                                      "alternative": w.alternative} for w in strengths.words}})
        summary["licence"] = {key: manifest[key] for key in ("licence", "licence_note", "acknowledgements",
                                                             "commercial_use") if key in manifest}
        summary["licence"].update(licence=model["licence"], commercial_use=model["commercial_use"])
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(format_vocabulary(vocabulary))
        sys.stdout.write("\n" + (format_word_strengths(strengths) if strengths is not None else
                                 "Action words not measured yet (`kmm-train check-words --checkpoint BUNDLE` "
                                 "measures each word's pass rate).\n"))
        sys.stdout.write(f"\nLicence of {model['name']}'s weights: {model['licence']}\n")
    return 0


def check_prompts_command(folder: Any, prompts: list[str], as_json: bool) -> int:
    """`kmm vocab --check PROMPT ...`: each prompt checked as `kmm generate` checks it before generating (warnings and
    the captions it is read with on stdout; with `as_json` the worker's ``check_prompts`` answer), nothing
    generated.  A prompt the prompt rule refuses: KMMError naming it (exit code 2)."""
    from .bundle.model_bundle import ModelBundle
    from .common.errors import KMMError
    from .common.prompt_text import segment_prompt_problem
    from .generation.prompt_conditions import conditions_info
    from .generation.prompt_vocabulary import prompt_warnings

    for index, prompt in enumerate(prompts):
        problem = segment_prompt_problem(prompt)
        if problem is not None:
            raise KMMError(f"--check prompt {index + 1}: {problem}")
    bundle = ModelBundle.load(folder, device="cpu")
    if as_json:
        numbered = list(enumerate(prompts))
        print(json.dumps({"prompts": len(prompts), "warnings": prompt_warnings(bundle, numbered),
                          "conditions": conditions_info(bundle, numbered)}, indent=2, ensure_ascii=False))
        return 0
    checks = warn_about_prompts(bundle, prompts, sys.stdout)
    warned = sum(bool(check.warning) for check in checks)
    print(f"kmm: {len(prompts)} prompt(s) checked, {warned} warning(s); nothing generated")
    return 0


def warn_about_prompts(bundle: Any, prompts: list[str], stream=None,
                       unlikely_guidance_factor: float | None = None) -> list:
    """Print a warning for every prompt the bundle's vocabulary check finds unfamiliar; returns the checks
    ([] when the bundle has no vocabulary files, which is said once).  `unlikely_guidance_factor`: the raised guidance
    the generation will use when not the bundle's (`kmm generate --unlikely-guidance`; 1: none is raised)."""
    from .generation.prompt_vocabulary import PromptVocabulary, VocabularyCheckUnavailable

    stream = stream or sys.stderr
    try:
        checks = PromptVocabulary.load(bundle).check(prompts)
    except VocabularyCheckUnavailable as reason:
        print(f"kmm: note: prompts not checked against the training vocabulary ({reason})", file=stream)
        return []
    if unlikely_guidance_factor is not None and checks and checks[0].boost_factor != 1.0:
        checks = [dataclasses.replace(check, boost_factor=float(unlikely_guidance_factor),
                                      measured_boost_factor=check.boost_factor) for check in checks]
    for check in checks:
        if check.warning:
            print(f"kmm: warning: {check.warning}", file=stream)
        if check.guidance_multiple != 1.0:
            print(f'kmm: note: "{check.prompt}" is guided at {check.guidance_multiple:.1f}x '
                  "the guidance: the model rarely performs the training captions nearest it at its usual guidance "
                  "and more often guided harder (`--unlikely-guidance 1` turns that off)", file=stream)
    say_what_conditions(bundle, prompts, stream)
    return checks


def say_what_conditions(bundle: Any, prompts: list[str], stream) -> None:
    """One note per prompt that is not (nearly) a training caption: the captions nearest in meaning that complete
    its condition (generation/prompt_conditions.py)."""
    from .generation.prompt_conditions import retrieved_captions

    unique = list(dict.fromkeys(prompts))
    for prompt, (share, captions) in zip(unique, retrieved_captions(bundle, unique), strict=True):
        if captions:
            listed = ", ".join(f'"{caption}"' for caption in captions)
            print(f'kmm: note: "{prompt}" is generated from its own words ({share:.0%}) and the training captions '
                  f"nearest in meaning that the model performs ({1 - share:.0%}): {listed}", file=stream)
