# SPDX-License-Identifier: GPL-3.0-or-later
"""A bundle's model card (``BUNDLE/README.md``), written by ``kmm-train bundle`` from the run it packs.

Everything on the card comes from the run and its data, never typed by hand: the name and licence fields of
``bundle.json`` (licence from ``data/source_licences.py``), the parameters of each component, the data sources with
their clips and minutes (the prepared data's ``report.json``, found through the run's ``dataset.json``; the summary
alone when that folder is gone), the training stages with their steps, losses and times (``RUN/<stage>/log.jsonl``,
batch and seed from ``RUN/config.json``), and the commands that reproduce it.

The section ``## Per-action results`` sits between two HTML comments (`ACTION_RESULTS_BEGIN`, `ACTION_RESULTS_END`);
it holds the markdown of ``kmm-train eval-actions`` verbatim when ``--action-results FILE`` is given (or later
``kmm-train action-results``: `set_action_results`), and says it was not measured otherwise, or not for the
generator a fine-tune put in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..bundle.caption_checks import PERFORMED_SHARE, caption_checks_from_dict
from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json, read_text
from ..common.errors import InputFileError, KMMError
from ..data.source_licences import SOURCE_LICENCES, source_kind, source_licence
from ..model.configs import DecodingConfig
from .generator_average import averaged_runs
from .run_log import LOG_FILE, read_log

CARD_FILE = "README.md"
STAGES = ("tokenizer", "aligner", "evaluator", "generator", "decoder")
ACTION_RESULTS_HEADING = "## Per-action results"
ACTION_RESULTS_BEGIN = "<!-- per-action results: begin (kmm-train bundle --action-results FILE, included verbatim) -->"
ACTION_RESULTS_END = "<!-- per-action results: end -->"
PREPARE_FLAGS = {   # report.json source kind -> (kmm-train prepare flag, {extra key: flag})
    "bandai-namco": ("--bandai-namco", {}), "cmu": ("--cmu", {"descriptions": "--cmu-descriptions"}),
    "hdm05": ("--hdm05", {}), "cmu-iclone": ("--cmu-iclone", {}),
    "cmu-expmap": ("--cmu-expmap", {"skeleton": "--cmu-expmap-skeleton"}), "deepmimic": ("--deepmimic", {}),
    "user": ("--bvh-folder", {"captions": "--captions", "joint_map": "--joint-map"}),
}
SETTING_FLAGS = {"seed": "--seed", "min_frames": "--min-frames", "max_frames": "--max-frames",
                 "min_source_frames": "--min-source-frames", "val_fraction": "--val-fraction",
                 "test_fraction": "--test-fraction", "limit_per_content": "--limit-per-content",
                 "workers": "--workers"}


def read_action_results(path: str | Path) -> str:
    """The markdown of a per-action results file (``kmm-train eval-actions``'s ``actions.md``)."""
    path = Path(path)
    text = read_text(path, "per-action results")
    if not text.strip():
        raise InputFileError(path, "the per-action results file is empty")
    for number, line in enumerate(text.splitlines(), start=1):
        for marker in (ACTION_RESULTS_BEGIN, ACTION_RESULTS_END):
            if marker in line:
                raise InputFileError(path, f"line {number} holds the model card's section marker {marker!r}: a "
                                           "results file may not open or close the card's sections")
    return text.strip() + "\n"


def set_action_results(bundle_dir: str | Path, action_results: str | None) -> Path | None:
    """Rewrite the card's per-action results (between ``ACTION_RESULTS_BEGIN`` and ``ACTION_RESULTS_END``) with
    ``action_results`` (``kmm-train eval-actions``'s markdown, measured on this bundle), or with a note that they are
    not measured for the bundle's current generator (None: after the generator was replaced).  A card without the
    section, or no card, is left as it is (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    text = read_text(card, "model card")
    if ACTION_RESULTS_BEGIN not in text or ACTION_RESULTS_END not in text:
        return None
    body = (action_results.rstrip("\n") if action_results else
            "Not measured for this bundle's current generator (the results that were here measured the generator it "
            "replaced): `kmm-train eval-actions --checkpoint BUNDLE --data DATA --out DIR`, then `kmm-train "
            "action-results --bundle BUNDLE --results DIR/actions.md` puts them here.")
    if ACTION_RESULTS_BEGIN in body or ACTION_RESULTS_END in body:
        raise KMMError("per-action results: the text holds the model card's section markers")
    # From the first opening marker to the last closing one: a section a marker was once injected into is made whole
    head, rest = text.split(ACTION_RESULTS_BEGIN, 1)
    return write_text_atomic(card, head + ACTION_RESULTS_BEGIN + "\n" + body + "\n" + ACTION_RESULTS_END
                             + rest.rsplit(ACTION_RESULTS_END, 1)[1])


def dataset_report(run_dir: str | Path) -> dict[str, Any] | None:
    """The prepared data's ``report.json`` of the run (through ``dataset.json``'s root), if still there."""
    summary_path = Path(run_dir) / "dataset.json"
    try:
        summary = read_json(summary_path, "dataset summary", allow_non_finite=True)
        report_path = Path(summary["root"]) / "report.json"
        report = read_json(report_path, "dataset report", allow_non_finite=True)
    except (InputFileError, KeyError, TypeError):
        return None
    return report if isinstance(report, dict) else None


def stage_summaries(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per trained stage: last step, last train loss, last validation metrics, seconds, batch size and seed."""
    run_dir = Path(run_dir)
    try:
        config = read_json(run_dir / "config.json", "run config", allow_non_finite=True)
    except InputFileError:
        config = {}
    train = config.get("train", {}) if isinstance(config, dict) else {}
    rows = []
    for stage in STAGES:
        log_path = run_dir / stage / LOG_FILE
        if not log_path.is_file():
            continue
        records = read_log(log_path)
        steps = [r for r in records if r.get("kind") == "train"]
        validations = [r for r in records if r.get("kind") == "validation"]
        settings = train.get(stage, {}) if isinstance(train, dict) else {}
        rows.append({
            "stage": stage,
            "steps": max((r.get("step", 0) for r in records), default=0),
            "train_loss": steps[-1].get("loss") if steps else None,
            "validation": dict(validations[-1].get("metrics") or {}) if validations else {},
            "seconds": max((r.get("elapsed_s") or 0 for r in records), default=0),
            "batch_size": settings.get("batch_size"), "seed": settings.get("seed"),
        })
    return rows


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _minutes(seconds: float) -> str:
    return "–" if not seconds else f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _validation(metrics: Mapping[str, Any]) -> str:
    """The last validation: its loss, or (the tokenizer) its own numbers."""
    if "loss" in metrics:
        return _number(metrics["loss"])
    return ", ".join(f"{name} {_number(value, 1 if name.endswith('_mm') else 3)}" for name, value in metrics.items()
                     ) or "–"


