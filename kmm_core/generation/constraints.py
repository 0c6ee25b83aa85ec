# SPDX-License-Identifier: GPL-3.0-or-later
"""Constraints on a timeline: the animator's key poses, end-effector targets and facing directions (NumPy, no torch).

In a timeline file they are the top-level list ``"constraints"``; frames are the timeline's own frame numbers (the
Blender frame numbers when the segments give ``start``/``end``, else 0 = the first frame)::

    {"fps": 30, "segments": [{"prompt": "a person walks", "start": 1, "end": 120}, ...],
     "constraints": [
        {"type": "pose", "frame": 40, "positions": [[x, y, z], ... 22 joints]},
        {"type": "pose", "frame": 90, "root": [x, y, z], "rotations": [[w, x, y, z], ... 22 joints]},
        {"type": "pose", "frame": 120, "positions": [...22 joints], "joints": ["right_shoulder", "right_elbow"]},
        {"type": "effector", "joint": "right_wrist", "start": 200, "end": 260, "position": [x, y, z],
         "orientation": [w, x, y, z], "weight": 0.5},
        {"type": "facing", "frame": 300, "direction": [x, z]}]}

* ``pose``: the whole body at a frame, as world joint positions of the canonical skeleton (``skeleton.JOINT_NAMES``
  order, HumanML3D axes, metres) or as ``rotations`` (local, relative to the T-pose rest, joint 0 = the root's world
  orientation, as in a MotionResult) with the pelvis at ``root``.  With ``"joints"`` (canonical joint names) the
  pose holds only those joints (a partial key): each named joint's local rotation (the way its bones turn from
  its parent's; for ``pelvis`` also the pelvis position, i.e. the root), the rest of the body generated.  All 22
  positions or rotations are still given (the others only say how the named joints sit on their parents).
* ``effector``: one joint (``EFFECTOR_JOINTS``: a wrist, an ankle, a foot, the head or the root) at ``position``
  at a ``frame`` or over ``start``..``end`` (inclusive), optionally with a world ``orientation`` of that joint.
* ``facing``: the way the body faces at a frame, a direction ``[x, z]`` on the floor.

Each takes ``"weight"``: ``"hard"`` (the default: met exactly) or a number in (0, 1] (the share of the way from the
generated motion to the constraint).  Validation refuses, naming the constraint and field: unknown keys or joint
names, frames outside the timeline (or beyond ±2**31-1), two constraints that disagree at one frame, and targets the
canonical skeleton cannot reach (a pose whose bone lengths are not the skeleton's, a joint above its reach or below
the floor).  The rules that keep the body from sliding, and the work bounded (limits in
``kmm_core/common/limits.py``):

* Targets on one joint agree with the one met there: at each frame the joint goes where a key pose puts it, else
  to the first listed target covering that frame; every other target on that joint and frame must lie within
  ``AGREEMENT_TOLERANCE`` (1 cm) of it.  Checked once per target and covered frame against a per-joint array, so
  checking grows with the frames covered, not with pairs (``benchmarks/bench_constraint_checks.py``).
* At most ``MAX_CONSTRAINTS`` (10,000) constraints, covering at most ``MAX_CONSTRAINED_FRAMES`` (200,000) frames
  in all (a target held over frames 10 to 19 counts 10).
* Constraints that place the pelvis (a pose holding it, a root target) may not ask it to travel faster than
  ``MAX_ROOT_SPEED`` (12 m/s) from one to the next; inside a path's frames they must lie on the path (within
  1 cm; ``timeline.py``), or the path's position would be lost.
* After generation the solver refuses a target that would pull the pelvis more than ``MAX_EFFECTOR_ROOT_SHIFT``
  (1 m) from where the motion has it (``constraint_solver.py``): a wrist target 70 m away is an error naming the
  constraint, joint, frame and distance, not a body sliding there.

``constraint_solver.py`` meets them on a generated motion (each joint solved once per frame, vectorised over the
frames); ``timeline_generator.py`` also keeps their tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.errors import KMMError, short_repr
from ..common.input_numbers import is_finite_number
from ..common.limits import MAX_CONSTRAINED_FRAMES, MAX_CONSTRAINTS, MAX_PATH_COORDINATE, MAX_ROOT_SPEED
from ..humanml3d.features import forward_directions
from ..motion.kinematics import forward_kinematics
from ..motion.skeleton import BONE_LENGTHS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, tpose_offsets

_ACROSS_PLUS = (JOINT_INDEX["right_hip"], JOINT_INDEX["right_shoulder"])
_ACROSS_MINUS = (JOINT_INDEX["left_hip"], JOINT_INDEX["left_shoulder"])
CONSTRAINT_TYPES = ("pose", "effector", "facing")
EFFECTOR_JOINTS: dict[str, int] = {"root": 0, "pelvis": 0, "head": JOINT_INDEX["head"],
                                   "left_wrist": JOINT_INDEX["left_wrist"], "right_wrist": JOINT_INDEX["right_wrist"],
                                   "left_ankle": JOINT_INDEX["left_ankle"], "right_ankle": JOINT_INDEX["right_ankle"],
                                   "left_foot": JOINT_INDEX["left_foot"], "right_foot": JOINT_INDEX["right_foot"]}
"""Joints an effector target may name (``root`` and ``pelvis`` are the same joint)."""
BONE_LENGTH_TOLERANCE = 0.10
"""A pose's bone may differ from the canonical skeleton's by this share (or 2 cm) before it counts as unreachable."""
AGREEMENT_TOLERANCE = 0.01
"""Metres: two constraints on one joint at one frame must agree this closely."""
FACING_TOLERANCE_DEGREES = 10.0
MAX_FRAME_NUMBER = 2**31 - 1
"""Largest frame number (and the smallest, negated) a constraint may give: Blender's frames end far below it."""
FLOOR_MARGIN = 0.05
"""Metres below the floor (y = 0) a joint may be asked to go: a foot sinks into soft ground a little, no more."""
_KEYS = {"pose": ("type", "frame", "positions", "rotations", "root", "joints", "weight"),
         "effector": ("type", "joint", "frame", "start", "end", "position", "orientation", "weight"),
         "facing": ("type", "frame", "direction", "weight")}


