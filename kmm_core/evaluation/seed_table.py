# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed study's table: every ablation row trained with several training seeds, each run evaluated once
(``kmm-train ablate``), summarised as mean ± 95% confidence interval over the training seeds.

Input: per row, per training seed, the metrics of that run's bundle as ``kmm-train eval`` wrote them (each metric
``{"mean", "ci95", "count"}`` over evaluation replications); only each run's mean enters the study's interval, so
the interval measures how much training itself varies (Student t with n - 1 degrees of freedom,
:func:`~.confidence.mean_confidence_interval`).

Verdict per metric, key-frame row against the random row: "better" / "worse" when the two 95% intervals do not
overlap, else "within the intervals".  Metrics where closer to the ground truth is better (Diversity, Mean jerk)
compare the per-seed distances |value - ground truth|.  This module is torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..common.errors import InputTensorError
from .confidence import mean_confidence_interval
from .report import COLUMNS

#: Metrics of the table that do not measure the generator's quality: shared tokenizer, size, wall-clock speed.
NOT_COMPARED = ("parameters", "generation_seconds_per_minute", "tokenizer_mpjpe_mm", "codebook_perplexity")
BASELINE_ROW = "random"

_COLUMN = {key: (title, decimals, better) for key, title, decimals, better in COLUMNS}


def _interval(values: Sequence[float]) -> dict[str, Any]:
    summary = mean_confidence_interval(values)
    half = None if math.isnan(summary.half_width) else summary.half_width
    return {"mean": summary.mean, "ci95": half, "count": summary.count,
            "low": None if half is None else summary.low, "high": None if half is None else summary.high}


