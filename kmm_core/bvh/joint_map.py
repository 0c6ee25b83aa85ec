# SPDX-License-Identifier: GPL-3.0-or-later
"""Joint maps: how a source BVH skeleton's joints give the canonical 22 joints (skeleton.JOINT_NAMES).

A joint map is a JSON file (the # comments below explain the fields; JSON itself has no comments)::

    {
      "name": "My rig",                 # shown in error messages (optional; defaults to the file name)
      "description": "...",             # free text (optional)
      "up": "+Y",                       # the source's up axis: one of +X -X +Y -Y +Z -Z
      "forward": "+Z",                  # the direction the character faces in the source's axes
      "scale_to_metres": 0.01,          # multiply source units by this to get metres (0.01 for centimetres)
      "joints": {                       # every one of the 22 canonical joints, each either
        "pelvis": "Hips",               #   a source joint name, or
        "spine1": {"between": ["Hips", "Spine"], "t": 0.55},   # a point between two source joints:
        ...                                                    #   (1 - t) * first + t * second
      }
    }

Source names are BVH joint names exactly as the file spells them; the End Site below a joint is called
"<joint>/End Site" (e.g. "lFoot/End Site" for the toe tip of a CMU Daz skeleton).  Interpolation places
canonical joints where the source has none: the built-in maps put pelvis, spine1, spine2 and spine3 at about
the fractions of the hip-line-to-neck height that SMPL's template skeleton has (0.14, 0.33, 0.56, 0.65; measured
on each source's first frame), so that the torso proportions of every dataset resemble HumanML3D's.

The source's right-handed axes are turned into HumanML3D's (Y up, facing +Z, left +X): left = up x forward.

Built-in maps (see `builtin_joint_map`): "bandai_namco" (Bandai-Namco Research Motion Dataset, joint_Root + 21 joints, cm),
"cmu_daz" (CMU mocap in the 43-joint Daz-friendly conversion, cm), "cmu_31" (CMU's own 31-joint skeleton,
0.056444 m per unit), "acclaim_31" (ASF/AMC and CMU exp-map files read by kmm_core.acclaim /
kmm_core.motion_formats, metres), "cc_base" (Reallusion Character Creator rig, cm), "deepmimic_humanoid3d"
(DeepMimic's humanoid, read by kmm_core.motion_formats.deepmimic, metres), "accad_male1" (ACCAD's Male1 set, 22 joints, cm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.bounded_read import read_json
from ..common.errors import InputFileError
from ..motion.skeleton import JOINT_NAMES

BUILTIN_MAP_DIR = Path(__file__).resolve().parent / "joint_maps"
BUILTIN_MAPS = ("bandai_namco", "cmu_daz", "cmu_31", "acclaim_31", "cc_base", "deepmimic_humanoid3d", "accad_male1")

_AXES = {"+X": (1, 0, 0), "-X": (-1, 0, 0), "+Y": (0, 1, 0), "-Y": (0, -1, 0), "+Z": (0, 0, 1), "-Z": (0, 0, -1)}


@dataclass(frozen=True)
class JointSource:
    """Canonical joint = (1 - t) * first + t * second (a single source joint has second == first, t == 0)."""

    first: str
    second: str
    t: float


@dataclass(frozen=True)
class JointMap:
    name: str
    source: str                          # where the map came from (file path or "<dict>"), named in errors
    up: str
    forward: str
    scale_to_metres: float
    joints: tuple[JointSource, ...]      # one per canonical joint, in skeleton.JOINT_NAMES order

    @property
    def source_joint_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for joint in self.joints:
            for name in (joint.first, joint.second):
                if name not in names:
                    names.append(name)
        return tuple(names)

    def axis_matrix(self) -> np.ndarray:
        """(3, 3) rotation taking source axes to HumanML3D axes (rows: source left, up, forward)."""
        up = np.array(_AXES[self.up], dtype=np.float64)
        forward = np.array(_AXES[self.forward], dtype=np.float64)
        return np.stack([np.cross(up, forward), up, forward])

    def check_skeleton(self, joint_names: tuple[str, ...] | list[str], skeleton_source: str = "") -> None:
        """Raise InputFileError naming this map and the joint when a source joint is missing from a skeleton."""
        available = set(joint_names)
        for canonical, joint in zip(JOINT_NAMES, self.joints, strict=True):
            for name in (joint.first, joint.second):
                if name not in available:
                    where = f" of {skeleton_source}" if skeleton_source else ""
                    raise InputFileError(
                        self.source, f"joint map {self.name!r}: source joint {name!r} (for canonical joint "
                        f"{canonical!r}) is not in the skeleton{where}")

    def apply(self, source_positions: np.ndarray, source_names: tuple[str, ...] | list[str],
              skeleton_source: str = "") -> np.ndarray:
        """Canonical (..., 22, 3) positions in HumanML3D axes and metres from source (..., J, 3) positions in
        source axes and units."""
        self.check_skeleton(source_names, skeleton_source)
        index = {name: i for i, name in enumerate(source_names)}
        first = np.array([index[j.first] for j in self.joints])
        second = np.array([index[j.second] for j in self.joints])
        t = np.array([j.t for j in self.joints])[:, None]
        points = (1.0 - t) * source_positions[..., first, :] + t * source_positions[..., second, :]
        return (points @ self.axis_matrix().T) * self.scale_to_metres


def joint_map_from_dict(data: dict, source: str = "<dict>") -> JointMap:
    """Validate a parsed JSON joint map (see the module docstring for the format)."""

    def fail(message: str) -> InputFileError:
        return InputFileError(source, f"joint map: {message}")

    if not isinstance(data, dict):
        raise fail("the top level must be a JSON object")
    extra = sorted(set(data) - {"name", "description", "up", "forward", "scale_to_metres", "joints"})
    if extra:
        raise fail(f"unknown key {extra[0]!r}")
    name = data.get("name", Path(source).stem)
    up, forward = data.get("up"), data.get("forward")
    for key, value in (("up", up), ("forward", forward)):
        if value not in _AXES:
            raise fail(f"{key!r} must be one of {sorted(_AXES)}, got {value!r}")
    if abs(float(np.dot(_AXES[up], _AXES[forward]))) > 0.5:
        raise fail(f"'up' ({up}) and 'forward' ({forward}) must be perpendicular")
    scale = data.get("scale_to_metres")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise fail(f"'scale_to_metres' must be a positive number, got {scale!r}")
    joints = data.get("joints")
    if not isinstance(joints, dict):
        raise fail("'joints' must be an object mapping canonical joint names to source joints")
    unknown = sorted(set(joints) - set(JOINT_NAMES))
    if unknown:
        raise fail(f"unknown canonical joint {unknown[0]!r} (the canonical joints are {', '.join(JOINT_NAMES)})")
    sources = []
    for canonical in JOINT_NAMES:
        if canonical not in joints:
            raise fail(f"canonical joint {canonical!r} is not mapped")
        sources.append(joint_source_from_entry(joints[canonical], f"joint {canonical!r}", "source joint", fail))
    return JointMap(name=str(name), source=source, up=up, forward=forward, scale_to_metres=float(scale),
                    joints=tuple(sources))


def joint_source_from_entry(entry: object, subject: str, name_kind: str, fail) -> JointSource:
    """A map entry, `"Name"` or `{"between": ["A", "B"], "t": 0.5}`, as a JointSource; `fail(message)` makes the error
    raised for a malformed entry, whose message starts with `subject` (e.g. "joint 'pelvis'")."""
    if isinstance(entry, str) and entry:
        return JointSource(entry, entry, 0.0)
    if (not isinstance(entry, dict) or set(entry) != {"between", "t"} or not isinstance(entry["between"], list)
            or len(entry["between"]) != 2 or not all(isinstance(n, str) and n for n in entry["between"])):
        raise fail(f"{subject} must be a {name_kind} name or {{\"between\": [\"A\", \"B\"], \"t\": 0.5}}, "
                   f"got {entry!r}")
    t = entry["t"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
        raise fail(f"{subject}: 't' must be a number in [0, 1], got {t!r}")
    return JointSource(entry["between"][0], entry["between"][1], float(t))


def load_joint_map(path: str | Path) -> JointMap:
    """Read a joint map JSON file."""
    return joint_map_from_dict(read_json(path, "joint map"), str(path))


def builtin_joint_map(name: str) -> JointMap:
    """One of the maps shipped with the project: "bandai_namco", "cmu_daz", "cmu_31"."""
    if name not in BUILTIN_MAPS:
        raise KeyError(f"no built-in joint map {name!r}; available: {', '.join(BUILTIN_MAPS)}")
    return load_joint_map(BUILTIN_MAP_DIR / f"{name}.json")
