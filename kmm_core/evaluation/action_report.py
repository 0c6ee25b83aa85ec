# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the per-action results of ``kmm-train eval-actions``: ``actions.json`` (every number) and ``actions.md``
(one table row per action word, passing or not; the header gives the command and how many pass).  Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..common.atomic_write import write_text_atomic
from ..common.errors import InputFileError

ACTIONS_JSON = "actions.json"
ACTIONS_MD = "actions.md"
TABLE_HEADER = ("Action", "Dataset(s)", "Train takes", "Prompts", "n (gen / real)", "Gen. top-1", "Gen. top-k",
                "Real top-1", "Real top-k", "Check", "Check gen.", "Check real", "Result")


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _checks(row: Mapping[str, Any]) -> tuple[str, str, str]:
    generated, real = row["generated"]["checks"], row["real"]["checks"]
    if not generated:
        return "–", "–", "–"
    names = sorted(generated)
    return ("; ".join(names), "; ".join(_rate(generated[name]["rate"]) for name in names),
            "; ".join(_rate(real[name]["rate"]) if name in real else "–" for name in names))


def action_table(results: Mapping[str, Any]) -> str:
    k = results["settings"]["top_k"]
    header = [title.replace("top-k", f"top-{k}") for title in TABLE_HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
    for row in results["actions"]:
        check, check_generated, check_real = _checks(row)
        cells = [f"`{row['action']}`", ", ".join(row["datasets"]), str(row["train_takes"]), row["prompt_source"],
                 f"{row['generations']} / {row['real_clips']}",
                 _rate(row["generated"]["top1"]), _rate(row["generated"]["topk"]),
                 _rate(row["real"]["top1"]), _rate(row["real"]["topk"]),
                 check, check_generated, check_real, "**PASS**" if row["passed"] else "fail"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def action_document(results: Mapping[str, Any]) -> str:
    settings = results["settings"]
    actions = results["actions"]
    k, rate = settings["top_k"], settings["pass_rate"]
    from_split = sum(row["prompt_source"] == "split" for row in actions)
    blind = [row["action"] for row in actions if row["real"]["topk"] is not None and row["real"]["topk"] < rate]
    blind_note = ("" if not blind else
                  f"  The evaluator retrieves fewer than {rate:g} of the real clips of {len(blind)} actions "
                  f"({', '.join(f'`{name}`' for name in blind)}): for these, PASS or fail by retrieval says little "
                  f"about the generator.")
    return "\n".join([
        f"# Per-action results: {results['model']}",
        "",
        f"**{results['passing']} of {len(actions)} actions pass.**  Command: `{results.get('command', '?')}` "
        f"({results['seconds']:.0f} s).",
        "",
        f"One row per action word of the model's vocabulary (the same word in several datasets is one row).  "
        f"Prompts: captions of the action's clips in the `{settings['split']}` split ({from_split} actions), or "
        f"the vocabulary's example prompts where the split has none ({len(actions) - from_split}; no real clips "
        f"then).  Each prompt is generated {settings['generations_per_prompt']} times.  Retrieval with the "
        f"evaluator: a motion retrieves its action when the action's prototype text embedding (the mean of its "
        f"prompts') is among the {k} most similar of all {len(actions)} actions; the real clips' rates are the "
        f"evaluator's ceiling.  Checks: geometric (one per action word, kmm_core/evaluation/action_checks.py; side for "
        f"prompts naming a side).  An action passes when its generated top-{k} rate and every generated check rate "
        f"are >= {rate:g}.  docs/evaluation.md explains each column." + blind_note,
        "",
        action_table(results),
    ])


def write_action_results(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``actions.json`` and ``actions.md`` into `out_dir` (created if needed); returns both paths."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "output path exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / ACTIONS_JSON, folder / ACTIONS_MD
    write_text_atomic(json_path, json.dumps(results, indent=1, allow_nan=False) + "\n")
    write_text_atomic(md_path, action_document(results))
    return json_path, md_path