class ConstraintError(KMMError, ValueError):
    """A constraint is invalid: ``index`` is its place in the list, ``field`` the key at fault."""

    def __init__(self, reason: str, *, index: int | None = None, field: str | None = None):
        self.reason = reason
        self.index = index
        self.field = field
        where = "constraints" if index is None else f"constraints[{index}]"
        super().__init__(f"{where}{'.' + field if field else ''}: {reason}")


@dataclass(frozen=True)
class PoseKey:
    """The whole body at ``frame``: pelvis at ``root`` (3,), local rotations (22, 4) w-x-y-z from the T-pose."""

    frame: int
    root: tuple[float, ...]
    rotations: tuple[tuple[float, ...], ...]
    weight: float = 1.0
    hard: bool = True
    given_positions: tuple[tuple[float, ...], ...] | None = None  # as written in the file, when given as positions
    joints: tuple[int, ...] | None = None  # the joints held (a partial key, sorted); None: the whole body

    @property
    def start(self) -> int:
        return self.frame

    @property
    def end(self) -> int:
        return self.frame

    @property
    def held(self) -> tuple[int, ...]:
        """Indices of the joints whose local rotation the key holds (0: the pelvis, rotation and position)."""
        return tuple(range(NUM_JOINTS)) if self.joints is None else self.joints

    @property
    def is_partial(self) -> bool:
        return self.joints is not None

    def placed_joints(self) -> tuple[int, ...]:
        """Joints whose world position the key fixes: those whose whole chain up to the pelvis is held."""
        held = set(self.held)
        placed = [joint for joint in range(NUM_JOINTS) if all(j in held for j in _chain_to_root(joint))]
        return tuple(placed)

    def positions(self) -> np.ndarray:
        """(22, 3) world joint positions on the canonical skeleton."""
        if self.given_positions is not None:
            return np.asarray(self.given_positions, dtype=np.float64)
        return forward_kinematics(np.asarray(self.root)[None], np.asarray(self.rotations)[None], tpose_offsets())[0]

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"type": "pose", "frame": self.frame}
        if self.given_positions is not None:
            value["positions"] = [list(p) for p in self.given_positions]
        else:
            value.update(root=list(self.root), rotations=[list(q) for q in self.rotations])
        if self.joints is not None:
            value["joints"] = [JOINT_NAMES[joint] for joint in self.joints]
        return {**value, **_weight_value(self)}