def _prepare_command(report: Mapping[str, Any]) -> str:
    parts = ["kmm-train prepare --out DATA"]
    for source in report.get("sources", []):
        flag, extras = PREPARE_FLAGS.get(source.get("kind"), (f"--{source.get('kind')}", {}))
        parts.append(f"{flag} {source.get('path')}")
        parts += [f"{option} {source[key]}" for key, option in extras.items() if source.get(key)]
    settings = report.get("settings", {})
    parts += [f"{flag} {settings[key]}" for key, flag in SETTING_FLAGS.items() if settings.get(key) is not None]
    if settings.get("mirror") is False:
        parts.append("--no-mirror")
    return " \\\n    ".join(parts)


def _data_section(manifest: Mapping[str, Any], report: Mapping[str, Any] | None) -> list[str]:
    dataset = manifest.get("dataset") or {}
    lines = ["## Data", ""]
    per_dataset = (report or {}).get("per_dataset") or dataset.get("per_dataset") or {}
    if per_dataset:
        lines += ["Clips after `kmm-train prepare` (left/right mirrors included), per source:", "",
                  "| source | licence | takes | actions | clips | minutes |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name, row in per_dataset.items():
            kind = source_kind(name)
            licence = source_licence(kind).licence if kind in SOURCE_LICENCES else "?"
            lines.append(f"| {name} | {licence} | {row.get('takes', '–')} | {row.get('contents', '–')} | "
                         f"{row.get('clips', '–')} | {row.get('minutes', '–')} |")
        lines.append("")
    totals = (report or {}).get("totals") or dataset.get("totals") or {}
    if totals:
        lines.append(f"In all: {totals.get('takes', '?')} takes, {totals.get('clips', '?')} clips "
                     f"({totals.get('original_clips', '?')} + {totals.get('mirrored_clips', '?')} mirrored), "
                     f"{totals.get('minutes', '?')} minutes ({totals.get('original_minutes', '?')} before mirroring).")
    per_split = (report or {}).get("per_split") or {}
    if per_split:
        lines.append("Splits (no take in two): " + ", ".join(
            f"{split} {row.get('clips')} clips / {row.get('minutes')} min" for split, row in per_split.items()) + ".")
    if dataset.get("train_captions"):
        lines.append(f"The model trained on {dataset.get('train_clips')} clips with {dataset['train_captions']} "
                     f"captions.")
    if not per_dataset and not totals:
        lines.append("The run does not record its training data (no prepare report).")
    lines += ["", "`kmm vocab --checkpoint " + str(manifest.get("name", "BUNDLE")) + "` lists the actions, styles "
              "and example prompts it was trained on.", ""]
    return lines


def _training_section(stages: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training", ""]
    if not stages:
        return lines + ["The run folder holds no training logs.", ""]
    lines += ["From the run's logs (`RUN/<stage>/log.jsonl`) and resolved configuration (`RUN/config.json`):", "",
              "| stage | steps | batch | seed | last train loss | last validation | time |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {s['stage']} | {s['steps']} | {_number(s['batch_size'])} | {_number(s['seed'])} | "
              f"{_number(s['train_loss'])} | {_validation(s['validation'])} | {_minutes(s['seconds'])} |"
              for s in stages]
    return lines + [""]


DECODING_NOTES = {
    "guidance_scale": "classifier-free guidance of every prompt",
    "locomotion_guidance_factor": "the guidance of walk and run prompts' tokens as a share of the scale (kept "
                                  "lower so a walk keeps its stride; `kmm generate --walk-guidance` overrides it)",
    "locomotion_repeat_penalty": "subtracted from a settled neighbour's code on walk and run tokens only (with "
                                 "the cycle bonus it sharpens the step without breaking the stride)",
    "locomotion_period_bonus": "added to the code one gait cycle away on walk and run tokens, so a walk keeps "
                               "the rhythm it starts with (`kmm generate --walk-cycle` overrides it)",
    "locomotion_residual_period_bonus": "the same pull on the residual codes of straight walks and runs (their "
                                        "nearest training captions' clips keep their heading): steps whose coarser codes repeat take one consensus code, "
                                        "so each step's detail repeats too (`--walk-cycle` sets it too)",
    "steady_walk_period_bonus": "added to the base layer's cycle pull on straight walks and runs only: their steps, "
                                "the first included, keep the cycle more firmly while a turning walk keeps the "
                                "lighter pull that lets it turn (`--walk-cycle` sets it too)",
    "steady_walk_candidates": "candidate decodes of each straight walk or run, the one whose motion steps most "
                              "regularly kept (its gait regularity); other prompts draw one (`kmm generate "
                              "--walk-candidates` overrides it)",
    "standing_root_sigma": "frames of the second Gaussian on standing prompts' root (`--standing-root-sigma`)",
    "unlikely_guidance_factor": "the guidance, as a multiple of the scale, of prompts whose nearest training "
                                "captions the model rarely performs at the scale and more often at this multiple "
                                "(`caption_checks.json` holds both; `kmm generate --unlikely-guidance` overrides it)",
}


def decoding_section(manifest: Mapping[str, Any]) -> list[str]:
    """The sampling settings the bundle ships (bundle.json ``decoding``), or nothing when it ships the library's."""
    library = asdict(DecodingConfig())
    decoding = {key: value for key, value in (manifest.get("decoding") or {}).items() if library.get(key) != value}
    if not decoding:
        return []
    lines = ["## Decoding", "", "Where the sampling of this bundle differs from the library's defaults "
             "(`decoding` in bundle.json, `DecodingConfig`):", "", "| setting | value | what it does |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {value} | {DECODING_NOTES.get(key, '')} |" for key, value in sorted(decoding.items())]
    return lines + [""]


def _licence_section(manifest: Mapping[str, Any]) -> list[str]:
    """The card's Licence section: the weights' licence, its note and the data's acknowledgements."""
    lines = ["## Licence", "", f"**{manifest.get('licence')}** (`commercial_use`: "
             f"{str(manifest.get('commercial_use')).lower()} in bundle.json).", "", str(manifest.get("licence_note")),
             "", "Acknowledgements:", ""]
    return lines + ([f"- {text}" for text in manifest.get("acknowledgements", [])] or ["- none recorded"])


def model_card(manifest: Mapping[str, Any], parameters: Mapping[str, int], run_dir: str | Path,
               bundle_bytes: int, action_results: str | None = None) -> str:
    """The model card's markdown (see the module docstring)."""
    name = str(manifest.get("name") or Path(run_dir).name)
    report = dataset_report(run_dir)
    total = sum(value for component, value in parameters.items() if component != "evaluator")
    lines = [f"# Model card: {name}", "",
             f"Written by `kmm-train bundle` from the run `{Path(run_dir).name}`. "
             f"**Licence of the weights: {manifest.get('licence')}.**", "",
             "## What it is", "",
             f"A KMM (Key Frame Mask Mamba) text-to-motion bundle: {', '.join(manifest.get('components', []))} "
             f"({manifest.get('dtype')} safetensors + JSON configs, no pickles; {bundle_bytes / 1e6:.1f} MB). "
             f"Text encoder: {manifest.get('text_encoder')}, not counted below. Input: English prompts; output: "
             "HumanML3D-style motion of the 22-joint SMPL body skeleton at 20 fps, resampled to any frame rate.", "",
             "| component | parameters |", "| --- | ---: |"]
    lines += [f"| {component} | {count / 1e6:.2f} M |" for component, count in parameters.items()]
    lines += [f"| tokenizer, generator and aligner (any decoder added below counted there) | {total / 1e6:.2f} M |", ""]
    lines += _data_section(manifest, report)
    lines += _training_section(stage_summaries(run_dir))
    lines += decoding_section(manifest)
    lines += ["## Intended use and limits", "",
              "Blocking out animation from text in Blender or on the command line.  The model knows only what its "
              "training data shows (the actions listed by `kmm vocab`); `kmm generate`, the worker and the Blender "
              "panel warn about prompts far from every training caption.  No hands or fingers, no interaction with "
              "objects or other people; feet are held on the floor by a clean-up after decoding, not by the model.",
              ""]
    lines += _licence_section(manifest)
    lines += ["", ACTION_RESULTS_HEADING, "", ACTION_RESULTS_BEGIN]
    lines.append(action_results.rstrip("\n") if action_results else
                 "Not measured for this bundle (`kmm-train eval-actions`, then `kmm-train bundle ... "
                 "--action-results FILE` includes its markdown here).")
    lines += [ACTION_RESULTS_END, "", REPRODUCE_HEADING, "", "```sh"]
    if report and report.get("sources"):
        lines += [_prepare_command(report)]
    else:
        lines += ["# the prepared data's report is not available: prepare the sources listed under Data"]
    lines += [f"kmm-train all --config CONFIG.toml --set data.root=DATA --out RUN --threads 1 --name {name}",
              f"kmm-train bundle --run RUN --out BUNDLE --name {name}"
              + (" --action-results actions.md" if action_results else ""), "```", "",
              "CONFIG.toml holds the values of the run's resolved `config.json` (the shipped configs are in "
              "`training/configs/`); paths are those of the machine that prepared the data.", ""]
    return "\n".join(lines)


LIMITS_HEADING = "## Intended use and limits"


def prompt_decoder_markers(name: str) -> tuple[str, str]:
    """The comments around a prompt decoder's section of the card (`name`: standing_decoder, walking_decoder,
    gesture_decoder)."""
    words = name.replace("_", " ")
    return (f"<!-- {words}: begin (kmm-train {name.replace('_', '-')}) -->", f"<!-- {words}: end -->")


def _prompt_decoder_text(name: str, standing_root_sigma: float) -> str:
    if name == "gesture_decoder":
        return ("it decodes the arms of the frames of standing prompts (their nearest training captions' clips "
                "stand in place), refined to keep "
                "each wrist's speed (`[decoder] hand_weight`), so a wave swings and the idle hand stays still; the "
                "rest of those frames come from the standing decoder (the tokenizer's without one), and every other "
                "prompt's frames from their own decoders.")
    if name == "walking_decoder":
        return ("it decodes every channel of the frames of walk and run prompts (their nearest training captions' "
                "clips walk or run with a regular step), refined with a lighter jerk term than the tokenizer's decoder, so a real walk's "
                "step keeps its recorded sharpness (the tokenizer's decoder smooths it); every other frame comes "
                "from the tokenizer's decoder or the standing decoder.")
    return ("it decodes the root, legs, feet and torso of the frames of standing prompts (their nearest training "
            "captions' clips stand in place), "
            "so a calm standing body's hips and feet stay still; the arms (the gesture decoder's when the bundle has "
            "one), and every other prompt's frames, come from the tokenizer's decoder (walks' from the walking "
            "decoder when the bundle has one).  The standing "
            "prompts' root is smoothed again by a Gaussian of "
            f"{standing_root_sigma:g} frame{'' if standing_root_sigma == 1 else 's'} (`decoding.standing_root_sigma` in "
            "bundle.json; 2 when it names none).")


def _with_decoding_section(text: str, manifest: Mapping[str, Any]) -> str:
    """The card `text` with its ``## Decoding`` section (up to the next section or marker) made again from
    `manifest`'s ``decoding``, so the table says what bundle.json ships; a card without one is returned as it is."""
    section = "\n".join(decoding_section(manifest))
    heading = "## Decoding\n"
    if heading in text:
        head, rest = text.split(heading, 1)
        ends = [index for index in (rest.find("\n## "), rest.find("\n<!-- ")) if index >= 0]
        tail = rest[min(ends) + 1:] if ends else ""
        return head + section + ("\n" if section else "") + tail
    if not section:
        return text
    # none yet: where model_card puts it, before the prompt decoders' sections and the intended use
    starts = [index for index in (text.find("<!-- "), text.find(LIMITS_HEADING)) if index >= 0]
    if not starts:
        return text.rstrip("\n") + "\n\n" + section + "\n"
    return text[:min(starts)] + section + "\n" + text[min(starts):]


def add_prompt_decoder_section(bundle_dir: str | Path, run_dir: str | Path, name: str, parameters: int,
                               standing_root_sigma: float, manifest: Mapping[str, Any] | None = None) -> Path | None:
    """Put a prompt decoder's section (between its `prompt_decoder_markers`, replaced when there) into the bundle's
    card, before its intended use, and with `manifest` (the bundle.json just written) its decoding table again; a
    bundle without a card is left without one (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    begin, end = prompt_decoder_markers(name)
    text = read_text(card, "model card")
    if manifest is not None:
        text = _with_decoding_section(text, manifest)
    stages = {s["stage"]: s for s in stage_summaries(run_dir)}
    refined = stages.get("decoder")
    training = (f" ({refined['steps']} steps, last validation {_validation(refined['validation'])})"
                if refined else "")
    title = name.replace("_", " ").capitalize()
    section = [f"## {title}", "",
               f"`{name}.safetensors` ({parameters / 1e6:.2f} M parameters), added by `kmm-train "
               f"{name.replace('_', '-')}` from the decoder run `{Path(run_dir).name}`{training}: "
               + _prompt_decoder_text(name, standing_root_sigma)]
    return write_text_atomic(card, _with_marked_section(text, begin, end, section))


GAIT_CYCLES_BEGIN = "<!-- gait cycles: begin (kmm-train gait-cycles) -->"
GAIT_CYCLES_END = "<!-- gait cycles: end -->"


def add_gait_cycles_section(bundle_dir: str | Path, cycles: int, counts: Mapping[str, int], seconds: float,
                            speed: float) -> Path | None:
    """Put the gait cycles' section (between `GAIT_CYCLES_BEGIN` and `GAIT_CYCLES_END`, replaced when there) into
    the bundle's card; a bundle without a card is left without one (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    per = ", ".join(f"{name} {count}" for name, count in counts.items())
    section = ["## Gait cycles", "",
               f"`gait_cycles.safetensors`: {cycles} real strides ({per}; {seconds:.2f} s and {speed:.2f} m/s at the "
               "median), cut by `kmm-train gait-cycles` from the steady walks and runs of the training split's clips "
               "(left heel strike to left heel strike, even steps, two clear pelvis rises a stride; which stride its "
               "walker took next is kept).  Where a take walks (its prompt's nearest training captions' clips walk, "
               "and the generated body travels), generation plays them under the generated walk: the legs, the pelvis "
               "height, the pace and the foot contacts come from the strides whose clips' captions are nearest the "
               "prompt, a recording's strides in the order they were taken; where the body goes and what the arms "
               "and torso do stay generated.  They are recorded motion of the datasets under Data, under their "
               "licences."]
    return write_text_atomic(card, _with_marked_section(read_text(card, "model card"), GAIT_CYCLES_BEGIN,
                                                        GAIT_CYCLES_END, section))


CAPTION_CHECKS_BEGIN = "<!-- caption checks: begin (kmm-train check-captions) -->"
CAPTION_CHECKS_END = "<!-- caption checks: end -->"


def add_caption_checks_section(bundle_dir: str | Path, document: Mapping[str, Any]) -> Path | None:
    """Put the caption checks' section (between `CAPTION_CHECKS_BEGIN` and `CAPTION_CHECKS_END`, replaced when there)
    into the bundle's card; a bundle without a card is left without one (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    passed = str(document["passed"])
    checks = caption_checks_from_dict(document, len(passed))
    checked = checks.checked.size
    performed_counts = checks.performed_counts()
    seeds = checks.seeds
    settings = document.get("settings", {})
    seed_list = settings.get("seeds", [settings.get("seed", 0)])
    generated = ("once" if seeds == 1 else f"{seeds} times") + \
        f" ({settings.get('seconds', 4.0):g} s, seed{'s' if seeds > 1 else ''} {', '.join(map(str, seed_list))})"
    performed = ("performed" if seeds == 1
                 else f"performed, each passing in at least {PERFORMED_SHARE:.0%} of its seeds")
    section = ["## Caption checks", "",
               f"`caption_checks.json`: each of the {len(passed)} train captions generated {generated} by "
               f"`kmm-train check-captions` and judged by its action's geometric check: "
               f"{performed_counts[0]} of {checked} {performed} ({len(passed) - checked} have "
               f"no check).  A prompt whose {document['neighbours']} nearest train captions were performed less than "
               f"{document['warn_below']:g} of the time (each weighted by how near it is beside the nearest) is warned about before generating.  "
               "A prompt far from every train caption is generated partly from the nearest ones that were performed "
               "(`generation/prompt_conditions.py`)."]
    if performed_counts[1] is not None:
        section[-1] += (f"  The same captions at {checks.boost_factor:g}x the guidance: "
                        f"{performed_counts[1]} of {checked} performed; a prompt whose nearest captions the model "
                        "rarely performs at its guidance, and more often at that one, is generated at it "
                        "(`bundle/caption_checks.py` `boost_weight`, `decoding.unlikely_guidance_factor`).")
    return write_text_atomic(card, _with_marked_section(read_text(card, "model card"), CAPTION_CHECKS_BEGIN,
                                                        CAPTION_CHECKS_END, section))


def _with_marked_section(text: str, begin: str, end: str, lines: list[str]) -> str:
    """``text`` with the section between the comments ``begin`` and ``end`` removed where it was and ``lines``
    (between them) put before the intended-use section (at the end when there is none)."""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head.rstrip("\n") + "\n\n" + rest.split(end, 1)[1].lstrip("\n")
    section = "\n".join([begin, *lines, end, "", ""])
    if LIMITS_HEADING in text:
        head, rest = text.split(LIMITS_HEADING, 1)
        return head + section + LIMITS_HEADING + rest
    return text.rstrip("\n") + "\n\n" + section


def write_model_card(bundle_dir: str | Path, manifest: Mapping[str, Any], parameters: Mapping[str, int],
                     run_dir: str | Path, action_results: str | None = None) -> Path:
    """Write ``BUNDLE/README.md`` (atomically) and return its path."""
    bundle_dir = Path(bundle_dir)
    size = sum(path.stat().st_size for path in bundle_dir.iterdir() if path.is_file() and path.name != CARD_FILE)
    return write_text_atomic(bundle_dir / CARD_FILE, model_card(manifest, parameters, run_dir, size, action_results))


FINE_TUNE_BEGIN = "<!-- fine-tuned generator: begin (kmm-train fine-tuned-generator) -->"
FINE_TUNE_END = "<!-- fine-tuned generator: end -->"
REPRODUCE_HEADING = "## How to reproduce"
FINE_TUNE_REPRODUCE = ("The commands below make the bundle as first trained (the Training table).  Its generator was "
                       "then fine-tuned on the data under Data and put in by `kmm-train fine-tuned-generator` "
                       "(Fine-tuned generator, above), and each section above names the command that added its part.  "
                       "The shipped default's whole recipe, every step with its data: the repository's "
                       "`training/README.md`, \"Retrain on all the data (the shipped default) and kmm-small-open\".")


def _with_fine_tune_reproduce_note(text: str) -> str:
    """``text`` with `FINE_TUNE_REPRODUCE` at the head of its How to reproduce section (once): that section's
    commands make the bundle a fine-tune started from, not the bundle the fine-tune made."""
    heading = REPRODUCE_HEADING + "\n"
    if heading not in text or FINE_TUNE_REPRODUCE in text:
        return text
    head, rest = text.split(heading, 1)
    return head + heading + "\n" + FINE_TUNE_REPRODUCE + "\n" + rest


def _replace_section(text: str, heading: str, lines: list[str]) -> str:
    """``text`` with the section under ``heading`` (up to the next '## ' heading) replaced by ``lines``."""
    if heading not in text:
        return text
    head, rest = text.split(heading, 1)
    after = rest.split("\n## ", 1)
    tail = "\n## " + after[1] if len(after) == 2 else ""
    return head + "\n".join(lines).rstrip("\n") + "\n" + tail


def add_fine_tuned_generator_section(bundle_dir: str | Path, run_dir: str | Path, manifest: Mapping[str, Any],
                                     replaced: Sequence[str] = ("generator",)) -> Path | None:
    """After `bundle_writer.replace_generator`: the card's Data and Licence sections written again from ``manifest``
    and the fine-tune run's data report, and a section saying what the generator was fine-tuned from, on what, and
    how long, or which runs' mean it is (replaced when there); a bundle without a card is left without one
    (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    text = read_text(card, "model card")
    text = _replace_section(text, "## Data", _data_section(manifest, dataset_report(run_dir)))
    text = _replace_section(text, "## Licence", [*_licence_section(manifest), ""])
    text = re.sub(r"\*\*Licence of the weights: [^*]*\.\*\*", f"**Licence of the weights: {manifest.get('licence')}.**",
                  text, count=1)
    stages = {s["stage"]: s for s in stage_summaries(run_dir)}
    try:
        settings = read_json(Path(run_dir) / "config.json", "run config", allow_non_finite=True)["train"]
    except (InputFileError, KeyError, TypeError):
        settings = {}

    def training(stage: str) -> str:
        tuned = stages.get(stage)
        lr = (settings.get(stage) or {}).get("lr", "?") if isinstance(settings, dict) else "?"
        return (f"{tuned['steps']} steps at a peak learning rate of {lr}, last validation "
                f"{_validation(tuned['validation'])}, {_minutes(tuned['seconds'])}" if tuned else "no log found")

    tuned_text = "; ".join(f"`{name}.safetensors`: {training(name)}" for name in replaced)
    averaged, start_weight = averaged_runs(run_dir)
    if averaged:
        runs = ", ".join(f"`{run}`" for run in averaged)
        tuned_text = (f"`generator.safetensors`: the mean of the generators of {len(averaged)} fine-tunes of this "
                      f"start, `kmm-train average-generators` over {runs}" if len(averaged) > 1 else
                      f"`generator.safetensors`: the generator of the fine-tune `{averaged[0]}` of this start")
        if start_weight > 0.0:
            tuned_text += (f", mixed back with the start: {start_weight:g} x the start's weights + "
                           f"{1.0 - start_weight:g} x the fine-tuned (`--start-weight {start_weight:g}`)")
    kept = [name for name in ("tokenizer", "aligner", "evaluator") if name not in replaced]
    section = ["## Fine-tuned generator", "",
               f"{' and '.join(f'`{name}`' for name in replaced)} fine-tuned from the bundle's own on the data under "
               f"Data (`[train.<stage>] init_weights`, run `{Path(run_dir).name}`; {tuned_text}) and put into this "
               f"bundle by `kmm-train fine-tuned-generator`; the {', '.join(kept)} and prompt decoders are unchanged.  "
               "The Training table describes the stages the bundle was first trained with."]
    text = _with_fine_tune_reproduce_note(text)
    return write_text_atomic(card, _with_marked_section(text, FINE_TUNE_BEGIN, FINE_TUNE_END, section))


REFINED_DECODER_BEGIN = "<!-- refined decoder: begin (kmm-train refined-decoder) -->"
REFINED_DECODER_END = "<!-- refined decoder: end -->"


def add_refined_decoder_section(bundle_dir: str | Path, run_dir: str | Path) -> Path | None:
    """After `bundle_writer.replace_tokenizer_decoder`: a section saying which decoder run refined the tokenizer's
    decoder, with which ``[decoder]`` terms and how long (replaced when there); a bundle without a card is left
    without one (None)."""
    card = Path(bundle_dir) / CARD_FILE
    if not card.is_file():
        return None
    refined = {s["stage"]: s for s in stage_summaries(run_dir)}.get("decoder")
    try:
        terms = read_json(Path(run_dir) / "config.json", "run config", allow_non_finite=True)["decoder"]
    except (InputFileError, KeyError, TypeError):
        terms = {}
    weights = ", ".join(f"{key} {value:g}" for key, value in terms.items()
                        if key.endswith("_weight") and isinstance(value, (int, float)) and value > 0)
    training = (f"{refined['steps']} steps, last validation {_validation(refined['validation'])}, "
                f"{_minutes(refined['seconds'])}" if refined else "no log found")
    section = ["## Refined tokenizer decoder", "",
               f"The decoder of `tokenizer.safetensors` was refined by `kmm-train decoder` in the run "
               f"`{Path(run_dir).name}` ({training}; `[decoder]` {weights or 'terms not recorded'}) and put into "
               "this bundle by `kmm-train refined-decoder`.  Its encoder and codebooks are unchanged, so the "
               "generator's codes are decoded as before, by the new decoder; the prompt decoders are unchanged."]
    return write_text_atomic(card, _with_marked_section(read_text(card, "model card"), REFINED_DECODER_BEGIN,
                                                         REFINED_DECODER_END, section))
