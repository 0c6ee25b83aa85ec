# SPDX-License-Identifier: GPL-3.0-or-later
"""HumanML3D's 263-dimensional motion features: joints -> features and back (NumPy only).

Layout of one feature row (frame t of a clip with T joint frames gives T-1 rows):

=========  =====  ==========================================================================
channels   count  meaning
=========  =====  ==========================================================================
0          1      root yaw velocity: half the yaw angle turned from frame t to t+1 (radians)
1:3        2      root xz velocity from t to t+1, expressed in the root (facing) frame of t+1
3          1      root height (y) at frame t
4:67       21x3   joints 1..21 relative to the root's xz, rotated into the root facing frame
67:193     21x6   local rotations of joints 1..21 (6D: first two matrix columns), see below
193:259    22x3   joint velocities from t to t+1, rotated into the root facing frame of t
259:263    4      foot contacts: left ankle, left foot, right ankle, right foot (1 = still)
=========  =====  ==========================================================================

The formulas follow the reference pipeline of Guo et al. 2022 (``process_file`` in HumanML3D's
``motion_representation.ipynb``) including its quirks, because models and evaluators trained on HumanML3D expect
exactly these numbers:

* The root (facing) rotation comes from an "across" vector built with the hips *swapped* (left hip minus right hip)
  plus right shoulder minus left shoulder; the shoulders dominate, so the facing still points forward.  The forward
  direction is smoothed over time with a Gaussian (sigma 20 frames) and the root rotation of frame 0 is forced to
  the identity.
* The rotation stored at joint j turns the rest direction of the bone parent(j) -> j (``RAW_OFFSET_DIRECTIONS``)
  onto its posed direction.  Rotations accumulate along HumanML3D's kinematic chains, and every chain starts from
  the root facing rotation, so the collar bones (first bones of the arm chains) are relative to the root, not to
  the spine.

Recovering joints (``features_to_joints``) uses only the root channels and the ric positions, as HumanML3D's
``recover_from_ric`` does; the stored ``new_joints`` of HumanML3D are exactly that recovery.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputTensorError
from ..motion.rotations import cont6d_to_quat, qbetween, qinv, qmul, qnormalize, qrot, quat_to_cont6d
from ..motion.skeleton import KINEMATIC_CHAINS, MIRROR_INDEX, NUM_JOINTS, RAW_OFFSET_DIRECTIONS, rest_offsets
from ..motion.time_filters import gaussian_smooth

FEATURE_DIM = 263

# Channel groups of a feature row.
ROOT_YAW_VELOCITY = slice(0, 1)
ROOT_XZ_VELOCITY = slice(1, 3)
ROOT_HEIGHT = slice(3, 4)
ROOT = slice(0, 4)
RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)                      # 4:67
ROTATIONS = slice(RIC.stop, RIC.stop + (NUM_JOINTS - 1) * 6)   # 67:193
VELOCITIES = slice(ROTATIONS.stop, ROTATIONS.stop + NUM_JOINTS * 3)  # 193:259
FOOT_CONTACTS = slice(VELOCITIES.stop, VELOCITIES.stop + 4)    # 259:263
CHANNEL_GROUPS: dict[str, slice] = {
    "root": ROOT, "ric": RIC, "rot": ROTATIONS, "vel": VELOCITIES, "contacts": FOOT_CONTACTS,
}

# Joints whose frame-to-frame squared displacement decides the foot contacts.
LEFT_FOOT_JOINTS = (7, 10)   # left ankle, left foot
RIGHT_FOOT_JOINTS = (8, 11)  # right ankle, right foot
FOOT_CONTACT_THRESHOLD = 0.002  # squared metres per frame, HumanML3D's value

# HumanML3D's "face joints" in the order its IK unpacks them (see the module docstring): the hips enter swapped.
_IK_ACROSS_PLUS = (1, 17)   # left hip, right shoulder
_IK_ACROSS_MINUS = (2, 16)  # right hip, left shoulder
FORWARD_SMOOTHING_SIGMA = 20.0  # frames

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


class MotionArrayError(InputTensorError):
    """An array given as motion (joints or features) has the wrong shape or holds non-finite values."""


def check_joints(joints: np.ndarray, name: str = "joints", min_frames: int = 1) -> np.ndarray:
    """Return ``joints`` as float64 (T, 22, 3) or raise MotionArrayError naming the argument."""
    array = np.asarray(joints)
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise MotionArrayError(f"{name}: expected shape (frames, {NUM_JOINTS}, 3), got {array.shape}")
    if array.shape[0] < min_frames:
        raise MotionArrayError(f"{name}: needs at least {min_frames} frames, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise MotionArrayError(f"{name}: contains NaN or infinite values")
    return array.astype(np.float64)


def check_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    """Return ``features`` as float64 (..., T, 263) or raise MotionArrayError naming the argument."""
    array = np.asarray(features)
    if array.ndim < 2 or array.shape[-1] != FEATURE_DIM:
        raise MotionArrayError(f"{name}: expected shape (..., frames, {FEATURE_DIM}), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise MotionArrayError(f"{name}: contains NaN or infinite values")
    return array.astype(np.float64)


def _output_dtype(array: np.ndarray) -> np.dtype:
    dtype = np.asarray(array).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Root facing rotation and HumanML3D's inverse / forward kinematics
# ---------------------------------------------------------------------------------------------------------------

def forward_directions(joints: np.ndarray, across_plus: tuple[int, int], across_minus: tuple[int, int]) -> np.ndarray:
    """Unit forward direction in the xz plane per frame: up x across, across = sum(plus) - sum(minus) joints."""
    across = joints[..., across_plus[0], :] - joints[..., across_minus[0], :]
    across = across + joints[..., across_plus[1], :] - joints[..., across_minus[1], :]
    across = across / np.maximum(np.linalg.norm(across, axis=-1, keepdims=True), 1e-12)
    forward = np.cross(_UP, across)
    return forward


def humanml3d_root_rotations(joints: np.ndarray, smooth_forward: bool) -> np.ndarray:
    """(T, 4) root rotations of HumanML3D's IK: each turns the frame's forward direction onto +Z.

    Frame 0 is forced to the identity, as in the reference pipeline (the clip is already turned to face +Z).
    """
    forward = forward_directions(joints, _IK_ACROSS_PLUS, _IK_ACROSS_MINUS)
    if smooth_forward:
        forward = gaussian_smooth(forward, FORWARD_SMOOTHING_SIGMA, axis=0)
    forward = forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)
    root = qbetween(forward, np.broadcast_to(_FORWARD, forward.shape))
    root[0] = (1.0, 0.0, 0.0, 0.0)
    return root


def inverse_kinematics(joints: np.ndarray, smooth_forward: bool) -> np.ndarray:
    """(T, 22, 4) HumanML3D local rotations (w, x, y, z) of joint positions (T, 22, 3).

    Joint 0 holds the root facing rotation; joint j > 0 the rotation of bone parent(j) -> j relative to the
    accumulated rotation of its kinematic chain (which starts at the root facing rotation).
    """
    joints = check_joints(joints)
    frames = joints.shape[0]
    quats = np.zeros((frames, NUM_JOINTS, 4))
    root = humanml3d_root_rotations(joints, smooth_forward)
    quats[:, 0] = root
    for chain in KINEMATIC_CHAINS:
        accumulated = root
        for parent, child in zip(chain[:-1], chain[1:], strict=False):
            bone = joints[:, child] - joints[:, parent]
            rest = np.broadcast_to(RAW_OFFSET_DIRECTIONS[child], bone.shape)
            global_rotation = qbetween(rest, bone)
            local = qmul(qinv(accumulated), global_rotation)
            quats[:, child] = local
            accumulated = qmul(accumulated, local)
    return quats


def forward_kinematics(local_quats: np.ndarray, root_positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) from HumanML3D local rotations (T, 22, 4), root positions (T, 3), offsets (22, 3).

    The inverse of ``inverse_kinematics`` for any bone lengths: every bone keeps its direction, its length becomes
    the length of its offset (offsets are ``RAW_OFFSET_DIRECTIONS`` scaled by bone lengths).
    """
    local_quats = np.asarray(local_quats, dtype=np.float64)
    frames = local_quats.shape[0]
    joints = np.zeros((frames, NUM_JOINTS, 3))
    joints[:, 0] = root_positions
    for chain in KINEMATIC_CHAINS:
        accumulated = local_quats[:, 0]
        for parent, child in zip(chain[:-1], chain[1:], strict=False):
            accumulated = qmul(accumulated, local_quats[:, child])
            offset = np.broadcast_to(np.asarray(offsets, dtype=np.float64)[child], (frames, 3))
            joints[:, child] = joints[:, parent] + qrot(accumulated, offset)
    return joints


