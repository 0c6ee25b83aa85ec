# SPDX-License-Identifier: GPL-3.0-or-later
"""Edits of a foot-locked take get the fresh take's clean-up (kmm_core/generation/edit_cleanup.py): new frames with
held feet, kept frames bit-identical, a regenerated part on a path follows it; `kmm edit` writes such a take."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.cli import main
from kmm_core.common.boolean_runs import true_runs
from kmm_core.evaluation.motion_quality import foot_skating
from kmm_core.generation import editing
from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.generation.edit_cleanup import part_weights
from kmm_core.generation.paths import path_spans
from kmm_core.generation.timeline import Timeline
from kmm_core.motion.foot_contact import CONTACT_JOINTS
from kmm_core.motion.kinematics import forward_kinematics
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.skeleton import PARENTS

ARRAYS = ("joints", "root_translation", "local_rotations", "foot_contacts")
TIMELINE = {"fps": 30, "segments": [{"prompt": "a person walks forward", "seconds": 3.0},
                                    {"prompt": "a person walks in a circle", "seconds": 3.0},
                                    {"prompt": "a person waves with the right hand", "seconds": 2.0}]}
RAW = GenerationOptions(foot_lock=False)


@pytest.fixture(scope="module")
def source(shipped_bundle, tmp_path_factory):
    from kmm_core.generation.timeline_generator import generate_timeline

    (motion,) = generate_timeline(shipped_bundle, Timeline.from_dict(TIMELINE), seed=5)
    assert motion.foot_lock
    return MotionResult.load(motion.save(tmp_path_factory.mktemp("edit_cleanup") / "source.npz"))


def _same(a: MotionResult, b: MotionResult, a_slice: slice, b_slice: slice) -> bool:
    return all(np.array_equal(getattr(a, key)[a_slice], getattr(b, key)[b_slice]) for key in ARRAYS)


def _largest_drift(motion: MotionResult, first: int, last: int) -> float:
    """How far a held joint moves over a contact that lies within frames [first, last)."""
    worst = 0.0
    for column, joint in enumerate(CONTACT_JOINTS):
        for start, end in true_runs(motion.foot_contacts[:, column]):
            start, end = max(start, first), min(end, last)
            if end - start > 1:
                drift = np.linalg.norm(motion.joints[start:end, joint] - motion.joints[start, joint], axis=-1)
                worst = max(worst, float(drift.max()))
    return worst


def test_part_weights_fade_only_at_edges_that_meet_kept_frames():
    both = part_weights(10, 3, True, True)
    assert both[0] == both[-1] and 0 < both[0] < both[1] < both[2] < both[3] == 1.0
    assert np.all(part_weights(10, 3, False, True)[:7] == 1.0) and part_weights(10, 3, False, True)[-1] < 1
    assert np.all(part_weights(6, 0, True, True) == 1.0)


def test_regenerated_segment_is_cleaned_like_a_fresh_take_and_the_rest_stays_bit_identical(shipped_bundle, source):
    start, end = (int(v) for v in source.segment_frames[1])
    (cleaned,) = editing.regenerate(shipped_bundle, source, segment=1, prompt="a person jogs forward", seed=3)
    (raw,) = editing.regenerate(shipped_bundle, source, segment=1, prompt="a person jogs forward", seed=3, options=RAW)
    assert _same(cleaned, source, slice(0, start), slice(0, start))
    assert _same(cleaned, source, slice(end, None), slice(end, None))
    assert cleaned.foot_lock and not raw.foot_lock  # as recorded: the source was foot-locked
    assert cleaned.foot_contacts[start:end].any()
    # Inside the part, beyond the cross-fade margin, held feet stay within 1 cm and every bone has its rest length.
    blend = round(editing.BLEND_SECONDS * source.fps)
    assert _largest_drift(cleaned, start + blend, end - blend) < 0.01
    inner = slice(start + blend, end - blend)
    posed = forward_kinematics(cleaned.root_translation[inner], cleaned.local_rotations[inner], cleaned.rest_offsets)
    np.testing.assert_allclose(posed, cleaned.joints[inner], atol=1e-4)
    bones = np.linalg.norm(posed[:, 1:] - posed[:, list(PARENTS[1:])], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(np.linalg.norm(cleaned.rest_offsets[1:], axis=-1),
                                                      bones.shape), atol=1e-4)
    # The clean-up removes sliding the raw regenerated part has (0.33 vs 0.48 here: a jog slides where the body
    # glides), and the part still meets the kept frames without a jump: across each seam no joint moves further
    # than the source moved it between the same two frames (a swinging foot moves 15 cm a frame at 30 fps), with a
    # quarter on top, or 5 cm where the source stood.
    skating = foot_skating(cleaned.joints[start:end], source.fps).skating_ratio
    assert skating < foot_skating(raw.joints[start:end], source.fps).skating_ratio
    for frame, neighbour in ((start, start - 1), (end - 1, end)):
        own_step = np.abs(source.joints[frame] - source.joints[neighbour]).max()
        assert np.abs(cleaned.joints[frame] - cleaned.joints[neighbour]).max() < max(0.05, 1.25 * own_step)


def test_continue_and_inbetween_of_a_locked_take_are_cleaned(shipped_bundle, source):
    total = source.num_frames
    (longer,) = editing.continue_motion(shipped_bundle, source, "a person walks backwards", 2.0, seed=1)
    assert longer.foot_lock and _same(longer, source, slice(0, total), slice(0, total))
    assert longer.foot_contacts[total:].any()
    assert _largest_drift(longer, total + round(editing.BLEND_SECONDS * source.fps), longer.num_frames) < 0.01
    (joined,) = editing.inbetween(shipped_bundle, source, longer, 1.0, seed=2)
    assert joined.foot_lock and _same(joined, source, slice(0, total), slice(0, total))
    assert _same(joined, longer, slice(total + 30, None), slice(0, None))
    (unlocked,) = editing.continue_motion(shipped_bundle, source, "a person walks backwards", 2.0, seed=1,
                                          options=RAW)
    assert not unlocked.foot_lock and not unlocked.foot_contacts.any()


def test_a_regenerated_segment_on_a_path_follows_it(shipped_bundle):
    from kmm_core.generation.timeline_generator import generate_timeline

    timeline = Timeline.from_dict({"fps": 30, "segments": [
        {"prompt": "a person walks forward", "seconds": 5.0, "path": [[0.0, 0.0], [0.0, 2.5], [2.5, 2.5]]},
        {"prompt": "a person waves with the right hand", "seconds": 2.0}]})
    (source,) = generate_timeline(shipped_bundle, timeline, seed=2)
    (start, end, path), = path_spans(timeline)
    (edited,) = editing.regenerate(shipped_bundle, source, segment=0, prompt="a person jogs forward", seed=4)
    position, _ = path.sample(np.arange(end - start) / 30.0, (end - start) / 30.0)
    error = np.linalg.norm(edited.joints[start:end, 0, [0, 2]] - position, axis=-1)
    assert error.mean() <= 0.10
    assert json.loads(edited.timeline_json)["segments"][0]["path"]["points"][-1] == [2.5, 2.5]
    assert _same(edited, source, slice(end, None), slice(end, None))


def test_kmm_edit_writes_a_cleaned_take(source, tmp_path):
    path = tmp_path / "source.npz"
    source.save(path)
    out = tmp_path / "edited.npz"
    assert main(["edit", str(path), "--segment", "1", "--seed", "3", "--device", "cpu", "--quiet",
                 "-o", str(out)]) == 0
    edited = MotionResult.load(out)
    start, end = (int(v) for v in source.segment_frames[1])
    assert edited.foot_lock and edited.foot_contacts[start:end].any()
    assert _same(edited, source, slice(0, start), slice(0, start))
    assert _same(edited, source, slice(end, None), slice(end, None))
