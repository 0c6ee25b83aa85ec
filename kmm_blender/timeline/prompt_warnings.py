# SPDX-License-Identifier: GPL-3.0-or-later
"""Prompt warnings on the timeline rows: the worker's `result.warnings` (prompts far from everything the model was
trained on, with the closest known prompts; prompts using a weak action word, with a strong word's prompt) are
stored on the rows they concern; the panel shows them on the row and `kmm.use_suggestion` puts a suggested prompt
into the row (ui/prompt_suggestions.py).

A row keeps the prompt it was warned about (`warned_prompt`): once the user edits the prompt the warning no longer
applies and is not shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SUGGESTION_SEPARATOR = "\n"


def warnings_by_row(warnings: Sequence[dict[str, Any]], row_count: int) -> dict[int, dict[str, Any]]:
    """The warnings that name a row (segment index within the table), keyed by row; others are left out."""
    rows: dict[int, dict[str, Any]] = {}
    for warning in warnings:
        segment = warning.get("segment")
        if isinstance(segment, int) and 0 <= segment < row_count:
            rows[segment] = warning
    return rows


def store(settings: Any, warnings: Sequence[dict[str, Any]], regenerated_segment: int | None = None,
          conditions: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Put the warnings of a finished job, and the captions that completed each prompt's condition (the result's
    ``info.conditions``), on the table rows; returns the warnings' messages (to report).

    A generation replaces every row's; regenerating one segment replaces only that row's."""
    segments = settings.segments
    by_row = warnings_by_row(warnings, len(segments))
    read_with = warnings_by_row([entry for entry in conditions if isinstance(entry, dict)], len(segments))
    rows = range(len(segments)) if regenerated_segment is None else [regenerated_segment]
    for index in rows:
        if not 0 <= index < len(segments):
            continue
        item = segments[index]
        warning = by_row.get(index)
        item.vocabulary_warning = warning["message"] if warning else ""
        item.warned_prompt = warning["prompt"] if warning else ""
        item.suggestions = SUGGESTION_SEPARATOR.join(warning["suggestions"]) if warning else ""
        entry = read_with.get(index)
        captions = [str(c) for c in entry.get("captions", []) if isinstance(c, str)] if entry else []
        item.read_with = SUGGESTION_SEPARATOR.join(captions)
        item.read_with_prompt = str(entry.get("prompt", "")) if captions else ""
    return [str(warning["message"]) for warning in warnings]


def active_warning(item: Any) -> str:
    """The row's warning while its prompt is still the one warned about, else ""."""
    return item.vocabulary_warning if item.vocabulary_warning and item.prompt == item.warned_prompt else ""


def read_with_of(item: Any) -> list[str]:
    """The captions that completed the row's prompt's condition, while its prompt is still that one."""
    if not item.read_with or item.prompt != item.read_with_prompt:
        return []
    return [text for text in item.read_with.split(SUGGESTION_SEPARATOR) if text]


def suggestions_of(item: Any) -> list[str]:
    return [text for text in item.suggestions.split(SUGGESTION_SEPARATOR) if text] if active_warning(item) else []