@dataclass(frozen=True)
class EffectorTarget:
    """``joint`` (a name of ``EFFECTOR_JOINTS``) at ``position`` over frames ``start``..``end`` (inclusive)."""

    joint: str
    start: int
    end: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float] | None = None  # world rotation of the joint, w-x-y-z
    weight: float = 1.0
    hard: bool = True

    @property
    def joint_index(self) -> int:
        return EFFECTOR_JOINTS[self.joint]

    def to_value(self) -> dict[str, Any]:
        frames = {"frame": self.start} if self.start == self.end else {"start": self.start, "end": self.end}
        value: dict[str, Any] = {"type": "effector", "joint": self.joint, **frames, "position": list(self.position)}
        if self.orientation is not None:
            value["orientation"] = list(self.orientation)
        return {**value, **_weight_value(self)}


@dataclass(frozen=True)
class FacingKey:
    """The body faces ``direction`` (x, z), a unit vector on the floor, at ``frame``."""

    frame: int
    direction: tuple[float, float]
    weight: float = 1.0
    hard: bool = True

    @property
    def start(self) -> int:
        return self.frame

    @property
    def end(self) -> int:
        return self.frame

    def to_value(self) -> dict[str, Any]:
        return {"type": "facing", "frame": self.frame, "direction": list(self.direction), **_weight_value(self)}


Constraint = PoseKey | EffectorTarget | FacingKey


def _chain_to_root(joint: int) -> list[int]:
    chain = []
    while joint >= 0:
        chain.append(joint)
        joint = PARENTS[joint]
    return chain


def _weight_value(constraint: Constraint) -> dict[str, Any]:
    return {} if constraint.hard else {"weight": constraint.weight}


# ---- reading ----------------------------------------------------------------------------------------------------------
def _vector(value: object, size: int, index: int, field: str, what: str) -> tuple[float, ...]:
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != size
            or not all(is_finite_number(v) for v in value)):
        raise ConstraintError(f"must be {what} ({size} finite numbers), got {short_repr(value)}", index=index,
                              field=field)
    if not all(abs(v) <= MAX_PATH_COORDINATE for v in value):
        raise ConstraintError(f"each number must be within ±{MAX_PATH_COORDINATE:g}, got {short_repr(value)}",
                              index=index, field=field)
    return tuple(float(v) for v in value)


def _rotation(value: object, index: int, field: str) -> tuple[float, ...]:
    quaternion = _vector(value, 4, index, field, "a rotation [w, x, y, z]")
    norm = math.sqrt(sum(v * v for v in quaternion))
    if norm < 1e-6:
        raise ConstraintError("a rotation cannot be all zeros", index=index, field=field)
    return tuple(v / norm for v in quaternion)


def _per_joint(value: object, size: int, index: int, field: str, what: str) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != NUM_JOINTS:
        count = len(value) if isinstance(value, Sequence) and not isinstance(value, str) else short_repr(value)
        raise ConstraintError(f"must list the {NUM_JOINTS} canonical joints ({', '.join(JOINT_NAMES[:3])}, ...), "
                              f"got {count}", index=index, field=field)
    rows = _plain_rows(value, size)
    if rows is not None and size == 3:
        return rows
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows] if rows is not None else []
    if rows is not None and min(norms) >= 1e-6:  # normalised as `_rotation` does
        return tuple(tuple(v / norm for v in row) for row, norm in zip(rows, norms, strict=True))
    if size == 4:
        return tuple(_rotation(item, index, f"{field}[{j}] ({JOINT_NAMES[j]})") for j, item in enumerate(value))
    return tuple(_vector(item, size, index, f"{field}[{j}] ({JOINT_NAMES[j]})", what) for j, item in enumerate(value))


_PLAIN_NUMBERS = (int, float)


