# SPDX-License-Identifier: GPL-3.0-or-later
"""Keyed rotations held by a retargeted take (kmm_core/retarget/held_rotations.py): on a real HumanML3D take put on
the KMM skeleton with random bone rolls, a keyed 40-degree hand bend and a 50-degree upper-arm twist are met at
their frame to a fraction of a degree, the twist moves no joint, the correction fades out around the frame, and the
result does not depend on the bones' rolls."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kmm_core.motion.rotations import quat_to_matrix
from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.retarget.held_rotations import HOLD_SECONDS, HeldRotationError, hold_keyed_rotations
from kmm_core.retarget.name_matching import detect_bone_map
from kmm_core.retarget.target_skeleton import canonical_target_skeleton
from kmm_core.retarget.transfer import retarget, source_from_positions

KEY = 60


def _rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    half = np.radians(degrees) / 2
    return quat_to_matrix(np.concatenate([[np.cos(half)], np.sin(half) * axis]))


def _random_rolls(count: int, seed: int) -> np.ndarray:
    quaternions = np.random.default_rng(seed).normal(size=(count, 4))
    return quat_to_matrix(quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True))


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1.0, 1.0))))


@pytest.fixture(scope="module")
def take(humanml3d_fixture_dir):
    joints = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy").astype(np.float64)
    return source_from_positions(joints, 20.0)


def _retargeted(take, seed):
    skeleton = canonical_target_skeleton()
    skeleton = replace(skeleton, rest_rotations=_random_rolls(len(skeleton.bone_names), seed))
    bone_map = detect_bone_map(skeleton.bone_names, skeleton.parents, skeleton.rest_heads_metres(), "kmm")
    return retarget(take, skeleton, bone_map)


def _keys(motion):
    """The take's own pose at KEY with the left hand bent 40 degrees and the left upper arm twisted 50 degrees,
    as Blender gives a keyed pose: armature-space bone matrices (the bones' own rest axes turned)."""
    index = motion.skeleton.index
    wrist, shoulder = index["left_wrist"], index["left_shoulder"]
    rest = motion.skeleton.rest_rotations
    bent = _rotation([0.0, 0.0, 1.0], 40.0) @ motion.deltas[KEY, wrist]
    arm = motion.joint_points()[KEY, JOINT_INDEX["left_elbow"]] - motion.heads[KEY, shoulder]
    twisted = _rotation(arm, 50.0) @ motion.deltas[KEY, shoulder]
    return {"left_wrist": bent @ rest[wrist], "left_shoulder": twisted @ rest[shoulder]}, bent, twisted


def test_a_keyed_hand_bend_and_arm_twist_are_met_at_their_frame(take):
    motion = _retargeted(take, 1)
    keys, bent, twisted = _keys(motion)
    before = motion.deltas.copy()
    index = motion.skeleton.index
    wrist, shoulder, elbow = index["left_wrist"], index["left_shoulder"], index["left_elbow"]
    assert _angle(before[KEY, wrist], bent) > 39 and _angle(before[KEY, shoulder], twisted) > 49
    held = hold_keyed_rotations(motion, [(KEY, keys)])
    assert held == ["left_shoulder", "left_wrist"]
    assert _angle(motion.deltas[KEY, wrist], bent) < 0.5
    assert _angle(motion.deltas[KEY, shoulder], twisted) < 0.5
    # the twist turns the upper arm about itself: the elbow stays where the take put it
    rest = motion.plan.rest_heads
    elbow_head = motion.heads[:, shoulder] + np.einsum("tij,j->ti", motion.deltas[:, shoulder],
                                                       rest[elbow] - rest[shoulder])
    assert np.abs(elbow_head - motion.heads[:, elbow]).max() < 1e-6
    # faded out: unchanged beyond the window, part of the way inside it, untouched bones untouched
    window = int(np.ceil(HOLD_SECONDS * motion.fps))
    assert np.allclose(motion.deltas[KEY + window + 1:], before[KEY + window + 1:])
    assert np.allclose(motion.deltas[:KEY - window], before[:KEY - window])
    halfway = _angle(motion.deltas[KEY + window // 2, wrist], before[KEY + window // 2, wrist])
    assert 5.0 < halfway < 35.0
    others = [b for b in range(motion.deltas.shape[1]) if b not in (wrist, shoulder)]
    assert np.array_equal(motion.deltas[:, others], before[:, others])


def test_the_held_pose_does_not_depend_on_the_bones_rolls(take):
    first, second = _retargeted(take, 1), _retargeted(take, 2)
    assert np.allclose(first.deltas, second.deltas, atol=1e-9)  # the transfer itself is roll-free
    keys, rolled = _keys(first)[0], _rolled_keys(first, second)
    hold_keyed_rotations(first, [(KEY, keys)])
    hold_keyed_rotations(second, [(KEY, rolled)])
    assert np.allclose(first.deltas, second.deltas, atol=1e-9)


def _rolled_keys(first, second):
    """`first`'s keyed world orientations written in `second`'s bone axes (another roll, the same pose)."""
    keys, bent, twisted = _keys(first)
    rest = second.skeleton.rest_rotations
    index = second.skeleton.index
    return {"left_wrist": bent @ rest[index["left_wrist"]], "left_shoulder": twisted @ rest[index["left_shoulder"]]}


def test_a_keyed_rotation_that_is_not_a_number_is_refused_by_bone(take):
    motion = _retargeted(take, 1)
    with pytest.raises(HeldRotationError, match="left_wrist"):
        hold_keyed_rotations(motion, [(KEY, {"left_wrist": np.full((3, 3), np.nan)})])
