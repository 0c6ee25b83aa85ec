# SPDX-License-Identifier: GPL-3.0-or-later
"""A rig's pose brought back onto the canonical skeleton: the reverse of `transfer.py`, for the animator's key
poses (NumPy, no torch).

Input: the 22 canonical joint points as the bone map places them on the posed rig (``kmm_blender/rigs/retarget.py``
``evaluated_joint_points``: HumanML3D axes, metres, relative to the armature's origin).  Retargeting scales the
canonical motion by s = rig leg length / canonical leg length (``RetargetPlan.scale``), so the reverse divides by
s; the canonical skeleton turns at each joint the way the rig turns from its rest there (`canonical_pose`), so the
pose is one the canonical skeleton can take, and a few fixed-point steps (`fitted_canonical_pose`) correct it until
the generated motion, sent back onto the rig, puts its bones where the animator posed them.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import KMMError
from ..motion.skeleton import JOINT_NAMES, PARENTS, rest_positions, tpose_offsets
from .bone_map import BoneMap
from .target_skeleton import TargetSkeleton
from .transfer import _kabsch, _spans_plane, _swing, plan_retarget


class RigPoseError(KMMError, ValueError):
    """A rig's pose cannot become a canonical pose (names the rig, frame and joint)."""


def rig_scale(skeleton: TargetSkeleton, bone_map: BoneMap) -> float:
    """s = the rig's leg length / the canonical skeleton's: what retargeting multiplies canonical motion by."""
    return plan_retarget(skeleton, bone_map, rest_positions(tpose_offsets())).scale


def canonical_point(point: np.ndarray, scale: float) -> np.ndarray:
    """A point near the rig (HumanML3D axes, metres, relative to the armature's origin) in the canonical motion's
    space: an end-effector target taken from an empty or a bone."""
    return np.asarray(point, dtype=np.float64) / scale


