# SPDX-License-Identifier: GPL-3.0-or-later
"""A timeline: an ordered list of prompts, each with a duration, validated before any model runs.

Two file formats are read (JSON or TOML):

* ours: ``{"fps": 30, "segments": [{"prompt": "walk", "seconds": 2.0},
  {"prompt": "wave", "frames": 60}, {"prompt": "sit", "start": 121, "end": 180}]}``.
  A duration is exactly one of ``seconds``, ``frames`` (at ``fps``, default 20) or ``start`` + ``end``
  (inclusive frame numbers, as on Blender's timeline). When any segment gives ``start``, every segment must,
  and each must begin on the frame after the previous one ends (no gaps, no overlaps).  ``"loop": true`` (added
  after the first release; older readers reject the key) asks for a cycle: a single-segment timeline whose last
  pose leads seamlessly back into its first (``generation/loops.py``).  ``"constraints"`` (added with issue #28;
  older readers reject the key): the animator's key poses, end-effector targets and facing directions at frames of
  the timeline (``generation/constraints.py``).
* FlowMDM's: ``{"lengths": [frames at 20 fps, ...], "text": [prompt, ...]}``.

Torch-free: the Blender add-on validates a timeline before it asks the worker for motion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..common.bounded_read import parse_json, parse_toml, read_bytes
from ..common.errors import InputFileError, KMMError, digit_count, short_repr
from ..common.input_numbers import finite_float, is_number
from ..common.limits import MAX_FPS, MAX_TOTAL_SECONDS, MIN_FPS
from ..common.prompt_text import segment_prompt_problem
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS

MIN_SEGMENT_SECONDS = FRAMES_PER_TOKEN / MODEL_FPS
"""Default shortest segment: one model token (0.2 s)."""
TRANSITION_MODES = ("per_token", "inpaint")
"""How neighbouring prompts meet (``timeline_generator``): one pass with a per-token condition, or each segment on its
own followed by inpainting the tokens around every boundary (MMM-style)."""
DEFAULT_TRANSITIONS = "inpaint"
"""Inpainting (4 tokens each side) obeys each segment's prompt better than per-token conditioning at a slightly
higher boundary jerk: on the shipped model, 3-prompt timelines of the val split with a 4-second side-specific middle
segment pass the directional check 0.80 ± 0.06 vs 0.70 ± 0.03 of the time (Peak Jerk 106 vs 96 m/s³, real 62);
``python benchmarks/measure_transition_modes.py --split val`` (benchmarks/README.md)."""
# MAX_TOTAL_SECONDS (default longest timeline, 10 minutes), MAX_FPS and MAX_PROMPT_CHARS live in limits.py.

_SEGMENT_KEYS = ("prompt", "seconds", "frames", "start", "end", "path")
_OUR_TOP_KEYS = ("fps", "segments", "loop", "path", "constraints")
_FLOWMDM_KEYS = ("lengths", "text")
_DURATION_TOLERANCE = 1e-9  # seconds; keeps 4 frames at 20 fps from failing a 0.2 s minimum through float error


class TimelineError(KMMError, ValueError):
    """A timeline is invalid. Carries where: the file (and line), the segment index (0-based) and the field."""

    def __init__(self, reason: str, *, segment: int | None = None, field: str | None = None,
                 path: object = None, line: int | None = None, list_name: str = "segments"):
        self.reason = reason
        self.segment = segment
        self.field = field
        self.path = None if path is None else str(path)
        self.line = line
        self._list_name = list_name
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(self.path if self.line is None else f"{self.path}, line {self.line}")
        if self.segment is not None and self._list_name != "segments":
            parts.append(f"{self._list_name}[{self.segment}]")  # FlowMDM: the list is named by the field
        elif self.segment is not None:
            parts.append(f"segments[{self.segment}]" + (f".{self.field}" if self.field else ""))
        elif self.field is not None:
            parts.append(self.field)
        parts.append(self.reason)
        return ": ".join(parts)

    def in_file(self, path: object) -> TimelineError:
        """The same error, naming the file it came from."""
        return TimelineError(self.reason, segment=self.segment, field=self.field, path=path, line=self.line,
                             list_name=self._list_name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


def _round_half_up(value: Fraction | float) -> int:
    """Round to the nearest integer, halves up (Python's round() goes to even, which is not monotone in steps)."""
    return math.floor(value + Fraction(1, 2)) if isinstance(value, Fraction) else math.floor(value + 0.5)


@dataclass(frozen=True)
class Segment:
    """One prompt held for `frames` frames at the timeline's fps; `start` is its first frame when given explicitly."""

    prompt: str
    frames: int
    start: int | None = None
    path: Any = None  # a paths.RootPath the pelvis follows during this segment (None: wherever the motion goes)

    @property
    def end(self) -> int | None:
        """Last frame (inclusive), when the start is explicit."""
        return None if self.start is None else self.start + self.frames - 1


@dataclass(frozen=True)
class Timeline:
    """An ordered, validated list of segments at a frame rate.

    Construction validates; `min_segment_seconds` and `max_total_seconds` are the limits it validates against.
    """

    segments: tuple[Segment, ...]
    fps: float = MODEL_FPS
    min_segment_seconds: float = field(default=MIN_SEGMENT_SECONDS, compare=False, repr=False)
    max_total_seconds: float = field(default=MAX_TOTAL_SECONDS, compare=False, repr=False)
    loop: bool = False
    path: Any = None  # a paths.RootPath over the whole timeline (None: per-segment paths or none)
    constraints: tuple = ()  # constraints.PoseKey / EffectorTarget / FacingKey, frames in the timeline's numbering

    def __post_init__(self) -> None:
        if not isinstance(self.loop, bool):
            raise TimelineError(f"must be true or false, got {_type_name(self.loop)}", field="loop")
        if isinstance(self.segments, str | bytes | Mapping) or not isinstance(self.segments, Sequence):
            raise TimelineError(f"must be a list of segments, got {_type_name(self.segments)}", field="segments")
        object.__setattr__(self, "segments", tuple(self.segments))
        _check_fps(self.fps, "fps")
        object.__setattr__(self, "fps", float(self.fps))
        if not self.segments:
            raise TimelineError("the timeline has no segments", field="segments")
        for index, segment in enumerate(self.segments):
            if not isinstance(segment, Segment):
                raise TimelineError(f"must be a Segment, got {_type_name(segment)}", segment=index)
            _check_prompt(segment.prompt, index)
            if not _is_int(segment.frames) or segment.frames <= 0:
                raise TimelineError(f"must be a positive whole number of frames, got {segment.frames!r}",
                                    segment=index, field="frames")
            _check_max_frames(segment.frames, self.fps, self.max_total_seconds, index, "frames")
            _check_min_duration(segment.frames, self.fps, self.min_segment_seconds, index, "frames")
            if segment.start is not None and not _is_int(segment.start):
                raise TimelineError(f"must be a whole frame number, got {_short(segment.start)}", segment=index,
                                    field="start")
        _check_contiguous(self.segments)
        if self.path is not None and any(segment.path is not None for segment in self.segments):
            raise TimelineError("give a path for the whole timeline or paths for segments, not both", field="path")
        if self.loop and (self.path is not None or self.segments[0].path is not None):
            raise TimelineError("a loop cannot follow a path (its travel repeats with every cycle)", field="loop")
        if self.loop and len(self.segments) != 1:
            raise TimelineError(f"a loop is one prompt cycling; this timeline has {len(self.segments)} segments",
                                field="loop")
        if self.total_seconds > self.max_total_seconds + _DURATION_TOLERANCE:
            raise TimelineError(
                f"the timeline lasts {self.total_seconds:.2f} s; the longest allowed is {self.max_total_seconds:g} s",
                field="segments")
        object.__setattr__(self, "constraints", tuple(self.constraints))
        if self.constraints:
            _check_constraints(self)

    # ---- reading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, *, min_segment_seconds: float = MIN_SEGMENT_SECONDS,
                  max_total_seconds: float = MAX_TOTAL_SECONDS) -> Timeline:
        """Read our format or FlowMDM's (recognised by its keys)."""
        if not isinstance(data, Mapping):
            raise TimelineError(f"a timeline must be an object, got {_type_name(data)}")
        limits = {"min_segment_seconds": min_segment_seconds, "max_total_seconds": max_total_seconds}
        if "segments" in data:
            return _parse_ours(data, limits)
        if any(key in data for key in _FLOWMDM_KEYS):
            return _parse_flowmdm(data, limits)
        raise TimelineError(f"expected a 'segments' list (or FlowMDM's 'lengths' and 'text'), found keys "
                            f"{sorted(map(str, data))}")

    @classmethod
    def from_file(cls, path: str | Path, *, min_segment_seconds: float = MIN_SEGMENT_SECONDS,
                  max_total_seconds: float = MAX_TOTAL_SECONDS) -> Timeline:
        """Read a .json or .toml timeline; every error names the file (and the line for syntax errors)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise TimelineError(f"unsupported file type {path.suffix!r}: use .json or .toml", path=path)
        if not path.exists() and not path.is_symlink():
            raise TimelineError("file not found", path=path)
        try:  # the one bounded reader: a regular file, size and nesting capped (bounded_read.py)
            raw = read_bytes(path, "timeline")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise TimelineError("not UTF-8 text", path=path, line=line) from None
            # Non-finite numbers are let through here: the fields' own checks name the segment and field.
            data = (parse_json(text, path, "timeline", allow_non_finite=True) if suffix == ".json"
                    else parse_toml(text, path, "timeline"))
        except InputFileError as exc:
            reason = exc.reason.replace("timeline is not valid JSON", "invalid JSON").replace(
                "timeline is not valid TOML", "invalid TOML")
            raise TimelineError(reason, path=path, line=exc.line) from None
        try:
            return cls.from_dict(data, min_segment_seconds=min_segment_seconds, max_total_seconds=max_total_seconds)
        except TimelineError as exc:
            raise exc.in_file(path) from None

    @classmethod
    def single(cls, prompt: str, seconds: float, fps: float = MODEL_FPS) -> Timeline:
        """A one-segment timeline (the CLI's plain `--prompt --seconds`)."""
        return cls.from_dict({"fps": fps, "segments": [{"prompt": prompt, "seconds": seconds}]})

    # ---- writing ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Our format; `from_dict(to_dict())` gives an equal timeline."""
        segments = []
        for segment in self.segments:
            if segment.start is None:
                segments.append({"prompt": segment.prompt, "frames": segment.frames})
            else:
                segments.append({"prompt": segment.prompt, "start": segment.start, "end": segment.end})
            if segment.path is not None:
                segments[-1]["path"] = segment.path.to_value()
        extra = {"loop": True} if self.loop else {}
        if self.path is not None:
            extra["path"] = self.path.to_value()
        if self.constraints:
            extra["constraints"] = [constraint.to_value() for constraint in self.constraints]
        return {"fps": self.fps, "segments": segments, **extra}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def to_flowmdm(self) -> dict[str, list]:
        """FlowMDM's format: lengths in frames at 20 fps."""
        return {"lengths": self.to_model_frames(), "text": list(self.prompts)}

    # ---- derived quantities ----------------------------------------------------------------------------------
    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(segment.prompt for segment in self.segments)

    @property
    def total_frames(self) -> int:
        """Length in frames at the timeline's own fps."""
        return sum(segment.frames for segment in self.segments)

    @property
    def total_seconds(self) -> float:
        return self.total_frames / self.fps

    @property
    def start_frame(self) -> int | None:
        """The explicit first frame (e.g. on Blender's timeline), or None when segments give only durations."""
        return self.segments[0].start

    def segment_seconds(self) -> list[float]:
        return [segment.frames / self.fps for segment in self.segments]

    def segment_ranges(self, fps: float | None = None) -> list[tuple[int, int]]:
        """[start, end) frame range of each segment at `fps` (default: the timeline's), counted from the timeline's
        beginning (0). Boundaries are rounded from exact cumulative times, so lengths are whole frames, neighbours
        share boundaries, and the lengths add up to the rounded total: rounding is distributed, never accumulated.
        """
        fps = self.fps if fps is None else fps
        _check_fps(fps, "fps")
        scale = Fraction(fps) / Fraction(self.fps)
        boundaries = [0]
        cumulative = 0
        for segment in self.segments:
            cumulative += segment.frames
            boundaries.append(_round_half_up(cumulative * scale))
        ranges = list(zip(boundaries[:-1], boundaries[1:], strict=True))
        for index, (start, end) in enumerate(ranges):
            if end <= start:
                raise TimelineError(f"at {fps:g} fps this segment would have no frames", segment=index,
                                    field="frames")
        return ranges

    def constraint_frames(self) -> tuple:
        """The constraints with 0-based frames (frame 0 = the timeline's first frame), as generation counts them."""
        from .constraints import shifted

        return shifted(self.constraints, -(self.start_frame or 0))

    def to_model_frames(self) -> list[int]:
        """Each segment's length in frames at the model's 20 fps (at least 4 when the default minimum holds)."""
        return [end - start for start, end in self.segment_ranges(MODEL_FPS)]


# ---- validation helpers -------------------------------------------------------------------------------------------
def _constraint_error(error) -> TimelineError:
    field = "constraints" if error.index is None else f"constraints[{error.index}]"
    return TimelineError(error.reason, field=field + (f".{error.field}" if error.field else ""))


def _check_constraints(timeline: Timeline) -> None:
    from .constraints import ConstraintError, check_constraints  # NumPy; kept out of the import of this module

    if timeline.loop:
        raise TimelineError("a loop cannot take constraints (its frames repeat)", field="constraints")
    try:
        check_constraints(timeline.constraints, timeline.start_frame or 0, timeline.total_frames, timeline.fps)
    except ConstraintError as error:
        raise _constraint_error(error) from None
    _check_pelvis_on_paths(timeline)


def _check_pelvis_on_paths(timeline: Timeline) -> None:
    """A constraint that places the pelvis (a key pose holding it, a root target) at a frame a path covers must
    lie on the path there (within ``constraints.AGREEMENT_TOLERANCE``): the solver would move the pelvis off the
    path and the path's position would be lost without a word.  Binary search over the spans; work per placement
    bounded by its frames."""
    import bisect

    import numpy as np

    from .constraints import AGREEMENT_TOLERANCE, EffectorTarget, pelvis_placements
    from .paths import path_spans

    spans = path_spans(timeline)
    if not spans:
        return
    starts = [start for start, _, _ in spans]
    owners = ["the timeline's path"] if timeline.path is not None else [  # in path_spans' order
        f"the path of segments[{k}]" for k, segment in enumerate(timeline.segments) if segment.path is not None]
    offset = timeline.start_frame or 0
    for frame, index, floor in pelvis_placements(timeline.constraints):
        constraint = timeline.constraints[index]
        if isinstance(constraint, EffectorTarget) and frame != constraint.start:
            continue  # a root target is checked over all its frames from its first
        first, last = constraint.start - offset, constraint.end - offset
        span_index = max(0, bisect.bisect_right(starts, first) - 1)
        while span_index < len(spans) and spans[span_index][0] <= last:
            start, end, path = spans[span_index]
            frames = np.arange(max(first, start), min(last + 1, end))
            span_index += 1
            if not frames.size:
                continue
            position, _ = path.sample((frames - start) / timeline.fps, (end - start) / timeline.fps)
            gaps = np.linalg.norm(position - np.asarray(floor), axis=-1)
            far = np.flatnonzero(gaps > AGREEMENT_TOLERANCE)
            if far.size:
                at = int(far[0])
                owner = owners[span_index - 1]
                what = "root target" if isinstance(constraint, EffectorTarget) else "pose's pelvis"
                field = "position" if isinstance(constraint, EffectorTarget) else "frame"
                raise TimelineError(
                    f"conflicts with {owner}: at frame {int(frames[at]) + offset} the path has the pelvis at "
                    f"(x, z) = ({position[at, 0]:.2f}, {position[at, 1]:.2f}), {gaps[at]:.2f} m from this {what}; "
                    f"a constraint placing the pelvis inside a path's frames must lie on the path (within "
                    f"{AGREEMENT_TOLERANCE:g} m): move it onto the path, end the path earlier, or key a pose without "
                    f"the pelvis", field=f"constraints[{index}].{field}")


def _parse_constraints(value: object) -> tuple:
    from .constraints import ConstraintError, constraints_from_value

    try:
        return constraints_from_value(value)
    except ConstraintError as error:
        raise _constraint_error(error) from None


def _check_fps(fps: object, field_name: str) -> None:
    number = finite_float(fps)
    if number is None and is_number(fps) and fps > 0:
        number = math.inf  # infinite or too large for a float: over the limit below
    if number is None or number <= 0:
        raise TimelineError(f"must be a positive number of frames per second, got {_short(fps)}", field=field_name)
    if number < MIN_FPS:
        raise TimelineError(f"must be at least {MIN_FPS:g} frames per second, got {_short(fps)}", field=field_name)
    if number > MAX_FPS:
        raise TimelineError(f"must be at most {MAX_FPS:g} frames per second, got {_short(fps)}", field=field_name)


def _short(value: object, limit: int = 40) -> str:
    """repr of a value for a message, cut when long (a 400-digit number or a 10 MB string)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"a {digit_count(value)}-digit number"
    text = short_repr(value, limit + 3)
    return text


def _check_max_frames(frames: int, fps: float, max_seconds: float, index: int, field_name: str,
                      list_name: str = "segments") -> None:
    """Refuse a segment longer than the whole timeline may be, before any float arithmetic on its frame count."""
    if frames > max_seconds * fps + _DURATION_TOLERANCE:
        raise TimelineError(f"{_short(frames)} frames at {fps:g} fps is longer than the longest timeline "
                            f"({max_seconds:g} s)", segment=index, field=field_name, list_name=list_name)


def _check_prompt(prompt: object, index: int, list_name: str = "segments") -> None:
    field_name = "prompt" if list_name == "segments" else list_name
    if not isinstance(prompt, str):
        raise TimelineError(f"must be a string, got {_type_name(prompt)}", segment=index, field=field_name,
                            list_name=list_name)
    problem = segment_prompt_problem(prompt)  # empty, length, control characters, Unicode: common/prompt_text.py
    if problem is not None:
        raise TimelineError(problem, segment=index, field=field_name, list_name=list_name)


def _check_min_duration(frames: int, fps: float, min_seconds: float, index: int, field_name: str,
                        list_name: str = "segments") -> None:
    seconds = frames / fps
    if seconds < min_seconds - _DURATION_TOLERANCE:
        shortest = math.ceil(min_seconds * fps - _DURATION_TOLERANCE)
        raise TimelineError(
            f"lasts {seconds:.3g} s ({frames} frames at {fps:g} fps); the shortest segment is {min_seconds:g} s "
            f"({shortest} frames at {fps:g} fps)", segment=index, field=field_name, list_name=list_name)


def _check_contiguous(segments: Sequence[Segment]) -> None:
    explicit = [segment.start is not None for segment in segments]
    if any(explicit) and not all(explicit):
        index = explicit.index(False)
        raise TimelineError("when any segment gives 'start' (and 'end'), every segment must", segment=index,
                            field="start")
    if not any(explicit):
        return
    for index in range(1, len(segments)):
        previous, current = segments[index - 1], segments[index]
        expected = previous.start + previous.frames
        if current.start > expected:
            raise TimelineError(f"starts at frame {current.start} but segments[{index - 1}] ends at frame "
                                f"{expected - 1}: a gap of {current.start - expected} frame(s)",
                                segment=index, field="start")
        if current.start < expected:
            raise TimelineError(f"starts at frame {current.start} but segments[{index - 1}] ends at frame "
                                f"{expected - 1}: they overlap by {expected - current.start} frame(s)",
                                segment=index, field="start")


def _check_known_keys(data: Mapping, allowed: Sequence[str], index: int | None = None) -> None:
    for key in data:
        if key not in allowed:
            raise TimelineError(f"unknown key {key!r} (allowed: {', '.join(allowed)})", segment=index,
                                field=str(key))


def _parse_ours(data: Mapping, limits: dict[str, float]) -> Timeline:
    _check_known_keys(data, _OUR_TOP_KEYS)
    fps = data.get("fps", MODEL_FPS)
    _check_fps(fps, "fps")
    entries = data["segments"]
    if not isinstance(entries, list):
        raise TimelineError(f"must be a list of segments, got {_type_name(entries)}", field="segments")
    segments = [_parse_segment(entry, index, float(fps), limits["min_segment_seconds"], limits["max_total_seconds"])
                for index, entry in enumerate(entries)]
    return Timeline(segments, float(fps), **limits, loop=data.get("loop", False),
                    path=_parse_path(data["path"], None) if "path" in data else None,
                    constraints=_parse_constraints(data["constraints"]) if "constraints" in data else ())


def _parse_path(value: object, index: int | None):
    from .paths import PathError, RootPath  # torch-free, NumPy

    try:
        return RootPath.from_value(value)
    except PathError as error:
        reason = str(error).removeprefix("path.").removeprefix("path: ")
        raise TimelineError(reason, segment=index, field="path") from None


def _parse_segment(entry: object, index: int, fps: float, min_seconds: float,
                   max_seconds: float = MAX_TOTAL_SECONDS) -> Segment:
    if not isinstance(entry, Mapping):
        raise TimelineError(f"must be an object with a prompt and a duration, got {_type_name(entry)}",
                            segment=index)
    _check_known_keys(entry, _SEGMENT_KEYS, index)
    if "prompt" not in entry:
        raise TimelineError("missing", segment=index, field="prompt")
    _check_prompt(entry["prompt"], index)
    durations = [key for key in ("seconds", "frames", "end") if key in entry]
    if not durations:
        raise TimelineError("missing a duration: give 'seconds', 'frames', or 'start' and 'end'", segment=index,
                            field="seconds")
    if len(durations) > 1:
        raise TimelineError(f"give only one of 'seconds', 'frames' or 'end', got {' and '.join(durations)}",
                            segment=index, field=durations[1])
    start = entry.get("start")
    if start is not None and not _is_int(start):
        raise TimelineError(f"must be a whole frame number, got {_short(start)}", segment=index, field="start")
    kind = durations[0]
    value = entry[kind]
    if kind == "seconds":
        seconds = finite_float(value)
        if seconds is None and is_number(value) and value > 0:
            seconds = math.inf  # infinite or too large for a float: longer than any timeline, refused below
        if seconds is None:
            raise TimelineError(f"must be a finite number, got {_short(value)}", segment=index, field="seconds")
        if seconds <= 0:
            raise TimelineError(f"must be positive, got {_short(value)}", segment=index, field="seconds")
        if seconds > max_seconds + _DURATION_TOLERANCE:
            raise TimelineError(f"{_short(value)} s is longer than the longest timeline ({max_seconds:g} s)",
                                segment=index, field="seconds")
        frames = _round_half_up(seconds * fps)
    elif kind == "frames":
        if not _is_int(value):
            raise TimelineError(f"must be a whole number of frames, got {_short(value)}", segment=index, field="frames")
        if value <= 0:
            raise TimelineError(f"must be positive, got {_short(value)}", segment=index, field="frames")
        frames = value
    else:
        if "start" not in entry:
            raise TimelineError("'end' needs 'start'", segment=index, field="end")
        if not _is_int(value):
            raise TimelineError(f"must be a whole frame number, got {_short(value)}", segment=index, field="end")
        if value < start:
            raise TimelineError(f"ends at frame {value}, before its start {start}", segment=index, field="end")
        frames = value - start + 1  # both ends inclusive, as Blender shows frame ranges
    _check_max_frames(frames, fps, max_seconds, index, kind)
    _check_min_duration(frames, fps, min_seconds, index, kind)
    path = _parse_path(entry["path"], index) if "path" in entry else None
    return Segment(entry["prompt"].strip(), frames, start, path)


def _parse_flowmdm(data: Mapping, limits: dict[str, float]) -> Timeline:
    _check_known_keys(data, _FLOWMDM_KEYS)
    for key in _FLOWMDM_KEYS:
        if key not in data:
            raise TimelineError("missing (FlowMDM timelines need both 'lengths' and 'text')", field=key)
        if not isinstance(data[key], list):
            raise TimelineError(f"must be a list, got {_type_name(data[key])}", field=key)
    lengths, texts = data["lengths"], data["text"]
    if len(lengths) != len(texts):
        raise TimelineError(f"has {len(texts)} entries but 'lengths' has {len(lengths)}", field="text")
    segments = []
    for index, (length, text) in enumerate(zip(lengths, texts, strict=True)):
        _check_prompt(text, index, list_name="text")
        if not _is_int(length) or length <= 0:
            raise TimelineError(f"must be a positive whole number of frames, got {length!r}", segment=index,
                                field="lengths", list_name="lengths")
        _check_max_frames(length, MODEL_FPS, limits["max_total_seconds"], index, "lengths", list_name="lengths")
        _check_min_duration(length, MODEL_FPS, limits["min_segment_seconds"], index, "lengths",
                            list_name="lengths")
        segments.append(Segment(text.strip(), length))
    return Timeline(segments, MODEL_FPS, **limits)