def _plain_rows(value: Sequence, size: int) -> tuple[tuple[float, ...], ...] | None:
    """The fast path of `_per_joint` (a pose is 66 or 88 numbers, 10,000 poses 880,000): rows of `size` plain
    finite numbers within ±MAX_PATH_COORDINATE as float tuples, or None when anything is off (the slow path then
    names the joint and what is wrong)."""
    if not all(type(row) in (list, tuple) and len(row) == size and all(type(v) in _PLAIN_NUMBERS for v in row)
               for row in value):
        return None
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    if not (np.isfinite(array).all() and (np.abs(array) <= MAX_PATH_COORDINATE).all()):
        return None
    return tuple(map(tuple, array.tolist()))


def _frame(value: object, index: int, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConstraintError(f"must be a whole frame number, got {short_repr(value)}", index=index, field=field)
    if abs(value) > MAX_FRAME_NUMBER:  # no timeline reaches it; a 5,000-digit number would not even print
        raise ConstraintError(f"frame {short_repr(value)} is beyond any timeline (frame numbers are within "
                              f"±{MAX_FRAME_NUMBER:,})", index=index, field=field)
    return value


def _weight(entry: Mapping, index: int) -> tuple[float, bool]:
    value = entry.get("weight", "hard")
    if value == "hard":
        return 1.0, True
    if not is_finite_number(value) or not 0 < value <= 1:
        raise ConstraintError(f"must be \"hard\" or a number in (0, 1], got {short_repr(value)}", index=index,
                              field="weight")
    return float(value), False


def constraint_from_value(entry: object, index: int, *, solve_positions: bool = True) -> Constraint:
    """One constraint of a timeline file (see the module docstring); frames are checked against the timeline later.
    ``solve_positions=False`` leaves a pose given as positions without its rotations (``constraints_from_value``
    solves all of them in one batch)."""
    if not isinstance(entry, Mapping):
        raise ConstraintError(f"must be an object with a 'type', got {short_repr(entry)}", index=index)
    kind = entry.get("type")
    if kind not in CONSTRAINT_TYPES:
        raise ConstraintError(f"must be one of {', '.join(CONSTRAINT_TYPES)}, got {short_repr(kind)}", index=index,
                              field="type")
    for key in entry:
        if key not in _KEYS[kind]:
            raise ConstraintError(f"unknown key {short_repr(key)} for a {kind} constraint (allowed: "
                                  f"{', '.join(_KEYS[kind])})", index=index, field=str(key))
    weight, hard = _weight(entry, index)
    if kind == "effector":
        return _effector(entry, index, weight, hard)
    if "frame" not in entry:
        raise ConstraintError("missing", index=index, field="frame")
    frame = _frame(entry["frame"], index, "frame")
    if kind == "facing":
        if "direction" not in entry:
            raise ConstraintError("missing", index=index, field="direction")
        x, z = _vector(entry["direction"], 2, index, "direction", "a direction [x, z]")
        length = math.hypot(x, z)
        if length < 1e-6:
            raise ConstraintError("the direction has no length", index=index, field="direction")
        return FacingKey(frame, (x / length, z / length), weight, hard)
    return _pose(entry, index, frame, weight, hard, solve_positions)


def _held_joints(value: object, index: int) -> tuple[int, ...] | None:
    """The ``joints`` of a partial pose: canonical joint names (``root`` = ``pelvis``), each once; None: all."""
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence) or not value:
        raise ConstraintError(f"must be a non-empty list of joint names ({', '.join(JOINT_NAMES[:3])}, ...), got "
                              f"{short_repr(value)}", index=index, field="joints")
    held: list[int] = []
    for position, name in enumerate(value):
        joint = 0 if name == "root" else JOINT_INDEX.get(name) if isinstance(name, str) else None
        if joint is None:
            raise ConstraintError(f"unknown joint {short_repr(name)} (one of: {', '.join(JOINT_NAMES)})",
                                  index=index, field=f"joints[{position}]")
        if joint in held:
            raise ConstraintError(f"{JOINT_NAMES[joint]} is named twice", index=index, field=f"joints[{position}]")
        held.append(joint)
    return tuple(sorted(held))


