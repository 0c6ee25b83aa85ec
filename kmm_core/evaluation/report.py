# SPDX-License-Identifier: GPL-3.0-or-later
"""Write evaluation results: ``results.json`` (every number with mean, 95% CI half-width and count) and a Markdown
table (one row per checkpoint plus the ground truth).

A result document is plain JSON data::

    {"format_version": 1, "settings": {...}, "notes": {...},
     "rows": [{"name": "ground truth", "kind": "ground_truth", "checkpoint": null,
               "metrics": {"fid": {"mean": 0.0, "ci95": 0.0, "count": 3}, "multimodality": null, ...}}, ...]}

A metric that does not apply to a row (MultiModality of real motions, parameters of the ground truth) is ``null``;
a CI is ``null`` when it rests on one measurement.  This module is torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError
from .animator_subsets import MEASURES as ANIMATOR_MEASURES
from .animator_subsets import SUBSET_TITLES, SUBSETS, metric_key
from .confidence import ConfidenceInterval

RESULTS_FORMAT_VERSION = 1
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


# (key, column title, decimals, better) in table order; better: "high", "low", "gt" (closer to ground truth) or "".
COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("r_precision_top1", "R-Prec top-1 ↑", 3, "high"),
    ("r_precision_top2", "R-Prec top-2 ↑", 3, "high"),
    ("r_precision_top3", "R-Prec top-3 ↑", 3, "high"),
    ("fid", "FID ↓", 3, "low"),
    ("diversity", "Diversity →", 3, "gt"),
    ("mm_distance", "MM-Dist ↓", 3, "low"),
    ("multimodality", "MultiModality ↑", 3, "high"),
    ("directional_accuracy_split", "Dir. acc. (split) ↑", 3, "high"),
    ("directional_accuracy_paraphrase", "Dir. acc. (paraphrases) ↑", 3, "high"),
    ("transition_peak_jerk", "Peak Jerk ↓", 1, "low"),
    ("transition_auj", "AUJ ↓", 1, "low"),
    ("mean_jerk", "Mean jerk →", 1, "gt"),
    ("foot_skating_ratio", "Foot skating ↓", 3, "low"),
    ("floor_penetration_mm", "Floor pen. (mm) ↓", 2, "low"),
    ("parameters", "Parameters", 0, ""),
    ("generation_seconds_per_minute", "Time for 1 min (s) ↓", 2, "low"),
    ("tokenizer_mpjpe_mm", "Tokenizer MPJPE (mm) ↓", 1, "low"),
    ("codebook_perplexity", "Codebook perplexity ↑", 1, "high"),
)
# The body-part table (body_motion.py): ratios to the real motions of the split (1.0 = as real), the frozen-feet
# share itself.  Each measure is reported at three stages, as key prefixes: after the clean-up (what ships),
# the decoder's raw output, and the tokenizer's reconstruction of the real clips.
BODY_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("jerk_pelvis_standing_ratio", "Pelvis jerk, standing", 2, "one"),
    ("jerk_spine_head_standing_ratio", "Spine+head jerk, standing", 2, "one"),
    ("jerk_pelvis_locomotion_ratio", "Pelvis jerk, walking", 2, "one"),
    ("jerk_spine_head_locomotion_ratio", "Spine+head jerk, walking", 2, "one"),
    ("jerk_left_hand_ratio", "L hand jerk", 2, "one"),
    ("jerk_right_hand_ratio", "R hand jerk", 2, "one"),
    ("jerk_left_foot_ratio", "L foot jerk", 2, "one"),
    ("jerk_right_foot_ratio", "R foot jerk", 2, "one"),
    ("frozen_feet", "Frozen feet (share) ↓", 3, "low"),
    ("gait_regularity_ratio", "Gait regularity", 2, "one"),
    ("pelvis_bob_ratio", "Pelvis bob", 2, "one"),
    ("foot_swing_ratio", "Foot swing", 2, "one"),
    ("standing_drift_ratio", "Standing drift", 2, "one"),
)
BODY_STAGES = (("body_", ""), ("raw_body_", "raw decoder output"), ("tokenizer_body_", "tokenizer reconstruction"))
# Where the animator looks (animator_subsets.py): the split, its calm-standing and its walking items, each measure a
# ratio to the real items; the short action after a walk (share of replications performing it).
ANIMATOR_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("jerk_pelvis", "Pelvis jerk", 2, "one"),
    ("jerk_head", "Head jerk", 2, "one"),
    ("drift", "Drift", 2, "one"),
    ("stride_regularity", "Stride regularity", 2, "one"),
    ("pelvis_rhythm", "Pelvis-height rhythm", 2, "one"),
    ("leg_alternation", "Leg alternation", 2, "one"),
    ("pelvis_bob", "Pelvis bob", 2, "one"),
    ("foot_swing", "Foot swing", 2, "one"),
)
ANIMATOR_STAGES = (("", ""), ("tokenizer_", "tokenizer reconstruction"))
SHORT_ACTION_KEYS = ("short_action_after_walk", "short_action_left_rise")
METRIC_KEYS = tuple(key for key, *_ in COLUMNS) + tuple(prefix + key for prefix, _ in BODY_STAGES
                                                        for key, *_ in BODY_COLUMNS) + tuple(
    prefix + metric_key(subset, measure) for prefix, _ in ANIMATOR_STAGES for subset in SUBSETS
    for measure in ANIMATOR_MEASURES) + SHORT_ACTION_KEYS


def metric_entry(value: ConfidenceInterval | float | int | None, count: int = 1) -> dict[str, Any] | None:
    """{"mean", "ci95", "count"} of a confidence interval or a single measurement (None stays None)."""
    if value is None:
        return None
    if isinstance(value, ConfidenceInterval):
        half = None if math.isnan(value.half_width) else float(value.half_width)
        return {"mean": float(value.mean), "ci95": half, "count": int(value.count)}
    return {"mean": float(value), "ci95": None, "count": int(count)}


def _format_entry(entry: Mapping[str, Any] | None, decimals: int) -> str:
    if entry is None:
        return "–"
    mean = entry["mean"]
    if decimals == 0:
        text = f"{mean / 1e6:.2f} M" if abs(mean) >= 1e6 else f"{mean:,.0f}"
    else:
        text = f"{mean:.{decimals}f}"
    if entry.get("ci95") is not None:
        text += f" ± {entry['ci95']:.{max(decimals, 1) if decimals else 1}f}"
    return text


def markdown_table(results: Mapping[str, Any], columns: Sequence[tuple[str, str, int, str]] = COLUMNS) -> str:
    """One Markdown table: a header, then one line per row of ``results["rows"]`` (ground truth first)."""
    rows = results.get("rows", [])
    header = ["Model", *(title for _, title, _, _ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    for row in rows:
        name = str(row["name"]).replace("|", "\\|")
        cells = [_format_entry(row["metrics"].get(key), decimals) for key, _, decimals, _ in columns]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def body_table(results: Mapping[str, Any]) -> str:
    """The body-part table: per row of the results its shipped motion, then (checkpoints) the decoder's raw output
    and the tokenizer's reconstruction, each measure a ratio to the real motions (1.00 = as real)."""
    header = ["Model", *(title for _, title, _, _ in BODY_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    for row in results.get("rows", []):
        for prefix, stage in BODY_STAGES:
            entries = [row["metrics"].get(prefix + key) for key, *_ in BODY_COLUMNS]
            if all(entry is None for entry in entries):
                continue
            name = str(row["name"]).replace("|", "\\|") + (f": {stage}" if stage else "")
            cells = [_format_entry(entry, decimals) for entry, (_, _, decimals, _) in zip(entries, BODY_COLUMNS,
                                                                                          strict=True)]
            lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def animator_table(results: Mapping[str, Any]) -> str:
    """Per checkpoint: the split-wide line, the calm-standing line and the walking line (what it ships), then the
    same three of its tokenizer's reconstruction; the short action after a walk on the split line."""
    header = ["Model", "Items", *(title for _, title, _, _ in ANIMATOR_COLUMNS), "Short action after a walk",
              "Left wrist rise (body heights)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    for row in results.get("rows", []):
        if row.get("kind") == "ground_truth":
            continue
        for prefix, stage in ANIMATOR_STAGES:
            for subset in SUBSETS:
                entries = [row["metrics"].get(prefix + metric_key(subset, key)) for key, *_ in ANIMATOR_COLUMNS]
                if all(entry is None for entry in entries):
                    continue
                name = str(row["name"]).replace("|", "\\|") + f": {SUBSET_TITLES[subset]}" + (
                    f", {stage}" if stage else "")
                cells = [_format_entry(entry, decimals) for entry, (_, _, decimals, _) in
                         zip(entries, ANIMATOR_COLUMNS, strict=True)]
                short = [_format_entry(row["metrics"].get(key), 2) if subset == "split" and not prefix else "–"
                         for key in SHORT_ACTION_KEYS]
                count = results.get("subset_items", {}).get(subset, "–")
                lines.append("| " + " | ".join([name, str(count), *cells, *short]) + " |")
    return "\n".join(lines) + "\n"


def markdown_document(results: Mapping[str, Any]) -> str:
    """results.md: the table, how to read it, and the settings it was measured with."""
    settings = results.get("settings", {})
    notes = results.get("notes", {})
    parts = [
        "# KMM evaluation",
        "",
        f"Split `{settings.get('split', '?')}` of `{settings.get('data', '?')}`; {settings.get('replications', '?')} "
        f"replications with fixed seeds. Each cell is mean ± half-width of the 95% confidence interval (Student t "
        f"over replications; over clips for the tokenizer MPJPE, over runs for the timing); no ± means a single "
        f"measurement. ↑ higher is better, ↓ lower is better, → closer to the ground truth is better; – does not "
        f"apply. Everything text-related is measured with the separately trained evaluator "
        f"(`{notes.get('evaluator', '?')}`), never with a generator's own aligner.",
        "",
        markdown_table(results),
        "",
        "## Body parts",
        "",
        "Each body part as an animator judges it, on whole motions of the split (kmm_core/evaluation/body_motion.py): "
        "jerk per part (the median over frames), separately on standing and walking captions for the pelvis and the "
        "spine with the head; gait regularity, pelvis bob and foot swing on walking captions; the pelvis' drift on "
        "standing captions.  Every cell is a ratio to the real motions of the same items (1.00 = as real), except "
        "frozen feet: the share of foot-joint frames that stand exactly still (real feet: none).  Each model has "
        "three lines: what it ships (after the clean-up), the decoder's raw output, and its tokenizer's "
        "reconstruction of the real clips, so each defect shows the stage that makes it.",
        "",
        body_table(results),
        "",
        "## Where the animator looks",
        "",
        "The split's calm standing (normal-style waves and raised hands) and its plain walks on their own lines "
        "beside the whole split (kmm_core/evaluation/animator_subsets.py): pelvis and head jerk, the pelvis' drift "
        "(standing), stride regularity (mean of the pelvis-height and leg-alternation autocorrelation peaks at "
        "0.3-1.5 s, each also shown), pelvis bob and foot swing (walking); every cell a ratio to the real items "
        "(1.00 = as real).  Short action after a walk: the share of replications in which a 2-s \"a person raises "
        "the left hand\" right after 2.5 s of walking raises the left wrist more than 0.15 body heights and three "
        "times the right, and the left wrist's mean rise.",
        "",
        animator_table(results),
    ]
    if notes:
        parts += ["", "## Notes", ""]
        parts += [f"- **{key}**: {value}" for key, value in notes.items()]
    parts += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    return "\n".join(parts)


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out_dir`` (created if needed); returns both paths."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "output path exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / RESULTS_JSON, folder / RESULTS_MD
    write_text_atomic(json_path, json.dumps(results, indent=2, allow_nan=False) + "\n")
    write_text_atomic(md_path, markdown_document(results))
    return json_path, md_path


def read_results(path: str | Path) -> dict[str, Any]:
    """A results.json written by :func:`write_results` (a folder is taken to contain one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_JSON
    data = read_json(path, "results file")
    if not isinstance(data, dict) or data.get("format_version") != RESULTS_FORMAT_VERSION or "rows" not in data:
        raise InputFileError(path, f"not a results file of format_version {RESULTS_FORMAT_VERSION}")
    return data
