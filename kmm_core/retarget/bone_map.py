# SPDX-License-Identifier: GPL-3.0-or-later
"""Bone maps: which bone of a target rig each of the 22 canonical joints drives.

A bone map (JSON, written and read by `BoneMap.to_dict` / `bone_map_from_dict`)::

    {
      "format": "kmm-bone-map", "version": 1,
      "name": "Mixamo",                       # the preset it came from, "auto", or the user's name
      "kind": "preset",                       # "preset", "auto" or "user"
      "bones": {"pelvis": "mixamorig:Hips", "spine2": null, ...},   # all 22 joints; null = the rig has none
      "points": {"spine1": {"between": ["Hips", "Spine"], "t": 0.76}},   # optional, see below
      "parents": {"hand_fk.L": "forearm_fk.L"},   # optional: the bone whose motion a bone really follows
      "placed": ["FootL", "FootR"],           # optional: bones keyed by their place (location + rotation), see below
      "tips": {"left_ankle": "leg-left"},     # optional: a joint at a bone's tail (one bone per limb), see below
      "pose_settings": [{"bone": "thigh_parent.L", "property": "IK_FK", "value": 1.0}]   # optional (Blender)
    }

A canonical joint sits at the head of the bone it drives unless `points` places it elsewhere on the rig (a point
between the heads of two bones, as in `kmm_core.bvh.joint_map`); a joint with no bone but a point is not driven but
still fixes where its neighbours go.  `parents` names, for rigs whose controls follow each other through constraints
(Rigify), the bone each control effectively hangs from.  `placed` lists driven bones whose Blender parent does not
carry them where the motion goes (IK foot bones hanging from the root instead of the shin, as in three.js'
RobotExpressive): each follows its `parents` entry in the motion and is keyed with a location and a rotation that
put it there, the bones above it being keyed at rest.  `tips` places a joint at the tail of a bone, for rigs with one
bone per limb (Kenney's Mini Characters: `leg-left` from the hip to the foot): the hip (shoulder) drives that bone,
the ankle (wrist) is its tail, the knee (elbow) has no bone, and the bone is aimed from the hip at the ankle.  Bones
the map does not name (twist, finger, helper bones)
keep their rest pose relative to their parent.

Presets (one JSON file per rig family in `presets/`) list candidate names per joint; `detect_bone_map` picks the
preset that names the most of a rig's bones, else matches automatically (`name_matching.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..bvh.joint_map import JointSource, joint_source_from_entry
from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError, KMMError, short_repr
from ..motion.skeleton import JOINT_NAMES

Point = JointSource
"""Where a canonical joint is on the rig: (1 - t) * head(first) + t * head(second) (the joint maps' own type)."""

PRESET_DIR = Path(__file__).resolve().parent / "presets"
FORMAT = "kmm-bone-map"

# Without these a rig cannot carry human motion: the limbs, the pelvis and a head or neck.
REQUIRED_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)


class BoneMapError(KMMError, ValueError):
    """A bone map does not fit a rig or is malformed: names the joint, bone or field."""