def _pose(entry: Mapping, index: int, frame: int, weight: float, hard: bool, solve: bool = True) -> PoseKey:
    joints = _held_joints(entry.get("joints"), index)
    if ("positions" in entry) == ("rotations" in entry):
        raise ConstraintError("give exactly one of 'positions' or 'rotations' (with 'root')", index=index,
                              field="positions")
    if "positions" in entry:
        if "root" in entry:
            raise ConstraintError("'root' goes with 'rotations'; 'positions' already place the pelvis",
                                  index=index, field="root")
        positions = _per_joint(entry["positions"], 3, index, "positions", "a position [x, y, z]")
        _check_bone_lengths(np.asarray(positions), index)
        pose = PoseKey(frame, (), (), weight, hard, positions, joints)
        return _with_rotations([pose])[0] if solve else pose
    if "root" not in entry:
        raise ConstraintError("missing: 'rotations' need the pelvis position 'root'", index=index, field="root")
    root = _vector(entry["root"], 3, index, "root", "a position [x, y, z]")
    return PoseKey(frame, root, _per_joint(entry["rotations"], 4, index, "rotations", ""), weight, hard,
                   joints=joints)


def _effector(entry: Mapping, index: int, weight: float, hard: bool) -> EffectorTarget:
    joint = entry.get("joint")
    if joint not in EFFECTOR_JOINTS:
        raise ConstraintError(f"unknown joint {short_repr(joint)} (an effector is one of: "
                              f"{', '.join(EFFECTOR_JOINTS)})", index=index, field="joint")
    if "frame" in entry:
        if "start" in entry or "end" in entry:
            raise ConstraintError("give 'frame' or 'start' and 'end', not both", index=index, field="frame")
        start = end = _frame(entry["frame"], index, "frame")
    else:
        for key in ("start", "end"):
            if key not in entry:
                raise ConstraintError("missing: give 'frame', or 'start' and 'end'", index=index, field=key)
        start, end = _frame(entry["start"], index, "start"), _frame(entry["end"], index, "end")
        if end < start:
            raise ConstraintError(f"ends at frame {end}, before its start {start}", index=index, field="end")
    if "position" not in entry:
        raise ConstraintError("missing", index=index, field="position")
    position = _vector(entry["position"], 3, index, "position", "a position [x, y, z]")
    orientation = _rotation(entry["orientation"], index, "orientation") if "orientation" in entry else None
    return EffectorTarget(joint, start, end, position, orientation, weight, hard)


