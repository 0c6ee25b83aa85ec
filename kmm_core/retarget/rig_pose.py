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

from collections.abc import Generator

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


CHAINS = (("pelvis", "spine1", "spine2", "spine3", "neck", "head"),
          ("spine3", "left_collar", "left_shoulder"), ("spine3", "right_collar", "right_shoulder"),
          ("left_hip", "left_knee", "left_ankle", "left_foot"), ("right_hip", "right_knee", "right_ankle", "right_foot"))
"""The chains along which a joint the bone map leaves out is placed between (or after) the mapped ones."""


def completed_points(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(22, 3) the rig's joint points with the joints its bone map leaves out (NaN) placed from the mapped ones in
    the canonical skeleton's proportions (`scale`: the rig's metres per canonical metre): a joint between two mapped
    ones of its chain (`CHAINS`: spine2 between spine1 and spine3, a collar between spine3 and its shoulder, the neck
    between spine3 and the head) at its canonical share of the span; a joint past the last mapped one (a toe)
    continuing from it by its canonical offset turned with the body (its left from the hips, up, forward).  Rigs
    without collars, a neck, a middle spine bone or toes (Cesium Man, KayKit's mannequin, RobotExpressive) can then
    be keyed.  A joint it cannot place stays NaN (refused by `_checked_points`)."""
    points = np.array(points, dtype=np.float64, copy=True)
    if points.shape != (len(JOINT_NAMES), 3) or np.isfinite(points).all():
        return points
    rest = rest_positions(tpose_offsets())
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    for chain in CHAINS:
        joints = [index[name] for name in chain]
        known = [k for k, j in enumerate(joints) if np.isfinite(points[j]).all()]
        along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(rest[joints], axis=0), axis=-1))])
        for k, joint in enumerate(joints):
            if np.isfinite(points[joint]).all():
                continue
            before = [m for m in known if m < k]
            after = [m for m in known if m > k]
            if before and after:
                a, b = before[-1], after[0]
                t = (along[k] - along[a]) / max(along[b] - along[a], 1e-9)
                points[joint] = (1.0 - t) * points[joints[a]] + t * points[joints[b]]
    left = points[index["left_hip"]] - points[index["right_hip"]]
    left[1] = 0.0
    if np.isfinite(left).all() and np.linalg.norm(left) > 1e-9:
        left /= np.linalg.norm(left)
        up = np.array([0.0, 1.0, 0.0])
        body = np.stack([left, up, np.cross(left, up)], axis=1)  # canonical (left, up, forward) -> the rig's
        for chain in CHAINS:
            joints = [index[name] for name in chain]
            for k in range(1, len(joints)):
                joint, parent = joints[k], joints[k - 1]
                if not np.isfinite(points[joint]).all() and np.isfinite(points[parent]).all():
                    points[joint] = points[parent] + scale * body @ (rest[joint] - rest[parent])
    return points


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
    """(K, 22, 3, 3) per pose and canonical joint, the rotation taking its vectors to its children in `rest`
    (22, 3) onto those in `posed` (K, 22, 3), fitted as the transfer fits its bones (`transfer.py` step 2): the
    pelvis rigidly over itself and its children (centred), a joint whose children span a plane (spine3) by Kabsch
    from the joint, a joint with one child by the swing of that child composed with the parent's turn (which sets
    the twist); a leaf takes its parent's turn.  All poses at once: one NumPy step per joint, whatever K."""
    count = posed.shape[0]
    turns = np.empty((count, len(JOINT_NAMES), 3, 3))
    for joint, parent in enumerate(PARENTS):
        base = np.broadcast_to(np.eye(3), (count, 3, 3)) if parent < 0 else turns[:, parent]
        children = [c for c, p in enumerate(PARENTS) if p == joint]
        if not children:
            turns[:, joint] = base
            continue
        before, after = rest[children] - rest[joint], posed[:, children] - posed[:, [joint]]
        if parent < 0:
            before = np.vstack([np.zeros(3), before])
            after = np.concatenate([np.zeros((count, 1, 3)), after], axis=1)
            before, after = before - before.mean(axis=0), after - after.mean(axis=1, keepdims=True)
        swing = np.einsum("kij,kjl->kil", _swing(np.einsum("kij,j->ki", base, before.mean(axis=0)),
                                                 after.mean(axis=1)), base)
        if _spans_plane(before) and len(children) + (parent < 0) >= 2:
            unit = after / np.maximum(np.linalg.norm(after, axis=-1, keepdims=True), 1e-12)
            planar = np.linalg.svd(unit, compute_uv=False)[:, 1] > 0.1
            turns[:, joint] = np.where(planar[:, None, None], _kabsch(before, after), swing)
        else:
            turns[:, joint] = swing
    return turns


