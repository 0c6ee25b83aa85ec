# SPDX-License-Identifier: GPL-3.0-or-later
"""Timeline: both file formats, every validation rule with the place it names, and exact frame ranges."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from kmm_core.common.errors import KMMError
from kmm_core.generation.timeline import MAX_TOTAL_SECONDS, Segment, Timeline, TimelineError

OURS = {"fps": 30, "segments": [{"prompt": "a person walks forward", "seconds": 2.0},
                                {"prompt": "waves with the left hand", "frames": 45},
                                {"prompt": "sits down", "seconds": 1.5}]}


def _error(data, **limits) -> TimelineError:
    with pytest.raises(TimelineError) as caught:
        Timeline.from_dict(data, **limits)
    return caught.value


def test_our_format_reads_seconds_and_frames_at_the_stated_fps():
    timeline = Timeline.from_dict(OURS)
    assert timeline.fps == 30.0
    assert [s.frames for s in timeline.segments] == [60, 45, 45]
    assert timeline.prompts == ("a person walks forward", "waves with the left hand", "sits down")
    assert timeline.total_frames == 150
    assert timeline.total_seconds == pytest.approx(5.0)
    assert timeline.segment_seconds() == pytest.approx([2.0, 1.5, 1.5])
    assert timeline.start_frame is None


def test_explicit_start_end_are_inclusive_blender_frames():
    timeline = Timeline.from_dict({"fps": 24, "segments": [{"prompt": "walk", "start": 1, "end": 48},
                                                          {"prompt": "run", "start": 49, "end": 96}]})
    assert [(s.start, s.end, s.frames) for s in timeline.segments] == [(1, 48, 48), (49, 96, 48)]
    assert timeline.start_frame == 1
    assert timeline.segment_ranges() == [(0, 48), (48, 96)]


def test_flowmdm_format_is_20_fps_frames():
    timeline = Timeline.from_dict({"lengths": [40, 73, 120], "text": ["walk", "jump", "turn left"]})
    assert timeline.fps == 20.0
    assert [s.frames for s in timeline.segments] == [40, 73, 120]
    assert timeline.to_flowmdm() == {"lengths": [40, 73, 120], "text": ["walk", "jump", "turn left"]}


def test_to_dict_round_trips_both_duration_styles():
    for data in (OURS, {"fps": 25, "segments": [{"prompt": "a", "start": 10, "end": 29},
                                               {"prompt": "b", "start": 30, "end": 34}]}):
        timeline = Timeline.from_dict(data)
        again = Timeline.from_dict(json.loads(timeline.to_json()))
        assert again == timeline
        assert again.segments == timeline.segments


def test_json_and_toml_files_read_the_same_timeline(tmp_path):
    json_path = tmp_path / "t.json"
    json_path.write_text(json.dumps(OURS), encoding="utf-8")
    toml_path = tmp_path / "t.toml"
    toml_path.write_text('fps = 30\n\n[[segments]]\nprompt = "a person walks forward"\nseconds = 2.0\n\n'
                         '[[segments]]\nprompt = "waves with the left hand"\nframes = 45\n\n'
                         '[[segments]]\nprompt = "sits down"\nseconds = 1.5\n', encoding="utf-8")
    flow_path = tmp_path / "flow.toml"
    flow_path.write_text('lengths = [40, 60]\ntext = ["walk", "run"]\n', encoding="utf-8")
    assert Timeline.from_file(json_path) == Timeline.from_file(toml_path) == Timeline.from_dict(OURS)
    assert Timeline.from_file(flow_path).prompts == ("walk", "run")


@pytest.mark.parametrize("segment, field, words", [
    ({"prompt": "   ", "seconds": 1.0}, "prompt", "empty"),
    ({"prompt": 7, "seconds": 1.0}, "prompt", "string"),
    ({"seconds": 1.0}, "prompt", "missing"),
    ({"prompt": "walk", "seconds": 0.0}, "seconds", "positive"),
    ({"prompt": "walk", "seconds": -2}, "seconds", "positive"),
    ({"prompt": "walk", "seconds": "2"}, "seconds", "number"),
    ({"prompt": "walk", "seconds": float("nan")}, "seconds", "number"),
    ({"prompt": "walk", "frames": 12.0}, "frames", "whole"),
    ({"prompt": "walk", "frames": True}, "frames", "whole"),
    ({"prompt": "walk", "frames": 0}, "frames", "positive"),
    ({"prompt": "walk", "frames": 5}, "frames", "shortest segment is 0.2 s (6 frames at 30 fps)"),
    ({"prompt": "walk", "seconds": 0.15}, "seconds", "shortest"),
    ({"prompt": "walk"}, "seconds", "missing a duration"),
    ({"prompt": "walk", "seconds": 1, "frames": 30}, "frames", "only one"),
    ({"prompt": "walk", "end": 30}, "end", "needs 'start'"),
    ({"prompt": "walk", "start": 30, "end": 10}, "end", "before its start"),
    ({"prompt": "walk", "start": 1.5, "frames": 30}, "start", "whole frame"),
    ({"prompt": "walk", "seconds": 1, "speed": 2}, "speed", "unknown key"),
])
def test_segment_errors_name_index_and_field(segment, field, words):
    good = {"prompt": "stand still", "seconds": 1.0}
    error = _error({"fps": 30, "segments": [good, segment]})
    assert (error.segment, error.field) == (1, field)
    assert words in error.reason
    assert str(error).startswith(f"segments[1].{field}: ")
    assert isinstance(error, KMMError)


def test_gaps_and_overlaps_between_explicit_frames_are_refused():
    gap = _error({"segments": [{"prompt": "a", "start": 1, "end": 20}, {"prompt": "b", "start": 25, "end": 40}]})
    assert (gap.segment, gap.field) == (1, "start") and "gap of 4 frame(s)" in gap.reason
    overlap = _error({"segments": [{"prompt": "a", "start": 1, "end": 20}, {"prompt": "b", "start": 15, "end": 40}]})
    assert (overlap.segment, overlap.field) == (1, "start") and "overlap by 6 frame(s)" in overlap.reason
    mixed = _error({"segments": [{"prompt": "a", "start": 1, "end": 20}, {"prompt": "b", "frames": 20}]})
    assert (mixed.segment, mixed.field) == (1, "start")


def test_timeline_level_errors():
    assert _error({"fps": 0, "segments": [{"prompt": "a", "frames": 10}]}).field == "fps"
    assert _error({"fps": "30", "segments": [{"prompt": "a", "frames": 10}]}).field == "fps"
    assert _error({"segments": []}).reason == "the timeline has no segments"
    assert _error({"segments": {"prompt": "a"}}).field == "segments"
    assert _error({"segments": ["walk"]}).segment == 0
    assert _error({"segments": [], "title": "x"}).field == "title"
    assert "expected a 'segments' list" in _error({"prompts": []}).reason
    assert "must be an object" in _error([1, 2]).reason


def test_total_length_limit_is_configurable():
    eleven_minutes = {"segments": [{"prompt": "walk", "seconds": 330.0}, {"prompt": "run", "seconds": 330.0}]}
    error = _error(eleven_minutes)
    assert error.field == "segments" and f"{MAX_TOTAL_SECONDS:g} s" in error.reason
    assert Timeline.from_dict(eleven_minutes, max_total_seconds=700).total_seconds == pytest.approx(660)


def test_minimum_segment_length_is_configurable():
    short = {"fps": 20, "segments": [{"prompt": "hop", "frames": 4}]}
    assert Timeline.from_dict(short).total_frames == 4  # exactly one token is allowed by default
    error = _error(short, min_segment_seconds=0.4)
    assert "shortest segment is 0.4 s (8 frames at 20 fps)" in error.reason


def test_flowmdm_errors_name_the_list_entry():
    assert str(_error({"lengths": [40, 60], "text": ["walk", ""]})).startswith("text[1]: ")
    assert str(_error({"lengths": [40, 3], "text": ["walk", "run"]})).startswith("lengths[1]: ")
    assert _error({"lengths": [40], "text": ["walk", "run"]}).field == "text"
    assert _error({"lengths": [40]}).field == "text"


def test_direct_construction_validates_too():
    with pytest.raises(TimelineError, match=r"segments\[0\]\.prompt"):
        Timeline([Segment("", 20)])
    with pytest.raises(TimelineError, match=r"segments\[0\]\.frames"):
        Timeline([Segment("walk", 2)])
    with pytest.raises(TimelineError, match="gap"):
        Timeline([Segment("walk", 20, start=0), Segment("run", 20, start=21)])


def test_file_errors_name_file_and_line(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(TimelineError, match="missing.json: file not found"):
        Timeline.from_file(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "fps": 30,\n  "segments": [\n    {"prompt": "walk" "seconds": 2}\n  ]\n}\n')
    with pytest.raises(TimelineError) as caught:
        Timeline.from_file(broken)
    assert caught.value.line == 4 and "broken.json, line 4: invalid JSON" in str(caught.value)
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text('fps = 30\n[[segments]]\nprompt = "walk\n')
    with pytest.raises(TimelineError) as caught:
        Timeline.from_file(broken_toml)
    assert caught.value.line == 3 and caught.value.path == str(broken_toml)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"segments": [{"prompt": "walk", "seconds": 2}, {"prompt": " ", "seconds": 2}]}))
    with pytest.raises(TimelineError) as caught:
        Timeline.from_file(invalid)
    assert str(caught.value).startswith(f"{invalid}: segments[1].prompt: ")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"segments": [\n{"prompt": "caf\xe9", "seconds": 2}]}')
    with pytest.raises(TimelineError, match="line 2: not UTF-8"):
        Timeline.from_file(latin1)
    with pytest.raises(TimelineError, match="use .json or .toml"):
        Timeline.from_file(tmp_path / "timeline.yaml")


@pytest.mark.parametrize("fps", [20, 24, 25, 29.97, 30, 60, 7.5])
def test_segment_ranges_have_exact_lengths_at_any_fps(fps):
    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": f"p{i}", "frames": n}
                                                           for i, n in enumerate([7, 13, 31, 6, 50, 11])]})
    ranges = timeline.segment_ranges(fps)
    assert ranges[0][0] == 0
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False))
    assert all(end > start for start, end in ranges)
    # The total is the rounded total duration, not a sum of independently rounded (drifting) lengths.
    total = Fraction(timeline.total_frames) * Fraction(fps) / 30
    assert ranges[-1][1] == int(total + Fraction(1, 2))
    for (_, end), cumulative_seconds in zip(ranges, [7, 20, 51, 57, 107, 118], strict=True):
        assert abs(end - Fraction(cumulative_seconds) * Fraction(fps) / 30) <= Fraction(1, 2)


def test_to_model_frames_keeps_at_least_one_token_per_segment():
    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": f"p{i}", "seconds": s}
                                                           for i, s in enumerate([0.2, 0.23, 0.2, 1.77, 0.2])]})
    frames = timeline.to_model_frames()
    assert sum(frames) == round(timeline.total_seconds * 20)
    assert min(frames) >= 4


def test_segment_ranges_refuse_an_fps_that_empties_a_segment():
    timeline = Timeline.from_dict({"segments": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4}]})
    with pytest.raises(TimelineError, match="no frames"):
        timeline.segment_ranges(1.0)
    with pytest.raises(TimelineError):
        timeline.segment_ranges(0)


def test_single_prompt_helper():
    timeline = Timeline.single("a person jumps", 3.0)
    assert timeline.fps == 20.0 and timeline.total_frames == 60 and timeline.prompts == ("a person jumps",)