# ---------------------------------------------------------------------------------------------------------------
# joints -> features
# ---------------------------------------------------------------------------------------------------------------

def foot_contacts(joints: np.ndarray, threshold: float = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """(T-1, 4) contacts: 1 where a foot joint's squared displacement to the next frame is below ``threshold``."""
    feet = list(LEFT_FOOT_JOINTS + RIGHT_FOOT_JOINTS)
    squared = np.sum((joints[1:, feet] - joints[:-1, feet]) ** 2, axis=-1)
    return (squared < threshold).astype(np.float64)


def joints_to_features(joints: np.ndarray, foot_threshold: float = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """HumanML3D features (T-1, 263) of canonical joint positions (T, 22, 3).

    ``joints`` must already be in HumanML3D's canonical frame (uniform skeleton, floor at y=0, root xz at the origin
    and facing +Z at frame 0): use ``preprocess.preprocess_joints`` first for raw motion.  The dtype of the result
    follows the input (float32 in, float32 out).
    """
    out_dtype = _output_dtype(joints)
    positions = check_joints(joints, min_frames=2)
    frames = positions.shape[0]

    local_quats = inverse_kinematics(positions, smooth_forward=True)
    root_rotation = local_quats[:, 0]

    # Root: yaw velocity (half angle, the y part of the relative quaternion), velocity in the next root frame.
    relative = qmul(root_rotation[1:], qinv(root_rotation[:-1]))
    yaw_velocity = np.arcsin(np.clip(relative[:, 2:3], -1.0, 1.0))
    root_velocity = qrot(root_rotation[1:], positions[1:, 0] - positions[:-1, 0])
    root_height = positions[:-1, 0, 1:2]

    # Rotation-invariant coordinates: remove root xz, turn into the facing frame.
    centered = positions.copy()
    centered[..., [0, 2]] -= positions[:, :1, [0, 2]]
    ric = qrot(np.repeat(root_rotation[:, None], NUM_JOINTS, axis=1), centered)

    rotations_6d = quat_to_cont6d(local_quats[:, 1:])

    velocities = qrot(np.repeat(root_rotation[:-1, None], NUM_JOINTS, axis=1), positions[1:] - positions[:-1])

    features = np.concatenate(
        [
            yaw_velocity,
            root_velocity[:, [0, 2]],
            root_height,
            ric[:-1, 1:].reshape(frames - 1, -1),
            rotations_6d[:-1].reshape(frames - 1, -1),
            velocities.reshape(frames - 1, -1),
            foot_contacts(positions, foot_threshold),
        ],
        axis=-1,
    )
    return features.astype(out_dtype)


# ---------------------------------------------------------------------------------------------------------------
# features -> joints
# ---------------------------------------------------------------------------------------------------------------

def recover_root(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root rotations (..., T, 4) and positions (..., T, 3) integrated from the root channels of (..., T, 263).

    Row t's velocities describe the step t -> t+1, so frame 0 sits at the origin with the identity rotation and
    the integration uses rows 0..T-2; the root height is read directly from channel 3.
    """
    features = check_features(features)
    yaw_velocity = features[..., 0]
    half_angle = np.zeros_like(yaw_velocity)
    half_angle[..., 1:] = np.cumsum(yaw_velocity[..., :-1], axis=-1)
    zeros = np.zeros_like(half_angle)
    root_rotation = np.stack([np.cos(half_angle), zeros, np.sin(half_angle), zeros], axis=-1)

    step = np.zeros(features.shape[:-1] + (3,))
    step[..., 1:, 0] = features[..., :-1, 1]
    step[..., 1:, 2] = features[..., :-1, 2]
    root_position = np.cumsum(qrot(qinv(root_rotation), step), axis=-2)
    root_position[..., 1] = features[..., 3]
    return root_rotation, root_position


def features_to_joints(features: np.ndarray) -> np.ndarray:
    """Joint positions (..., T, 22, 3) from features (..., T, 263), as HumanML3D's ``recover_from_ric``."""
    out_dtype = _output_dtype(features)
    features = check_features(features)
    root_rotation, root_position = recover_root(features)
    ric = features[..., RIC].reshape(features.shape[:-1] + (NUM_JOINTS - 1, 3))
    world = qrot(np.repeat(qinv(root_rotation)[..., None, :], NUM_JOINTS - 1, axis=-2), ric)
    world[..., 0] += root_position[..., None, 0]
    world[..., 2] += root_position[..., None, 2]
    joints = np.concatenate([root_position[..., None, :], world], axis=-2)
    return joints.astype(out_dtype)


def features_to_local_rotations(features: np.ndarray) -> np.ndarray:
    """HumanML3D local rotations (..., T, 22, 4): joint 0 the recovered root facing rotation, 1..21 from the 6D.

    Feeding them to ``forward_kinematics`` with ``skeleton.rest_offsets()`` and the recovered root positions gives
    HumanML3D's ``recover_from_rot`` joints.  Their rest pose is ``RAW_OFFSET_DIRECTIONS`` (arms hanging down), and
    joint 0 maps world to the facing frame; convert before exporting to a T-pose armature.
    """
    features = check_features(features)
    root_rotation, _ = recover_root(features)
    sixd = features[..., ROTATIONS].reshape(features.shape[:-1] + (NUM_JOINTS - 1, 6))
    return np.concatenate([root_rotation[..., None, :], qnormalize(cont6d_to_quat(sixd))], axis=-2)


def features_to_joints_via_rotations(features: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Joints (T, 22, 3) rebuilt from the rotation channels by forward kinematics (HumanML3D's ``recover_from_rot``)."""
    features = check_features(features)
    if features.ndim != 2:
        raise MotionArrayError(f"features: expected shape (frames, {FEATURE_DIM}), got {features.shape}")
    _, root_position = recover_root(features)
    offsets = rest_offsets() if offsets is None else offsets
    return forward_kinematics(features_to_local_rotations(features), root_position, offsets)


# ---------------------------------------------------------------------------------------------------------------
# Mirroring in feature space
# ---------------------------------------------------------------------------------------------------------------

def mirror_features(features: np.ndarray) -> np.ndarray:
    """Features of the left/right mirrored motion (``skeleton.mirror_positions``), computed without joints.

    Mirroring negates x and swaps left/right joints; yaw turns the other way; a rotation matrix R becomes N R N with
    N = diag(-1, 1, 1), so its first column becomes (x, -y, -z) and its second (-x, y, z); contacts swap feet.
    """
    out_dtype = _output_dtype(features)
    features = check_features(features)
    mirrored = features.copy()
    lead = features.shape[:-1]
    mirrored[..., 0] = -features[..., 0]
    mirrored[..., 1] = -features[..., 1]

    # Joint indices 1..21 of the ric/rot channels after swapping sides.
    swap_non_root = [MIRROR_INDEX[j] - 1 for j in range(1, NUM_JOINTS)]
    ric = features[..., RIC].reshape(lead + (NUM_JOINTS - 1, 3))[..., swap_non_root, :]
    ric[..., 0] *= -1.0
    mirrored[..., RIC] = ric.reshape(lead + (-1,))

    rot = features[..., ROTATIONS].reshape(lead + (NUM_JOINTS - 1, 6))[..., swap_non_root, :]
    rot *= np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])
    mirrored[..., ROTATIONS] = rot.reshape(lead + (-1,))

    vel = features[..., VELOCITIES].reshape(lead + (NUM_JOINTS, 3))[..., list(MIRROR_INDEX), :]
    vel[..., 0] *= -1.0
    mirrored[..., VELOCITIES] = vel.reshape(lead + (-1,))

    contacts = features[..., FOOT_CONTACTS]
    mirrored[..., FOOT_CONTACTS] = np.concatenate([contacts[..., 2:4], contacts[..., 0:2]], axis=-1)
    return mirrored.astype(out_dtype)
