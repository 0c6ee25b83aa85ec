# SPDX-License-Identifier: GPL-3.0-or-later
"""HumanML3D features against the public reference sample 012314 (features <-> joints, preprocessing, mirroring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.humanml3d.features import (
    CHANNEL_GROUPS,
    FEATURE_DIM,
    MotionArrayError,
    features_to_joints,
    features_to_joints_via_rotations,
    features_to_local_rotations,
    joints_to_features,
    mirror_features,
)
from kmm_core.humanml3d.preprocess import preprocess_joints, process_motion, retarget_to_reference_skeleton
from kmm_core.motion.rotations import axis_angle_to_quat, qrot
from kmm_core.motion.skeleton import BONE_LENGTHS, PARENTS, mirror_positions
from kmm_core.motion.time_filters import gaussian_smooth

SAMPLE = "012314"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference_joints(humanml3d_fixture_dir) -> np.ndarray:
    return np.load(humanml3d_fixture_dir / "new_joints" / f"{SAMPLE}.npy")


@pytest.fixture(scope="module")
def reference_features(humanml3d_fixture_dir) -> np.ndarray:
    return np.load(humanml3d_fixture_dir / "new_joint_vecs" / f"{SAMPLE}.npy")


@pytest.fixture(scope="module")
def computed_features(reference_joints) -> np.ndarray:
    return joints_to_features(reference_joints.astype(np.float64))


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)


def test_recovered_joints_equal_the_stored_joints(reference_features, reference_joints):
    recovered = features_to_joints(reference_features)
    assert recovered.shape == reference_joints.shape
    assert recovered.dtype == np.float32
    assert np.abs(recovered - reference_joints).max() < 1e-4


def test_rotation_channels_rebuild_the_joints_by_forward_kinematics(reference_features, reference_joints):
    # HumanML3D's recover_from_rot: the 6D channels and the reference skeleton must give the same joints.
    rebuilt = features_to_joints_via_rotations(reference_features)
    assert np.abs(rebuilt - reference_joints).max() < 1e-3
    rotations = features_to_local_rotations(reference_features)
    assert rotations.shape == (len(reference_features), 22, 4)
    assert np.allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("group", list(CHANNEL_GROUPS))
def test_features_from_joints_match_the_stored_features(group, computed_features, reference_features):
    channels = CHANNEL_GROUPS[group]
    assert computed_features.shape == (len(reference_features) - 1, FEATURE_DIM)
    # new_joints has one frame less than the motion the stored features came from, so compare the common rows.
    error = np.abs(computed_features[:, channels] - reference_features[:-1, channels]).max()
    assert error <= 0.02, f"{group}: max abs error {error:.5f}"


def test_features_then_joints_reproduce_canonical_joints(reference_joints, computed_features):
    # The root of frame 0 is the identity and every velocity is rotated by the same root rotation it is
    # recovered with, so the round trip is exact up to rounding.
    recovered = features_to_joints(computed_features)
    assert np.abs(recovered - reference_joints[:-1]).max() < 1e-6


def test_feature_rows_are_rotation_and_translation_invariant_except_the_first_frame(reference_joints):
    # Turning and moving the whole canonical clip changes neither ric, velocities nor contacts after the first
    # frames whose facing is forced to identity; root height must stay.
    joints = reference_joints.astype(np.float64)
    turn = axis_angle_to_quat(np.array([0.0, 0.7, 0.0]))
    moved = qrot(np.broadcast_to(turn, joints.shape[:-1] + (4,)), joints) + np.array([1.5, 0.0, -2.0])
    original, shifted = joints_to_features(joints), joints_to_features(moved)
    assert np.allclose(original[:, 3], shifted[:, 3], atol=1e-9)
    assert np.array_equal(original[:, CHANNEL_GROUPS["contacts"]], shifted[:, CHANNEL_GROUPS["contacts"]])
    assert np.abs(original[1:, CHANNEL_GROUPS["ric"]] - shifted[1:, CHANNEL_GROUPS["ric"]]).max() < 1e-9


def test_preprocessing_is_idempotent_on_the_canonical_sample(reference_joints):
    canonical = preprocess_joints(reference_joints)
    # The reference bone lengths are rounded to 0.1 mm, hence the small tolerance.
    assert np.abs(canonical - reference_joints).max() < 5e-4
    assert np.isclose(canonical[..., 1].min(), 0.0, atol=1e-9)
    assert np.allclose(canonical[0, 0, [0, 2]], 0.0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preprocessing_undoes_rotation_translation_and_scale(seed, reference_joints):
    rng = np.random.default_rng(seed)
    joints = reference_joints.astype(np.float64)
    turn = axis_angle_to_quat(np.array([0.0, rng.uniform(-np.pi, np.pi), 0.0]))
    scale = rng.uniform(0.6, 1.6)
    shift = rng.uniform(-3.0, 3.0, size=3)
    moved = qrot(np.broadcast_to(turn, joints.shape[:-1] + (4,)), joints) * scale + shift
    assert np.abs(moved - joints).max() > 0.1
    assert np.abs(preprocess_joints(moved) - joints).max() < 5e-4


def test_preprocessing_retargets_bone_lengths_and_keeps_bone_directions(reference_joints):
    joints = reference_joints.astype(np.float64)
    # A differently proportioned body: rebuild the clip with random bone lengths along the same bone directions.
    rng = np.random.default_rng(7)
    stretched = np.zeros_like(joints)
    stretched[:, 0] = joints[:, 0]
    factors = rng.uniform(0.7, 1.3, size=22)
    for joint, parent in enumerate(PARENTS):
        if parent >= 0:
            stretched[:, joint] = stretched[:, parent] + factors[joint] * (joints[:, joint] - joints[:, parent])
    retargeted = retarget_to_reference_skeleton(stretched)
    assert np.abs(_bone_lengths(retargeted) - BONE_LENGTHS[1:]).max() < 1e-9
    assert np.abs(_bone_lengths(preprocess_joints(stretched)) - BONE_LENGTHS[1:]).max() < 1e-9

    def directions(j):
        bones = j[:, 1:] - j[:, list(PARENTS[1:])]
        return bones / np.linalg.norm(bones, axis=-1, keepdims=True)

    # Local rotations are kept, so every bone keeps its direction.
    assert np.abs(directions(retargeted) - directions(stretched)).max() < 1e-9
    # The root path is scaled by reference leg / source leg (right thigh + shin at frame 0).
    source_leg = _bone_lengths(stretched)[0, [4, 7]].sum()
    scale = (BONE_LENGTHS[5] + BONE_LENGTHS[8]) / source_leg
    assert np.allclose(retargeted[:, 0], stretched[:, 0] * scale, atol=1e-12)


def test_process_motion_faces_positive_z_at_frame_zero(reference_joints):
    joints = reference_joints.astype(np.float64)
    turn = axis_angle_to_quat(np.array([0.0, 2.0, 0.0]))
    features, canonical = process_motion(qrot(np.broadcast_to(turn, joints.shape[:-1] + (4,)), joints))
    assert features.shape == (len(joints) - 1, FEATURE_DIM)
    across = (canonical[0, 2] - canonical[0, 1]) + (canonical[0, 17] - canonical[0, 16])
    forward = np.cross([0.0, 1.0, 0.0], across)
    forward /= np.linalg.norm(forward)
    assert np.allclose(forward, [0.0, 0.0, 1.0], atol=1e-9)


def test_mirroring_commutes_with_features(reference_joints, computed_features):
    joints = reference_joints.astype(np.float64)
    mirrored_features = joints_to_features(mirror_positions(joints))
    assert np.abs(mirrored_features - mirror_features(computed_features)).max() < 1e-6
    # Mirror, encode, decode, mirror back: the original recovery.
    back = mirror_positions(features_to_joints(mirrored_features))
    assert np.abs(back - features_to_joints(computed_features)).max() < 1e-6
    assert np.array_equal(mirror_features(mirror_features(computed_features)), computed_features)


def test_torch_recovery_equals_numpy_and_is_differentiable(reference_features, computed_features):
    torch = pytest.importorskip("torch")
    from kmm_core.humanml3d.features_torch import features_to_joints_torch

    length = len(computed_features)
    batch = np.stack([reference_features[:length].astype(np.float64), mirror_features(computed_features)])
    expected = features_to_joints(batch)
    tensor = torch.tensor(batch, requires_grad=True)
    joints = features_to_joints_torch(tensor)
    assert joints.shape == (2, length, 22, 3)
    assert np.abs(joints.detach().numpy() - expected).max() < 1e-9
    joints[:, -1].pow(2).sum().backward()
    assert torch.isfinite(tensor.grad).all()
    assert tensor.grad[..., 0].abs().sum() > 0  # the yaw channel steers every later frame


def test_gaussian_smoothing_matches_the_closed_form_on_a_ramp():
    # Away from the borders a symmetric normalised kernel leaves a linear ramp unchanged; at the borders
    # edge replication bends it towards the end value.
    ramp = np.arange(300, dtype=np.float64)[:, None]
    smoothed = gaussian_smooth(ramp, 20.0)
    assert np.allclose(smoothed[100:200], ramp[100:200], atol=1e-9)
    assert smoothed[0, 0] > ramp[0, 0] and smoothed[-1, 0] < ramp[-1, 0]


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros((10, 21, 3)), "expected shape"), (np.zeros((1, 22, 3)), "at least 2 frames"),
     (np.full((4, 22, 3), np.nan), "NaN")],
)
def test_bad_joint_arrays_raise_clear_errors(bad, message):
    with pytest.raises(MotionArrayError, match=message):
        joints_to_features(bad)


def test_bad_feature_arrays_raise_clear_errors():
    with pytest.raises(MotionArrayError, match="263"):
        features_to_joints(np.zeros((5, 262)))


def test_numpy_core_does_not_import_torch():
    code = "import sys, kmm_core.humanml3d; kmm_core.humanml3d.features_to_joints; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
