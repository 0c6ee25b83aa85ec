# SPDX-License-Identifier: GPL-3.0-or-later
"""DeepMimic reference motions (``{"Loop", "Frames"}`` JSON) on a DeepMimic character (``characters/*.txt``)
-> `BvhMotion`.

The character file's ``Skeleton.Joints`` gives every joint's ``ID``, ``Name``, ``Type`` (``none`` for the root,
``spherical``, ``revolute`` = one angle about the joint's z axis, ``fixed``), ``Parent`` and ``AttachX/Y/Z``
(offset from the parent joint in the parent's frame, metres) and ``AttachThetaX/Y/Z`` (the joint frame's rest
rotation, applied X then Y then Z).  A motion frame is ``[duration, root position (3), root rotation (w, x, y, z),
then per joint in ID order: spherical -> quaternion (w, x, y, z), revolute -> angle (radians), fixed -> nothing]``.
Axes: Y up; the character faces +X, its right side is +Z.

A looping clip (``"Loop": "wrap"``: its last frame is its first pose again) shorter than half of `loop_to_seconds`
is repeated cycle after cycle, each one moved on by the cycle's root travel, until it lasts `loop_to_seconds`:
DeepMimic's run and jog are single strides of under a second, too short to train on alone (longer loops, such as a
backflip, are one complete action and stay as they are).

Points the skeleton lacks as joints come from the character's ``BodyDefs``: ``<joint>/End Site`` is added for a
joint whose body is a box (the front-bottom middle of the box: the ball of a foot) or the sphere of a joint with no
child joint (its centre: the middle of the head for the neck).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bvh.reader import END_SITE_SUFFIX, BvhMotion
from ..common.bounded_read import parse_json, read_text
from ..common.errors import InputFileError
from ..common.limits import MAX_MOTION_TEXT_BYTES
from ..motion.rotations import axis_angle_to_matrix, matrix_to_euler, qnormalize, quat_to_matrix, slerp

_DOF = {"none": 7, "spherical": 4, "revolute": 1, "fixed": 0}
_ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")


@dataclass(frozen=True)
class DeepMimicJoint:
    name: str
    kind: str                 # "none" (root), "spherical", "revolute", "fixed"
    parent: int
    attach: np.ndarray        # (3,) metres, in the parent's frame
    rest_rotation: np.ndarray  # (3, 3)


@dataclass(frozen=True)
class DeepMimicCharacter:
    path: str
    joints: tuple[DeepMimicJoint, ...]        # in ID order (a parent before its children)
    end_sites: tuple[tuple[int, np.ndarray], ...]  # (joint, offset in its frame) from the body shapes

    @property
    def values_per_frame(self) -> int:
        return 1 + sum(_DOF[joint.kind] for joint in self.joints)


def _number(value, what: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise InputFileError(path, f"{what} must be a finite number, found {value!r}")
    return float(value)


def parse_deepmimic_character(text: str, path: str = "<string>") -> DeepMimicCharacter:
    data = parse_json(text, path, "character file", allow_non_finite=True)
    joints_data = data.get("Skeleton", {}).get("Joints") if isinstance(data, dict) else None
    if not isinstance(joints_data, list) or not joints_data:
        raise InputFileError(path, "no 'Skeleton': {'Joints': [...]} (not a DeepMimic character file?)")
    joints: list[DeepMimicJoint] = []
    for index, entry in enumerate(joints_data):
        what = f"joint {index}"
        if not isinstance(entry, dict):
            raise InputFileError(path, f"{what} is not an object")
        name = entry.get("Name")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise InputFileError(path, f"{what}: 'Name' must be a name without spaces, found {name!r}")
        what = f"joint {name!r}"
        if entry.get("ID") != index:
            raise InputFileError(path, f"{what}: 'ID' must be {index} (joints listed in ID order)")
        kind = entry.get("Type")
        if kind not in _DOF:
            raise InputFileError(path, f"{what}: unknown 'Type' {kind!r} (expected one of {', '.join(_DOF)})")
        parent = entry.get("Parent")
        if not isinstance(parent, int) or not -1 <= parent < index or (parent == -1) != (index == 0):
            raise InputFileError(path, f"{what}: 'Parent' must be an earlier joint (-1 only for joint 0), "
                                       f"found {parent!r}")
        if (kind == "none") != (index == 0):
            raise InputFileError(path, f"{what}: only the root (joint 0) has Type 'none'")
        attach = np.array([_number(entry.get(f"Attach{a}"), f"{what} Attach{a}", path) for a in "XYZ"])
        theta = [_number(entry.get(f"AttachTheta{a}", 0.0), f"{what} AttachTheta{a}", path) for a in "XYZ"]
        rest = np.eye(3)
        for axis, angle in zip("XYZ", theta, strict=True):
            rest = axis_angle_to_matrix(angle * np.eye(3)["XYZ".index(axis)]) @ rest
        joints.append(DeepMimicJoint(name, kind, parent, attach, rest))
    has_child = {joint.parent for joint in joints}
    end_sites: list[tuple[int, np.ndarray]] = []
    for body in data.get("BodyDefs", []) or []:
        if not isinstance(body, dict) or not isinstance(body.get("ID"), int) or not 0 <= body["ID"] < len(joints):
            continue
        centre = np.array([float(body.get(f"Attach{a}", 0.0)) for a in "XYZ"])
        size = np.array([float(body.get(f"Param{k}", 0.0)) for k in range(3)])
        if body.get("Shape") == "box":
            end_sites.append((body["ID"], centre + np.array([size[0] / 2, -size[1] / 2, 0.0])))
        elif body.get("Shape") == "sphere" and body["ID"] not in has_child and joints[body["ID"]].kind != "fixed":
            end_sites.append((body["ID"], centre))
    return DeepMimicCharacter(path=path, joints=tuple(joints), end_sites=tuple(end_sites))


def read_deepmimic_character(path: str | Path) -> DeepMimicCharacter:
    path = Path(path)
    text = read_text(path, "character file")
    return parse_deepmimic_character(text, str(path))


def _frame_line_numbers(text: str) -> list[int]:
    """1-based line of each frame row (a line starting with '[' after the "Frames" key), for error messages."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if '"Frames"' in line), 0)
    rows = []
    for number in range(start, len(lines)):
        stripped = lines[number].lstrip()
        if stripped.startswith("[") and any(c.isdigit() for c in stripped):
            rows.append(number + 1)
    return rows


