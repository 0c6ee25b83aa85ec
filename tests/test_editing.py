# SPDX-License-Identifier: GPL-3.0-or-later
"""Editing with the tiny trained bundle: kept frames stay bit-identical, new frames join the kept ones smoothly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.generation import editing
from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.motion.motion_result import MotionResult

FAST = GenerationOptions(steps=2)
ARRAYS = ("joints", "root_translation", "local_rotations")


@pytest.fixture(scope="module")
def bundle(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def source(bundle, tmp_path_factory):
    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": "a person walks forward", "seconds": 2.0},
                                                           {"prompt": "a person jumps", "frames": 45},
                                                           {"prompt": "a person turns around", "seconds": 2.0}]})
    # Raw decoded motion: the continuity checks below compare the model's continuation with the frames it continues
    # (edits do not re-run the foot-contact cleanup, which moves the pelvis and feet of a locked source).
    (motion,) = generate_timeline(bundle, timeline, seed=5, options=GenerationOptions(steps=2, foot_lock=False))
    # Through a file, as the worker receives it.
    return MotionResult.load(motion.save(tmp_path_factory.mktemp("edit") / "source.npz"))


def _same(a: MotionResult, b: MotionResult, a_slice: slice, b_slice: slice) -> bool:
    return all(np.array_equal(getattr(a, key)[a_slice], getattr(b, key)[b_slice]) for key in ARRAYS)


def test_regenerate_segment_keeps_every_other_frame_bit_identical(bundle, source):
    start, end = (int(v) for v in source.segment_frames[1])
    first, second = editing.regenerate(bundle, source, segment=1, prompt="a person kicks", seed=9, variations=2,
                                       options=FAST)
    for edited in (first, second):
        assert edited.num_frames == source.num_frames and edited.fps == source.fps
        assert _same(edited, source, slice(0, start), slice(0, start))
        assert _same(edited, source, slice(end, None), slice(end, None))
        assert np.array_equal(edited.segment_frames, source.segment_frames)
        assert edited.segment_prompts == ("a person walks forward", "a person kicks", "a person turns around")
        assert [s["prompt"] for s in json.loads(edited.timeline_json)["segments"]][1] == "a person kicks"
    assert not np.array_equal(first.joints[start:end], source.joints[start:end])
    assert not np.array_equal(first.joints[start:end], second.joints[start:end])
    # The edited part meets the kept motion without a jump (a cross-fade inside the part).
    for frame in (start, end - 1):
        neighbour = frame - 1 if frame == start else frame + 1
        assert np.abs(first.joints[frame] - first.joints[neighbour]).max() < 0.25
    again = editing.regenerate(bundle, source, segment=1, prompt="a person kicks", seed=9, options=FAST)[0]
    assert np.array_equal(again.joints, first.joints)


def test_regenerate_frame_range_keeps_prompts_and_outside_frames(bundle, source):
    (edited,) = editing.regenerate(bundle, source, frame_range=(20, 50), seed=2, options=FAST)
    assert _same(edited, source, slice(0, 20), slice(0, 20)) and _same(edited, source, slice(50, None),
                                                                        slice(50, None))
    assert not np.array_equal(edited.joints[20:50], source.joints[20:50])
    assert edited.segment_prompts == source.segment_prompts and edited.timeline_json == source.timeline_json


def test_continue_appends_exact_length_after_an_untouched_source(bundle, source):
    (longer,) = editing.continue_motion(bundle, source, "a person sits down", 1.5, seed=1, options=FAST)
    total = source.num_frames
    assert longer.num_frames == total + 45
    assert _same(longer, source, slice(0, total), slice(0, total))
    assert longer.segment_frames[-1].tolist() == [total, total + 45]
    assert longer.segment_prompts[-1] == "a person sits down"
    assert json.loads(longer.timeline_json)["segments"][-1] == {"prompt": "a person sits down", "frames": 45}
    assert np.linalg.norm(longer.root_translation[total] - source.root_translation[-1]) < 0.25


def test_inbetween_joins_source_and_target(bundle, source):
    target = editing.regenerate(bundle, source, segment=0, seed=4, options=FAST)[0]
    (joined,) = editing.inbetween(bundle, source, target, 1.0, seed=3, options=FAST)
    total, gap = source.num_frames, 30
    assert joined.num_frames == total + gap + target.num_frames
    assert _same(joined, source, slice(0, total), slice(0, total))
    assert _same(joined, target, slice(total + gap, None), slice(0, None))
    assert joined.segment_prompts[len(source.segment_prompts)] == editing.TRANSITION_PROMPT
    # The gap starts near the source's last pose and ends near the target's first.
    assert np.linalg.norm(joined.root_translation[total] - source.root_translation[-1]) < 0.25
    assert np.linalg.norm(joined.root_translation[total + gap - 1] - target.root_translation[0]) < 0.25


def test_bad_edits_name_the_field(bundle, source):
    with pytest.raises(editing.EditError, match="segment: the source has 3 segment"):
        editing.regenerate(bundle, source, segment=7, options=FAST)
    with pytest.raises(editing.EditError, match=r"frame_range: \[100, 900\)"):
        editing.regenerate(bundle, source, frame_range=(100, 900), options=FAST)
    with pytest.raises(editing.EditError, match="seconds"):
        editing.continue_motion(bundle, source, "walk", 0.0001, options=FAST)


@pytest.fixture
def whole_kinds(bundle, monkeypatch):
    """The prompts' kinds given outright (a walk wholly a straight walk, anything else none): the tiny model's few
    captions make its walks' shares partial; tests/test_prompt_kinds.py measures the shipped model's."""
    from kmm_core.generation.prompt_kinds import PromptKinds
    from kmm_core.humanml3d.motion_kind import MotionKind

    monkeypatch.setattr(PromptKinds, "of", lambda self, prompts: [
        MotionKind(1.0, 1.0, 0.0) if prompt == "a person walks forward" else MotionKind() for prompt in prompts])
    monkeypatch.setattr(bundle, "_prompt_kinds", None, raising=False)  # loaded again, with the kinds above


def test_a_regenerated_walk_takes_the_walk_guidance(bundle, source, whole_kinds):
    """Regenerating a segment guides it by its new prompt's kind: a walk at `walk_guidance_factor` of the scale
    (here 0, no guidance: the tiny model's walks change only without it), a jump as every other prompt."""
    unguided_walks = GenerationOptions(steps=2, walk_guidance_factor=0.0)
    start, end = (int(v) for v in source.segment_frames[1])

    def regenerated(prompt, options):
        return editing.regenerate(bundle, source, segment=1, prompt=prompt, seed=9, options=options)[0].joints

    assert not np.array_equal(regenerated("a person walks forward", unguided_walks)[start:end],
                              regenerated("a person walks forward", FAST)[start:end])
    np.testing.assert_array_equal(regenerated("a person jumps up", unguided_walks),
                                  regenerated("a person jumps up", FAST))


def test_a_regenerated_straight_walk_keeps_the_better_stepping_candidate(bundle, source, monkeypatch, whole_kinds):
    """Regenerate Segment with a straight walk draws the bundle's `steady_walk_candidates` of it (here 3) and scores
    each over the frames it draws only (its fixed neighbours decoded with it, not measured); the frames outside the
    segment stay bit-identical, a jump draws one, and one candidate decodes as before."""
    from kmm_core.generation import decoding_engine, walk_candidates

    measured = []

    def recording(bundle_, rows, drawn=None):
        score = walk_candidates.stride_score(bundle_, rows, drawn)

        def record(codes, which):
            measured.append((drawn, list(which)))
            return score(codes, which)
        return record

    monkeypatch.setattr(decoding_engine, "stride_score", recording)
    start, end = (int(v) for v in source.segment_frames[1])

    def regenerated(prompt, count):
        options = GenerationOptions(steps=2, walk_candidates=count)
        return editing.regenerate(bundle, source, segment=1, prompt=prompt, seed=9, options=options)[0]

    three = regenerated("a person walks forward", 3)
    ((drawn, which),) = measured  # one window of the whole take, its one row in three candidates
    (first, last), = drawn  # measured: the segment's tokens (20 fps frames)
    assert which == [0, 0, 0]
    assert first == start * 20 / 30 and end * 20 / 30 <= last <= end * 20 / 30 + 4 < source.num_frames * 20 / 30
    assert _same(three, source, slice(0, start), slice(0, start)) and _same(three, source, slice(end, None),
                                                                            slice(end, None))
    one = regenerated("a person walks forward", 1)
    np.testing.assert_array_equal(one.joints, editing.regenerate(bundle, source, segment=1,
                                                                 prompt="a person walks forward", seed=9,
                                                                 options=FAST)[0].joints)
    np.testing.assert_array_equal(regenerated("a person jumps up", 3).joints, regenerated("a person jumps up", 1).joints)
    assert len(measured) == 1  # neither one candidate nor a jump drew more
