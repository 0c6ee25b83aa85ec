# SPDX-License-Identifier: GPL-3.0-or-later
"""Hands that bear weight rest on the floor (kmm_core/motion/hand_support.py): on real clips (DeepMimic's crawl,
whose wrists hover 5-21 cm, is put on its hands; walks, runs, jumps, kicks, squats, a backflip and a get-up from the
back keep theirs) and on a take the shipped model generates."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from kmm_core.evaluation.action_checks import run_check
from kmm_core.motion import take_cleanup
from kmm_core.motion.hand_support import ARMS, hands_planted_motion, plant_hands, support_weights
from kmm_core.motion.kinematics import forward_kinematics
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.skeleton import JOINT_INDEX, tpose_offsets
from tests.motion_test_data import standing_pose

ARM_JOINTS = sorted({joint for arm in ARMS for joint in arm[1:]})
UPRIGHT = ("deepmimic/walk", "deepmimic/run", "deepmimic/jump", "deepmimic/kick", "deepmimic/spin",
           "deepmimic/dance_a", "deepmimic/backflip", "deepmimic/getup_faceup", "hdm05/hopBothLegs1hops",
           "hdm05/squat1Reps", "hdm05/kickLFront1Reps", "hdm05/sneak2StepsLStart", "hdm05/jogLeftCircle4StepsRstart")


WRISTS = [JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]]


def _wrist_heights(joints: np.ndarray) -> np.ndarray:
    """(T, 2) each wrist's height over the floor the rest of the body stands on (a low percentile of each frame's
    lowest other joint)."""
    others = np.delete(joints, WRISTS, axis=1)
    return joints[:, WRISTS, 1] - np.percentile(others[:, :, 1].min(axis=1), 5)


def _lower_wrist(joints: np.ndarray) -> np.ndarray:
    """(T,) the lower wrist's height over that floor."""
    return _wrist_heights(joints).min(axis=1)


def test_a_real_crawl_is_put_on_its_hands(real_action_clips):
    offsets = tpose_offsets()
    for crawl in real_action_clips["deepmimic/crawl"]:
        assert np.all(support_weights(crawl) > 0.5)  # on hands and knees the whole clip
        planted = plant_hands(crawl, MODEL_FPS, offsets)
        assert np.median(_lower_wrist(crawl)) > 0.08
        assert np.median(_lower_wrist(planted)) < 0.06
        assert run_check("crawl", planted).value < run_check("crawl", crawl).value
        others = [joint for joint in range(crawl.shape[1]) if joint not in ARM_JOINTS]
        np.testing.assert_array_equal(planted[:, others], crawl[:, others])  # only elbows and wrists move
        for shoulder, elbow, wrist in ARMS:
            moved = np.abs(planted[:, wrist] - crawl[:, wrist]).max(axis=1) > 1e-6
            assert moved.any()
            np.testing.assert_allclose(np.linalg.norm(planted[moved, elbow] - planted[moved, shoulder], axis=1),
                                       np.linalg.norm(offsets[elbow]), atol=1e-9)
            np.testing.assert_allclose(np.linalg.norm(planted[moved, wrist] - planted[moved, elbow], axis=1),
                                       np.linalg.norm(offsets[wrist]), atol=1e-9)


@pytest.mark.parametrize("content", UPRIGHT)
def test_a_body_off_its_hands_keeps_them(real_action_clips, content):
    for joints in real_action_clips[content]:
        np.testing.assert_array_equal(plant_hands(joints, MODEL_FPS, tpose_offsets()), joints)


def test_a_standing_pose_bears_no_weight_on_its_hands():
    pose = np.repeat(np.asarray(standing_pose())[None], 10, axis=0)
    assert np.all(support_weights(pose) == 0.0)


