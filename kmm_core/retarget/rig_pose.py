# SPDX-License-Identifier: GPL-3.0-or-later
"""A rig's pose brought back onto the canonical skeleton: the reverse of `transfer.py`, for the animator's key
poses (NumPy, no torch).

Input: the 22 canonical joint points as the bone map places them on the posed rig (``kmm_blender/rigs/retarget.py``
``evaluated_joint_points``: HumanML3D axes, metres, relative to the armature's origin).  Retargeting scales the
canonical motion by s = rig leg length / canonical leg length (``RetargetPlan.scale``), so the reverse divides by
s; the pose keeps every bone's direction from the rig and takes the canonical skeleton's bone lengths
(``skeleton.BONE_LENGTHS``), so the pose is one the canonical skeleton can reach and the generated motion, sent back
onto the rig, puts its bones where the animator posed them (up to the rig's own proportions).
"""

from __future__ import annotations

import numpy as np

from ..common.errors import KMMError
from ..motion.skeleton import BONE_LENGTHS, JOINT_NAMES, PARENTS, rest_positions, tpose_offsets
from .bone_map import BoneMap
from .target_skeleton import TargetSkeleton
from .transfer import plan_retarget


class RigPoseError(KMMError, ValueError):
    """A rig's pose cannot become a canonical pose (names the rig, frame and joint)."""


def rig_scale(skeleton: TargetSkeleton, bone_map: BoneMap) -> float:
    """s = the rig's leg length / the canonical skeleton's: what retargeting multiplies canonical motion by."""
    return plan_retarget(skeleton, bone_map, rest_positions(tpose_offsets())).scale


def canonical_point(point: np.ndarray, scale: float) -> np.ndarray:
    """A point near the rig (HumanML3D axes, metres, relative to the armature's origin) in the canonical motion's
    space: an end-effector target taken from an empty or a bone."""
    return np.asarray(point, dtype=np.float64) / scale


def canonical_pose(points: np.ndarray, scale: float, where: str = "the rig") -> np.ndarray:
    """(22, 3) canonical joint positions from the rig's joint points (22, 3): the pelvis at points[0] / s, every bone
    along the rig's direction with the canonical length.  A joint the bone map leaves out (NaN), or a bone of zero
    length, is refused by name."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (len(JOINT_NAMES), 3):
        raise RigPoseError(f"{where}: expected {len(JOINT_NAMES)} joint points, got shape {points.shape}")
    missing = [JOINT_NAMES[j] for j in range(len(JOINT_NAMES)) if not np.isfinite(points[j]).all()]
    if missing:
        raise RigPoseError(f"{where}: the bone map gives no bone for {', '.join(missing)}: map it in the Target Rig "
                           "panel to use this pose as a constraint")
    pose = np.empty_like(points)
    pose[0] = points[0] / scale
    for joint, parent in enumerate(PARENTS):
        if parent < 0:
            continue
        bone = points[joint] - points[parent]
        length = float(np.linalg.norm(bone))
        if length < 1e-6:
            raise RigPoseError(f"{where}: the bone {JOINT_NAMES[parent]} -> {JOINT_NAMES[joint]} has no length in "
                               "this pose (two mapped bones sit on one point)")
        pose[joint] = pose[parent] + bone / length * BONE_LENGTHS[joint]
    return pose


FIT_ITERATIONS = 12
FIT_STEP = 0.5
"""Share of the round trip's miss each step corrects (a full step overshoots on rigs whose spine differs most)."""


def fitted_canonical_pose(points: np.ndarray, skeleton: TargetSkeleton, bone_map: BoneMap,
                          where: str = "the rig") -> np.ndarray:
    """`canonical_pose` corrected so that retargeting it back onto the rig puts the rig's joints where `points`
    are: the rig's proportions differ from the canonical skeleton's, and retargeting keeps the feet within the legs'
    reach, so a plain division by the scale lands the rig's pelvis centimetres off.  A few fixed-point steps move the
    points the pose is read from by what the round trip misses."""
    from ..motion.kinematics import inverse_kinematics
    from .transfer import retarget, source_from_rotations

    points = np.asarray(points, dtype=np.float64)
    scale = rig_scale(skeleton, bone_map)
    pose = canonical_pose(points, scale, where)
    read_from = points.copy()
    offsets = tpose_offsets()
    best, best_miss = pose, np.inf
    for _ in range(FIT_ITERATIONS):
        root, rotations = inverse_kinematics(np.repeat(pose[None], 2, axis=0), offsets)
        source = source_from_rotations(root, rotations, offsets, 30.0)
        back = retarget(source, skeleton, bone_map, only_needed_bones=True).joint_points()[0]
        miss = points - back
        mean_miss = float(np.linalg.norm(miss, axis=-1).mean())
        if mean_miss < best_miss:
            best, best_miss = pose, mean_miss
        if mean_miss < 1e-4:
            break
        read_from = read_from + FIT_STEP * miss
        pose = canonical_pose(read_from, scale, where)
    return best