def parse_deepmimic_motion(text: str, character: DeepMimicCharacter, path: str = "<string>",
                           loop_to_seconds: float | None = None) -> BvhMotion:
    """A `BvhMotion` (metres; joints named as in the character, plus its End Sites) of a DeepMimic motion; a looping
    clip shorter than half of `loop_to_seconds` (None: never) is repeated (see the module docstring)."""
    data = parse_json(text, path, "motion file", allow_non_finite=True)
    frames = data.get("Frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InputFileError(path, "no 'Frames' list (not a DeepMimic motion file?)")
    lines = _frame_line_numbers(text)
    width = character.values_per_frame
    rows = []
    for index, frame in enumerate(frames):
        line = lines[index] if index < len(lines) else None
        if not isinstance(frame, list) or len(frame) != width:
            found = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise InputFileError(path, f"frame {index}: expected {width} values for the character "
                                       f"{character.path}, found {found}", line)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in frame):
            raise InputFileError(path, f"frame {index}: every value must be a finite number", line)
        rows.append(frame)
    values = np.asarray(rows, dtype=np.float64)
    durations = values[:, 0] if len(values) == 1 else values[:-1, 0]   # the last frame's duration is unused
    if np.any(durations <= 0):
        bad = int(np.argmin(durations))
        raise InputFileError(path, f"frame {bad}: duration must be positive, found {durations[bad]}",
                             lines[bad] if bad < len(lines) else None)
    frame_time = float(np.median(durations))
    if np.any(np.abs(durations - frame_time) > 0.01 * frame_time):
        values = _resample(values, character, frame_time)
    if (loop_to_seconds is not None and data.get("Loop") == "wrap" and len(values) > 2
            and (len(values) - 1) * frame_time < loop_to_seconds / 2):
        values = _repeat_cycles(values, frame_time, loop_to_seconds)
    names, parents, offsets, channels, columns = [], [], [], [], []
    column = 1
    for joint in character.joints:
        names.append(joint.name)
        parents.append(joint.parent)
        offsets.append(joint.attach)
        if joint.kind == "none":
            position = values[:, column:column + 3]
            motion = quat_to_matrix(qnormalize(values[:, column + 3:column + 7]))
            column += 7
            channels.append(_ROOT_CHANNELS)
            columns += [position, np.degrees(matrix_to_euler(joint.rest_rotation @ motion, "ZYX"))]
            continue
        if joint.kind == "spherical":
            quats = values[:, column:column + 4]
            if np.any(np.linalg.norm(quats, axis=-1) < 1e-6):
                bad = int(np.argmin(np.linalg.norm(quats, axis=-1)))
                raise InputFileError(path, f"frame {bad}: joint {joint.name!r} has a zero quaternion",
                                     lines[bad] if bad < len(lines) else None)
            motion = quat_to_matrix(qnormalize(quats))
            column += 4
        elif joint.kind == "revolute":
            motion = axis_angle_to_matrix(values[:, column, None] * np.array([0.0, 0.0, 1.0]))
            column += 1
        else:
            motion = np.broadcast_to(np.eye(3), (len(values), 3, 3))
        channels.append(("Zrotation", "Yrotation", "Xrotation"))
        columns.append(np.degrees(matrix_to_euler(joint.rest_rotation @ motion, "ZYX")))
    for joint_index, offset in character.end_sites:
        names.append(character.joints[joint_index].name + END_SITE_SUFFIX)
        parents.append(joint_index)
        offsets.append(offset)
        channels.append(())
    return BvhMotion(path=path, names=tuple(names), parents=tuple(parents), offsets=np.array(offsets),
                     channels=tuple(channels), frame_time=frame_time, frames=np.concatenate(columns, axis=1))