def test_the_planted_motion_is_what_its_rotations_show(real_action_clips):
    (crawl, *_) = real_action_clips["deepmimic/crawl"]
    motion = MotionResult.from_joints(crawl, MODEL_FPS)
    planted = hands_planted_motion(motion)
    np.testing.assert_allclose(planted.joints, forward_kinematics(planted.root_translation, planted.local_rotations,
                                                                  planted.rest_offsets), atol=1e-6)
    assert np.median(_lower_wrist(planted.joints)) < np.median(_lower_wrist(motion.joints)) - 0.02
    legs = [JOINT_INDEX[name] for name in ("pelvis", "left_ankle", "right_ankle", "head")]
    shown = forward_kinematics(motion.root_translation, motion.local_rotations, motion.rest_offsets)
    np.testing.assert_allclose(planted.joints[:, legs], shown[:, legs], atol=1e-6)
    walk = MotionResult.from_joints(real_action_clips["deepmimic/walk"][0], MODEL_FPS)
    assert hands_planted_motion(walk) is walk


def test_generation_puts_a_crawlers_hands_on_the_floor(shipped_bundle):
    """The shipped model's "a baby-like crawl forward" (seed 0) hovers its hands over the floor as decoded (the
    crawl check fails: the higher wrist above 0.2 m); generated as the product does, they are down, it passes, and a
    hand down stays on its spot while the body crawls on."""
    from kmm_core.generation import timeline_generator
    from kmm_core.generation.timeline import Timeline

    timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": "a baby-like crawl forward",
                                                                    "start": 1, "end": 100}]})
    generated = timeline_generator.generate_timeline(shipped_bundle, timeline, seed=0)[0].joints
    with mock.patch.object(take_cleanup, "hands_planted_motion", lambda motion: motion):
        hovering = timeline_generator.generate_timeline(shipped_bundle, timeline, seed=0)[0].joints
    assert not run_check("crawl", hovering).passed
    assert run_check("crawl", generated).passed
    assert np.median(_lower_wrist(generated)) < np.median(_lower_wrist(hovering)) - 0.03
    # a hand down on the floor stays on its spot while the body crawls on over it
    speed = np.linalg.norm(np.diff(generated[:, WRISTS][:, :, [0, 2]], axis=0), axis=-1) * MODEL_FPS
    down = _wrist_heights(generated)[1:] < 0.08
    assert down.mean() > 0.4 and np.median(speed[down]) < 0.02
    pelvis = np.linalg.norm(np.diff(generated[:, JOINT_INDEX["pelvis"], [0, 2]], axis=0), axis=-1) * MODEL_FPS
    assert np.median(pelvis) > 0.15


def test_a_looped_crawl_keeps_its_hands_down_across_the_wrap(shipped_bundle):
    """A loop is cleaned as three repetitions, the middle kept: its hands are down as a fresh take's are, a hand the
    decoder put through the floor brought up onto it (`tests/test_loops.py` checks the wrap is no rougher than the
    motion's own steps)."""
    from kmm_core.generation import timeline_generator
    from kmm_core.generation.timeline import Timeline

    timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": "a baby-like crawl forward",
                                                                    "seconds": 3.0}], "loop": True})
    looped = timeline_generator.generate_timeline(shipped_bundle, timeline, seed=0)[0].joints
    with mock.patch.object(take_cleanup, "hands_planted_motion", lambda motion: motion):
        hovering = timeline_generator.generate_timeline(shipped_bundle, timeline, seed=0)[0].joints
    on_hands = support_weights(hovering) > 0.5
    assert on_hands.mean() > 0.5
    down, hovered = _lower_wrist(looped)[on_hands], _lower_wrist(hovering)[on_hands]
    near_floor = [float(np.mean((lower > -0.01) & (lower < 0.08))) for lower in (down, hovered)]
    assert near_floor[0] > max(0.65, near_floor[1] + 0.1)  # a hand down on the floor, not over it or through it
    assert np.percentile(hovered, 5) < -0.005 < np.percentile(down, 5)


@pytest.mark.parametrize("frames", [0, 1])
def test_a_take_too_short_to_lean_on_its_hands_is_returned_as_it_is(real_action_clips, frames):
    (crawl, *_) = real_action_clips["deepmimic/crawl"]
    np.testing.assert_array_equal(plant_hands(crawl[:frames], MODEL_FPS, tpose_offsets()), crawl[:frames])