def canonical_poses(points: np.ndarray, rig_rest: np.ndarray, scale: float) -> np.ndarray:
    """(K, 22, 3) canonical joint positions from the rig's joint points (K, 22, 3), already checked, the reverse
    of the transfer (see `canonical_pose`), every pose at once."""
    rig_rest = np.asarray(rig_rest, dtype=np.float64)
    offsets = tpose_offsets()
    alignment = _joint_turns(rest_positions(offsets), rig_rest[None])[0]  # canonical rest -> the rig's rest
    turns = _joint_turns(rig_rest, points)                                 # the rig's rest -> each pose
    pose = np.empty_like(points)
    pose[:, 0] = points[:, 0] / scale
    for joint, parent in enumerate(PARENTS):
        if parent >= 0:
            pose[:, joint] = pose[:, parent] + turns[:, parent] @ (alignment[parent] @ offsets[joint])
    return pose


def canonical_pose(points: np.ndarray, rig_rest: np.ndarray, scale: float, where: str = "the rig") -> np.ndarray:
    """(22, 3) canonical joint positions from the rig's joint points (22, 3), the reverse of the transfer: each
    canonical joint turns the way the rig turns at that joint from its rest (`rig_rest`, the map's joint points on
    the rig's rest pose), starting from the canonical T-pose aligned with the rig's rest (the alignment the transfer
    uses, `transfer.py` step 1), and the pelvis sits at points[0] / s.  The result is the canonical skeleton posed by
    rotations, so it is always a pose it can take: copying the rig's bone directions instead breaks where the rig's
    rest differs from the T-pose at a joint with several children (the metarig's hips sit above its pelvis, its
    collars at the chest's middle), and left the Rigify metarig 15 cm off.  A joint the bone map leaves out (NaN),
    or a bone of zero length, is refused by name."""
    return canonical_poses(_checked_points(points, where)[None], rig_rest, scale)[0]


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
    """One pose of `fitted_canonical_poses`: (22, 3) from the rig's joint points (22, 3)."""
    return fitted_canonical_poses(np.asarray(points, dtype=np.float64)[None], skeleton, bone_map, [where])[0]


def fitted_canonical_poses(points: np.ndarray, skeleton: TargetSkeleton, bone_map: BoneMap,
                           wheres: list[str] | None = None) -> np.ndarray:
    """(K, 22, 3): `canonical_pose` of each of the rig's poses `points` (K, 22, 3), corrected so that retargeting
    it back onto the rig puts the rig's joints where `points` are (`fitting_steps` run to the end)."""
    steps = fitting_steps(points, skeleton, bone_map, wheres)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def fitting_steps(points: np.ndarray, skeleton: TargetSkeleton, bone_map: BoneMap,
                  wheres: list[str] | None = None) -> Generator[int, None, np.ndarray]:
    """(K, 22, 3): `canonical_pose` of each of the rig's poses `points` (K, 22, 3), corrected so that retargeting
    it back onto the rig puts the rig's joints where `points` are: the rig's proportions differ from the canonical
    skeleton's (the transfer fits the pelvis bone over its hips and spine, and keeps the feet within the legs'
    reach), so the first pose lands the rig's pelvis centimetres off (11 cm low on the Rigify metarig, whose hips
    sit above its pelvis).  The take will be raised by the feet rule's offset (`standing_offset`), so each pose is
    fitted to its points lowered by it.  A few fixed-point steps move the points each pose is read from by what the
    round trip misses.  The rig's plan, rest and standing offset are worked out once and every step retargets all
    poses together, so K poses cost about what one did (`wheres` names each pose in errors: rig and frame).  A
    generator: it yields the number of steps done after each (at most `FIT_ITERATIONS`) and returns the poses, so a
    caller can stop between steps (the panel's operator, which Esc cancels)."""
    from ..motion.kinematics import inverse_kinematics
    from .transfer import retarget, source_from_rotations

    points = np.asarray(points, dtype=np.float64)
    wheres = wheres if wheres is not None else [f"the rig (pose {k})" for k in range(len(points))]
    plan = plan_retarget(skeleton, bone_map, rest_positions(tpose_offsets()))
    scale = plan.scale
    mapped = np.isfinite(points).all(axis=-1)  # (K, 22): the joints the rig has; the others are placed, not fitted
    points = np.stack([_checked_points(completed_points(p, scale), where)
                       for p, where in zip(points, wheres, strict=True)])
    rig_rest = np.full(points.shape[1:], np.nan)
    for joint, point in plan.rest_points().items():
        rig_rest[joint] = point
    rig_rest = _checked_points(completed_points(rig_rest, scale), f"{wheres[0] if wheres else 'the rig'} (rest pose)")
    points = points - np.array([0.0, standing_offset(skeleton, bone_map), 0.0])
    pose = canonical_poses(points, rig_rest, scale)
    read_from = points.copy()
    offsets = tpose_offsets()
    count = len(points)
    best, best_miss = pose.copy(), np.full(count, np.inf)
    active = np.ones(count, dtype=bool)
    for step in range(FIT_ITERATIONS):
        frames = np.flatnonzero(active)
        poses = pose[frames] if len(frames) > 1 else np.repeat(pose[frames], 2, axis=0)
        root, rotations = inverse_kinematics(poses, offsets)
        source = source_from_rotations(root, rotations, offsets, 30.0)
        back = retarget(source, skeleton, bone_map, only_needed_bones=True).joint_points()[:len(frames)]
        miss = np.where(mapped[frames][..., None], points[frames] - back, 0.0)  # only where the rig has the joint
        mean_miss = np.linalg.norm(miss, axis=-1).sum(axis=-1) / np.maximum(mapped[frames].sum(axis=-1), 1)
        better = mean_miss < best_miss[frames]
        best[frames[better]] = pose[frames[better]]
        best_miss[frames[better]] = mean_miss[better]
        active[frames[mean_miss < 1e-4]] = False
        if not active.any():
            break
        read_from[frames] = read_from[frames] + FIT_STEP * miss
        pose[frames] = canonical_poses(read_from[frames], rig_rest, scale)
        yield step + 1
    return best


