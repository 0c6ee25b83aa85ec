# SPDX-License-Identifier: GPL-3.0-or-later
"""The panel's segment-table rules (plain Python: no Blender needed)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def table(addon_module):
    """kmm_blender.timeline.segment_table imported the way Blender imports it: inside the extension package."""
    return addon_module("kmm_blender.timeline.segment_table")


def test_every_bad_row_gets_its_own_problem(table):
    Row = table.Row
    rows = [Row("walk", 1, 60), Row(" ", 61, 120), Row("wave", 125, 180), Row("sit", 170, 171)]
    problems = table.row_problems(rows, 24)
    assert problems[1] == "prompt: the prompt is empty"
    assert problems[2] == "start: a gap of 4 frame(s) after the previous segment (ends at frame 120)"
    assert "shortest segment is 0.2 s" in problems[3] and "overlaps the previous segment" in problems[3]
    assert 0 not in problems
    assert table.row_problems([], 24) == {-1: "the timeline has no segments: add one"}
    assert table.row_problems([Row("walk", 1, 60), Row("run", 61, 120)], 24) == {}


def test_fit_to_range_keeps_order_proportions_and_covers_the_range(table):
    Row = table.Row
    fitted = table.fit_to_range([Row("a", 1, 10), Row("b", 11, 40), Row("c", 41, 50)], 101, 200)
    assert [(r.start, r.end) for r in fitted] == [(101, 120), (121, 180), (181, 200)]
    tiny = table.fit_to_range([Row("a", 1, 1000), Row("b", 1001, 1001), Row("c", 1002, 1002)], 1, 3)
    assert [(r.start, r.end) for r in tiny] == [(1, 1), (2, 2), (3, 3)]
    with pytest.raises(table.TimelineError, match="fewer than the 3 segments"):
        table.fit_to_range([Row("a", 1, 5)] * 3, 1, 2)


def test_relayout_closes_gaps_and_keeps_lengths(table):
    Row = table.Row
    rows = table.relayout([Row("a", 5, 9), Row("b", 20, 29), Row("c", 1, 1)])
    assert [(r.prompt, r.start, r.end) for r in rows] == [("a", 5, 9), ("b", 10, 19), ("c", 20, 20)]


def test_timelines_are_laid_out_on_the_scene(table, tmp_path):
    from kmm_core.generation.timeline import Timeline

    same_fps = Timeline.from_dict({"fps": 24, "segments": [{"prompt": "a", "start": 10, "end": 33}]})
    assert table.rows_from_timeline(same_fps, 24, 1) == [table.Row("a", 10, 33)]
    other_fps = Timeline.from_dict({"fps": 30, "segments": [{"prompt": "a", "start": 10, "end": 39},
                                                            {"prompt": "b", "start": 40, "end": 69}]})
    assert table.rows_from_timeline(other_fps, 24, 1) == [table.Row("a", 10, 33), table.Row("b", 34, 57)]
    durations = Timeline.from_dict({"segments": [{"prompt": "a", "seconds": 1.5}]})
    assert table.rows_from_timeline(durations, 24, 100) == [table.Row("a", 100, 135)]
    path = table.export_rows([table.Row("a", 1, 24)], 24, tmp_path / "t.json")
    assert table.import_rows(path, 24, 1) == [table.Row("a", 1, 24)]


def test_the_table_is_validated_once_per_edit_not_once_per_drawn_row(table, monkeypatch):
    """The panel asks for the problems once per drawn row: only a changed table is validated again."""
    Row = table.Row
    calls = []
    real = table.Timeline.from_dict
    monkeypatch.setattr(table.Timeline, "from_dict", lambda data: calls.append(1) or real(data))
    rows = [Row("walk", 1, 60), Row("wave", 61, 120), Row("", 121, 180)]
    first = table.row_problems(rows, 30)
    per_check = len(calls)
    assert per_check >= len(rows) and first == {2: "prompt: the prompt is empty"}
    for _drawn_row in range(len(rows) * 5):  # five redraws of every row
        assert table.row_problems(list(rows), 30) == first
    assert len(calls) == per_check  # no validation while nothing changed
    first[2] = "changed by a caller"  # a caller's copy: the kept result stays intact
    edited = [Row("walk", 1, 60), Row("wave", 61, 120), Row("sit", 121, 180)]
    assert table.row_problems(edited, 30) == {} and len(calls) > per_check  # an edit is validated again
    assert table.row_problems(rows, 30) == {2: "prompt: the prompt is empty"}