def _resample(values: np.ndarray, character: DeepMimicCharacter, step: float) -> np.ndarray:
    """Frames of uneven durations -> frames every `step` seconds (positions and angles linear, quaternions
    slerped)."""
    times = np.concatenate([[0.0], np.cumsum(values[:-1, 0])])
    targets = np.arange(0.0, times[-1] + 1e-9, step)
    segment = np.clip(np.searchsorted(times, targets, side="right") - 1, 0, len(times) - 2)
    weight = ((targets - times[segment]) / (times[segment + 1] - times[segment]))[:, None]
    before, after = values[segment], values[segment + 1]
    out = before + weight * (after - before)   # linear for everything, then quaternions replaced
    out[:, 0] = step
    column = 1
    for joint in character.joints:
        if joint.kind == "none":
            out[:, column + 3:column + 7] = slerp(before[:, column + 3:column + 7], after[:, column + 3:column + 7],
                                                  weight[:, 0])
        elif joint.kind == "spherical":
            out[:, column:column + 4] = slerp(before[:, column:column + 4], after[:, column:column + 4],
                                              weight[:, 0])
        column += _DOF[joint.kind]
    return out


def _repeat_cycles(values: np.ndarray, frame_time: float, seconds: float) -> np.ndarray:
    """Append cycles (frames 1..end, the last frame being the first pose) shifted by the cycle's horizontal root
    travel until the clip lasts `seconds`."""
    travel = values[-1, 1:4] - values[0, 1:4]
    travel[1] = 0.0   # Y is up: a cycle ends at the height it started
    cycles = [values]
    frames = len(values)
    while (frames - 1) * frame_time < seconds:
        cycle = values[1:].copy()
        cycle[:, 1:4] += travel * len(cycles)
        cycles.append(cycle)
        frames += len(cycle)
    return np.concatenate(cycles)


def read_deepmimic_motion(path: str | Path, character: DeepMimicCharacter,
                          loop_to_seconds: float | None = None) -> BvhMotion:
    path = Path(path)
    text = read_text(path, "motion file", limit=MAX_MOTION_TEXT_BYTES)
    return parse_deepmimic_motion(text, character, str(path), loop_to_seconds)
