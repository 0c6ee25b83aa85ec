# SPDX-License-Identifier: GPL-3.0-or-later
"""Meet a timeline's constraints on a generated motion: exactly at their frames, smoothly around them (NumPy).

Four passes over a MotionResult (root translation + local rotations on its rest skeleton), each leaving the
frames far from every constraint as they were:

1. **Placement** (``place_on_keys``): where the constraints say where the body is (a pose's pelvis, a root
   target) or which way it faces (a pose, a facing key), the whole motion is turned and moved there: the turn
   (about the vertical) and the floor offset ease from one key to the next with a quintic smootherstep, the walk's
   own steps rotated with the turn, so the character walks to the key rather than sliding; a whole-body key
   standing on both feet (``is_standing``) slows the travel to a stop at its frame and back over ``MARGIN_SECONDS``
   each side (``standing_slowdown``).  A partial key (``PoseKey.joints``) places nothing unless it holds the pelvis.
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
   poses.  A partial key holds (and is held at) only its joints' channels.
4. **Planted feet** (``replant_feet``, on a foot-locked motion): the feet the clean-up planted (``foot_contacts``)
   would be dragged by passes 1-3; each contact is held again on one spot (or where a key puts that foot, the
   foot stepping there when the key moves it more than ``STEP_DISTANCE``), the legs re-solved by two-bone IK.

A constraint's ``weight`` below 1 takes that share of the way (soft); "hard" takes all of it.  Frames here are
0-based frames of the motion (``Timeline.constraint_frames()``, at the motion's fps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..common.errors import KMMError
from ..common.limits import MAX_EFFECTOR_ROOT_SHIFT
from ..motion.kinematics import forward_kinematics, inverse_kinematics, reaim_joints
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
from ..motion.skeleton import JOINT_INDEX, NUM_JOINTS, PARENTS, tpose_offsets
from ..motion.two_bone_ik import bend_pole, solve_two_bone
from .constraints import Constraint, EffectorTarget, FacingKey, PoseKey, body_facing

MARGIN_SECONDS = 1.0
"""How far around its keys a pose's correction reaches: long enough that the jerk it adds stays below the motion's
own (benchmarks/measure_constraints.py), short enough that the prompt's action is kept between keys 2 s apart."""
EFFECTOR_MARGIN_SECONDS = 0.5
REPLANT_BLEND_SECONDS = 0.25
"""How far around a re-planted contact its correction fades (the foot clean-up's lock blend is 0.2 s)."""
STEP_SECONDS = 0.3
"""A key that holds a planted foot somewhere else releases it this long before the key: the foot steps there."""
STEP_DISTANCE = 0.05
"""Metres a key may move a planted foot before the foot steps there (closer, the stance is held on the key's spot)."""
STANDING_FOOT_HEIGHT = 0.12
"""Metres above the pose's lowest joint both ankles and toes of a standing key pose are within."""
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
    velocity and acceleration at each key), constant before the first key and after the last.  Each frame looks up
    its pair of keys by binary search: O(T log K), whatever the number of keys."""
    values = np.asarray(values, dtype=np.float64).reshape(len(frames), -1)
    if not len(frames):
        return np.zeros((num_frames, values.shape[1]))
    order = np.argsort(frames, kind="stable")
    frames, values = np.asarray(frames)[order], values[order]
    if len(frames) == 1:
        return np.repeat(values, num_frames, axis=0)
    t = np.arange(num_frames)
    # The pair (a, b) around each frame: the last key at or before it (the first pair before the first key, the
    # last pair after the last); of keys sharing a frame the later one starts the next pair.
    pair = np.clip(np.searchsorted(frames, t, side="right") - 1, 0, len(frames) - 2)
    a, b = frames[pair], frames[pair + 1]
    weight = _smootherstep((t - a) / np.maximum(b - a, 1))[:, None]
    return values[pair] + (values[pair + 1] - values[pair]) * weight


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
    (third difference).  Channels with no known key stay zero.  Of keys on one frame the later one's known
    channels win.  Banded throughout: the work and memory grow linearly with the frames and the keys."""
    from scipy.linalg import solveh_banded

    key_frames = np.asarray(key_frames, dtype=np.int64)
    key_values = np.asarray(key_values, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    order = np.argsort(key_frames, kind="stable")  # keys of one frame stay in their order: the later one wins
    key_frames, key_values, known = key_frames[order], key_values[order], known[order]
    channels = key_values.shape[1]
    offsets = np.zeros((num_frames, channels))
    for start, end in _windows(key_frames[known.any(axis=1)], margin, num_frames):
        size = end - start
        first, last = np.searchsorted(key_frames, [start, end])
        fixed_value = np.full((size, channels), np.nan)
        for frame, values, mask in zip(key_frames[first:last], key_values[first:last], known[first:last],
                                       strict=True):
            fixed_value[frame - start, mask] = values[mask]
        edge = np.zeros(size, dtype=bool)
        if start > 0:
            edge[:EDGE_FRAMES] = True
        if end < num_frames:
            edge[-EDGE_FRAMES:] = True
        keyed_channels = np.flatnonzero(np.isfinite(fixed_value).any(axis=0))
        fixed_value[edge] = np.where(np.isnan(fixed_value[edge]), 0.0, fixed_value[edge])
        hessian = _jerk_hessian_bands(size)
        patterns: dict[bytes, list[int]] = {}  # channels keyed on the same frames share one solve
        for channel in keyed_channels:
            patterns.setdefault(np.isfinite(fixed_value[:, channel]).tobytes(), []).append(int(channel))
        for pattern, members in patterns.items():
            is_fixed = np.frombuffer(pattern, dtype=bool)
            values = fixed_value[:, members].copy()
            free = ~is_fixed
            if free.any():
                values[free] = 0.0
                rhs = -_banded_product(hessian, values)[free]  # H[free, fixed] @ the fixed values
                values[free] = solveh_banded(_reduced_bands(hessian, np.flatnonzero(free)), rhs, lower=False)
            offsets[start:end, members] = values
    return offsets


_THIRD_DIFFERENCE = (-1.0, 3.0, -3.0, 1.0)
_FIRST_DIFFERENCE = (-1.0, 1.0)


def _jerk_hessian_bands(size: int) -> np.ndarray:
    """The upper bands (4, size) of D3ᵀ D3 of the third difference over `size` frames, plus a tiny ridge (a free
    clip end is then held still) and a small velocity term 1e-3 D1ᵀ D1 so a free end does not swing:
    ``bands[d, i]`` is the matrix's entry (i, i + d)."""
    bands = np.zeros((4, size))
    bands[0] += 1e-6
    for coefficients, scale in ((_THIRD_DIFFERENCE, 1.0), (_FIRST_DIFFERENCE, 1e-3)):
        rows = size - len(coefficients) + 1  # each row of the difference matrix adds the outer product of its
        if rows <= 0:                        # coefficients at columns row .. row + len - 1
            continue
        for p, cp in enumerate(coefficients):
            for q in range(p, len(coefficients)):
                bands[q - p, p:p + rows] += scale * cp * coefficients[q]
    return bands


def _banded_product(bands: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The symmetric banded matrix of `bands` (see `_jerk_hessian_bands`) times `x` (size, C)."""
    y = bands[0][:, None] * x
    size = len(x)
    for d in range(1, len(bands)):
        if d >= size:
            break
        y[:size - d] += bands[d, :size - d, None] * x[d:]
        y[d:] += bands[d, :size - d, None] * x[:size - d]
    return y


def _reduced_bands(bands: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Upper-form bands for `scipy.linalg.solveh_banded` (``out[3 - k, i] = M[i - k, i]``) of M = the matrix's
    rows and columns `free` (sorted indices): dropping rows and columns of a banded matrix leaves it banded."""
    count = len(free)
    out = np.zeros((4, count))
    for k in range(4):
        if k >= count:
            break
        rows, cols = free[:count - k], free[k:]
        distance = cols - rows
        near = distance < len(bands)
        out[3 - k, k:][near] = bands[distance[near], rows[near]]
    return out


# ---- pass 1: placement ------------------------------------------------------------------------------------------------
def is_standing(pose: PoseKey) -> bool:
    """A key pose that stands: it places both feet (pelvis and legs held) and has both on the floor."""
    feet = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    if not set(feet) <= set(pose.placed_joints()):
        return False
    heights = pose.positions()[feet, 1] - pose.positions()[:, 1].min()
    return bool(heights.max() < STANDING_FOOT_HEIGHT)


def standing_slowdown(num_frames: int, constraints: Sequence[Constraint], fps: float) -> np.ndarray:
    """(T - 1,) share of each frame step's travel kept: 1, except over `MARGIN_SECONDS` around a standing key pose
    (`is_standing`), where the travel eases to a stop at the key and back (smootherstep), so the body slows into
    the pose and out of it instead of its planted feet sliding."""
    keep = np.ones(max(num_frames - 1, 0))
    window = max(1.0, MARGIN_SECONDS * fps)
    middle = np.arange(len(keep)) + 0.5
    for constraint in constraints:
        if isinstance(constraint, PoseKey) and is_standing(constraint):
            keep = np.minimum(keep, _smootherstep(np.abs(middle - constraint.frame) / window))
    return keep


def place_on_keys(root: np.ndarray, rotations: np.ndarray, joints: np.ndarray,
                  constraints: Sequence[Constraint], fps: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Root translation and rotations turned and moved so that keyed facings and pelvis floor positions are met;
    the travel slows to a stop at a standing key pose (`standing_slowdown`)."""
    num_frames = len(root)
    facing = _heading(body_facing(joints))
    yaw_frames, yaw_values, floor_keys = [], [], []
    for constraint in constraints:
        if isinstance(constraint, PoseKey) and 0 not in constraint.held:
            continue  # a partial key that leaves the pelvis free says nothing about where the body is
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
    steps *= standing_slowdown(num_frames, constraints, fps)[:, None]
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
            known.append(_held_mask(constraint))
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


def _held_mask(pose: PoseKey) -> np.ndarray:
    """(23, 3) bool: the channels a key pose fixes: its held joints' rotations, the pelvis translation with the
    pelvis."""
    mask = np.zeros((NUM_JOINTS + 1, 3), dtype=bool)
    mask[list(pose.held)] = True
    mask[ROOT_TRANSLATION] = 0 in pose.held
    return mask


def _spread(num_frames: int, frames: list[int], values: list[np.ndarray], known: list[np.ndarray],
            margin: int) -> np.ndarray:
    if not len(frames):
        return np.zeros((num_frames, NUM_JOINTS + 1, 3))
    frames_array = np.asarray(frames)
    values_array = np.asarray(values).reshape(len(frames), -1)
    known_array = np.asarray(known).reshape(len(frames), -1)
    # Several constraints on one frame: their known channels are merged, the first listed one's value kept on each
    # channel (validation refused disagreeing ones).  One sort, no search per frame: O(N log N).
    order = np.argsort(frames_array, kind="stable")
    unique, starts = np.unique(frames_array[order], return_index=True)
    count = len(frames_array)
    first = np.minimum.reduceat(np.where(known_array[order], np.arange(count)[:, None], count), starts, axis=0)
    merged_known = first < count
    merged_values = np.where(merged_known, values_array[order][np.minimum(first, count - 1),
                                                               np.arange(values_array.shape[1])], 0.0)
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


def _effector_poses(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray, joint: int, targets: np.ndarray,
                    root_free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_effector_pose` for K frames at once: roots (K, 3) and local rotations (K, 22, 4) with `joint` moved onto
    `targets` (K, 3), the pelvis free to shift where `root_free` (K,).  The same steps, vectorised over the frames
    (a frame stops where `_effector_pose` would stop), so the work per frame is a few array operations."""
    root, rotations = root.copy(), rotations.copy()
    root_free = np.asarray(root_free, dtype=bool)
    active = np.ones(len(root), dtype=bool)
    end = _TOE_ANKLE.get(joint, joint)
    for _ in range(4):
        positions = forward_kinematics(root, rotations, offsets)
        error = targets - positions[:, joint]
        active &= np.linalg.norm(error, axis=-1) >= 1e-5
        if not active.any():
            break
        if joint == 0:
            root[active] += error[active]
            continue
        frames = np.flatnonzero(active)
        here = positions[frames]
        if end == _HEAD:
            spine = here[:, _SPINE1]
            turn = qbetween(here[:, _HEAD] - spine, targets[frames] - spine)
            parent_global = global_rotations(rotations[frames])[:, PARENTS[_SPINE1]]
            local_turn = qmul(qmul(qinv(parent_global), turn), parent_global)
            rotations[frames, _SPINE1] = qnormalize(qmul(local_turn, rotations[frames, _SPINE1]))
            free = frames[root_free[frames]]
            if free.size:
                moved = forward_kinematics(root[free], rotations[free], offsets)
                root[free] += targets[free] - moved[:, _HEAD]
            continue
        end_target = here[:, end] + error[frames]
        upper, middle = _LIMBS[end]
        reach = (np.linalg.norm(here[:, middle] - here[:, upper], axis=-1)
                 + np.linalg.norm(here[:, end] - here[:, middle], axis=-1))
        distance = np.linalg.norm(end_target - here[:, upper], axis=-1)
        stretch = (distance > reach * 0.999) & root_free[frames]
        shift = np.where(stretch[:, None], (end_target - here[:, upper])
                         * (1.0 - reach * 0.999 / np.maximum(distance, 1e-12))[:, None], 0.0)
        root[frames] += shift
        here = here + shift[:, None]
        hint = (here[:, min(end + 3, NUM_JOINTS - 1)] - here[:, end] if end in (7, 8)
                else np.broadcast_to(np.array([0, 0, 1.0]), (len(frames), 3)))
        pole = bend_pole(here[:, upper], here[:, middle], here[:, end], hint)
        new_middle, new_end = solve_two_bone(here[:, upper], end_target, pole,
                                             np.linalg.norm(here[:, middle] - here[:, upper], axis=-1),
                                             np.linalg.norm(here[:, end] - here[:, middle], axis=-1))
        here[:, middle], here[:, end] = new_middle, new_end
        _, rotations[frames] = reaim_joints(here, rotations[frames], [upper, middle], offsets)
    return root, rotations


def _first_covering(constraints: Sequence[Constraint], joint: int, num_frames: int, *, with_orientation: bool = False
                    ) -> np.ndarray:
    """(T,) index of the first listed target on `joint` covering each frame (with an orientation, if asked), -1
    where none: the one the solver meets there (validation checked the others agree).  Work: the covered frames."""
    owner = np.full(num_frames, -1, dtype=np.int64)
    for index, constraint in enumerate(constraints):
        if (isinstance(constraint, EffectorTarget) and constraint.joint_index == joint
                and (constraint.orientation is not None or not with_orientation)):
            frames = owner[constraint.start:constraint.end + 1]
            frames[frames < 0] = index
    return owner


def effector_offsets(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray,
                     constraints: Sequence[Constraint], fps: float, first_frame: int = 0) -> np.ndarray:
    """Offsets (T, 23, 3) that put every non-root effector on its target at its frames, the rest held there.

    Each joint is solved once per frame, all its frames in one vectorised pass: many targets on one joint and
    frame (validation made them agree) cost what one does.  A target that would pull the pelvis more than
    ``MAX_EFFECTOR_ROOT_SHIFT`` from where the motion has it is refused (`ConstraintSolveError` naming the
    constraint, its joint, its frame numbered from `first_frame`, and the distance): the body would slide there."""
    num_frames = len(root)
    poses = [c for c in constraints if isinstance(c, PoseKey)]
    placed = {(c.frame, joint) for c in poses for joint in c.placed_joints()}
    root_held = np.zeros(num_frames, dtype=bool)
    root_held[[c.frame for c in poses if 0 in c.held]] = True
    for constraint in constraints:
        if isinstance(constraint, EffectorTarget) and constraint.joint_index == 0:
            root_held[constraint.start:constraint.end + 1] = True
    frames, values, known = [], [], []
    for pose in poses:
        frames.append(np.array([pose.frame]))
        values.append(np.zeros((1, NUM_JOINTS + 1, 3)))
        known.append(_held_mask(pose)[None])
    joints = sorted({c.joint_index for c in constraints if isinstance(c, EffectorTarget) and c.joint_index != 0})
    for joint in joints:
        owner = _first_covering(constraints, joint, num_frames)
        turned = _first_covering(constraints, joint, num_frames, with_orientation=True)
        solved = np.flatnonzero((owner >= 0) & ~np.isin(np.arange(num_frames),
                                                         [frame for frame, j in placed if j == joint]))
        if not solved.size:
            continue  # the key poses already put the joint there (validation checked they agree)
        targets = np.asarray([constraints[index].position for index in owner[solved]], dtype=np.float64)
        weights = np.asarray([constraints[index].weight for index in owner[solved]], dtype=np.float64)
        new_root, new_rotations = _effector_poses(root[solved], rotations[solved], offsets, joint, targets,
                                                  ~root_held[solved])
        _check_root_shift(constraints, owner[solved], solved, weights[:, None] * (new_root - root[solved]),
                          targets - root[solved], first_frame)
        oriented = turned[solved] >= 0
        if oriented.any():
            at = np.flatnonzero(oriented)
            wanted = np.asarray([constraints[index].orientation for index in turned[solved][at]])
            parent = global_rotations(new_rotations[at])[:, PARENTS[joint]]
            new_rotations[at, joint] = qmul(qinv(parent), wanted)
        value = np.zeros((len(solved), NUM_JOINTS + 1, 3))
        value[:, :NUM_JOINTS] = weights[:, None, None] * _rotation_residual(new_rotations, rotations[solved])
        value[:, ROOT_TRANSLATION] = weights[:, None] * (new_root - root[solved])
        mask = np.zeros((len(solved), NUM_JOINTS + 1, 3), dtype=bool)
        mask[:, sorted(set(_ancestors(joint)) | set(_moved_joints(joint)))] = True
        mask[oriented, joint] = True
        mask[:, ROOT_TRANSLATION] = True
        frames.append(solved)
        values.append(value)
        known.append(mask)
    if not frames:
        return np.zeros((num_frames, NUM_JOINTS + 1, 3))
    return _spread(num_frames, np.concatenate(frames), np.concatenate(values), np.concatenate(known),
                   round(EFFECTOR_MARGIN_SECONDS * fps))


def _check_root_shift(constraints: Sequence[Constraint], owners: np.ndarray, frames: np.ndarray, shifts: np.ndarray,
                      offsets_from_pelvis: np.ndarray, first_frame: int) -> None:
    """Refuse the first target (in frame order) whose solve shifts the pelvis more than MAX_EFFECTOR_ROOT_SHIFT."""
    sizes = np.linalg.norm(shifts, axis=-1)
    far = np.flatnonzero(sizes > MAX_EFFECTOR_ROOT_SHIFT)
    if not far.size:
        return
    at = int(far[0])
    index = int(owners[at])
    target = constraints[index]
    raise ConstraintSolveError(
        f"constraints[{index}] ({target.joint}) at frame {int(frames[at]) + first_frame}: the target is "
        f"{np.linalg.norm(offsets_from_pelvis[at]):.2f} m from the pelvis; reaching it would slide the body "
        f"{sizes[at]:.2f} m, more than the {MAX_EFFECTOR_ROOT_SHIFT:g} m a target may pull it "
        f"(kmm_core/common/limits.py): move the target closer to where the body is, or place the body there with a "
        f"root target or a key pose")


def _moved_joints(joint: int) -> list[int]:
    end = _TOE_ANKLE.get(joint, joint)
    if end == _HEAD:
        return [_SPINE1]
    return list(_LIMBS.get(end, ()))


# ---- pass 4: planted feet stay planted ---------------------------------------------------------------------------------
def _leg_decided_frames(constraints: Sequence[Constraint], leg: tuple[int, int, int, int]) -> list[int]:
    """Frames where a constraint decides this leg: a key pose holding one of its joints, a target on its foot."""
    frames = set()
    for constraint in constraints:
        if isinstance(constraint, PoseKey) and set(constraint.held) & set(leg):
            frames.add(constraint.frame)
        elif isinstance(constraint, EffectorTarget) and constraint.joint_index in leg[2:]:
            frames.update(range(constraint.start, constraint.end + 1))
    return sorted(frames)


def _stance_pieces(run: tuple[int, int], decided: list[int], step: int, spot_of
                   ) -> list[tuple[int, int, int | None]]:
    """A contact run [start, end) cut where constraints decide the foot: pieces (start, end, anchor frame), the
    anchor being the decided frame whose foot the piece stays on (None: the piece keeps its own stance).  A decided
    frame that puts the foot within `STEP_DISTANCE` of where it stands holds the whole piece there; farther, the
    foot is released `step` frames before it and steps there.  `spot_of(start, end, anchor)`: the foot's floor
    point (x, z) of a piece."""
    start, end = run
    inside = [frame for frame in decided if start <= frame < end]
    if not inside:
        return [(start, end, None)]
    pieces: list[tuple[int, int, int | None]] = []
    cursor, anchor = start, None
    for frame in inside:
        if frame > cursor:
            near = np.linalg.norm(spot_of(cursor, frame, anchor) - spot_of(frame, frame + 1, frame)) < STEP_DISTANCE
            if near and anchor is None:
                pieces.append((cursor, frame, frame))  # the foot stands where the key has it: held there
            elif not near:
                release = max(cursor, frame - step)
                if release > cursor:
                    pieces.append((cursor, release, anchor))
            # two keys a few centimetres apart on one stance: the frames between are left to glide between them
        cursor, anchor = frame + 1, frame
    if cursor < end:
        pieces.append((cursor, end, anchor))
    return pieces


def replant_feet(root: np.ndarray, rotations: np.ndarray, offsets: np.ndarray, placed: np.ndarray,
                 contacts: np.ndarray, constraints: Sequence[Constraint], fps: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root, rotations and contacts (T, 4) of the constrained motion with the feet its foot clean-up planted
    (`contacts`) planted again: the poses and targets spread their difference over the frames around them and
    would drag a stance foot along; each contact is held on one spot of the constrained motion (its mean), or on
    the spot a constraint puts that foot at (a key pose holding the leg, a target on the foot), the legs re-solved
    by two-bone IK and re-aimed.  Where a key moves a planted foot elsewhere, the contact is released
    `STEP_SECONDS` before the key and the foot steps there (lifted to a real step's arc, `swing_clearance.py`)
    instead of gliding.  `placed` (T, 22, 3): the motion after placement alone (its feet's heights are the clean-up's).
    A re-planted stance is held still on its spot: keeping the clean-up's millimetres of settling there
    (`foot_contact.stance_detail`) made one held-out clip's planted toes 1.8x as fast as without constraints
    (benchmarks/measure_key_pose_contacts.py; 0.9x held still), a cause not yet found.
    Frames a constraint decides for a leg are left exactly as the constraints made them."""
    from ..motion.foot_contact import LEGS
    from ..motion.swing_clearance import swing_lift

    joints = forward_kinematics(root, rotations, offsets)
    frames = len(joints)
    contacts = np.asarray(contacts, dtype=bool)
    lengths = np.linalg.norm(offsets, axis=-1)
    margin = max(EDGE_FRAMES + 1, round(REPLANT_BLEND_SECONDS * fps))
    step = max(1, round(STEP_SECONDS * fps))
    moved = joints.copy()
    new_contacts = np.zeros_like(contacts)
    for leg, (ankle_column, toe_column) in LEGS:
        hip, knee, ankle, toe = leg
        decided = _leg_decided_frames(constraints, leg)
        held = contacts[:, ankle_column] | contacts[:, toe_column]
        key_frames, key_values, stance = [], [], np.zeros(frames, dtype=bool)
        for frame in decided:
            key_frames.append(frame)
            key_values.append(np.zeros(6))
        padded = np.concatenate([[False], held, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        def spot_of(start: int, end: int, anchor: int | None, foot: tuple[int, int] = (ankle, toe)) -> np.ndarray:
            frames_ = np.arange(start, end) if anchor is None else np.array([anchor])
            return joints[frames_][:, list(foot)][..., [0, 2]].mean(axis=(0, 1))

        for run in zip(edges[::2], edges[1::2], strict=True):
            for start, end, anchor in _stance_pieces((int(run[0]), int(run[1])), decided, step, spot_of):
                span = np.arange(start, end)
                reference = np.where(contacts[span, ankle_column], ankle, toe)  # the joint planted on each frame
                current = joints[span, reference]
                if anchor is None:  # its own stance: one spot (its mean), the clean-up's heights
                    spot = np.stack([joints[span, ankle], joints[span, toe]]).mean(axis=1)
                    height = placed[span, reference, 1]
                    toe_height = placed[span, toe, 1]
                else:  # where the constraint put the foot at `anchor`
                    spot = joints[[anchor], [ankle, toe]]
                    height = placed[span, reference, 1] + joints[anchor, reference, 1] - placed[anchor, reference, 1]
                    toe_height = placed[span, toe, 1] + joints[anchor, toe, 1] - placed[anchor, toe, 1]
                target = np.where((reference == ankle)[:, None], spot[0], spot[1])
                target[:, 1] = height
                # A planted toe is held on its own spot too (the foot turns about the ankle towards it); a free one
                # moves with the ankle.
                toe_target = np.repeat(spot[1][None], len(span), axis=0)
                toe_target[:, 1] = toe_height
                toe_shift = np.where(contacts[span, toe_column][:, None], toe_target - joints[span, toe],
                                     target - current)
                key_frames.extend(span.tolist())
                key_values.extend(np.concatenate([target - current, toe_shift], axis=1))
                stance[span] = True
        if not key_frames:
            continue
        key_frames_array = np.asarray(key_frames)
        values = np.asarray(key_values)
        shifts = minimum_jerk_offsets(frames, key_frames_array, values, np.ones_like(values, dtype=bool), margin)
        shift = shifts[:, :3]
        ankle_target = joints[:, ankle] + shift
        toe_target = joints[:, toe] + shifts[:, 3:]
        lift = np.zeros(frames)
        floor = float(np.median(toe_target[stance, 1])) if stance.any() else 0.0
        if stance.any():
            lift = swing_lift(toe_target, stance | np.isin(np.arange(frames), decided), fps, floor)
            lift[stance] = 0.0
            lift[decided] = 0.0
        ankle_target[:, 1] += lift
        toe_target[:, 1] += lift
        change = np.linalg.norm(shifts, axis=-1) + lift > 1e-7
        change[decided] = False
        if not change.any():
            new_contacts[:, [ankle_column, toe_column]] = contacts[:, [ankle_column, toe_column]] & stance[:, None]
            continue
        pole = bend_pole(joints[:, hip], joints[:, knee], joints[:, ankle], joints[:, toe] - joints[:, ankle])
        new_knee, new_ankle = solve_two_bone(joints[:, hip], ankle_target, pole, lengths[knee], lengths[ankle])
        moved[change, knee] = new_knee[change]
        moved[change, ankle] = new_ankle[change]
        toe_direction = toe_target - new_ankle
        toe_direction /= np.maximum(np.linalg.norm(toe_direction, axis=-1, keepdims=True), 1e-9)
        moved[change, toe] = (new_ankle + lengths[toe] * toe_direction)[change]
        new_contacts[:, [ankle_column, toe_column]] = contacts[:, [ankle_column, toe_column]] & stance[:, None]
    leg_joints = [joint for leg, _ in LEGS for joint in leg[:3]]
    root, rotations = reaim_joints(moved, rotations, leg_joints, offsets)
    return root, rotations, new_contacts


# ---- everything -------------------------------------------------------------------------------------------------------
def meet_constraints(motion: MotionResult, constraints: Sequence[Constraint], *, replant: bool = True,
                     first_frame: int = 0) -> MotionResult:
    """`motion` moved so that it meets `constraints` (0-based frames at the motion's fps); joints re-posed from
    the new rotations on the motion's rest skeleton, everything else kept.  A foot-locked motion (``foot_lock``,
    its ``foot_contacts``) keeps its planted feet planted (`replant_feet`; ``replant=False`` leaves them where
    the constraints drag them, for measuring).  `first_frame`: the timeline's number of frame 0, for errors."""
    if not constraints:
        return motion
    last = max(constraint.end for constraint in constraints)
    if min(constraint.start for constraint in constraints) < 0 or last >= motion.num_frames:
        raise ConstraintSolveError(f"a constraint at frame {last} is outside the motion's {motion.num_frames} frames")
    offsets = np.asarray(motion.rest_offsets, dtype=np.float64)
    root = np.asarray(motion.root_translation, dtype=np.float64)
    rotations = np.asarray(motion.local_rotations, dtype=np.float64)
    joints = forward_kinematics(root, rotations, offsets)
    root, rotations = place_on_keys(root, rotations, joints, constraints, motion.fps)
    placed = forward_kinematics(root, rotations, offsets)
    root, rotations = apply_offsets(root, rotations, pose_offsets(root, rotations, constraints, motion.fps))
    if any(isinstance(c, EffectorTarget) and c.joint_index != 0 for c in constraints):
        root, rotations = apply_offsets(root, rotations,
                                        effector_offsets(root, rotations, offsets, constraints, motion.fps,
                                                         first_frame))
    contacts = motion.foot_contacts
    if replant and motion.foot_lock and contacts is not None and np.any(contacts):
        root, rotations, contacts = replant_feet(root, rotations, offsets, placed, contacts, constraints, motion.fps)
        contacts = contacts.astype(np.uint8)
    joints = forward_kinematics(root, rotations, offsets)
    from dataclasses import replace

    return replace(motion, joints=joints.astype(np.float32), root_translation=root.astype(np.float32),
                   local_rotations=rotations.astype(np.float32), foot_contacts=contacts)


def partial_pose_error(joints: np.ndarray, pose: PoseKey) -> float:
    """Mean distance (metres) of the joints a partial key moves (the children of its held joints; with the pelvis,
    the pelvis too) from where the key puts them, each chain seen from the nearest joint the key leaves free (so a
    keyed arm is compared in its chest's frame, wherever the generated body is): the body `joints` (22, 3) with
    the key's rotations at its held joints, against `joints`."""
    joints = np.asarray(joints, dtype=np.float64)
    root, rotations = inverse_kinematics(joints[None], tpose_offsets())
    held = list(pose.held)
    rotations[0, held] = np.asarray(pose.rotations)[held]
    if 0 in pose.held:
        root = np.asarray(pose.root)[None]
    generated = forward_kinematics(joints[None, 0], inverse_kinematics(joints[None], tpose_offsets())[1],
                                   tpose_offsets())[0]
    keyed = forward_kinematics(root, rotations, tpose_offsets())[0]
    moved = sorted({child for child, parent in enumerate(PARENTS) if parent in pose.held} | (
        {0} if 0 in pose.held else set())) or sorted(pose.held)  # a held end joint (the head): itself
    if not moved:
        return 0.0  # a pose holding nothing has nothing to miss (never numpy's "Mean of empty slice")
    return float(np.linalg.norm(keyed[moved] - generated[moved], axis=-1).mean())


def constraint_errors(joints: np.ndarray, constraints: Sequence[Constraint]) -> list[tuple[int, str, float]]:
    """(constraint index, kind, error) at each constrained frame of `joints` (T, 22, 3): the mean joint distance
    (metres) for a pose, the effector's distance (metres) for a target, the angle (degrees) for a facing."""
    errors = []
    for index, constraint in enumerate(constraints):
        if isinstance(constraint, PoseKey) and constraint.is_partial:
            errors.append((index, "pose", partial_pose_error(joints[constraint.frame], constraint)))
        elif isinstance(constraint, PoseKey):
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

