# SPDX-License-Identifier: GPL-3.0-or-later
"""How a standing body stands (NumPy): the knee angle while it stands still, as biomechanics measures it.

The knee angle is the angle at the knee between the thigh (knee -> hip) and the shin (knee -> ankle): 180 degrees
is a straight leg; people standing quietly hold their knees nearly straight (flexion 0-10 degrees, an angle of
170-180), and a figure at 140 looks crouched.  Measured on the frames where the body stands (`standing_frames`: the
pelvis slower than STILL_SPEED_LEGS leg lengths a second and both ankles within CONTACT_HEIGHT_LEGS of their lowest),
both legs, the median, of a take that stands at least MIN_STANDING_SECONDS in all: a take that bends down to pick
something up passes the standing test on a few frames on its way down and up, on bent knees, which are not how it
stands.  Joints are (T, 22, 3), metres, HumanML3D axes (Y up).
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputTensorError
from ..motion.skeleton import JOINT_INDEX
from .gait import CONTACT_HEIGHT_LEGS, leg_length

STILL_SPEED_LEGS = 0.15  # leg lengths a second: a pelvis slower than this is standing
MIN_STANDING_SECONDS = 1.0
"""A take that stands less than this in all does not stand (its knee angle is None)."""


def knee_angles(joints: np.ndarray) -> np.ndarray:
    """(T, 2) the left and right knee angles (degrees, 180 straight) of every frame."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise InputTensorError(f"joints: expected (T, 22, 3), got {joints.shape}")
    angles = []
    for side in ("left", "right"):
        hip, knee, ankle = (joints[:, JOINT_INDEX[f"{side}_{part}"]] for part in ("hip", "knee", "ankle"))
        thigh, shin = hip - knee, ankle - knee
        cosine = np.sum(thigh * shin, axis=-1) / np.maximum(
            np.linalg.norm(thigh, axis=-1) * np.linalg.norm(shin, axis=-1), 1e-12)
        angles.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    return np.stack(angles, axis=1)


def standing_frames(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T,) the frames where the body stands still on both feet."""
    joints = np.asarray(joints, dtype=np.float64)
    legs = leg_length(joints)
    pelvis = joints[:, 0, [0, 2]]
    speed = np.zeros(len(joints))
    if len(joints) > 1:
        speed[1:] = np.linalg.norm(np.diff(pelvis, axis=0), axis=-1) * fps / legs
        speed[0] = speed[1]
    down = np.ones(len(joints), dtype=bool)
    for side in ("left", "right"):
        height = joints[:, JOINT_INDEX[f"{side}_ankle"], 1]
        down &= height <= height.min() + CONTACT_HEIGHT_LEGS * legs
    return (speed < STILL_SPEED_LEGS) & down


def standing_knee_angle(joints: np.ndarray, fps: float) -> float | None:
    """The median knee angle (degrees) over the standing frames of a take, both legs; None when it stands less than
    `MIN_STANDING_SECONDS` in all."""
    frames = standing_frames(joints, fps)
    if frames.sum() < MIN_STANDING_SECONDS * fps:
        return None
    return float(np.median(knee_angles(np.asarray(joints)[frames])))