@dataclass(frozen=True)
class BoneMap:
    name: str
    kind: str                                   # "preset", "auto" or "user"
    bones: dict[str, str | None]                # canonical joint -> driven bone (all 22 keys)
    points: dict[str, Point] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)
    pose_settings: tuple[tuple[str, str, float], ...] = ()
    placed: tuple[str, ...] = ()                # driven bones keyed by their place, not through their parent
    tips: dict[str, str] = field(default_factory=dict)  # canonical joint -> the bone whose tail it sits at

    def driven_bones(self) -> dict[str, str]:
        return {joint: bone for joint, bone in self.bones.items() if bone}

    def unmatched(self) -> list[str]:
        """Canonical joints that neither drive a bone nor have a point on the rig."""
        return [joint for joint in JOINT_NAMES if not self.bones.get(joint) and joint not in self.points
                and joint not in self.tips]

    def one_bone_limb(self, middle: str) -> bool:
        """Whether the knee or elbow `middle` (e.g. "left_knee") is skipped by a one-bone limb: the ankle (wrist)
        of that side sits at the tail of the hip's (shoulder's) bone."""
        side, part = middle.split("_", 1)
        upper, end = {"knee": ("hip", "ankle"), "elbow": ("shoulder", "wrist")}.get(part, (None, None))
        return bool(upper and self.bones.get(f"{side}_{upper}")
                    and self.tips.get(f"{side}_{end}") == self.bones.get(f"{side}_{upper}"))

    def point_of(self, joint: str) -> Point | None:
        if joint in self.points:
            return self.points[joint]
        bone = self.bones.get(joint)
        return Point(bone, bone, 0.0) if bone else None

    def referenced_bones(self) -> list[str]:
        names: list[str] = []
        for joint in JOINT_NAMES:
            point = self.point_of(joint)
            for name in ([self.bones.get(joint)] + ([point.first, point.second] if point else [])):
                if name and name not in names:
                    names.append(name)
        for child, parent in self.parents.items():
            for name in (child, parent):
                if name not in names:
                    names.append(name)
        for name in self.tips.values():
            if name not in names:
                names.append(name)
        return names

    def check(self, bone_names: Iterable[str], rig: str) -> None:
        """Raise BoneMapError naming the first problem when this map cannot drive the rig `rig`."""
        available = set(bone_names)
        for joint in JOINT_NAMES:
            point = self.point_of(joint)
            for name in [self.bones.get(joint)] + ([point.first, point.second] if point else []):
                if name and name not in available:
                    raise BoneMapError(f"bone map {self.name!r}: bone {name!r} (for joint {joint!r}) is not in "
                                       f"rig {rig!r}")
        for joint, name in self.tips.items():
            if name not in available:
                raise BoneMapError(f"bone map {self.name!r}: bone {name!r} (whose tail is joint {joint!r}) is not in "
                                   f"rig {rig!r}")
        missing = [joint for joint in REQUIRED_JOINTS if not self.bones.get(joint) and joint not in self.tips
                   and not self.one_bone_limb(joint)]
        if missing:
            raise BoneMapError(f"rig {rig!r} cannot be mapped: no bone for {', '.join(missing)} "
                               f"(bone map {self.name!r}); pick the bones in the map or load a bone map file")
        if not self.bones.get("head") and not self.bones.get("neck"):
            raise BoneMapError(f"rig {rig!r} cannot be mapped: no head or neck bone (bone map {self.name!r})")
        driven = self.driven_bones()
        seen: dict[str, str] = {}
        for joint, bone in driven.items():
            if bone in seen:
                raise BoneMapError(f"bone map {self.name!r}: bone {bone!r} is driven by both {seen[bone]!r} and "
                                   f"{joint!r}")
            seen[bone] = joint
        for child, parent in self.parents.items():
            if child not in available or parent not in available:
                raise BoneMapError(f"bone map {self.name!r}: 'parents' entry {child!r} -> {parent!r} names a bone "
                                   f"that is not in rig {rig!r}")
        for bone in self.placed:
            if bone not in seen or bone not in self.parents:
                raise BoneMapError(f"bone map {self.name!r}: placed bone {bone!r} must be driven by a joint and have "
                                   "a 'parents' entry (the bone it follows in the motion)")

    def with_bone(self, joint: str, bone: str | None) -> BoneMap:
        """A copy in which `joint` drives `bone` (None: nothing); the map becomes the user's."""
        if joint not in JOINT_NAMES:
            raise BoneMapError(f"unknown canonical joint {joint!r}")
        bones = dict(self.bones)
        bones[joint] = bone or None
        points = {k: v for k, v in self.points.items() if k != joint}
        return BoneMap(name=self.name if self.kind == "user" else f"{self.name} (edited)", kind="user", bones=bones,
                       points=points, parents=dict(self.parents), pose_settings=self.pose_settings,
                       placed=tuple(b for b in self.placed if b in bones.values()),
                       tips={k: v for k, v in self.tips.items() if k != joint})

    def to_dict(self) -> dict:
        data: dict = {"format": FORMAT, "version": 1, "name": self.name, "kind": self.kind,
                      "bones": {joint: self.bones.get(joint) for joint in JOINT_NAMES}}
        if self.points:
            data["points"] = {j: {"between": [p.first, p.second], "t": p.t} for j, p in self.points.items()}
        if self.parents:
            data["parents"] = dict(self.parents)
        if self.pose_settings:
            data["pose_settings"] = [{"bone": b, "property": p, "value": v} for b, p, v in self.pose_settings]
        if self.placed:
            data["placed"] = list(self.placed)
        if self.tips:
            data["tips"] = dict(self.tips)
        return data