# ---- which joints a rig's keys hold (partial key poses) --------------------------------------------------------------
ARM_JOINTS = {side: tuple(f"{side}_{part}" for part in ("collar", "shoulder", "elbow", "wrist"))
              for side in ("left", "right")}
LEG_JOINTS = {side: tuple(f"{side}_{part}" for part in ("hip", "knee", "ankle", "foot")) for side in ("left", "right")}
JOINT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("root", ("pelvis",)), ("spine", ("spine1", "spine2", "spine3")), ("neck", ("neck",)), ("head", ("head",)),
    ("left arm", ARM_JOINTS["left"]), ("right arm", ARM_JOINTS["right"]),
    ("left leg", LEG_JOINTS["left"]), ("right leg", LEG_JOINTS["right"]))
"""The body's parts, for naming what a key holds (the panel's list)."""


def _bone_joints(bone_map: BoneMap, bone_parents: dict[str, str | None]) -> dict[str, str]:
    """Rig bone -> the canonical joint it stands for: the bone a joint drives (or places it, `points`), and a bone
    the map does not name but that carries mapped bones (Rigify's `hips`, a master control) -> the highest joint
    among those it carries.  Bones carrying none (fingers, IK targets, helpers) are left out."""
    joints: dict[str, str] = {}
    for joint, point in bone_map.points.items():
        for bone in (point.first, point.second):
            joints.setdefault(bone, joint)
    for joint, bone in bone_map.bones.items():
        if bone:
            joints[bone] = joint
    parents = dict(bone_parents)
    parents.update(bone_map.parents)
    depth = {name: len(_ancestor_names(JOINT_NAMES.index(name))) for name in JOINT_NAMES}
    carried: dict[str, str] = {}
    for bone, joint in joints.items():
        seen = set()
        ancestor = parents.get(bone)
        while ancestor and ancestor not in seen:
            seen.add(ancestor)
            if ancestor not in joints and (ancestor not in carried or depth[joint] < depth[carried[ancestor]]):
                carried[ancestor] = joint
            ancestor = parents.get(ancestor)
    return {**carried, **joints}


def _ancestor_names(joint: int) -> list[int]:
    chain = []
    while joint >= 0:
        chain.append(joint)
        joint = PARENTS[joint]
    return chain


def keyed_joints(keyed_bones: set[str] | list[str], bone_map: BoneMap, bone_parents: dict[str, str | None]
                 ) -> tuple[str, ...] | None:
    """The canonical joints a partial key holds, given the rig bones keyed at one frame: a keyed arm bone holds
    that whole arm (collar to wrist), a keyed leg bone that leg from it down to the toes, the hips (or a control
    carrying them) the root, a spine, neck or head bone itself.  None when the keys hold every joint the map
    drives (a whole-body pose); () when no keyed bone stands for a joint (only fingers or IK targets keyed)."""
    bone_joints = _bone_joints(bone_map, bone_parents)
    joints = {bone_joints[bone] for bone in keyed_bones if bone in bone_joints}
    for side in ("left", "right"):
        if joints & set(ARM_JOINTS[side]):
            joints |= set(ARM_JOINTS[side])
        leg = LEG_JOINTS[side]
        keyed = [index for index, name in enumerate(leg) if name in joints]
        if keyed:
            joints |= set(leg[min(keyed):])
    driven = {joint for joint, bone in bone_map.bones.items() if bone}
    if driven and driven <= joints:
        return None
    return tuple(name for name in JOINT_NAMES if name in joints)


def held_summary(joints: list[str] | tuple[str, ...] | None) -> str:
    """What a key holds in words: "whole body", or its parts ("right arm, root"), naming single joints of a part
    held only in part."""
    if joints is None:
        return "whole body"
    held = set(joints)
    words = []
    for name, members in JOINT_GROUPS:
        if set(members) <= held:
            words.append(name)
        else:
            words.extend(member for member in members if member in held)
    return ", ".join(words) if words else "nothing"
