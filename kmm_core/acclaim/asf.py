# SPDX-License-Identifier: GPL-3.0-or-later
"""Read Acclaim skeleton files (.asf): the skeleton half of CMU's and HDM05's native ASF/AMC format.

Sections understood (keywords start with ':'; '#' starts a comment):

- ``:units``: ``length`` (a multiplier: file lengths are inches times this value, the convention CMU's FAQ states,
  so metres = value * 0.0254 / length), ``angle deg|rad`` (unit of ``axis``, ``orientation`` and ``limits``),
  ``mass`` (kept, unused).
- ``:root``: ``order`` (the root's AMC channels, e.g. ``TX TY TZ RX RY RZ``), ``axis`` (order of the orientation
  angles), ``position``, ``orientation``.
- ``:bonedata``: ``begin``/``end`` blocks with ``id``, ``name``, ``direction`` (unit vector in the skeleton's
  global rest axes), ``length``, ``axis ax ay az ORDER``, ``dof`` (any subset of rx ry rz, in any order: the
  order of the AMC values), ``limits`` (one ``(min max)`` pair per dof, possibly on continuation lines),
  ``bodymass``, ``cofmass``.
- ``:hierarchy``: ``begin``, lines ``parent child child ...``, ``end``.
- ``:version``, ``:name``, ``:documentation``, ``:skin``: read and ignored.

Bones are returned in a parent-before-child order taken from the hierarchy (any order in the file is accepted).
Bad input raises `InputFileError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.bounded_read import read_text
from ..common.errors import InputFileError
from ..common.limits import MAX_MOTION_TEXT_BYTES

INCH_IN_METRES = 0.0254
ROOT = "root"
ROTATION_DOFS = ("rx", "ry", "rz")
TRANSLATION_DOFS = ("tx", "ty", "tz")
_ANGLE_UNITS = {"deg": "deg", "degree": "deg", "degrees": "deg", "rad": "rad", "radian": "rad", "radians": "rad"}


@dataclass(frozen=True)
class AsfBone:
    """One bone; angles in radians, lengths in file units, `direction` a unit vector in global rest axes."""

    name: str
    parent: int                 # index into AsfSkeleton.bones, -1 for a child of the root
    direction: np.ndarray       # (3,)
    length: float
    axis: np.ndarray            # (3,) angles about X, Y, Z (radians)
    axis_order: str             # e.g. "XYZ": the order the axis rotations are applied in
    dof: tuple[str, ...]        # e.g. ("rx", "ry", "rz"), the order of this bone's AMC values
    limits: tuple[tuple[float, float], ...]  # per dof (radians for rotations), informational
    line: int                   # line of the bone's 'begin' (named in errors about the bone)


@dataclass(frozen=True)
class AsfSkeleton:
    path: str
    name: str
    length_unit: float          # ':units length' (file lengths are inches * length_unit)
    angle_unit: str             # "deg" or "rad" (of the ASF's own angles)
    root_order: tuple[str, ...]  # the root's AMC channels, lower case ("tx", ..., "rz")
    root_axis_order: str        # order of the root orientation angles
    root_position: np.ndarray   # (3,) file units
    root_orientation: np.ndarray  # (3,) radians
    bones: tuple[AsfBone, ...]  # parent before child

    @property
    def scale_to_metres(self) -> float:
        return INCH_IN_METRES / self.length_unit

    @property
    def bone_names(self) -> tuple[str, ...]:
        return tuple(bone.name for bone in self.bones)

    def bone_index(self, name: str) -> int:
        for index, bone in enumerate(self.bones):
            if bone.name == name:
                return index
        raise KeyError(f"{self.path}: no bone named {name!r}")


@dataclass
class _RawBone:
    line: int
    fields: dict[str, tuple[list[str], int]]   # key -> (values, line)
    limits: list[tuple[str, str, int]]


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


class _AsfParser:
    def __init__(self, text: str, path: str):
        self.path = path
        self.lines = text.splitlines()

    def error(self, message: str, line: int | None) -> InputFileError:
        return InputFileError(self.path, message, line)

    def number(self, word: str, what: str, line: int) -> float:
        try:
            value = float(word)
        except ValueError:
            raise self.error(f"{what} must be a number, found {word!r}", line) from None
        if not np.isfinite(value):
            raise self.error(f"{what} must be finite, found {word!r}", line)
        return value

    def vector(self, words: list[str], what: str, line: int) -> np.ndarray:
        if len(words) < 3:
            raise self.error(f"{what} needs 3 numbers, found {len(words)}", line)
        return np.array([self.number(w, what, line) for w in words[:3]], dtype=np.float64)

    def parse(self) -> AsfSkeleton:
        sections: dict[str, list[tuple[str, int]]] = {}
        section_line: dict[str, int] = {}
        current: str | None = None
        for number, raw in enumerate(self.lines, start=1):
            line = _strip_comment(raw)
            if not line:
                continue
            if line.startswith(":"):
                keyword, _, rest = line.partition(" ")
                current = keyword[1:].lower()
                if current in sections and current not in ("documentation", "skin"):
                    raise self.error(f"section ':{current}' appears twice", number)
                sections.setdefault(current, [])
                section_line.setdefault(current, number)
                if rest.strip():
                    sections[current].append((rest.strip(), number))
                continue
            if current is None:
                raise self.error(f"expected a ':keyword' section, found {line.split()[0]!r}", number)
            sections[current].append((line, number))
        for needed in ("root", "bonedata", "hierarchy"):
            if needed not in sections:
                raise self.error(f"section ':{needed}' is missing (not an ASF skeleton file?)", None)
        length_unit, angle_unit = self._units(sections.get("units", []))
        to_radians = np.pi / 180.0 if angle_unit == "deg" else 1.0
        root = self._root(sections["root"], section_line["root"], to_radians)
        raw_bones = self._bonedata(sections["bonedata"])
        bones = self._bones(raw_bones, to_radians)
        ordered = self._hierarchy(sections["hierarchy"], section_line["hierarchy"], bones)
        name_entry = sections.get("name")
        return AsfSkeleton(path=self.path, name=name_entry[0][0] if name_entry else Path(self.path).stem,
                           length_unit=length_unit, angle_unit=angle_unit, bones=ordered, **root)

    def _units(self, entries: list[tuple[str, int]]) -> tuple[float, str]:
        length_unit, angle_unit = 1.0, "deg"
        for line, number in entries:
            words = line.split()
            key = words[0].lower()
            if len(words) < 2:
                raise self.error(f"':units {key}' needs a value", number)
            if key == "length":
                length_unit = self.number(words[1], "length unit", number)
                if length_unit <= 0:
                    raise self.error(f"length unit must be positive, found {words[1]!r}", number)
            elif key == "angle":
                if words[1].lower() not in _ANGLE_UNITS:
                    raise self.error(f"angle unit must be 'deg' or 'rad', found {words[1]!r}", number)
                angle_unit = _ANGLE_UNITS[words[1].lower()]
        return length_unit, angle_unit

    def _root(self, entries: list[tuple[str, int]], section: int, to_radians: float) -> dict:
        found: dict[str, tuple[list[str], int]] = {}
        for line, number in entries:
            words = line.split()
            found[words[0].lower()] = (words[1:], number)
        if "order" not in found:
            raise self.error("':root' has no 'order' line", section)
        order_words, order_line = found["order"]
        order = tuple(w.lower() for w in order_words)
        for channel in order:
            if channel not in ROTATION_DOFS + TRANSLATION_DOFS:
                raise self.error(f"root order: unknown channel {channel!r} (expected TX TY TZ RX RY RZ)", order_line)
        if len(set(order)) != len(order):
            raise self.error("root order names a channel twice", order_line)
        axis_words, axis_line = found.get("axis", (["XYZ"], section))
        axis_order = self._axis_order(axis_words[0] if axis_words else "", "root axis", axis_line)
        position = (self.vector(found["position"][0], "root position", found["position"][1]) if "position" in found
                    else np.zeros(3))
        orientation = (self.vector(found["orientation"][0], "root orientation", found["orientation"][1]) * to_radians
                       if "orientation" in found else np.zeros(3))
        return {"root_order": order, "root_axis_order": axis_order, "root_position": position,
                "root_orientation": orientation}

    def _axis_order(self, word: str, what: str, line: int) -> str:
        order = word.upper()
        if sorted(order) != ["X", "Y", "Z"]:
            raise self.error(f"{what}: rotation order must be a permutation of XYZ, found {word!r}", line)
        return order

    def _bonedata(self, entries: list[tuple[str, int]]) -> list[_RawBone]:
        bones: list[_RawBone] = []
        current: _RawBone | None = None
        last_key: str | None = None
        for line, number in entries:
            words = line.split()
            key = words[0].lower()
            if key == "begin":
                if current is not None:
                    raise self.error("'begin' inside a bone (missing 'end' of the bone before?)", number)
                current = _RawBone(number, {}, [])
                last_key = None
                continue
            if current is None:
                raise self.error(f"expected 'begin' of a bone, found {words[0]!r}", number)
            if key == "end":
                bones.append(current)
                current = None
                continue
            if key.startswith("(") or (key == "limits"):
                # limits (a b) [continuation lines (a b)]
                text = line if key.startswith("(") else line[len(words[0]):]
                if key.startswith("(") and last_key != "limits":
                    raise self.error(f"unexpected {words[0]!r} (a limits pair outside 'limits')", number)
                pairs = text.replace("(", " ( ").replace(")", " ) ").split()
                while pairs:
                    if len(pairs) < 4 or pairs[0] != "(" or pairs[3] != ")":
                        raise self.error(f"limits must be pairs '(min max)', found {text.strip()!r}", number)
                    current.limits.append((pairs[1], pairs[2], number))
                    pairs = pairs[4:]
                last_key = "limits"
                continue
            if key in current.fields:
                raise self.error(f"bone has '{key}' twice (first on line {current.fields[key][1]})", number)
            current.fields[key] = (words[1:], number)
            last_key = key
        if current is not None:
            raise self.error("the last bone has no 'end'", current.line)
        return bones

    def _bones(self, raw_bones: list[_RawBone], to_radians: float) -> dict[str, AsfBone]:
        bones: dict[str, AsfBone] = {}
        for raw in raw_bones:
            def field(key: str, raw: _RawBone = raw) -> tuple[list[str], int]:
                if key not in raw.fields:
                    raise self.error(f"bone has no '{key}'", raw.line)
                return raw.fields[key]

            name_words, name_line = field("name")
            if not name_words:
                raise self.error("bone 'name' is empty", name_line)
            name = name_words[0]
            if name == ROOT or name in bones:
                raise self.error(f"bone name {name!r} is used twice (or is the reserved 'root')", name_line)
            direction_words, direction_line = field("direction")
            direction = self.vector(direction_words, f"bone {name!r} direction", direction_line)
            norm = float(np.linalg.norm(direction))
            if norm < 1e-9:
                raise self.error(f"bone {name!r}: direction is the zero vector", direction_line)
            length_words, length_line = field("length")
            if not length_words:
                raise self.error(f"bone {name!r}: 'length' needs a value", length_line)
            length = self.number(length_words[0], f"bone {name!r} length", length_line)
            if length < 0:
                raise self.error(f"bone {name!r}: length must not be negative, found {length}", length_line)
            axis_words, axis_line = field("axis")
            axis = self.vector(axis_words, f"bone {name!r} axis", axis_line) * to_radians
            axis_order = self._axis_order(axis_words[3] if len(axis_words) > 3 else "XYZ", f"bone {name!r} axis",
                                          axis_line)
            dof: tuple[str, ...] = ()
            if "dof" in raw.fields:
                dof_words, dof_line = raw.fields["dof"]
                dof = tuple(w.lower() for w in dof_words)
                for channel in dof:
                    if channel in TRANSLATION_DOFS or channel == "l":
                        raise self.error(f"bone {name!r}: dof {channel!r} (translation/length of a bone) is not "
                                         "supported; only rx ry rz", dof_line)
                    if channel not in ROTATION_DOFS:
                        raise self.error(f"bone {name!r}: unknown dof {channel!r} (expected rx, ry, rz)", dof_line)
                if len(set(dof)) != len(dof):
                    raise self.error(f"bone {name!r}: dof names a channel twice", dof_line)
            if raw.limits and len(raw.limits) != len(dof):
                raise self.error(f"bone {name!r}: {len(raw.limits)} limits for {len(dof)} dof",
                                 raw.limits[0][2])
            limits = tuple((self._limit(low, number), self._limit(high, number))
                           for low, high, number in raw.limits)
            limits = tuple((low * to_radians, high * to_radians) for low, high in limits)
            bones[name] = AsfBone(name=name, parent=-1, direction=direction / norm, length=length, axis=axis,
                                  axis_order=axis_order, dof=dof, limits=limits, line=raw.line)
        return bones

    def _limit(self, word: str, line: int) -> float:
        if word.lower() in ("inf", "+inf", "-inf"):
            return float(word.lower().replace("+", ""))
        try:
            return float(word)
        except ValueError:
            raise self.error(f"limit must be a number or inf, found {word!r}", line) from None

    def _hierarchy(self, entries: list[tuple[str, int]], section: int, bones: dict[str, AsfBone]
                   ) -> tuple[AsfBone, ...]:
        parent_of: dict[str, tuple[str, int]] = {}
        children: dict[str, list[str]] = {}
        started = ended = False
        for line, number in entries:
            words = line.split()
            if words[0].lower() == "begin":
                started = True
                continue
            if words[0].lower() == "end":
                ended = True
                continue
            if not started or ended:
                raise self.error(f"hierarchy lines must be between 'begin' and 'end', found {words[0]!r}", number)
            parent = words[0]
            if parent != ROOT and parent not in bones:
                raise self.error(f"hierarchy: unknown bone {parent!r}", number)
            for child in words[1:]:
                if child not in bones:
                    raise self.error(f"hierarchy: unknown bone {child!r} (child of {parent!r})", number)
                if child in parent_of:
                    raise self.error(f"hierarchy: bone {child!r} has two parents ({parent_of[child][0]!r} on line "
                                     f"{parent_of[child][1]} and {parent!r})", number)
                parent_of[child] = (parent, number)
                children.setdefault(parent, []).append(child)
        if not started or not ended:
            raise self.error("hierarchy needs 'begin' ... 'end'", section)
        ordered: list[AsfBone] = []
        index: dict[str, int] = {}
        queue = [(ROOT, -1)]
        while queue:
            parent, parent_index = queue.pop(0)
            for child in children.get(parent, []):
                bone = bones[child]
                index[child] = len(ordered)
                ordered.append(AsfBone(**{**bone.__dict__, "parent": parent_index}))
                queue.append((child, index[child]))
        unreached = [name for name in bones if name not in index]
        if unreached:
            bone = bones[unreached[0]]
            reason = "is not in the hierarchy" if unreached[0] not in parent_of else "is in a loop of the hierarchy"
            raise self.error(f"bone {unreached[0]!r} {reason} (not connected to the root)", bone.line)
        return tuple(ordered)


def parse_asf(text: str, path: str = "<string>") -> AsfSkeleton:
    """Parse the text of an ASF file (`path` is only used in error messages)."""
    return _AsfParser(text, path).parse()


def read_asf(path: str | Path) -> AsfSkeleton:
    path = Path(path)
    text = read_text(path, "ASF file", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
    return parse_asf(text, str(path))
