# SPDX-License-Identifier: GPL-3.0-or-later
"""Rules of the panel's segment table, in plain Python (no bpy) so they are testable anywhere.

Rows are (prompt, start, end) with inclusive scene frames, exactly the `{"prompt", "start", "end"}` segments of a
timeline file.  All validity rules come from kmm_core.generation.timeline (the worker applies the same ones);
this module only decides which row a problem belongs to, so the panel can show it next to that row.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...kmm_core.common.atomic_write import write_text_atomic
from ...kmm_core.generation.timeline import Timeline, TimelineError

SCENE_FRAME_LIMIT = 1_048_574
"""Blender's largest scene frame (MAXFRAME), and the largest magnitude a row's start or end may have."""


@dataclass(frozen=True)
class Row:
    prompt: str
    start: int
    end: int

    def as_segment(self) -> dict:
        return {"prompt": self.prompt, "start": self.start, "end": self.end}


def to_timeline_dict(rows: Sequence[Row], fps: float) -> dict:
    return {"fps": fps, "segments": [row.as_segment() for row in rows]}


def build_timeline(rows: Sequence[Row], fps: float) -> Timeline:
    """The validated Timeline of the table; raises TimelineError naming the offending segment."""
    return Timeline.from_dict(to_timeline_dict(rows, fps))


def row_problems(rows: Sequence[Row], fps: float) -> dict[int, str]:
    """Problems keyed by row index (every row is checked, not just the first bad one); key -1: the whole table.

    A row is first checked alone with the timeline's rules (prompt, duration), then against the row before it
    (gaps and overlaps), then, when every row is fine, the table as a whole (total length).  The check runs once
    per edit of the table: the result is kept for the table's contents, so the panel drawing every row asks for
    it as often as it likes without validating again.
    """
    return dict(_table_problems(tuple(rows), float(fps)))


@functools.lru_cache(maxsize=8)
def _table_problems(rows: tuple[Row, ...], fps: float) -> tuple[tuple[int, str], ...]:
    problems: dict[int, str] = {}
    if not rows:
        return ((-1, "the timeline has no segments: add one"),)
    for index, row in enumerate(rows):
        try:
            Timeline.from_dict(to_timeline_dict([row], fps))
        except TimelineError as error:
            problems[index] = _reason(error)
    for index in range(1, len(rows)):
        # Contiguity is checked even when a neighbour has another problem, so every offending row shows it.
        previous_end, start = rows[index - 1].end, rows[index].start
        gap = start - (previous_end + 1)
        if gap:
            what = (f"a gap of {gap} frame(s) after the previous segment (ends at frame {previous_end})" if gap > 0
                    else f"overlaps the previous segment (ends at frame {previous_end}) by {-gap} frame(s)")
            problems[index] = "; ".join(filter(None, (problems.get(index), f"start: {what}")))
    if not problems:
        try:
            build_timeline(rows, fps)
        except TimelineError as error:
            problems[error.segment if error.segment is not None else -1] = _reason(error)
    return tuple(problems.items())


def _reason(error: TimelineError) -> str:
    """The error without its location prefix (the panel shows it on the row itself), naming the field."""
    reason = error.reason.replace("segments[0]", "the previous segment")
    return f"{error.field}: {reason}" if error.field and error.field not in ("segments",) else reason


def fit_to_range(rows: Sequence[Row], frame_start: int, frame_end: int) -> list[Row]:
    """Stretch the rows over [frame_start, frame_end] (inclusive) keeping their order and relative lengths.

    Boundaries are rounded from exact cumulative positions so the rows stay contiguous and cover the range
    exactly; every row keeps at least one frame.
    """
    if not rows:
        return []
    available = frame_end - frame_start + 1
    if available < len(rows):
        raise TimelineError(f"the range {frame_start}-{frame_end} has {available} frame(s), fewer than the "
                            f"{len(rows)} segments", field="frame range")
    weights = [max(row.end - row.start + 1, 1) for row in rows]
    total = sum(weights)
    boundaries = [0]
    cumulative = 0
    for index, weight in enumerate(weights):
        cumulative += weight
        position = round(cumulative * available / total)
        # leave at least one frame for this row and each row after it
        position = max(position, boundaries[-1] + 1)
        position = min(position, available - (len(rows) - index - 1))
        boundaries.append(position)
    return [Row(row.prompt, frame_start + boundaries[i], frame_start + boundaries[i + 1] - 1)
            for i, row in enumerate(rows)]


def rows_from_timeline(timeline: Timeline, scene_fps: float, scene_frame_start: int) -> list[Row]:
    """Lay a timeline out on the scene: explicit starts at the scene's fps are kept; anything else (durations,
    FlowMDM lengths, another fps) is converted to scene frames from its own start (or the scene's start)."""
    if timeline.start_frame is not None and abs(timeline.fps - scene_fps) < 1e-9:
        return [Row(segment.prompt, segment.start, segment.end) for segment in timeline.segments]  # type: ignore[arg-type]  # timelines with start_frame have start/end on every segment
    origin = timeline.start_frame if timeline.start_frame is not None else scene_frame_start
    return [Row(segment.prompt, origin + start, origin + end - 1)
            for segment, (start, end) in zip(timeline.segments, timeline.segment_ranges(scene_fps), strict=True)]


def constraints_on_scene(timeline: Timeline, scene_fps: float, scene_frame_start: int) -> list[dict]:
    """The timeline's constraints with frames where `rows_from_timeline` lays the timeline out on the scene (a
    constraint keeps its frame when the timeline gives explicit starts at the scene's fps, else it moves with the
    timeline's start).  A timeline at another fps cannot place them frame-exactly: refused, naming the fps."""
    from ...kmm_core.generation.constraints import shifted

    if not timeline.constraints:
        return []
    if abs(timeline.fps - scene_fps) > 1e-9:
        raise TimelineError(f"constraints are given in frames at {timeline.fps:g} fps but the scene runs at "
                            f"{scene_fps:g} fps: set the scene's frame rate to the timeline's", field="constraints")
    origin = 0 if timeline.start_frame is not None else scene_frame_start
    return [constraint.to_value() for constraint in shifted(timeline.constraints, origin)]


def import_rows(path: str | Path, scene_fps: float, scene_frame_start: int) -> list[Row]:
    """Rows from a timeline file (.json / .toml, ours or FlowMDM's); TimelineError names the file and field, also
    for frames a Blender scene cannot hold (beyond +-1,048,574), before any row of the table changes."""
    return import_timeline(path, scene_fps, scene_frame_start)[0]


def import_timeline(path: str | Path, scene_fps: float, scene_frame_start: int) -> tuple[list[Row], list[dict]]:
    """The rows and the constraints (`constraints_on_scene`) of a timeline file, the file read once; every problem
    (TimelineError naming the file and field) is raised before anything of the scene changes."""
    timeline = Timeline.from_file(path)
    try:
        constraints = constraints_on_scene(timeline, scene_fps, scene_frame_start)
    except TimelineError as error:
        raise TimelineError(error.reason, field=error.field, path=path) from None
    return _scene_rows(timeline, scene_fps, scene_frame_start, path), constraints


def _scene_rows(timeline: Timeline, scene_fps: float, scene_frame_start: int, path: str | Path) -> list[Row]:
    rows = rows_from_timeline(timeline, scene_fps, scene_frame_start)
    for index, row in enumerate(rows):
        worst = max(abs(row.start), abs(row.end))
        if worst > SCENE_FRAME_LIMIT:
            raise TimelineError(f"reaches scene frame {worst}, beyond Blender's last frame {SCENE_FRAME_LIMIT}",
                                segment=index, field="end" if abs(row.end) >= abs(row.start) else "start", path=path)
    try:  # the table as the scene holds it: rounding to another fps can break a rule (4 frames at 20 fps -> 4 at 24)
        build_timeline(rows, scene_fps)
    except TimelineError as error:
        reason = error.reason
        if abs(timeline.fps - scene_fps) > 1e-9:
            reason = (f"at the scene's {scene_fps:g} fps (the file's is {timeline.fps:g}) {reason}; set the scene's "
                      f"frame rate to {timeline.fps:g} fps to import it")
        raise TimelineError(reason, segment=error.segment, field=error.field, path=path) from None
    return rows


def export_rows(rows: Sequence[Row], fps: float, path: str | Path) -> Path:
    """Write the validated table as a timeline JSON file (our format with start/end)."""
    timeline = build_timeline(rows, fps)
    path = Path(path)
    write_text_atomic(path, timeline.to_json(indent=2) + "\n")
    return path


def relayout(rows: Sequence[Row], first_start: int | None = None) -> list[Row]:
    """Make rows contiguous in their current order, keeping each row's length (at least one frame) and the first
    start; used after rows are removed, duplicated or moved."""
    if not rows:
        return []
    start = rows[0].start if first_start is None else first_start
    laid_out = []
    for row in rows:
        length = max(row.end - row.start + 1, 1)
        laid_out.append(Row(row.prompt, start, start + length - 1))
        start += length
    return laid_out