def summarise_seeds(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One row's metrics over its training seeds: ``{metric: {"mean", "ci95", "count", "per_seed": {seed: v}}}``.

    ``per_seed`` maps each training seed to its run's metrics (``kmm-train eval`` entries); a metric missing (None)
    in any run is left out, so every summary rests on all seeds.
    """
    if not per_seed:
        raise InputTensorError("seed study: a row has no finished run")
    out: dict[str, Any] = {}
    for key in _COLUMN:
        entries = [metrics.get(key) for metrics in per_seed.values()]
        if any(entry is None for entry in entries):
            continue
        values = {int(seed): float(entry["mean"]) for seed, entry in zip(per_seed, entries, strict=True)}
        out[key] = {**_interval(list(values.values())), "per_seed": values}
    return out


def _compared_values(summary: Mapping[str, Any], key: str, ground_truth: Mapping[str, Any]) -> list[float] | None:
    """The per-seed values a verdict compares: the values, or for "closer to ground truth" metrics their distance."""
    values = list(summary[key]["per_seed"].values())
    if _COLUMN[key][2] != "gt":
        return values
    reference = ground_truth.get(key)
    if reference is None:
        return None
    return [abs(value - float(reference["mean"])) for value in values]


def compare_rows(candidate: Mapping[str, Any], baseline: Mapping[str, Any], ground_truth: Mapping[str, Any],
                 candidate_name: str, baseline_name: str = BASELINE_ROW) -> list[dict[str, Any]]:
    """One verdict per quality metric both rows have: does ``candidate`` beat ``baseline`` beyond the intervals?"""
    verdicts = []
    for key, (title, _decimals, better) in _COLUMN.items():
        if key in NOT_COMPARED or not better or key not in candidate or key not in baseline:
            continue
        ours, theirs = _compared_values(candidate, key, ground_truth), _compared_values(baseline, key, ground_truth)
        if ours is None or theirs is None:
            continue
        a, b = _interval(ours), _interval(theirs)
        if a["ci95"] is None or b["ci95"] is None:
            verdict = "one training seed: no interval"
        else:
            higher_is_better = better == "high"
            if a["low"] > b["high"]:
                verdict = "better" if higher_is_better else "worse"
            elif a["high"] < b["low"]:
                verdict = "worse" if higher_is_better else "better"
            else:
                verdict = "within the intervals"
        verdicts.append({"metric": key, "title": title, "row": candidate_name, "against": baseline_name,
                         "compared": "distance to ground truth" if better == "gt" else "value",
                         "row_interval": a, "against_interval": b, "verdict": verdict})
    return verdicts


def _cell(entry: Mapping[str, Any] | None, decimals: int) -> str:
    if entry is None:
        return "–"
    digits = max(decimals, 1) if decimals else 0
    text = f"{entry['mean']:.{digits}f}"
    return text + (f" ± {entry['ci95']:.{digits}f}" if entry.get("ci95") is not None else "")


def verdict_line(item: Mapping[str, Any], decimals: int) -> str:
    """``- FID ↓: keyframe_gaussian 0.41 ± 0.05 vs random 0.48 ± 0.03 -> better beyond the 95% intervals``."""
    what = " (distance to ground truth)" if item["compared"] != "value" else ""
    digits = max(decimals, 1) if decimals else 0
    verdict = item["verdict"]
    if verdict in ("better", "worse"):
        verdict = f"{item['row']} is {verdict} beyond the 95% intervals"
    elif verdict == "within the intervals":
        verdict = "within the 95% intervals: not settled by these seeds"
    return (f"- {item['title']}{what}: {item['row']} {_cell(item['row_interval'], digits)} vs {item['against']} "
            f"{_cell(item['against_interval'], digits)} -> {verdict}")


def markdown_seed_table(study: Mapping[str, Any]) -> str:
    """results.md of a seed study: the table over training seeds, the per-seed values and the verdict lines."""
    rows = study["rows"]
    keys = [key for key in _COLUMN if any(key in row["metrics"] for row in rows)]
    header = ["Row", "Seeds", *(_COLUMN[key][0] for key in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    for row in rows:
        cells = [_cell(row["metrics"].get(key), _COLUMN[key][1]) for key in keys]
        lines.append("| " + " | ".join([row["title"], ",".join(map(str, row["seeds"])), *cells]) + " |")
    per_seed = ["| Row | Training seed | " + " | ".join(_COLUMN[key][0] for key in keys) + " |",
                "|" + "|".join([" --- "] * (len(keys) + 2)) + "|"]
    for row in rows:
        for seed in row["seeds"]:
            cells = []
            for key in keys:
                entry = row["metrics"].get(key)
                value = None if entry is None else entry["per_seed"].get(seed)
                cells.append("–" if value is None else f"{value:.{max(_COLUMN[key][1], 1) if _COLUMN[key][1] else 0}f}")
            per_seed.append(f"| {row['title']} | {seed} | " + " | ".join(cells) + " |")
    done, total = study["finished_runs"], study["planned_runs"]
    parts = [
        "# Seed study: key-frame masking against random masking",
        "",
        f"{done} of {total} planned runs finished. Each row's generator was trained once per training seed "
        f"(weight initialisation, data order, masks) on the same tokenizer, aligner and data, with "
        f"{study['generator_steps']} generator steps, then evaluated with one evaluator (`{study['evaluator']}`) "
        f"and the same evaluation seeds. A cell is the mean over training seeds ± the half-width of its 95% "
        f"confidence interval (Student t, n - 1 degrees of freedom; no ± with one seed). ↑ higher is better, "
        f"↓ lower is better, → closer to the ground truth is better.",
        "",
        "\n".join(lines),
        "",
        "## Per training seed (each value the mean over the evaluation's replications)",
        "",
        "\n".join(per_seed),
        "",
        "## Does key-frame masking beat random masking beyond the interval?",
        "",
        "Better or worse only where the two 95% intervals over training seeds do not overlap; computed from the "
        "numbers above (an interval is zero-wide when every seed measured the same value, as quantised metrics on "
        "a small test split can).",
        "",
    ]
    if study["verdicts"]:
        parts += [verdict_line(item, _COLUMN[item["metric"]][1]) for item in study["verdicts"]]
    else:
        parts.append(f"- no verdict: the study needs a key-frame row and the `{BASELINE_ROW}` row with finished runs")
    parts.append("")
    return "\n".join(parts)
