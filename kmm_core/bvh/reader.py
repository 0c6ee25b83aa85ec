# SPDX-License-Identifier: GPL-3.0-or-later
"""Read BVH motion capture files of any skeleton into NumPy arrays.

Supported: any hierarchy (several ROOTs too), End Sites, joints with any subset of the six channels in any
order, any rotation order, any frame time, and unit scaling of the world positions.

Semantics (the usual BVH reading, and the one Blender's importer uses):
- A joint's local translation is its OFFSET; position channels, where present, replace the matching component.
- A joint's local rotation is the product of its rotation channels in the order listed: "Zrotation Xrotation
  Yrotation" means R = Rz @ Rx @ Ry (angles in degrees, matrices act on column vectors).
- World transform: G_joint = G_parent @ R_joint and p_joint = p_parent + G_parent @ t_joint.

End Sites become entries of the skeleton too (no channels), named "<parent name>/End Site": a BVH joint name
cannot contain a space, so this name never collides with a real joint.  Use `BvhMotion.joint_indices` to
select only the real joints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.bounded_read import read_bytes
from ..common.errors import InputFileError
from ..common.limits import (
    MAX_BVH_DEPTH,
    MAX_BVH_FRAME_TIME,
    MAX_BVH_JOINTS,
    MAX_BVH_VALUE,
    MAX_MOTION_TEXT_BYTES,
    MIN_BVH_FRAME_TIME,
)

END_SITE_SUFFIX = "/End Site"

_POSITION_CHANNELS = {"xposition": 0, "yposition": 1, "zposition": 2}
_ROTATION_CHANNELS = {"xrotation": 0, "yrotation": 1, "zrotation": 2}
_CANONICAL_CHANNEL_NAME = {
    "xposition": "Xposition", "yposition": "Yposition", "zposition": "Zposition",
    "xrotation": "Xrotation", "yrotation": "Yrotation", "zrotation": "Zrotation",
}


@dataclass(frozen=True)
class BvhMotion:
    """A parsed BVH file.

    names/parents/offsets/channels have one entry per joint in file order (a parent always comes before its
    children), End Sites included.  frames holds the raw MOTION values, one row per frame, columns in the order
    the channels are declared (see `channel_start`).
    """

    path: str
    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray            # (J, 3) in the file's units
    channels: tuple[tuple[str, ...], ...]  # per joint, e.g. ("Xposition", ..., "Yrotation"); () for End Sites
    frame_time: float
    frames: np.ndarray             # (T, C) float64
    channel_start: tuple[int, ...] = field(default=())  # first column of each joint in `frames`

    def __post_init__(self) -> None:
        if not self.channel_start:
            starts, column = [], 0
            for joint_channels in self.channels:
                starts.append(column)
                column += len(joint_channels)
            object.__setattr__(self, "channel_start", tuple(starts))

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def is_end_site(self) -> tuple[bool, ...]:
        return tuple(name.endswith(END_SITE_SUFFIX) for name in self.names)

    @property
    def joint_indices(self) -> tuple[int, ...]:
        """Indices of the real joints (End Sites left out)."""
        return tuple(i for i, end in enumerate(self.is_end_site) if not end)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.path}: no joint named {name!r}") from None

    def local_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame local translations (T, J, 3) and rotation matrices (T, J, 3, 3) of every joint.

        Joints with the same rotation channel order are turned together (a few NumPy calls per order, in blocks of
        about 2 million frame-joints), so the time grows linearly with frames x joints at NumPy's speed."""
        num_frames, num_joints = self.num_frames, len(self.names)
        translations = np.broadcast_to(self.offsets, (num_frames, num_joints, 3)).copy()
        rotations = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
        by_order: dict[tuple[int, ...], tuple[list[int], list[list[int]]]] = {}
        for joint, joint_channels in enumerate(self.channels):
            start = self.channel_start[joint]
            axes, columns = [], []
            for k, channel in enumerate(joint_channels):
                key = channel.lower()
                if key in _POSITION_CHANNELS:
                    translations[:, joint, _POSITION_CHANNELS[key]] = self.frames[:, start + k]
                else:
                    axes.append(_ROTATION_CHANNELS[key])
                    columns.append(start + k)
            if axes:
                joints, joint_columns = by_order.setdefault(tuple(axes), ([], []))
                joints.append(joint)
                joint_columns.append(columns)
        block = max(1, 2_000_000 // max(num_frames, 1))
        for axes, (joints, joint_columns) in by_order.items():
            for first in range(0, len(joints), block):
                angles = np.radians(self.frames[:, np.array(joint_columns[first:first + block])])  # (T, n, k)
                rotation = _axis_rotations(axes[0], angles[..., 0])
                for step, axis in enumerate(axes[1:], 1):
                    rotation = rotation @ _axis_rotations(axis, angles[..., step])
                rotations[:, joints[first:first + block]] = rotation
        return translations, rotations

    def world_transforms(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """World positions (T, J, 3) (times `scale`) and world rotation matrices (T, J, 3, 3)."""
        translations, rotations = self.local_transforms()
        positions = np.empty_like(translations)
        world_rotations = np.empty_like(rotations)
        for joint, parent in enumerate(self.parents):
            if parent < 0:
                positions[:, joint] = translations[:, joint]
                world_rotations[:, joint] = rotations[:, joint]
            else:
                parent_rotation = world_rotations[:, parent]
                positions[:, joint] = positions[:, parent] + np.einsum(
                    "tij,tj->ti", parent_rotation, translations[:, joint])
                world_rotations[:, joint] = parent_rotation @ rotations[:, joint]
        return positions * scale, world_rotations

    def world_positions(self, scale: float = 1.0) -> np.ndarray:
        """(T, J, 3) world positions of every joint and End Site, multiplied by `scale` (e.g. 0.01 for cm -> m)."""
        return self.world_transforms(scale)[0]


def _axis_rotations(axis: int, angles: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations by `angles` (radians) about the coordinate axis `axis` (0 x, 1 y, 2 z), right-handed."""
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = (axis + 1) % 3, (axis + 2) % 3
    matrices = np.zeros((*angles.shape, 3, 3))
    matrices[..., axis, axis] = 1.0
    matrices[..., first, first] = cos
    matrices[..., first, second] = -sin
    matrices[..., second, first] = sin
    matrices[..., second, second] = cos
    return matrices


class _Tokens:
    """Whitespace tokens of the HIERARCHY section, each with its 1-based line number."""

    def __init__(self, path: str, lines: list[str]):
        self.path = path
        self.items: list[tuple[str, int]] = []
        self.motion_line: int | None = None  # 0-based index of the MOTION line
        for number, line in enumerate(lines):
            words = line.split()
            if words and words[0].upper() == "MOTION":
                self.motion_line = number
                break
            self.items.extend((word, number + 1) for word in words)
        self.position = 0
        self.last_line = len(lines) if self.motion_line is None else self.motion_line + 1

    def error(self, message: str, line: int | None = None) -> InputFileError:
        if line is None:
            line = self.items[self.position][1] if self.position < len(self.items) else self.last_line
        return InputFileError(self.path, message, line)

    def peek(self) -> str | None:
        return self.items[self.position][0] if self.position < len(self.items) else None

    def next(self, what: str) -> tuple[str, int]:
        if self.position >= len(self.items):
            raise self.error(f"unexpected end of the hierarchy, expected {what}")
        item = self.items[self.position]
        self.position += 1
        return item

    def expect(self, keyword: str) -> int:
        word, line = self.next(repr(keyword))
        if word.upper() != keyword.upper():
            raise InputFileError(self.path, f"expected {keyword!r}, found {word!r}", line)
        return line

    def number(self, what: str) -> float:
        word, line = self.next(what)
        try:
            return float(word)
        except ValueError:
            raise InputFileError(self.path, f"{what} must be a number, found {word!r}", line) from None


class _HierarchyParser:
    """The HIERARCHY section, read without recursion (a hierarchy of any depth needs no Python stack) and in time
    linear in its size; limits.MAX_BVH_JOINTS and MAX_BVH_DEPTH are checked as each joint opens."""

    def __init__(self, tokens: _Tokens):
        self.tokens = tokens
        self.names: list[str] = []
        self.parents: list[int] = []
        self.offsets: list[tuple[float, float, float]] = []
        self.channels: list[tuple[str, ...]] = []
        self.known_names: set[str] = set()
        self.joint_count = 0  # End Sites not counted

    def parse(self) -> None:
        tokens = self.tokens
        tokens.expect("HIERARCHY")
        if tokens.peek() is None or tokens.peek().upper() != "ROOT":
            raise tokens.error("expected 'ROOT' after 'HIERARCHY'")
        while tokens.peek() is not None:
            word, line = tokens.next("'ROOT'")
            if word.upper() != "ROOT":
                raise InputFileError(tokens.path, f"expected 'ROOT' or 'MOTION', found {word!r}", line)
            self._tree(line)

    def _name(self, keyword_line: int) -> str:
        # A name runs to the end of its line; Blender joins multi-word names with underscores, and so do we.
        words = []
        while self.tokens.peek() is not None and self.tokens.items[self.tokens.position][1] == keyword_line:
            words.append(self.tokens.next("a joint name")[0])
        if not words:
            raise self.tokens.error("a joint needs a name", keyword_line)
        name = "_".join(words)
        if name in self.known_names:
            raise self.tokens.error(f"duplicate joint name {name!r}", keyword_line)
        self.known_names.add(name)
        return name

    def _offset(self, owner: str) -> tuple[float, float, float]:
        self.tokens.expect("OFFSET")
        values = []
        for axis in "xyz":
            word, line = self.tokens.items[self.tokens.position] if self.tokens.peek() is not None else ("", 0)
            value = self.tokens.number(f"OFFSET {axis}")
            if not abs(value) <= MAX_BVH_VALUE:  # NaN fails too
                raise InputFileError(self.tokens.path, f"OFFSET {axis} of {owner} is {word}: an OFFSET must be a "
                                     f"finite number of size at most {MAX_BVH_VALUE:g}", line)
            values.append(value)
        return values[0], values[1], values[2]

    def _open_joint(self, parent: int, depth: int, keyword_line: int) -> tuple[int, str]:
        """Read a joint's name, '{', OFFSET and CHANNELS; add it and return (its index, its name)."""
        tokens = self.tokens
        self.joint_count += 1
        if self.joint_count > MAX_BVH_JOINTS:
            raise InputFileError(tokens.path, f"the hierarchy has more than {MAX_BVH_JOINTS:,} joints (the most a BVH "
                                 "may have)", keyword_line)
        if depth > MAX_BVH_DEPTH:
            raise InputFileError(tokens.path, f"joints nest more than {MAX_BVH_DEPTH:,} deep (the deepest a BVH "
                                 "hierarchy may be)", keyword_line)
        name = self._name(keyword_line)
        tokens.expect("{")
        offset = self._offset(f"joint {name!r}")
        tokens.expect("CHANNELS")
        count_word, count_line = tokens.next("the channel count")
        if not count_word.isdigit():
            raise InputFileError(tokens.path, f"channel count must be a whole number, found {count_word!r}", count_line)
        if int(count_word) > len(_CANONICAL_CHANNEL_NAME):
            raise InputFileError(tokens.path, f"joint {name!r} declares {count_word} channels; a joint has at most "
                                 f"{len(_CANONICAL_CHANNEL_NAME)}", count_line)
        joint_channels: list[str] = []
        for _ in range(int(count_word)):
            channel, line = tokens.next("a channel name")
            key = channel.lower()
            if key not in _CANONICAL_CHANNEL_NAME:
                raise InputFileError(tokens.path, f"unknown channel {channel!r} of joint {name!r}", line)
            if _CANONICAL_CHANNEL_NAME[key] in joint_channels:
                raise InputFileError(tokens.path, f"channel {channel!r} repeated in joint {name!r}", line)
            joint_channels.append(_CANONICAL_CHANNEL_NAME[key])
        index = len(self.names)
        self.names.append(name)
        self.parents.append(parent)
        self.offsets.append(offset)
        self.channels.append(tuple(joint_channels))
        return index, name

    def _end_site(self, parent: int, parent_name: str) -> None:
        tokens = self.tokens
        word, line = tokens.next("'Site'")
        if word.upper() != "SITE":
            raise InputFileError(tokens.path, f"expected 'End Site', found 'End {word}'", line)
        # Some exporters put a name after "End Site": skip words on the same line.
        while tokens.peek() is not None and tokens.items[tokens.position][1] == line:
            tokens.next("'{'")
        tokens.expect("{")
        end_offset = self._offset(f"the End Site of {parent_name!r}")
        tokens.expect("}")
        self.names.append(parent_name + END_SITE_SUFFIX)
        self.parents.append(parent)
        self.offsets.append(end_offset)
        self.channels.append(())

    def _tree(self, root_line: int) -> None:
        """One ROOT and everything below it; `open_joints` holds (index, name) of the joints whose '}' is to come."""
        tokens = self.tokens
        open_joints = [self._open_joint(-1, 1, root_line)]
        while open_joints:
            index, name = open_joints[-1]
            word, line = tokens.next(f"'}}' closing joint {name!r}")
            upper = word.upper()
            if word == "}":
                open_joints.pop()
            elif upper == "JOINT":
                open_joints.append(self._open_joint(index, len(open_joints) + 1, line))
            elif upper == "END":
                self._end_site(index, name)
            else:
                raise InputFileError(tokens.path, f"expected 'JOINT', 'End Site' or '}}' in joint {name!r}, "
                                     f"found {word!r}", line)


def _header_value(path: str, lines: list[str], index: int, label: str) -> str:
    """The value after `label` ("Frames:" / "Frame Time:") on line `index` (0-based)."""
    if index >= len(lines):
        raise InputFileError(path, f"the MOTION block ends before its {label!r} line", index + 1)
    text = lines[index].strip()
    if not text.lower().startswith(label.lower()):
        raise InputFileError(path, f"expected {label!r}, found {text[:40]!r}", index + 1)
    return text[len(label):].strip()


def parse_bvh(text: str, path: str = "<string>") -> BvhMotion:
    """Parse BVH text; `path` only names the source in error messages."""
    lines = text.splitlines()
    tokens = _Tokens(path, lines)
    parser = _HierarchyParser(tokens)
    parser.parse()
    if tokens.motion_line is None:
        raise InputFileError(path, "no MOTION section", len(lines))
    if not parser.names:
        raise InputFileError(path, "the hierarchy has no joints", tokens.motion_line + 1)

    frames_index, time_index = tokens.motion_line + 1, tokens.motion_line + 2
    frames_text = _header_value(path, lines, frames_index, "Frames:")
    if not frames_text.isdigit():
        raise InputFileError(path, f"the frame count must be a whole number, found {frames_text!r}", frames_index + 1)
    num_frames = int(frames_text)
    time_text = _header_value(path, lines, time_index, "Frame Time:")
    try:
        frame_time = float(time_text)
    except ValueError:
        raise InputFileError(path, f"the frame time must be a number, found {time_text!r}", time_index + 1) from None
    if not frame_time > 0.0 or not np.isfinite(frame_time):
        raise InputFileError(path, f"the frame time must be positive, found {time_text!r}", time_index + 1)
    if not MIN_BVH_FRAME_TIME <= frame_time <= MAX_BVH_FRAME_TIME:
        raise InputFileError(path, f"the frame time {time_text} s is outside {MIN_BVH_FRAME_TIME:g} to "
                             f"{MAX_BVH_FRAME_TIME:g} s ({1 / MAX_BVH_FRAME_TIME:g} to {1 / MIN_BVH_FRAME_TIME:,.0f} "
                             "frames per second)", time_index + 1)

    num_channels = sum(len(c) for c in parser.channels)
    first = time_index + 1
    frame_lines = [(first + k, line) for k, line in enumerate(lines[first:]) if line.strip()]
    if len(frame_lines) < num_frames:
        raise InputFileError(path, f"the MOTION block is truncated: 'Frames: {num_frames}' but only "
                             f"{len(frame_lines)} frame lines", len(lines))
    if len(frame_lines) > num_frames:
        raise InputFileError(path, f"'Frames: {num_frames}' but the MOTION block has {len(frame_lines)} frame lines",
                             frame_lines[num_frames][0] + 1)
    words: list[str] = []
    for index, line in frame_lines:
        line_words = line.split()
        if len(line_words) != num_channels:
            raise InputFileError(path, f"frame line has {len(line_words)} values, the hierarchy declares "
                                 f"{num_channels} channels", index + 1)
        words.extend(line_words)
    try:
        values = np.array(words, dtype=np.float64)
    except ValueError:
        # Find the culprit only on failure; converting all values at once is much faster.
        for index, line in frame_lines:
            bad = next((w for w in line.split() if not is_number(w)), None)
            if bad is not None:
                raise InputFileError(path, f"non-numeric value {bad!r} in a frame line", index + 1) from None
        raise
    frames = values.reshape(num_frames, num_channels)
    if not np.all(np.isfinite(frames)):
        row = int(np.argwhere(~np.isfinite(frames))[0, 0])
        raise InputFileError(path, "non-finite value in a frame line", frame_lines[row][0] + 1)
    too_large = np.abs(frames) > MAX_BVH_VALUE
    if too_large.any():
        row, column = (int(i) for i in np.argwhere(too_large)[0])
        ends = np.cumsum([len(c) for c in parser.channels])  # one past each joint's last column
        joint = int(np.searchsorted(ends, column, side="right"))  # the first joint ending after `column`
        channel = parser.channels[joint][column - (int(ends[joint]) - len(parser.channels[joint]))]
        raise InputFileError(path, f"value {frame_lines[row][1].split()[column]} of {channel} of joint "
                             f"{parser.names[joint]!r} is larger than {MAX_BVH_VALUE:g} in size",
                             frame_lines[row][0] + 1)

    return BvhMotion(
        path=path,
        names=tuple(parser.names),
        parents=tuple(parser.parents),
        offsets=np.array(parser.offsets, dtype=np.float64).reshape(-1, 3),
        channels=tuple(parser.channels),
        frame_time=frame_time,
        frames=frames,
    )


def is_number(word: str) -> bool:
    """Whether `word` parses as a float (the motion-text readers name the first word that does not)."""
    try:
        float(word)
    except ValueError:
        return False
    return True


def read_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file; malformed files raise InputFileError naming the file and line."""
    path = Path(path)
    raw = read_bytes(path, "BVH file", limit=MAX_MOTION_TEXT_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        line = raw.count(b"\n", 0, error.start) + 1
        raise InputFileError(path, f"byte 0x{raw[error.start]:02X} (column {error.start - line_start + 1}) is not "
                             "UTF-8 text: save the file as UTF-8 (or ASCII)", line) from None
    return parse_bvh(text, str(path))
