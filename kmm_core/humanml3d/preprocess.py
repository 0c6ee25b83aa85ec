# SPDX-License-Identifier: GPL-3.0-or-later
"""Bring raw joint positions into HumanML3D's canonical frame before computing features.

Steps, in HumanML3D's order (``process_file`` of its ``motion_representation.ipynb``):

1. retarget to the uniform reference skeleton (``skeleton.BONE_LENGTHS``) keeping every joint rotation;
2. put the floor at y = 0 (the lowest joint over the whole clip touches it);
3. move the root's xz to the origin at frame 0;
4. turn about Y so that the character faces +Z at frame 0.

Input: (T, 22, 3) joints, metres, Y up, HumanML3D joint order, any facing and position.
"""

from __future__ import annotations

import numpy as np

from ..motion.rotations import qbetween, qrot
from ..motion.skeleton import BONE_LENGTHS, RAW_OFFSET_DIRECTIONS
from .features import (
    MotionArrayError,
    check_joints,
    forward_directions,
    forward_kinematics,
    inverse_kinematics,
    joints_to_features,
)

# The leg bones whose summed length sets the scale of the root trajectory (right knee->ankle, as HumanML3D).
_SCALE_BONES = (5, 8)
# Facing used to turn the clip: across = (right hip - left hip) + (right shoulder - left shoulder);
# forward = up x across points the way the character looks.
_ACROSS_PLUS = (2, 17)   # right hip, right shoulder
_ACROSS_MINUS = (1, 16)  # left hip, left shoulder


def retarget_to_reference_skeleton(joints: np.ndarray, bone_lengths: np.ndarray = BONE_LENGTHS) -> np.ndarray:
    """Same motion on the reference skeleton: local rotations kept, bone lengths replaced, root path rescaled.

    Rotations come from HumanML3D's IK against ``RAW_OFFSET_DIRECTIONS`` and are replayed by FK with the reference
    offsets, so every bone keeps its direction.  The root trajectory (including its height) is scaled by the ratio
    of the reference leg length to the source leg length at frame 0, so that steps stay proportional to the legs.
    """
    joints = check_joints(joints)
    source_leg = sum(np.linalg.norm(joints[0, b] - joints[0, p]) for b, p in ((5, 2), (8, 5)))
    target_leg = float(sum(bone_lengths[b] for b in _SCALE_BONES))
    if source_leg < 1e-8:
        raise MotionArrayError("joints: the right leg has zero length at frame 0, cannot scale the skeleton")
    scale = target_leg / source_leg
    local_quats = inverse_kinematics(joints, smooth_forward=False)
    offsets = RAW_OFFSET_DIRECTIONS * np.asarray(bone_lengths, dtype=np.float64)[:, None]
    return forward_kinematics(local_quats, joints[:, 0] * scale, offsets)


def put_on_floor(joints: np.ndarray) -> np.ndarray:
    """Shift vertically so the lowest joint over all frames is at y = 0."""
    joints = check_joints(joints)
    joints[..., 1] -= joints[..., 1].min()
    return joints


def root_to_origin(joints: np.ndarray) -> np.ndarray:
    """Shift horizontally so the root's xz is at the origin at frame 0 (height untouched)."""
    joints = check_joints(joints)
    joints[..., [0, 2]] -= joints[0, 0, [0, 2]]
    return joints


def facing_rotation(pose: np.ndarray) -> np.ndarray:
    """(4,) rotation about Y that turns the facing of one pose (22, 3) onto +Z."""
    forward = forward_directions(np.asarray(pose, dtype=np.float64), _ACROSS_PLUS, _ACROSS_MINUS)
    forward = forward / max(float(np.linalg.norm(forward)), 1e-12)
    return qbetween(forward, np.array([0.0, 0.0, 1.0]))


def face_positive_z(joints: np.ndarray) -> np.ndarray:
    """Rotate the whole clip about the Y axis through the origin so that frame 0 faces +Z."""
    joints = check_joints(joints)
    rotation = facing_rotation(joints[0])
    return qrot(np.broadcast_to(rotation, joints.shape[:-1] + (4,)), joints)


def preprocess_joints(joints: np.ndarray) -> np.ndarray:
    """Raw joints (T, 22, 3) -> canonical HumanML3D joints (T, 22, 3), float64."""
    canonical = retarget_to_reference_skeleton(joints)
    canonical = put_on_floor(canonical)
    canonical = root_to_origin(canonical)
    return face_positive_z(canonical)


def process_motion(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D's whole ``process_file``: raw joints (T, 22, 3) -> (features (T-1, 263), canonical joints (T, 22, 3)).

    HumanML3D then stores ``features_to_joints(features)`` as ``new_joints`` (T-1 frames), not the canonical joints.
    """
    canonical = preprocess_joints(joints)
    return joints_to_features(canonical), canonical
