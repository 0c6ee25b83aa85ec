# SPDX-License-Identifier: GPL-3.0-or-later
"""Forward/inverse kinematics of the canonical skeleton on real HumanML3D and Bandai-Namco motion."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
from kmm_core.common.errors import KMMError
from kmm_core.motion import skeleton
from kmm_core.motion.kinematics import (
    BRANCH_JOINTS,
    CHILDREN,
    LEAF_JOINTS,
    fit_rest_offsets,
    forward_kinematics,
    inverse_kinematics,
    reaim_joints,
)
from kmm_core.motion.rotations import axis_angle_to_quat, quat_to_axis_angle

PARENTS = np.array(skeleton.PARENTS[1:])


@pytest.fixture(scope="module")
def humanml3d_joints(humanml3d_fixture_dir):
    return np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy").astype(np.float64)


@pytest.fixture(scope="module")
def walking_joints(bandai_namco_dir):
    path = bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data" / "dataset-2_walk_normal_001.bvh"
    return bvh_to_canonical_joints(read_bvh(path), builtin_joint_map("bandai_namco"))


def _angle_between_frames(quaternions: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) from each frame to the next, (T-1, J)."""
    dot = np.abs(np.sum(quaternions[1:] * quaternions[:-1], axis=-1))
    return np.degrees(2.0 * np.arccos(np.clip(dot, 0.0, 1.0)))


def test_round_trip_reproduces_humanml3d_joints_below_a_millimetre(humanml3d_joints):
    offsets = fit_rest_offsets(humanml3d_joints)
    root, rotations = inverse_kinematics(humanml3d_joints, offsets)
    error = np.linalg.norm(forward_kinematics(root, rotations, offsets) - humanml3d_joints, axis=-1)
    assert error.max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-9)


def test_default_tpose_reproduces_humanml3d_joints_below_a_millimetre(humanml3d_joints):
    """The exported rest pose (skeleton.tpose_offsets) has HumanML3D's branch geometry, so no fitting is needed."""
    root, rotations = inverse_kinematics(humanml3d_joints)
    error = np.linalg.norm(forward_kinematics(root, rotations) - humanml3d_joints, axis=-1)
    assert error.max() < 1e-3


def test_fitted_rest_offsets_keep_tpose_limbs_and_data_lengths(humanml3d_joints):
    offsets = fit_rest_offsets(humanml3d_joints)
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=-1), skeleton.BONE_LENGTHS, atol=1e-4)
    branch_children = {c for j in BRANCH_JOINTS for c in CHILDREN[j]}
    for joint in range(1, skeleton.NUM_JOINTS):
        if joint not in branch_children:  # limbs keep the T-pose directions
            np.testing.assert_allclose(offsets[joint] / np.linalg.norm(offsets[joint]),
                                       skeleton.TPOSE_OFFSET_DIRECTIONS[joint], atol=1e-12)
    # Hips point down and sideways in HumanML3D (not straight sideways as in the idealised T-pose).
    assert offsets[1, 0] > 0.03 and offsets[1, 1] < -0.05 and offsets[2, 0] < -0.03 and offsets[2, 1] < -0.05