def constraints_from_value(value: object) -> tuple[Constraint, ...]:
    """The ``constraints`` list of a timeline file, each entry checked on its own."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConstraintError(f"must be a list of constraints, got {short_repr(value)}")
    if len(value) > MAX_CONSTRAINTS:
        raise ConstraintError(f"at most {MAX_CONSTRAINTS} constraints (kmm_core/common/limits.py), got {len(value)}")
    parsed = [constraint_from_value(entry, index, solve_positions=False) for index, entry in enumerate(value)]
    unsolved = [index for index, constraint in enumerate(parsed)
                if isinstance(constraint, PoseKey) and not constraint.rotations]
    for index, pose in zip(unsolved, _with_rotations([parsed[index] for index in unsolved]), strict=True):
        parsed[index] = pose
    return tuple(parsed)


def _with_rotations(poses: Sequence[PoseKey]) -> list[PoseKey]:
    """Poses given as positions with their root and rotations on the canonical skeleton: one batched inverse
    kinematics for all of them (per pose it cost 10 ms: 10,000 poses took minutes)."""
    from dataclasses import replace

    from ..motion.kinematics import inverse_kinematics

    if not poses:
        return []
    root, rotations = inverse_kinematics(np.asarray([pose.given_positions for pose in poses]), tpose_offsets())
    return [replace(pose, root=tuple(root[k]), rotations=tuple(map(tuple, rotations[k])))
            for k, pose in enumerate(poses)]


# ---- checks against the timeline and against each other -------------------------------------------------------------
def _check_bone_lengths(positions: np.ndarray, index: int) -> None:
    lengths = np.linalg.norm(positions[1:] - positions[list(PARENTS[1:])], axis=-1)
    wrong = np.flatnonzero(np.abs(lengths - BONE_LENGTHS[1:])
                           > np.maximum(BONE_LENGTH_TOLERANCE * BONE_LENGTHS[1:], 0.02))
    if wrong.size:  # the first bone too long or too short
        joint = int(wrong[0]) + 1
        raise ConstraintError(
            f"the canonical skeleton cannot reach this pose: the bone {JOINT_NAMES[PARENTS[joint]]} -> "
            f"{JOINT_NAMES[joint]} is {lengths[joint - 1]:.3f} m long here but {BONE_LENGTHS[joint]:.3f} m on the "
            f"skeleton (give the pose on the canonical skeleton, or as rotations)", index=index, field="positions")


def _reach_height(joint: int) -> float:
    """The highest a joint of the canonical skeleton can be with a foot on the floor: legs, spine and arm
    straightened upwards, plus a 10 cm margin."""
    leg = float(BONE_LENGTHS[[1, 4, 7]].sum()) + 0.1  # hip, knee and ankle, plus the foot on its toes
    chain, node = 0.0, joint
    while node > 0:
        chain += float(BONE_LENGTHS[node])
        node = PARENTS[node]
    return leg + chain + 0.1


def check_constraints(constraints: Sequence[Constraint], first_frame: int, num_frames: int,
                      fps: float | None = None) -> None:
    """Refuse constraints outside frames ``first_frame``..``first_frame + num_frames - 1``, more than
    ``MAX_CONSTRAINED_FRAMES`` covered frames in all, unreachable targets, constraints that disagree at one frame
    and (given ``fps``) pelvis placements faster apart than ``MAX_ROOT_SPEED``; every error names the constraint
    (its index) and the field.  O(n log n + covered frames): nothing compares every pair."""
    last_frame = first_frame + num_frames - 1
    covered = 0
    for index, constraint in enumerate(constraints):
        single = constraint.start == constraint.end
        for name, frame in (("frame" if single else "start", constraint.start), ("frame" if single else "end",
                                                                                  constraint.end)):
            if not first_frame <= frame <= last_frame:
                raise ConstraintError(f"frame {frame} is outside the timeline (frames {first_frame} to "
                                      f"{last_frame})", index=index, field=name)
        covered += constraint.end - constraint.start + 1
        if covered > MAX_CONSTRAINED_FRAMES:
            raise ConstraintError(f"the constraints up to this one cover {covered:,} frames; at most "
                                  f"{MAX_CONSTRAINED_FRAMES:,} in all (a target held over frames 10 to 19 counts 10, "
                                  f"kmm_core/common/limits.py)", index=index, field="frame" if single else "end")
        if isinstance(constraint, EffectorTarget):
            height, top = constraint.position[1], _reach_height(constraint.joint_index)
            if height < -FLOOR_MARGIN:
                raise ConstraintError(f"the {constraint.joint} cannot reach {height:.2f} m: that is below the floor "
                                      f"(y = 0)", index=index, field="position")
            if height > top:
                raise ConstraintError(f"the {constraint.joint} cannot reach {height:.2f} m above the floor: the "
                                      f"skeleton reaches at most {top:.2f} m", index=index, field="position")
    _check_agreement(constraints, first_frame, num_frames)
    if fps is not None:
        _check_root_speed(constraints, fps)


def _check_pose_overlap(constraint: PoseKey, index: int, held_at: dict[int, dict[int, int]]) -> None:
    """Two poses at one frame may hold different joints (partial keys), never the same one."""
    owners = held_at.setdefault(constraint.frame, {})
    clash = next((joint for joint in constraint.held if joint in owners), None)
    if clash is not None:
        what = "whole body" if not constraint.is_partial and len(owners) == NUM_JOINTS else JOINT_NAMES[clash]
        raise ConstraintError(f"conflicts with constraints[{owners[clash]}]: both key the {what} at frame "
                              f"{constraint.frame}", index=index, field="frame")
    owners.update(dict.fromkeys(constraint.held, index))


class _JointReference:
    """Where one effector joint must be at each frame of the timeline, and which constraint says so: the key pose
    placing the joint there, else the first listed target covering the frame (the one the solver meets; every
    other target on that joint and frame must lie within ``AGREEMENT_TOLERANCE`` of it)."""

    def __init__(self, first_frame: int, num_frames: int):
        self.first_frame = first_frame
        self.owner = np.full(num_frames, -1, dtype=np.int64)
        self.position = np.zeros((num_frames, 3))

    def set(self, frame: int, index: int, position: np.ndarray) -> None:
        self.owner[frame - self.first_frame] = index
        self.position[frame - self.first_frame] = position

    def check_and_claim(self, target: EffectorTarget, index: int) -> tuple[int, int, float] | None:
        """(frame, owner index, gap) of the first frame whose reference lies too far from `target`, else None;
        the target becomes the reference of the frames it is the first to cover.  Work: its frames, vectorised."""
        frames = slice(target.start - self.first_frame, target.end - self.first_frame + 1)
        owners, positions = self.owner[frames], self.position[frames]
        taken = owners >= 0
        gaps = np.linalg.norm(positions - np.asarray(target.position), axis=-1)
        far = np.flatnonzero(taken & (gaps > AGREEMENT_TOLERANCE))
        if far.size:
            at = int(far[0])
            return target.start + at, int(owners[at]), float(gaps[at])
        owners[~taken] = index
        positions[~taken] = target.position
        return None


def _check_agreement(constraints: Sequence[Constraint], first_frame: int, num_frames: int) -> None:
    """Constraints that disagree at one frame: two poses holding one joint, two facings, a facing and a pose, a
    target and a pose or another target on its joint.  Each constraint is looked at once, a target over each of
    its frames once: linear in the covered frames (poses and facings by dictionary, targets against a per-joint
    reference array)."""
    poses: dict[int, tuple[int, np.ndarray]] = {}  # frame -> (index, positions) of a whole-body pose
    held_at: dict[int, dict[int, int]] = {}
    facings: dict[int, tuple[int, FacingKey]] = {}
    references: dict[int, _JointReference] = {}
    partial_held: dict[tuple[int, int], int] = {}  # (frame, joint) -> the partial pose holding it there
    effector_joints = set(EFFECTOR_JOINTS.values())

    def reference(joint: int) -> _JointReference:
        if joint not in references:
            references[joint] = _JointReference(first_frame, num_frames)
        return references[joint]

    for index, constraint in enumerate(constraints):
        if isinstance(constraint, PoseKey):
            _check_pose_overlap(constraint, index, held_at)
            if constraint.is_partial:  # joints held relative to the keyed body, not placed in the scene
                for joint in set(constraint.held) - set(constraint.placed_joints()):
                    partial_held.setdefault((constraint.frame, joint), index)
            # A partial pose places only the joints whose chain up to the pelvis it holds.
            placed = constraint.placed_joints() if constraint.is_partial else tuple(range(NUM_JOINTS))
            if not placed:
                continue
            positions = constraint.positions()
            if not constraint.is_partial:
                poses[constraint.frame] = (index, positions)
            for joint in effector_joints.intersection(placed):
                reference(joint).set(constraint.frame, index, positions[joint])
        elif isinstance(constraint, FacingKey):
            if constraint.frame in facings:
                other_index, other = facings[constraint.frame]
                if _angle_degrees(other.direction, constraint.direction) > FACING_TOLERANCE_DEGREES:
                    raise ConstraintError(f"conflicts with constraints[{other_index}]: two facing directions at "
                                          f"frame {constraint.frame}", index=index, field="direction")
            facings[constraint.frame] = (index, constraint)
    for index, constraint in enumerate(constraints):
        if isinstance(constraint, FacingKey) and constraint.frame in poses:
            pose_index, positions = poses[constraint.frame]
            angle = _angle_degrees(body_facing(positions[None])[0], constraint.direction)
            if angle > FACING_TOLERANCE_DEGREES:
                raise ConstraintError(f"conflicts with constraints[{pose_index}]: the pose keyed at frame "
                                      f"{constraint.frame} faces {angle:.0f} degrees away from this direction",
                                      index=index, field="direction")
        if not isinstance(constraint, EffectorTarget):
            continue
        for frame in range(constraint.start, constraint.end + 1) if partial_held else ():
            if (frame, constraint.joint_index) in partial_held:
                # the key holds the joint where the keyed body puts it (an arm seen from the chest), the target at a
                # place in the scene: both can be met only by chance, so the run would fail after generating
                raise ConstraintError(f"conflicts with constraints[{partial_held[frame, constraint.joint_index]}]: "
                                      f"the key pose at frame {frame} holds the {constraint.joint} too (where the "
                                      "keyed body puts it); keep the key or the target at that frame", index=index,
                                      field="start")
        clash = reference(constraint.joint_index).check_and_claim(constraint, index)
        if clash is None:
            continue
        frame, other_index, gap = clash
        other = constraints[other_index]
        if isinstance(other, PoseKey):
            raise ConstraintError(f"conflicts with constraints[{other_index}]: the pose keyed at frame {frame} "
                                  f"puts the {constraint.joint} {gap:.2f} m from this target", index=index,
                                  field="position")
        raise ConstraintError(f"conflicts with constraints[{other_index}] ({other.joint}): two targets {gap:.2f} m "
                              f"apart for the {constraint.joint} at frame {frame}", index=index, field="position")


def pelvis_placements(constraints: Sequence[Constraint]) -> list[tuple[int, int, tuple[float, float]]]:
    """(frame, constraint index, pelvis floor position (x, z)) of every constraint that places the pelvis: a pose
    holding it (at its frame), a root target (at its first and last frame); sorted by frame."""
    placements = []
    for index, constraint in enumerate(constraints):
        if isinstance(constraint, PoseKey) and 0 in constraint.held:
            placements.append((constraint.frame, index, (constraint.root[0], constraint.root[2])))
        elif isinstance(constraint, EffectorTarget) and constraint.joint_index == 0:
            floor = (constraint.position[0], constraint.position[2])
            placements += [(frame, index, floor) for frame in sorted({constraint.start, constraint.end})]
    return sorted(placements)


def _check_root_speed(constraints: Sequence[Constraint], fps: float) -> None:
    """Neighbouring pelvis placements (sorted by frame) no faster apart than ``MAX_ROOT_SPEED``: else the body
    would slide from one to the next."""
    placements = pelvis_placements(constraints)
    for (frame_a, index_a, at_a), (frame_b, index_b, at_b) in zip(placements, placements[1:], strict=False):
        if frame_b == frame_a:
            continue  # one frame: the agreement check compared them
        distance = math.dist(at_a, at_b)
        speed = distance * fps / (frame_b - frame_a)
        if speed > MAX_ROOT_SPEED:
            raise ConstraintError(
                f"places the pelvis at frame {frame_b} {distance:.2f} m from where constraints[{index_a}] places it "
                f"at frame {frame_a}: {speed:.1f} m/s, faster than the {MAX_ROOT_SPEED:g} m/s a body can travel "
                f"(kmm_core/common/limits.py); space them further apart in time", index=index_b,
                field=_frame_field(constraints[index_b], frame_b))


def _frame_field(constraint: Constraint, frame: int) -> str:
    """The key naming `frame` of a constraint: ``frame``, or ``start`` / ``end`` of a range."""
    if constraint.start == constraint.end:
        return "frame"
    return "start" if frame == constraint.start else "end"


def _angle_degrees(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cos = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def body_facing(joints: np.ndarray) -> np.ndarray:
    """(T, 2) unit floor direction (x, z) each pose (T, 22, 3) faces: up x (right - left across hips and
    shoulders), as HumanML3D defines facing."""
    forward = forward_directions(np.asarray(joints, dtype=np.float64), _ACROSS_PLUS, _ACROSS_MINUS)[..., [0, 2]]
    return forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)


def constraints_to_value(constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    return [constraint.to_value() for constraint in constraints]


def shifted(constraints: Sequence[Constraint], offset: int) -> tuple[Constraint, ...]:
    """The constraints with every frame moved by ``offset`` (timeline frame numbers -> 0-based frames)."""
    from dataclasses import replace

    moved = []
    for constraint in constraints:
        if isinstance(constraint, EffectorTarget):
            moved.append(replace(constraint, start=constraint.start + offset, end=constraint.end + offset))
        else:
            moved.append(replace(constraint, frame=constraint.frame + offset))
    return tuple(moved)
