# SPDX-License-Identifier: GPL-3.0-or-later
"""Meet a timeline's constraints on a generated motion: exactly at their frames, smoothly around them (NumPy).

Three passes over a MotionResult (root translation + local rotations on its rest skeleton), each leaving the
frames far from every constraint as they were:

1. **Placement** (``place_on_keys``): where the constraints say where the body is (a pose's pelvis, a root
   target) or which way it faces (a pose, a facing key), the whole motion is turned and moved there: the turn
   (about the vertical) and the floor offset ease from one key to the next with a quintic smootherstep, the walk's
   own steps rotated with the turn, so the character walks to the key rather than sliding.
2. **Poses** (``pose_offsets``): the difference between each key pose and the placed motion at its frame, per
   joint as a rotation (left-multiplied, in the parent's space) and for the pelvis as a translation, is spread over
   the frames around the key by a minimum-jerk curve (``minimum_jerk_offsets``): it equals the difference at every
   keyed frame, is zero with zero velocity and acceleration at the edges of a window of ``MARGIN_SECONDS`` around
   the keys, and is the curve of least summed squared jerk between (a quintic spline).  So a key is met exactly
   and nothing pops: the jerk it adds falls as the cube of the window's length.
3. **End-effectors** (``effector_offsets``): on the motion after pass 2, each target's chain is solved at its frames
   (two-bone IK for an arm or a leg, an aim of the spine for the head, a shift of the pelvis when a limb cannot
   reach and the pelvis is free); the new chain rotations are spread the same way while the rest of the body is
   held at those frames (and every key pose's frame is held), so the targets are met exactly without undoing the
   poses.

A constraint's ``weight`` below 1 takes that share of the way (soft); "hard" takes all of it.  Frames here are
0-based frames of the motion (``Timeline.constraint_frames()``, at the motion's fps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..common.errors import KMMError
from ..motion.kinematics import forward_kinematics, reaim_joints
from ..motion.motion_result import MotionResult
from ..motion.rotations import (
    axis_angle_to_quat,
    qbetween,
    qinv,
    qmul,
    qnormalize,
    qrot,
    quat_to_axis_angle,
)
from ..motion.skeleton import JOINT_INDEX, NUM_JOINTS, PARENTS
from ..motion.two_bone_ik import bend_pole, solve_two_bone
from .constraints import Constraint, EffectorTarget, FacingKey, PoseKey, body_facing

MARGIN_SECONDS = 1.0
"""How far around its keys a pose's correction reaches: long enough that the jerk it adds stays below the motion's
own (benchmarks/measure_constraints.py), short enough that the prompt's action is kept between keys 2 s apart."""
EFFECTOR_MARGIN_SECONDS = 0.5
EDGE_FRAMES = 3
"""Frames at each window edge held at zero offset: position, velocity and acceleration of the correction vanish."""
ROOT_TRANSLATION = NUM_JOINTS  # channel group index of the pelvis translation in an offsets array (T, 23, 3)
_LIMBS = {  # end joint -> (upper, middle): the two-bone chain that moves it
    JOINT_INDEX["left_wrist"]: (JOINT_INDEX["left_shoulder"], JOINT_INDEX["left_elbow"]),
    JOINT_INDEX["right_wrist"]: (JOINT_INDEX["right_shoulder"], JOINT_INDEX["right_elbow"]),
    JOINT_INDEX["left_ankle"]: (JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"]),
    JOINT_INDEX["right_ankle"]: (JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"]),
}
_TOE_ANKLE = {JOINT_INDEX["left_foot"]: JOINT_INDEX["left_ankle"], JOINT_INDEX["right_foot"]: JOINT_INDEX["right_ankle"]}
_HEAD, _SPINE1 = JOINT_INDEX["head"], JOINT_INDEX["spine1"]


class ConstraintSolveError(KMMError, ValueError):
    """A constraint cannot be met on this motion (names the constraint and frame)."""


# ---- small rotation helpers -------------------------------------------------------------------------------------------
def _yaw_quat(angle: np.ndarray) -> np.ndarray:
    half = 0.5 * np.asarray(angle, dtype=np.float64)
    return np.stack([np.cos(half), np.zeros_like(half), np.sin(half), np.zeros_like(half)], axis=-1)


def _heading(direction: np.ndarray) -> np.ndarray:
    """Angle about +Y (radians) that turns +Z onto the floor direction (x, z)."""
    direction = np.asarray(direction, dtype=np.float64)
    return np.arctan2(direction[..., 0], direction[..., 1])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def global_rotations(local_rotations: np.ndarray) -> np.ndarray:
    """(T, 22, 4) world rotations from local ones (G_j = G_parent * L_j)."""
    result = np.empty_like(local_rotations)
    for joint, parent in enumerate(PARENTS):
        result[:, joint] = local_rotations[:, joint] if parent < 0 else qmul(result[:, parent],
                                                                              local_rotations[:, joint])
    return result


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def eased_keys(num_frames: int, frames: Sequence[int], values: np.ndarray) -> np.ndarray:
    """(T, C) curve through ``values`` (K, C) at ``frames``, quintic smootherstep between neighbouring keys (zero
    velocity and acceleration at each key), constant before the first key and after the last."""
    values = np.asarray(values, dtype=np.float64).reshape(len(frames), -1)
    out = np.zeros((num_frames, values.shape[1]))
    if not len(frames):
        return out
    order = np.argsort(frames, kind="stable")
    frames, values = np.asarray(frames)[order], values[order]
    t = np.arange(num_frames)
    out[:] = values[0]
    for (a, b), (va, vb) in zip(zip(frames[:-1], frames[1:], strict=True), zip(values[:-1], values[1:], strict=True),
                                strict=True):
        inside = (t >= a) & (t <= b)
        weight = _smootherstep((t[inside] - a) / max(b - a, 1))[:, None]
        out[inside] = va + (vb - va) * weight
    out[t > frames[-1]] = values[-1]
    return out


# ---- the minimum-jerk correction --------------------------------------------------------------------------------------
def _windows(frames: np.ndarray, margin: int, num_frames: int) -> list[tuple[int, int]]:
    """[start, end) windows around keyed frames: each key with `margin` frames both sides, overlapping ones merged."""
    windows: list[list[int]] = []
    for frame in np.unique(frames):
        start, end = max(0, frame - margin), min(num_frames, frame + margin + 1)
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    return [(a, b) for a, b in windows]


def minimum_jerk_offsets(num_frames: int, key_frames: np.ndarray, key_values: np.ndarray, known: np.ndarray,
                         margin: int) -> np.ndarray:
    """(T, C) offsets: channel c equals ``key_values[k, c]`` at ``key_frames[k]`` where ``known[k, c]``, is zero
    outside windows of ``margin`` frames around the keys (with zero velocity and acceleration at the window edges,
    unless the edge is the clip's end, which is left free), and in between has the least summed squared jerk
    (third difference).  Channels with no known key stay zero."""
    from scipy.linalg import solveh_banded

    key_frames = np.asarray(key_frames, dtype=np.int64)
    key_values = np.asarray(key_values, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    channels = key_values.shape[1]
    offsets = np.zeros((num_frames, channels))
    for start, end in _windows(key_frames[known.any(axis=1)], margin, num_frames):
        size = end - start
        inside = (key_frames >= start) & (key_frames < end)
        fixed_value = np.full((size, channels), np.nan)
        for frame, values, mask in zip(key_frames[inside], key_values[inside], known[inside], strict=True):
            fixed_value[frame - start, mask] = values[mask]
        edge = np.zeros(size, dtype=bool)
        if start > 0:
            edge[:EDGE_FRAMES] = True
        if end < num_frames:
            edge[-EDGE_FRAMES:] = True
        keyed_channels = np.flatnonzero(np.isfinite(fixed_value).any(axis=0))
        fixed_value[edge] = np.where(np.isnan(fixed_value[edge]), 0.0, fixed_value[edge])
        hessian = _jerk_hessian(size)
        patterns: dict[bytes, list[int]] = {}  # channels keyed on the same frames share one solve
        for channel in keyed_channels:
            patterns.setdefault(np.isfinite(fixed_value[:, channel]).tobytes(), []).append(int(channel))
        for pattern, members in patterns.items():
            is_fixed = np.frombuffer(pattern, dtype=bool)
            values = fixed_value[:, members].copy()
            free = ~is_fixed
            if free.any():
                values[free] = 0.0
                rhs = -(hessian[np.ix_(free, is_fixed)] @ values[is_fixed])
                reduced = hessian[np.ix_(free, free)]
                bands = np.zeros((4, reduced.shape[0]))  # upper form: bands[3 - k, i] = reduced[i - k, i]
                for k in range(4):
                    bands[3 - k, k:] = np.diagonal(reduced, offset=k)
                values[free] = solveh_banded(bands, rhs, lower=False)
            offsets[start:end, members] = values
    return offsets


def _jerk_hessian(size: int) -> np.ndarray:
    """D3ᵀ D3 of the third difference over `size` frames, plus a tiny ridge (a free clip end is then held still)
    and a small velocity term so a free end does not swing."""
    hessian = 1e-6 * np.eye(size)
    if size >= 4:
        third = np.zeros((size - 3, size))
        for row in range(size - 3):
            third[row, row:row + 4] = (-1.0, 3.0, -3.0, 1.0)
        hessian += third.T @ third
    if size >= 2:
        first = np.zeros((size - 1, size))
        for row in range(size - 1):
            first[row, row:row + 2] = (-1.0, 1.0)
        hessian += 1e-3 * (first.T @ first)
    return hessian


# ---- pass 1: placement ------------------------------------------------------------------------------------------------
def place_on_keys(root: np.ndarray, rotations: np.ndarray, joints: np.ndarray,
                  constraints: Sequence[Constraint]) -> tuple[np.ndarray, np.ndarray]:
    """Root translation and rotations turned and moved so that keyed facings and pelvis floor positions are met."""
    num_frames = len(root)
    facing = _heading(body_facing(joints))
    yaw_frames, yaw_values, floor_keys = [], [], []
    for constraint in constraints:
        if isinstance(constraint, PoseKey | FacingKey):
            target = constraint.direction if isinstance(constraint, FacingKey) else body_facing(
                constraint.positions()[None])[0]
            yaw_frames.append(constraint.frame)
            yaw_values.append(constraint.weight * _wrap(_heading(target) - facing[constraint.frame]))
        if isinstance(constraint, PoseKey):
            floor_keys.append((constraint.frame, np.asarray(constraint.root)[[0, 2]], constraint.weight))
        elif isinstance(constraint, EffectorTarget) and constraint.joint_index == 0:
            floor_keys += [(f, np.asarray(constraint.position)[[0, 2]], constraint.weight)
                           for f in sorted({constraint.start, constraint.end})]
    if not yaw_frames and not floor_keys:
        return root, rotations
    yaw = eased_keys(num_frames, yaw_frames, np.asarray(yaw_values))[:, 0] if yaw_frames else np.zeros(num_frames)
    turn = _yaw_quat(yaw)
    steps = np.diff(root, axis=0)
    steps[:, 1] = 0.0
    turned_steps = qrot(turn[1:], steps)
    placed = np.empty_like(root)
    placed[0] = root[0]
    placed[1:] = root[0] + np.cumsum(turned_steps, axis=0)
    placed[:, 1] = root[:, 1]
    if floor_keys:
        frames = [frame for frame, _, _ in floor_keys]
        shifts = np.asarray([weight * (target - placed[frame, [0, 2]]) for frame, target, weight in floor_keys])
        shift = eased_keys(num_frames, frames, shifts)
        placed[:, 0] += shift[:, 0]
        placed[:, 2] += shift[:, 1]
    rotations = rotations.copy()
    rotations[:, 0] = qmul(turn, rotations[:, 0])
    return placed, rotations


# ---- passes 2 and 3: offsets spread over time -------------------------------------------------------------------------
def _rotation_residual(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vectors (…, 3) of the left offsets taking `current` to `target`."""
    return quat_to_axis_angle(qmul(qnormalize(target), qinv(qnormalize(current))))


def apply_offsets(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The motion with `offsets` (T, 23, 3) applied: rotation vectors left-multiplying each joint's local rotation,
    and (group ``ROOT_TRANSLATION``) a shift of the pelvis."""
    rotated = qnormalize(qmul(axis_angle_to_quat(offsets[:, :NUM_JOINTS]), rotations))
    return root + offsets[:, ROOT_TRANSLATION], rotated


def pose_offsets(root: np.ndarray, rotations: np.ndarray, constraints: Sequence[Constraint], fps: float
                 ) -> np.ndarray:
    """Offsets (T, 23, 3) that take the motion to every key pose (and root target) at its frames."""
    frames, values, known = [], [], []
    for constraint in constraints:
        if isinstance(constraint, PoseKey):
            value = np.zeros((NUM_JOINTS + 1, 3))
            value[:NUM_JOINTS] = constraint.weight * _rotation_residual(np.asarray(constraint.rotations),
                                                                        rotations[constraint.frame])
            value[ROOT_TRANSLATION] = constraint.weight * (np.asarray(constraint.root) - root[constraint.frame])
            frames.append(constraint.frame)
            values.append(value)
            known.append(np.ones((NUM_JOINTS + 1, 3), dtype=bool))
        elif isinstance(constraint, FacingKey):  # placement met it: keep the root's rotation there
            frames.append(constraint.frame)
            values.append(np.zeros((NUM_JOINTS + 1, 3)))
            mask = np.zeros((NUM_JOINTS + 1, 3), dtype=bool)
            mask[0] = True
            known.append(mask)
        elif isinstance(constraint, EffectorTarget) and constraint.joint_index == 0:
            for frame in range(constraint.start, constraint.end + 1):
                value = np.zeros((NUM_JOINTS + 1, 3))
                mask = np.zeros((NUM_JOINTS + 1, 3), dtype=bool)
                value[ROOT_TRANSLATION] = constraint.weight * (np.asarray(constraint.position) - root[frame])
                mask[ROOT_TRANSLATION] = True
                if constraint.orientation is not None:
                    value[0] = constraint.weight * _rotation_residual(np.asarray(constraint.orientation),
                                                                      rotations[frame, 0])
                    mask[0] = True
                frames.append(frame)
                values.append(value)
                known.append(mask)
    return _spread(len(root), frames, values, known, round(MARGIN_SECONDS * fps))


def _spread(num_frames: int, frames: list[int], values: list[np.ndarray], known: list[np.ndarray],
            margin: int) -> np.ndarray:
    if not frames:
        return np.zeros((num_frames, NUM_JOINTS + 1, 3))
    frames_array = np.asarray(frames)
    values_array = np.asarray(values).reshape(len(frames), -1)
    known_array = np.asarray(known).reshape(len(frames), -1)
    # Several constraints on one frame: their known channels are merged (validation refused disagreeing ones).
    unique = np.unique(frames_array)
    merged_values = np.zeros((len(unique), values_array.shape[1]))
    merged_known = np.zeros((len(unique), values_array.shape[1]), dtype=bool)
    for row, frame in enumerate(unique):
        for index in np.flatnonzero(frames_array == frame):
            fresh = known_array[index] & ~merged_known[row]
            merged_values[row, fresh] = values_array[index, fresh]
            merged_known[row] |= known_array[index]
    offsets = minimum_jerk_offsets(num_frames, unique, merged_values, merged_known, max(margin, EDGE_FRAMES + 1))
    return offsets.reshape(num_frames, NUM_JOINTS + 1, 3)


def _ancestors(joint: int) -> list[int]:
    chain = []
    while joint >= 0:
        chain.append(joint)
        joint = PARENTS[joint]
    return chain


def _solve_limb(positions: np.ndarray, end: int, target: np.ndarray, pole_hint: np.ndarray) -> np.ndarray:
    upper, middle = _LIMBS[end]
    first = np.linalg.norm(positions[middle] - positions[upper])
    second = np.linalg.norm(positions[end] - positions[middle])
    pole = bend_pole(positions[upper], positions[middle], positions[end], pole_hint)
    new_middle, new_end = solve_two_bone(positions[upper], target, pole, first, second)
    moved = positions.copy()
    moved[middle], moved[end] = new_middle, new_end
    return moved


def _effector_pose(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray, joint: int, target: np.ndarray,
                   root_free: bool) -> tuple[np.ndarray, np.ndarray]:
    """Root (3,) and local rotations (22, 4) of one frame with `joint` moved onto `target`."""
    root, rotations = root.copy(), rotations.copy()
    for _ in range(4):
        positions = forward_kinematics(root[None], rotations[None], offsets)[0]
        error = target - positions[joint]
        if np.linalg.norm(error) < 1e-5:
            break
        if joint == 0:
            root = root + error
            continue
        end = _TOE_ANKLE.get(joint, joint)
        if end == _HEAD:
            spine = positions[_SPINE1]
            have, want = positions[_HEAD] - spine, target - spine
            parent_global = global_rotations(rotations[None])[0, PARENTS[_SPINE1]]
            turn = qbetween(have, want)
            local_turn = qmul(qmul(qinv(parent_global), turn), parent_global)
            rotations[_SPINE1] = qnormalize(qmul(local_turn, rotations[_SPINE1]))
            if root_free:
                positions = forward_kinematics(root[None], rotations[None], offsets)[0]
                root = root + (target - positions[_HEAD])
            continue
        end_target = positions[end] + error
        upper, middle = _LIMBS[end]
        reach = (np.linalg.norm(positions[middle] - positions[upper])
                 + np.linalg.norm(positions[end] - positions[middle]))
        distance = np.linalg.norm(end_target - positions[upper])
        if distance > reach * 0.999 and root_free:
            shift = (end_target - positions[upper]) * (1.0 - reach * 0.999 / distance)
            root = root + shift
            positions = positions + shift
        hint = positions[min(end + 3, NUM_JOINTS - 1)] - positions[end] if end in (7, 8) else np.array([0, 0, 1.0])
        moved = _solve_limb(positions, end, end_target, hint)
        _, rotations = reaim_joints(moved[None], rotations[None], [upper, middle], offsets)
        rotations = rotations[0]
    return root, rotations


def effector_offsets(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray,
                     constraints: Sequence[Constraint], fps: float) -> np.ndarray:
    """Offsets (T, 23, 3) that put every non-root effector on its target at its frames, the rest held there."""
    pose_frames = {c.frame for c in constraints if isinstance(c, PoseKey)}
    root_held = pose_frames | {f for c in constraints if isinstance(c, EffectorTarget) and c.joint_index == 0
                               for f in range(c.start, c.end + 1)}
    frames, values, known = [], [], []
    for frame in sorted(pose_frames):
        frames.append(frame)
        values.append(np.zeros((NUM_JOINTS + 1, 3)))
        known.append(np.ones((NUM_JOINTS + 1, 3), dtype=bool))
    for constraint in constraints:
        if not isinstance(constraint, EffectorTarget) or constraint.joint_index == 0:
            continue
        joint = constraint.joint_index
        moved_joints = _moved_joints(joint)
        for frame in range(constraint.start, constraint.end + 1):
            if frame in pose_frames:
                continue  # the key pose already puts the joint there (validation checked they agree)
            new_root, new_rotations = _effector_pose(root[frame], rotations[frame], offsets, joint,
                                                     np.asarray(constraint.position), frame not in root_held)
            if constraint.orientation is not None:
                parent = global_rotations(new_rotations[None])[0, PARENTS[joint]] if joint else np.array(
                    [1.0, 0, 0, 0])
                new_rotations[joint] = qmul(qinv(parent), np.asarray(constraint.orientation))
            value = np.zeros((NUM_JOINTS + 1, 3))
            value[:NUM_JOINTS] = constraint.weight * _rotation_residual(new_rotations, rotations[frame])
            value[ROOT_TRANSLATION] = constraint.weight * (new_root - root[frame])
            mask = np.zeros((NUM_JOINTS + 1, 3), dtype=bool)
            held = set(_ancestors(joint)) | set(moved_joints)
            if constraint.orientation is not None:
                held.add(joint)
            mask[sorted(held)] = True
            mask[ROOT_TRANSLATION] = True
            frames.append(frame)
            values.append(value)
            known.append(mask)
    return _spread(len(root), frames, values, known, round(EFFECTOR_MARGIN_SECONDS * fps))


def _moved_joints(joint: int) -> list[int]:
    end = _TOE_ANKLE.get(joint, joint)
    if end == _HEAD:
        return [_SPINE1]
    return list(_LIMBS.get(end, ()))


# ---- everything -------------------------------------------------------------------------------------------------------
def meet_constraints(motion: MotionResult, constraints: Sequence[Constraint]) -> MotionResult:
    """`motion` moved so that it meets `constraints` (0-based frames at the motion's fps); joints re-posed from
    the new rotations on the motion's rest skeleton, everything else kept."""
    if not constraints:
        return motion
    last = max(constraint.end for constraint in constraints)
    if min(constraint.start for constraint in constraints) < 0 or last >= motion.num_frames:
        raise ConstraintSolveError(f"a constraint at frame {last} is outside the motion's {motion.num_frames} frames")
    offsets = np.asarray(motion.rest_offsets, dtype=np.float64)
    root = np.asarray(motion.root_translation, dtype=np.float64)
    rotations = np.asarray(motion.local_rotations, dtype=np.float64)
    joints = forward_kinematics(root, rotations, offsets)
    root, rotations = place_on_keys(root, rotations, joints, constraints)
    root, rotations = apply_offsets(root, rotations, pose_offsets(root, rotations, constraints, motion.fps))
    if any(isinstance(c, EffectorTarget) and c.joint_index != 0 for c in constraints):
        root, rotations = apply_offsets(root, rotations,
                                        effector_offsets(root, rotations, offsets, constraints, motion.fps))
    joints = forward_kinematics(root, rotations, offsets)
    from dataclasses import replace

    return replace(motion, joints=joints.astype(np.float32), root_translation=root.astype(np.float32),
                   local_rotations=rotations.astype(np.float32))


def constraint_errors(joints: np.ndarray, constraints: Sequence[Constraint]) -> list[tuple[int, str, float]]:
    """(constraint index, kind, error) at each constrained frame of `joints` (T, 22, 3): the mean joint distance
    (metres) for a pose, the effector's distance (metres) for a target, the angle (degrees) for a facing."""
    errors = []
    for index, constraint in enumerate(constraints):
        if isinstance(constraint, PoseKey):
            gap = np.linalg.norm(joints[constraint.frame] - constraint.positions(), axis=-1).mean()
            errors.append((index, "pose", float(gap)))
        elif isinstance(constraint, FacingKey):
            facing = body_facing(joints[constraint.frame][None])[0]
            angle = math.degrees(abs(_wrap(_heading(facing) - _heading(np.asarray(constraint.direction)))))
            errors.append((index, "facing", angle))
        else:
            for frame in range(constraint.start, constraint.end + 1):
                gap = np.linalg.norm(joints[frame, constraint.joint_index] - np.asarray(constraint.position))
                errors.append((index, "effector", float(gap)))
    return errors