def _point(entry, joint: str, fail) -> Point:
    return joint_source_from_entry(entry, f"point of {joint!r}", "bone", fail)


def _pose_settings(entries, fail) -> tuple[tuple[str, str, float], ...]:
    if not isinstance(entries, list):
        raise fail("'pose_settings' must be a list")
    settings = []
    for entry in entries:
        if (not isinstance(entry, dict) or set(entry) != {"bone", "property", "value"}
                or not isinstance(entry["value"], int | float) or isinstance(entry["value"], bool)):
            raise fail(f"pose setting {short_repr(entry)} must be {{\"bone\": ..., \"property\": ..., \"value\": number}}")
        settings.append((str(entry["bone"]), str(entry["property"]), float(entry["value"])))
    return tuple(settings)


def _string_dict(value, key: str, fail) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                              for k, v in value.items()):
        raise fail(f"{key!r} must map bone names to bone names")
    return dict(value)


def _tips(value, fail) -> dict[str, str]:
    tips = _string_dict(value, "tips", fail)
    unknown = sorted(set(tips) - set(JOINT_NAMES))
    if unknown:
        raise fail(f"'tips' names an unknown canonical joint {unknown[0]!r}")
    return tips


def _bone_list(value, key: str, fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise fail(f"{key!r} must be a list of bone names")
    return tuple(value)


def bone_map_from_dict(data: dict, source: str = "<dict>") -> BoneMap:
    """Validate a parsed bone map (see the module docstring); errors name `source` and the field."""

    def fail(message: str) -> BoneMapError:
        return BoneMapError(f"{source}: bone map: {message}")

    if not isinstance(data, dict):
        raise fail("the top level must be a JSON object")
    extra = sorted(set(data) - {"format", "version", "name", "kind", "bones", "points", "parents", "pose_settings",
                                "placed", "tips"})
    if extra:
        raise fail(f"unknown key {extra[0]!r}")
    if data.get("format", FORMAT) != FORMAT:
        raise fail(f"'format' must be {FORMAT!r}, got {short_repr(data.get('format'))}")
    bones = data.get("bones")
    if not isinstance(bones, dict):
        raise fail("'bones' must be an object mapping canonical joint names to bone names (or null)")
    unknown = sorted(set(bones) - set(JOINT_NAMES))
    if unknown:
        raise fail(f"unknown canonical joint {unknown[0]!r} (the joints are {', '.join(JOINT_NAMES)})")
    resolved: dict[str, str | None] = {}
    for joint in JOINT_NAMES:
        value = bones.get(joint)
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(f"bone of {joint!r} must be a bone name or null, got {short_repr(value)}")
        resolved[joint] = value
    points_data = data.get("points", {})
    if not isinstance(points_data, dict) or set(points_data) - set(JOINT_NAMES):
        raise fail("'points' must map canonical joint names to points")
    points = {joint: _point(entry, joint, fail) for joint, entry in points_data.items()}
    kind = data.get("kind", "user")
    if kind not in ("preset", "auto", "user"):
        raise fail(f"'kind' must be preset, auto or user, got {short_repr(kind)}")
    return BoneMap(name=str(data.get("name", Path(source).stem)), kind=kind, bones=resolved, points=points,
                   parents=_string_dict(data.get("parents", {}), "parents", fail),
                   pose_settings=_pose_settings(data.get("pose_settings", []), fail),
                   placed=_bone_list(data.get("placed", []), "placed", fail),
                   tips=_tips(data.get("tips", {}), fail))


def load_bone_map(path: str | Path) -> BoneMap:
    data = read_json(path, "bone map")
    try:
        return bone_map_from_dict(data, str(path))
    except BoneMapError as error:
        raise InputFileError(path, str(error).split(": bone map: ", 1)[-1]) from None


def save_bone_map(bone_map: BoneMap, path: str | Path) -> Path:
    import json

    return write_text_atomic(path, json.dumps(bone_map.to_dict(), indent=2) + "\n")


# ---- presets ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A rig family's bone names: per joint the candidate names (first one present wins), or none."""

    name: str
    file: str
    description: str
    bones: dict[str, tuple[str, ...]]
    points: dict[str, dict]
    parents: dict[str, str]
    pose_settings: tuple[tuple[str, str, float], ...]
    bvh: dict

    def resolve(self, bone_names: Sequence[str]) -> tuple[BoneMap, int]:
        """The map this preset gives on a rig with these bone names, and how many of its joints were found.
        Names match exactly or after a namespace prefix ("mixamorig:Hips" matches "Hips")."""
        lookup: dict[str, str] = {}
        for name in bone_names:
            lookup.setdefault(name, name)
        for name in bone_names:
            lookup.setdefault(name.rsplit(":", 1)[-1], name)

        def find(candidates: Iterable[str]) -> str | None:
            return next((lookup[c] for c in candidates if c in lookup), None)

        bones = {joint: find(self.bones.get(joint, ())) for joint in JOINT_NAMES}
        found = sum(1 for joint in JOINT_NAMES if bones[joint])
        points = {}
        for joint, entry in self.points.items():
            first, second = find(entry["between"][0]), find(entry["between"][1])
            if first and second:
                points[joint] = Point(first, second, float(entry["t"]))
        parents = {}
        for child, parent in self.parents.items():
            child_name, parent_name = find([child]), find([parent])
            if child_name and parent_name:
                parents[child_name] = parent_name
        settings = tuple((find([b]) or b, p, v) for b, p, v in self.pose_settings)
        return BoneMap(name=self.name, kind="preset", bones=bones, points=points, parents=parents,
                       pose_settings=settings), found


def _load_preset(path: Path) -> Preset:
    data = read_json(path, "bone map preset")

    def fail(message: str) -> InputFileError:
        return InputFileError(path, f"bone map preset: {message}")

    bones: dict[str, tuple[str, ...]] = {}
    for joint, entry in data.get("bones", {}).items():
        if joint not in JOINT_NAMES:
            raise fail(f"unknown canonical joint {joint!r}")
        bones[joint] = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    points = {}
    for joint, entry in data.get("points", {}).items():
        between = entry["between"]
        points[joint] = {"between": [[n] if isinstance(n, str) else list(n) for n in between], "t": entry["t"]}
    settings = _pose_settings(data.get("pose_settings", []), fail)
    return Preset(name=data["name"], file=path.stem, description=data.get("description", ""), bones=bones,
                  points=points, parents=dict(data.get("parents", {})), pose_settings=settings,
                  bvh=dict(data.get("bvh", {})))


def presets() -> list[Preset]:
    """Every shipped preset, in file name order."""
    return [_load_preset(path) for path in sorted(PRESET_DIR.glob("*.json"))]


def preset(name: str) -> Preset:
    """A shipped preset by file name (e.g. "mixamo") or display name."""
    for candidate in presets():
        if name in (candidate.file, candidate.name):
            return candidate
    raise BoneMapError(f"no bone map preset {name!r}; available: {', '.join(p.file for p in presets())}")


def best_preset_map(bone_names: Sequence[str]) -> tuple[BoneMap, Preset] | None:
    """The preset whose names cover the most joints of this rig, if it covers every required joint."""
    best: tuple[int, BoneMap, Preset] | None = None
    for candidate in presets():
        bone_map, found = candidate.resolve(bone_names)
        required_ok = all(bone_map.bones[j] for j in REQUIRED_JOINTS) and (bone_map.bones["head"]
                                                                           or bone_map.bones["neck"])
        listed = sum(1 for j in JOINT_NAMES if candidate.bones.get(j))
        if required_ok and found == listed and (best is None or found > best[0]):
            best = (found, bone_map, candidate)
    return (best[1], best[2]) if best else None
