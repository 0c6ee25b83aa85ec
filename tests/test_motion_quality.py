# SPDX-License-Identifier: GPL-3.0-or-later
"""Jerk, transition metrics, foot skating and floor penetration against known answers and real clips."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.bvh.joint_map import builtin_joint_map
from kmm_core.bvh.reader import read_bvh
from kmm_core.bvh.retarget import bvh_to_canonical_joints
from kmm_core.common.errors import InputTensorError
from kmm_core.evaluation.motion_quality import (
    FOOT_JOINTS,
    boundary_frames,
    floor_penetration,
    foot_skating,
    ground_truth_jerk_level,
    jerk_curve,
    transition_jerk,
    transition_jerk_curves,
    window_frames,
)
from kmm_core.humanml3d.preprocess import preprocess_joints
from kmm_core.motion.skeleton import NUM_JOINTS, rest_positions

FPS = 20.0


@pytest.fixture(scope="session")
def real_walks(bandai_namco_dir) -> list[np.ndarray]:
    paths = sorted(bandai_namco_dir.glob("Bandai-Namco-Research-Motiondataset-2/data/dataset-2_walk_normal_*.bvh"))
    assert len(paths) >= 4, "need dataset-2 straight walk clips"
    joint_map = builtin_joint_map("bandai_namco")
    return [preprocess_joints(bvh_to_canonical_joints(read_bvh(p), joint_map)) for p in paths[:4]]


def _moving_pose(positions_of_time) -> np.ndarray:
    """(T, 22, 3): the rest pose translated along a path given per frame."""
    return rest_positions()[None] + positions_of_time[:, None, :]


# ---------------------------------------------------------------------------------------------------------------
# jerk
# ---------------------------------------------------------------------------------------------------------------

def test_jerk_of_constant_velocity_is_zero():
    t = np.arange(50) / FPS
    joints = _moving_pose(np.stack([1.3 * t, 0.0 * t, -0.7 * t], axis=1))
    assert jerk_curve(joints, FPS).shape == (47,)
    assert np.allclose(jerk_curve(joints, FPS), 0.0, atol=1e-6)


def test_jerk_of_a_cubic_is_its_known_constant():
    t = np.arange(40) / FPS
    a = np.array([0.5, -0.2, 0.1])
    # x(t) = a t^3 + t^2 - t: third derivative 6 a everywhere, per joint and so for the joint mean.
    joints = _moving_pose(a * t[:, None] ** 3 + t[:, None] ** 2 - t[:, None])
    assert np.allclose(jerk_curve(joints, FPS), 6 * np.linalg.norm(a), rtol=1e-6)
    # Only one joint moving: the mean over the 22 joints divides by 22.
    single = np.repeat(rest_positions()[None], 40, axis=0)
    single[:, 5] += a * t[:, None] ** 3
    assert np.allclose(jerk_curve(single, FPS), 6 * np.linalg.norm(a) / NUM_JOINTS, rtol=1e-6)
    # The same motion sampled at another frame rate has the same jerk in m/s^3.
    t30 = np.arange(60) / 30.0
    assert np.allclose(jerk_curve(_moving_pose(a * t30[:, None] ** 3), 30.0), 6 * np.linalg.norm(a), rtol=1e-6)


def test_jerk_rejects_bad_input():
    with pytest.raises(InputTensorError, match="at least 4 frames"):
        jerk_curve(np.zeros((3, NUM_JOINTS, 3)), FPS)
    with pytest.raises(InputTensorError, match="shape"):
        jerk_curve(np.zeros((10, 21, 3)), FPS)
    with pytest.raises(InputTensorError, match="fps"):
        jerk_curve(np.zeros((10, NUM_JOINTS, 3)), 0.0)


# ---------------------------------------------------------------------------------------------------------------
# transitions
# ---------------------------------------------------------------------------------------------------------------

def test_transition_windows_follow_flowmdm_length():
    assert window_frames(30.0) == 30 and window_frames(20.0) == 20
    assert list(boundary_frames(np.array([[0, 40], [40, 90], [90, 120]]))) == [40, 90]
    with pytest.raises(InputTensorError, match="segment_frames"):
        boundary_frames(np.array([[0, 40], [30, 30]]))


def test_transition_metrics_of_a_known_kink():
    # Constant velocity everywhere except a cubic bump whose jerk is known on a few frames around frame 50.
    frames = 100
    path = np.zeros((frames, 3))
    path[:, 2] = np.arange(frames) / FPS
    joints = _moving_pose(path)
    joints[50:, :, 0] += 0.01 * (np.arange(frames - 50) ** 3)[:, None]  # a cubic in frames starts at frame 50
    curves = transition_jerk_curves(joints, [50], FPS)
    assert curves.shape == (1, 17)  # window [40, 60): 20 poses -> 17 jerk values
    expected = jerk_curve(joints, FPS)[40:57]
    assert np.allclose(curves[0], expected)
    result = transition_jerk([joints], [[50]], FPS, ground_truth_level=0.0)
    assert result.num_transitions == 1
    assert result.peak_jerk == pytest.approx(expected.max())
    assert result.area_under_jerk == pytest.approx(expected.sum() / FPS)
    with pytest.raises(InputTensorError, match="does not fit"):
        transition_jerk_curves(joints, [95], FPS)
    with pytest.raises(InputTensorError, match="no transition"):
        transition_jerk([joints], [[]], FPS, 0.0)


def test_abrupt_transition_between_real_clips_has_higher_jerk(real_walks):
    level = ground_truth_jerk_level(real_walks, FPS)
    assert 10.0 < level < 500.0  # m/s^3, real walking at 20 fps
    # Smooth: each real walk "transitions" into itself in the middle.  Abrupt: the first half of one walk
    # followed by the second half of another, starting from a different pose.
    smooth, smooth_boundaries, abrupt, abrupt_boundaries = [], [], [], []
    for first, second in zip(real_walks, real_walks[1:] + real_walks[:1], strict=True):
        middle = min(len(first), len(second)) // 2
        smooth.append(first)
        smooth_boundaries.append([middle])
        shifted = second[middle:] + (first[middle - 1, 0] - second[middle, 0]) * np.array([1.0, 0.0, 1.0])
        abrupt.append(np.concatenate([first[:middle], shifted]))
        abrupt_boundaries.append([middle])
    good = transition_jerk(smooth, smooth_boundaries, FPS, level)
    bad = transition_jerk(abrupt, abrupt_boundaries, FPS, level)
    print(f"\nGT jerk {level:.1f}; real transition peak {good.peak_jerk:.1f} AUJ {good.area_under_jerk:.1f}; "
          f"spliced peak {bad.peak_jerk:.1f} AUJ {bad.area_under_jerk:.1f}")
    assert bad.peak_jerk > 2 * good.peak_jerk
    assert bad.area_under_jerk > 2 * good.area_under_jerk
    assert good.num_transitions == bad.num_transitions == len(real_walks)


# ---------------------------------------------------------------------------------------------------------------
# contact with the ground
# ---------------------------------------------------------------------------------------------------------------

def _standing(frames: int) -> np.ndarray:
    pose = rest_positions()
    pose = pose - [0.0, pose[:, 1].min(), 0.0]  # lowest joint on the floor
    return np.repeat(pose[None], frames, axis=0)


def test_foot_skating_measures_sliding_only_when_grounded():
    still = foot_skating(_standing(30), FPS)
    assert still.mean_contact_speed == 0.0 and still.skating_ratio == 0.0 and still.contact_count > 0
    sliding = _standing(30)
    sliding[:, :, 0] += 0.8 * np.arange(30)[:, None] / FPS  # the whole body glides along x at 0.8 m/s
    slid = foot_skating(sliding, FPS)
    assert slid.mean_contact_speed == pytest.approx(0.8) and slid.skating_ratio == 1.0
    flying = sliding.copy()
    flying[:, :, 1] += 0.5  # the same glide half a metre in the air: no contact, no skating
    assert foot_skating(flying, FPS).contact_count == 0
    assert foot_skating(sliding, FPS, floor_height=-0.5).contact_count == 0


def test_foot_skating_of_real_motion(real_walks):
    walking = foot_skating(real_walks[0], FPS)
    assert walking.contact_count > 20
    assert walking.mean_contact_speed < 0.4 and walking.skating_ratio < 0.15
    # The same walk with its toes dragged forward at 1 m/s on top of their own motion skates much more.
    dragged = real_walks[0].copy()
    dragged[:, list(FOOT_JOINTS), 2] += (np.arange(len(dragged)) / FPS)[:, None]
    slid = foot_skating(dragged, FPS)
    assert slid.contact_count == walking.contact_count  # heights untouched: the same contacts
    assert slid.mean_contact_speed > walking.mean_contact_speed + 0.7
    assert slid.skating_ratio > 0.8


def test_floor_penetration_depth():
    joints = _standing(10)
    assert floor_penetration(joints) == floor_penetration(joints)
    clean = floor_penetration(joints)
    assert clean.mean_depth == 0.0 and clean.max_depth == 0.0 and clean.frame_ratio == 0.0
    sunk = joints.copy()
    sunk[5:, :, 1] -= 0.04  # the last 5 frames sink 4 cm
    result = floor_penetration(sunk)
    assert result.max_depth == pytest.approx(0.04)
    assert result.mean_depth == pytest.approx(0.02)
    assert result.frame_ratio == pytest.approx(0.5)
    assert floor_penetration(sunk, tolerance=0.05).frame_ratio == 0.0
