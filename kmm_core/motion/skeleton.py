# SPDX-License-Identifier: GPL-3.0-or-later
"""The canonical 22-joint skeleton of HumanML3D (SMPL body joints without the hands).

Coordinates follow HumanML3D: metres, Y up, the character faces +Z and its left is +X.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# Chains from the pelvis (or spine3) to each extremity, as HumanML3D lists them.
KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),       # right leg
    (0, 1, 4, 7, 10),       # left leg
    (0, 3, 6, 9, 12, 15),   # spine and head
    (9, 14, 17, 19, 21),    # right arm
    (9, 13, 16, 18, 20),    # left arm
)

LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21),
)

# Each joint's index after swapping left and right (used by mirroring).
MIRROR_INDEX: tuple[int, ...] = tuple(
    next((b for a, b in LEFT_RIGHT_PAIRS if a == i), next((a for a, b in LEFT_RIGHT_PAIRS if b == i), i))
    for i in range(NUM_JOINTS)
)

# HumanML3D's rest directions of each bone (unit vectors from the parent): legs and arms hang down,
# feet and head point forward.  These define the rest pose of the 6D rotation features.
RAW_OFFSET_DIRECTIONS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
     [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
     [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]],
    dtype=np.float64,
)

# Bone lengths (metres) of HumanML3D's uniform reference skeleton, read off the public sample
# new_joints/012314.npy (every processed HumanML3D clip has exactly these lengths).
BONE_LENGTHS = np.array(
    [0.0, 0.1031, 0.1099, 0.1316, 0.3936, 0.3902, 0.1432, 0.4324, 0.4256, 0.0574, 0.1434,
     0.1494, 0.2194, 0.1375, 0.1434, 0.1030, 0.1316, 0.1230, 0.2568, 0.2631, 0.2660, 0.2699],
    dtype=np.float64,
)

def rest_offsets() -> np.ndarray:
    """(22, 3) HumanML3D's own rest offsets (RAW_OFFSET_DIRECTIONS x bone lengths), the rest pose of its 6D rotation
    features.  Its hips point straight sideways, unlike the real skeleton: use `tpose_offsets()` for export."""
    return RAW_OFFSET_DIRECTIONS * BONE_LENGTHS[:, None]


# The T-pose used as the rest pose of exported armatures (BVH, Blender): arms straight out along +-X,
# spine and head up, legs down, feet forward.  Local rotations we export are relative to this pose.
# The pelvis -> (hips, spine1) and spine3 -> (neck, collars) offsets are rigid in SMPL, so their directions cannot be
# idealised without making inverse kinematics miss the hips and collars by centimetres: they are the real reference
# skeleton's directions, measured on new_joints/012314.npy and expressed in the frame whose x axis runs from the right
# to the left joint of the pair and whose y axis is the spine (resp. neck) direction made orthogonal to it.
TPOSE_OFFSET_DIRECTIONS = np.array(RAW_OFFSET_DIRECTIONS, copy=True)
TPOSE_OFFSET_DIRECTIONS[[1, 2, 3]] = [[0.0543, -0.0840, -0.0250], [-0.0663, -0.0840, -0.0250], [0.0033, 0.1315, 0.0]]
TPOSE_OFFSET_DIRECTIONS[[12, 13, 14]] = [[-0.0067, 0.2193, 0.0], [0.0661, 0.1196, -0.0151], [-0.0777, 0.1196, -0.0151]]
TPOSE_OFFSET_DIRECTIONS[[15]] = [0, 1, 0]
TPOSE_OFFSET_DIRECTIONS[[16, 18, 20]] = [1, 0, 0]
TPOSE_OFFSET_DIRECTIONS[[17, 19, 21]] = [-1, 0, 0]
TPOSE_OFFSET_DIRECTIONS[1:] /= np.linalg.norm(TPOSE_OFFSET_DIRECTIONS[1:], axis=-1, keepdims=True)


def tpose_offsets() -> np.ndarray:
    """(22, 3) offsets of each joint from its parent in the T-pose, metres, HumanML3D axes."""
    return TPOSE_OFFSET_DIRECTIONS * BONE_LENGTHS[:, None]


def rest_positions(offsets: np.ndarray | None = None) -> np.ndarray:
    """(22, 3) world joint positions of a rest pose (default HumanML3D's) with the pelvis at the origin."""
    offsets = rest_offsets() if offsets is None else offsets
    positions = np.zeros_like(offsets)
    for joint, parent in enumerate(PARENTS):
        if parent >= 0:
            positions[joint] = positions[parent] + offsets[joint]
    return positions


def mirror_positions(positions: np.ndarray) -> np.ndarray:
    """Mirror joint positions (..., 22, 3) across the YZ plane: swap left/right joints and negate x."""
    mirrored = np.array(positions, copy=True)[..., list(MIRROR_INDEX), :]
    mirrored[..., 0] *= -1.0
    return mirrored


_SIDE_SWAPS = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT",
               "clockwise": "counterclockwise", "counterclockwise": "clockwise",
               "counter-clockwise": "clockwise", "anticlockwise": "clockwise"}


def mirror_text(text: str) -> str:
    """Swap side words (left <-> right, clockwise <-> counterclockwise) in a caption."""
    import re

    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(_SIDE_SWAPS, key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: _SIDE_SWAPS[m.group(0)], text)