def test_default_tpose_aims_every_limb_bone_at_its_observed_child(humanml3d_joints):
    """With the idealised T-pose the branch geometry differs from the data's: every one-child bone still points from
    where the rebuilt skeleton has its joint straight at the observed child."""
    root, rotations = inverse_kinematics(humanml3d_joints)
    rebuilt = forward_kinematics(root, rotations)
    branch_children = {c for j in BRANCH_JOINTS for c in CHILDREN[j]}
    for joint in range(1, skeleton.NUM_JOINTS):
        if joint in branch_children:
            continue
        parent = skeleton.PARENTS[joint]
        want = humanml3d_joints[:, joint] - rebuilt[:, parent]
        got = rebuilt[:, joint] - rebuilt[:, parent]
        cosine = np.sum(want * got, -1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
        assert cosine.min() > 1.0 - 1e-9, skeleton.JOINT_NAMES[joint]
    np.testing.assert_allclose(root, humanml3d_joints[:, 0])


def test_errors_do_not_add_up_along_chains_on_noisy_positions(humanml3d_joints):
    """Real motion with 1 cm of independent noise per joint and frame (what generated joints look like: bone
    lengths wobble): the rebuilt hands, feet and head stay within about the noise of their observed positions and
    the motion gets no jerkier.  Aiming each bone from the observed parent instead gave 25-34 mm at the chain ends
    and 1.58x the jerk."""
    rng = np.random.default_rng(0)
    noisy = humanml3d_joints + rng.normal(scale=0.01, size=humanml3d_joints.shape)
    for offsets in (None, fit_rest_offsets(humanml3d_joints)):
        rebuilt = forward_kinematics(*inverse_kinematics(noisy, offsets), offsets)
        error = np.linalg.norm(rebuilt - noisy, axis=-1).mean(axis=0)
        assert error[[7, 8, 10, 11, 20, 21]].max() < 0.013 and error[15] < 0.017
        jerk = np.linalg.norm(np.diff(rebuilt, n=3, axis=0), axis=-1).mean()
        assert jerk < 1.05 * np.linalg.norm(np.diff(noisy, n=3, axis=0), axis=-1).mean()


def test_a_short_bone_from_a_displaced_joint_keeps_the_observed_direction(humanml3d_joints):
    """A rest skeleton whose neck is 1.8x the motion's puts the neck joint next to the observed head: aiming from
    there the head would point anywhere (160 degrees of neck rotation); the neck keeps the observed direction."""
    def neck_angles(offsets):
        _, rotations = inverse_kinematics(humanml3d_joints, offsets)
        local = np.degrees(2.0 * np.arccos(np.clip(np.abs(rotations[:, 12, 0]), 0.0, 1.0)))
        return local, _angle_between_frames(rotations)[:, 12]

    long_neck = skeleton.tpose_offsets().copy()
    long_neck[12] *= 1.8
    local, turn = neck_angles(long_neck)
    normal_local, normal_turn = neck_angles(None)
    assert local.max() < normal_local.max() + 5.0 and turn.max() < normal_turn.max() + 5.0


def test_random_poses_of_the_tpose_skeleton_round_trip_exactly():
    rng = np.random.default_rng(7)
    rotations = axis_angle_to_quat(rng.normal(scale=0.6, size=(64, skeleton.NUM_JOINTS, 3)))
    root = rng.normal(size=(64, 3))
    positions = forward_kinematics(root, rotations)
    root_ik, rotations_ik = inverse_kinematics(positions)
    np.testing.assert_allclose(forward_kinematics(root_ik, rotations_ik), positions, atol=1e-9)
    # The root orientation is fully determined by the pelvis' children: IK must find the one we posed with.
    same = np.abs(np.sum(rotations_ik[:, 0] * rotations[:, 0], axis=-1))
    np.testing.assert_allclose(same, 1.0, atol=1e-9)


def test_rest_pose_gives_identity_rotations():
    rest = np.broadcast_to(skeleton.rest_positions(skeleton.tpose_offsets()), (3, skeleton.NUM_JOINTS, 3))
    _, rotations = inverse_kinematics(rest + np.array([0.0, 0.9, 0.0]))
    np.testing.assert_allclose(np.abs(rotations[..., 0]), 1.0, atol=1e-9)


def test_leaf_joints_inherit_their_parent_orientation(humanml3d_joints):
    _, rotations = inverse_kinematics(humanml3d_joints, fit_rest_offsets(humanml3d_joints))
    np.testing.assert_allclose(np.abs(rotations[:, list(LEAF_JOINTS), 0]), 1.0, atol=1e-9)
    assert set(LEAF_JOINTS) == {10, 11, 15, 20, 21}


def test_knees_and_elbows_bend_as_hinges(humanml3d_joints):
    """Where a knee/elbow is clearly bent, its local rotation turns about the rest hinge axis only."""
    _, rotations = inverse_kinematics(humanml3d_joints, fit_rest_offsets(humanml3d_joints))
    axis_angle = quat_to_axis_angle(rotations)
    hinge_axes = {4: [1, 0, 0], 5: [1, 0, 0], 18: [0, -1, 0], 19: [0, 1, 0]}
    for joint, axis in hinge_axes.items():
        angle = np.linalg.norm(axis_angle[:, joint], axis=-1)
        bent = angle > np.radians(20)
        assert bent.sum() > 10, skeleton.JOINT_NAMES[joint]
        cosine = axis_angle[bent, joint] @ np.array(axis, dtype=float) / angle[bent]
        assert cosine.min() > 0.999, skeleton.JOINT_NAMES[joint]


def test_rotations_change_smoothly_on_walking(walking_joints):
    offsets = fit_rest_offsets(walking_joints)
    root, rotations = inverse_kinematics(walking_joints, offsets)
    # Mocap branches are only nearly rigid (Bandai-Namco animates bone positions too): a few millimetres.
    assert np.linalg.norm(forward_kinematics(root, rotations, offsets) - walking_joints, axis=-1).max() < 6e-3
    # At 20 fps a walk turns no joint by more than ~20 degrees per frame; a twist flip would be ~180.
    assert _angle_between_frames(rotations).max() < 30.0


def test_rotations_change_smoothly_on_humanml3d_except_at_the_straightened_right_elbow(humanml3d_joints):
    """The fixture's right elbow straightens (3 degrees) between two bends in opposite planes: there the upper
    arm must roll with the plane.  Everywhere else rotations stay continuous."""
    _, rotations = inverse_kinematics(humanml3d_joints, fit_rest_offsets(humanml3d_joints))
    change = _angle_between_frames(rotations)
    others = [j for j in range(skeleton.NUM_JOINTS) if j not in (17, 19)]
    assert change[:, others].max() < 45.0
    upper, lower = (humanml3d_joints[:, 19] - humanml3d_joints[:, 17], humanml3d_joints[:, 21] - humanml3d_joints[:, 19])
    bend = np.degrees(np.arccos(np.sum(upper * lower, -1) / np.linalg.norm(upper, axis=-1)
                                / np.linalg.norm(lower, axis=-1)))
    for frame in np.nonzero(change[:, 17] > 45.0)[0]:
        assert bend[frame:frame + 2].min() < 10.0


def test_quaternions_keep_their_hemisphere_like_a_frame_by_frame_loop(walking_joints):
    from kmm_core.motion.kinematics import _continuous_quaternions

    offsets = fit_rest_offsets(walking_joints)
    _, rotations = inverse_kinematics(walking_joints, offsets)
    assert (np.sum(rotations[1:] * rotations[:-1], axis=-1) >= 0.0).all()
    scrambled = rotations * np.random.default_rng(0).choice([-1.0, 1.0], size=rotations.shape[:2] + (1,))
    looped = scrambled.copy()  # the rule as a plain loop: each frame flipped towards the already-fixed previous one
    for frame in range(1, len(looped)):
        flip = np.sum(looped[frame] * looped[frame - 1], axis=-1) < 0.0
        looped[frame, flip] *= -1.0
    assert np.array_equal(_continuous_quaternions(scrambled.copy()), looped)
    assert np.array_equal(looped[0], scrambled[0]) and not np.array_equal(looped, scrambled)


def test_reaim_joints_matches_full_inverse_kinematics_when_only_limbs_moved(humanml3d_joints):
    """Bend a knee and an elbow of the real fixture, move the body down 3 cm: re-solving only the leg and arm
    chains gives the rotations full IK gives, and every other joint keeps its rotation."""
    offsets = fit_rest_offsets(humanml3d_joints)
    root, rotations = inverse_kinematics(humanml3d_joints, offsets)
    edited = rotations.copy()
    frames = len(edited)
    bend = axis_angle_to_quat(np.tile([[0.6, 0.1, 0.0]], (frames, 1)) * np.linspace(0, 1, frames)[:, None])
    from kmm_core.motion.rotations import qmul
    edited[:, 4] = qmul(edited[:, 4], bend)  # left knee
    edited[:, 18] = qmul(edited[:, 18], bend[:, [1, 0, 2, 3]] / np.linalg.norm(bend[:, [1, 0, 2, 3]], axis=-1,
                                                                                  keepdims=True))  # left elbow
    positions = forward_kinematics(root - np.array([0.0, 0.03, 0.0]), edited, offsets)
    chains = [1, 4, 7, 10, 16, 18, 20]
    new_root, reaimed = reaim_joints(positions, rotations, chains, offsets)
    full_root, full = inverse_kinematics(positions, offsets)
    assert np.allclose(new_root, full_root) and np.allclose(new_root, root - [0.0, 0.03, 0.0])
    same_rotation = np.abs(np.sum(reaimed * full, axis=-1))
    assert same_rotation.min() > 1 - 1e-9
    assert np.allclose(reaimed[:, chains], full[:, chains], atol=1e-9)  # same hemisphere rule, same signs
    others = [j for j in range(skeleton.NUM_JOINTS) if j not in chains]
    assert np.array_equal(reaimed[:, others], rotations[:, others])
    assert np.abs(forward_kinematics(new_root, reaimed, offsets) - positions).max() < 1e-9


def test_reaim_joints_rejects_bad_input(humanml3d_joints):
    root, rotations = inverse_kinematics(humanml3d_joints)
    with pytest.raises(KMMError, match="local rotations must have shape"):
        reaim_joints(humanml3d_joints, rotations[:, :21], [4])
    with pytest.raises(KMMError, match=r"joints must be in 0..21, got \[4, 22\]"):
        reaim_joints(humanml3d_joints, rotations, [22, 4])


def test_bad_shapes_raise():
    with pytest.raises(KMMError, match="positions"):
        inverse_kinematics(np.zeros((4, 21, 3)))
    with pytest.raises(KMMError, match="offsets"):
        inverse_kinematics(np.zeros((4, 22, 3)), np.zeros((21, 3)))
    with pytest.raises(KMMError, match="NaN"):
        inverse_kinematics(np.full((2, 22, 3), np.nan))
    with pytest.raises(KMMError):
        forward_kinematics(np.zeros((4, 3)), np.zeros((4, 21, 4)))