def _checked_points(points: np.ndarray, where: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (len(JOINT_NAMES), 3):
        raise RigPoseError(f"{where}: expected {len(JOINT_NAMES)} joint points, got shape {points.shape}")
    missing = [JOINT_NAMES[j] for j in range(len(JOINT_NAMES)) if not np.isfinite(points[j]).all()]
    if missing:
        raise RigPoseError(f"{where}: the bone map gives no bone for {', '.join(missing)}: map it in the Target Rig "
                           "panel to use this pose as a constraint")
    for joint, parent in enumerate(PARENTS):
        if parent >= 0 and np.linalg.norm(points[joint] - points[parent]) < 1e-6:
            raise RigPoseError(f"{where}: the bone {JOINT_NAMES[parent]} -> {JOINT_NAMES[joint]} has no length in "
                               "this pose (two mapped bones sit on one point)")
    return points


def _joint_turns(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """(22, 3, 3) per canonical joint, the rotation taking its vectors to its children in `rest` (22, 3) onto those
    in `posed`, fitted as the transfer fits its bones (`transfer.py` step 2): the pelvis rigidly over itself and
    its children (centred), a joint whose children span a plane (spine3) by Kabsch from the joint, a joint with one
    child by the swing of that child composed with the parent's turn (which sets the twist); a leaf takes its
    parent's turn."""
    turns = np.empty((len(JOINT_NAMES), 3, 3))
    for joint, parent in enumerate(PARENTS):
        base = np.eye(3) if parent < 0 else turns[parent]
        children = [c for c, p in enumerate(PARENTS) if p == joint]
        before, after = rest[children] - rest[joint], posed[children] - posed[joint]
        if parent < 0:
            before, after = (np.vstack([np.zeros(3), v]) for v in (before, after))
            before, after = before - before.mean(axis=0), after - after.mean(axis=0)
        if _spans_plane(before) and _spans_plane(after):
            turns[joint] = _kabsch(before, after[None])[0]
        elif children:
            turns[joint] = _swing(base @ before.mean(axis=0), after.mean(axis=0)) @ base
        else:
            turns[joint] = base
    return turns


def canonical_pose(points: np.ndarray, rig_rest: np.ndarray, scale: float, where: str = "the rig") -> np.ndarray:
    """(22, 3) canonical joint positions from the rig's joint points (22, 3), the reverse of the transfer: each
    canonical joint turns the way the rig turns at that joint from its rest (`rig_rest`, the map's joint points on
    the rig's rest pose), starting from the canonical T-pose aligned with the rig's rest (the alignment the transfer
    uses, `transfer.py` step 1), and the pelvis sits at points[0] / s.  The result is the canonical skeleton posed by
    rotations, so it is always a pose it can take: copying the rig's bone directions instead breaks where the rig's
    rest differs from the T-pose at a joint with several children (the metarig's hips sit above its pelvis, its
    collars at the chest's middle), and left the Rigify metarig 15 cm off.  A joint the bone map leaves out (NaN),
    or a bone of zero length, is refused by name."""
    points = _checked_points(points, where)
    rig_rest = np.asarray(rig_rest, dtype=np.float64)
    offsets = tpose_offsets()
    alignment = _joint_turns(rest_positions(offsets), rig_rest)  # canonical rest -> the rig's rest
    turns = _joint_turns(rig_rest, points)                        # the rig's rest -> its pose
    pose = np.empty_like(points)
    pose[0] = points[0] / scale
    for joint, parent in enumerate(PARENTS):
        if parent >= 0:
            pose[joint] = pose[parent] + turns[parent] @ alignment[parent] @ offsets[joint]
    return pose


FIT_ITERATIONS = 12
FIT_STEP = 1.0
"""Share of the round trip's miss each step corrects: the whole of it (the best step is kept, so an overshoot on a
rig whose spine differs most costs nothing); the Rigify metarig and rig are within 1 cm after 4 steps."""


def standing_offset(skeleton: TargetSkeleton, bone_map: BoneMap) -> float:
    """Metres the take's feet rule (`foot_ground.py`) raises the body on this rig when the canonical skeleton stands
    on its floor (HumanML3D's floor: the lowest joint at y = 0): a generated take is moved by about this much, so a
    key pose is read from the rig's points without it."""
    from .transfer import retarget, source_from_positions

    standing = rest_positions(tpose_offsets())
    standing[:, 1] -= standing[:, 1].min()
    source = source_from_positions(np.repeat(standing[None], 2, axis=0), 30.0)
    return retarget(source, skeleton, bone_map, only_needed_bones=True, feet_on_ground=True).vertical_offset


def fitted_canonical_pose(points: np.ndarray, skeleton: TargetSkeleton, bone_map: BoneMap,
                          where: str = "the rig") -> np.ndarray:
    """`canonical_pose` corrected so that retargeting it back onto the rig puts the rig's joints where `points`
    are: the rig's proportions differ from the canonical skeleton's (the transfer fits the pelvis bone over its hips
    and spine, and keeps the feet within the legs' reach), so the first pose lands the rig's pelvis centimetres off
    (11 cm low on the Rigify metarig, whose hips sit above its pelvis).  The take will be raised by the feet rule's
    offset (`standing_offset`), so the pose is fitted to the points lowered by it.  A few fixed-point steps move the
    points the pose is read from by what the round trip misses."""
    from ..motion.kinematics import inverse_kinematics
    from .transfer import retarget, source_from_rotations

    points = _checked_points(points, where)
    plan = plan_retarget(skeleton, bone_map, rest_positions(tpose_offsets()))
    scale = plan.scale
    rig_rest = np.full_like(points, np.nan)
    for joint, point in plan.rest_points().items():
        rig_rest[joint] = point
    rig_rest = _checked_points(rig_rest, f"{where} (rest pose)")
    points = points - np.array([0.0, standing_offset(skeleton, bone_map), 0.0])
    pose = canonical_pose(points, rig_rest, scale, where)
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
        pose = canonical_pose(read_from, rig_rest, scale, where)
    return best
