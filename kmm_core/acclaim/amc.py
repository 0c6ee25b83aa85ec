# SPDX-License-Identifier: GPL-3.0-or-later
"""Read Acclaim motion files (.amc): the motion half of the ASF/AMC format, against an `AsfSkeleton`.

Layout: header lines (``#`` comments, ``:FULLY-SPECIFIED``, ``:DEGREES`` or ``:RADIANS``), then frames: a line
holding the frame number (1, 2, ... consecutive), followed by one line per bone with degrees of freedom,
``<bone> v1 v2 ...``, the values in the order of the bone's ``dof`` (the root's: its ``order``), bones in any
order.  Every frame must give every bone that has dof exactly once.  Angles are returned in radians; lengths
stay in the skeleton's file units.  Without ``:DEGREES``/``:RADIANS`` the ASF's angle unit applies.
Bad input raises `InputFileError` naming the AMC file, the line and the bone or frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bvh.reader import is_number
from ..common.bounded_read import read_text
from ..common.errors import InputFileError
from ..common.limits import MAX_MOTION_TEXT_BYTES
from .asf import ROOT, AsfSkeleton

ACCLAIM_FPS = 120.0   # CMU's and HDM05's capture rate; AMC files do not store it


@dataclass(frozen=True)
class AmcMotion:
    path: str
    angle_unit: str                      # "deg" or "rad" as the file declared (values below are radians)
    root: np.ndarray                     # (T, len(skeleton.root_order)) in root order; rotations in radians
    bones: dict[str, np.ndarray]         # bone name -> (T, len(bone.dof)) radians
    first_frame_number: int

    @property
    def num_frames(self) -> int:
        return int(self.root.shape[0])


def parse_amc(text: str, skeleton: AsfSkeleton, path: str = "<string>") -> AmcMotion:
    """Parse the text of an AMC file that moves `skeleton` (`path` is only used in error messages)."""
    lines = text.splitlines()
    angle_unit: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line or line.startswith("#"):
            index += 1
            continue
        if line.startswith(":"):
            keyword = line.split()[0].upper()
            if keyword == ":DEGREES":
                angle_unit = "deg"
            elif keyword == ":RADIANS":
                angle_unit = "rad"
            index += 1
            continue
        break
    angle_unit = angle_unit or skeleton.angle_unit
    to_radians = np.pi / 180.0 if angle_unit == "deg" else 1.0

    dof_count = {ROOT: len(skeleton.root_order)}
    dof_count.update({bone.name: len(bone.dof) for bone in skeleton.bones if bone.dof})
    # Which value columns are angles (converted to radians).
    is_angle = {ROOT: np.array([c.startswith("r") for c in skeleton.root_order])}
    is_angle.update({bone.name: np.ones(len(bone.dof), dtype=bool) for bone in skeleton.bones if bone.dof})
    values: dict[str, list[list[float]]] = {name: [] for name in dof_count}
    seen: dict[str, int] = {}
    frame_number: int | None = None
    frame_line = 0
    first_frame: int | None = None
    frames = 0

    def close_frame() -> None:
        missing = [name for name in dof_count if name not in seen]
        if missing:
            raise InputFileError(path, f"frame {frame_number}: bone {missing[0]!r} is missing "
                                       f"({len(missing)} bone(s) without values)", frame_line)

    for number in range(index + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) == 1 and words[0].lstrip("-").isdigit():
            if frame_number is not None:
                close_frame()
            new_number = int(words[0])
            if frame_number is not None and new_number != frame_number + 1:
                raise InputFileError(path, f"frame number {new_number} does not follow frame {frame_number}", number)
            if first_frame is None:
                first_frame = new_number
            frame_number, frame_line, seen = new_number, number, {}
            frames += 1
            continue
        if frame_number is None:
            raise InputFileError(path, f"expected a frame number, found {words[0]!r}", number)
        name = words[0]
        if name not in dof_count:
            known = name in skeleton.bone_names
            reason = "has no dof in the skeleton" if known else f"is not a bone of {skeleton.path}"
            raise InputFileError(path, f"frame {frame_number}: bone {name!r} {reason}", number)
        if name in seen:
            raise InputFileError(path, f"frame {frame_number}: bone {name!r} appears twice (first on line "
                                       f"{seen[name]})", number)
        if len(words) - 1 != dof_count[name]:
            raise InputFileError(path, f"frame {frame_number}: bone {name!r} has {len(words) - 1} values, its dof "
                                       f"need {dof_count[name]}", number)
        try:
            row = [float(w) for w in words[1:]]
        except ValueError:
            bad = next(w for w in words[1:] if not is_number(w))
            raise InputFileError(path, f"frame {frame_number}: bone {name!r}: {bad!r} is not a number",
                                 number) from None
        if not all(np.isfinite(row)):
            raise InputFileError(path, f"frame {frame_number}: bone {name!r}: values must be finite", number)
        seen[name] = number
        values[name].append(row)
    if frame_number is None:
        raise InputFileError(path, "no frames (not an AMC motion file?)", len(lines) or None)
    close_frame()

    def array(name: str) -> np.ndarray:
        data = np.asarray(values[name], dtype=np.float64).reshape(frames, dof_count[name])
        return np.where(is_angle[name], data * to_radians, data)

    return AmcMotion(path=path, angle_unit=angle_unit, root=array(ROOT),
                     bones={name: array(name) for name in dof_count if name != ROOT},
                     first_frame_number=int(first_frame))


def read_amc(path: str | Path, skeleton: AsfSkeleton) -> AmcMotion:
    path = Path(path)
    text = read_text(path, "AMC file", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
    return parse_amc(text, skeleton, str(path))
