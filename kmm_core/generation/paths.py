# SPDX-License-Identifier: GPL-3.0-or-later
"""Root paths: the character goes where the animator says while the body keeps the prompt's action (NumPy).

A path is a polyline on the floor in HumanML3D axes (metres; x = the character's left at the start, z = forward),
optionally with a time (seconds from the start of its segment, or of the timeline for a timeline-wide path) for each
point; without times the path is walked at constant speed over its span.  In a timeline file::

    {"fps": 30, "segments": [{"prompt": "a person walks", "seconds": 6,
                              "path": {"points": [[0, 0], [0, 3], [2, 5]], "times": [0, 3, 6]}}]}

or ``"path": [[0, 0], [0, 3], [2, 5]]`` (a bare polyline), on a segment or at the top of the timeline (then it spans
the whole timeline).

`follow_paths` re-places the generated motion: every frame's pose is kept relative to the pelvis and the facing
direction (so the action and its style stay), while the pelvis moves along the path and the body faces the path's
direction plus the angle the motion itself keeps between its facing and its travel (0 for walking forward, about 90
degrees for a sidestep, 180 for walking backwards; estimated from the generated motion, speed-weighted).  Frames
outside any path are moved rigidly so that they join the path ends without a jump.  The foot-contact cleanup runs
afterwards and holds the feet on the new ground track.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..common.errors import KMMError, short_repr
from ..common.input_numbers import is_finite_number
from ..common.limits import MAX_PATH_COORDINATE, MAX_TOTAL_SECONDS
from ..humanml3d.features import forward_directions
from ..motion.skeleton import JOINT_INDEX, NUM_JOINTS
from ..motion.time_filters import gaussian_smooth

_ACROSS_PLUS = (JOINT_INDEX["right_hip"], JOINT_INDEX["right_shoulder"])
_ACROSS_MINUS = (JOINT_INDEX["left_hip"], JOINT_INDEX["left_shoulder"])
MAX_PATH_POINTS = 10_000
TURN_SECONDS = 0.25
"""Sigma (seconds) of the easing of the path's heading: a corner turns the body over about half a second."""


class PathError(KMMError, ValueError):
    """A root path is malformed: the message names the field."""


@dataclass(frozen=True)
class RootPath:
    """Floor points (K, 2) as (x, z) and optional times (K,) in seconds from the start of the path's span."""

    points: tuple[tuple[float, float], ...]
    times: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise PathError(f"points: a path needs at least 2 points, got {len(self.points)}")
        if len(self.points) > MAX_PATH_POINTS:
            raise PathError(f"points: at most {MAX_PATH_POINTS} points, got {len(self.points)}")
        if self.times is not None:
            if len(self.times) != len(self.points):
                raise PathError(f"times: one time per point ({len(self.points)}), got {len(self.times)}")
            if self.times[0] < 0 or any(b <= a for a, b in zip(self.times, self.times[1:], strict=False)):
                raise PathError("times: must start at 0 or later and increase strictly")

    @classmethod
    def from_value(cls, value: object, where: str = "path") -> RootPath:
        """From a timeline file: a list of [x, z] points, or {"points": [...], "times": [...]}."""
        times = None
        if isinstance(value, Mapping):
            unknown = sorted(set(map(str, value)) - {"points", "times"})
            if unknown:
                raise PathError(f"{where}: unknown key {unknown[0]!r} (allowed: points, times)")
            if "points" not in value:
                raise PathError(f"{where}.points: missing")
            points, times = value["points"], value.get("times")
        else:
            points = value
        if not isinstance(points, Sequence) or isinstance(points, str):
            raise PathError(f"{where}.points: must be a list of [x, z] pairs")
        parsed = []
        for index, point in enumerate(points):
            if (not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2
                    or not all(is_finite_number(v) for v in point)):
                raise PathError(f"{where}.points[{index}]: must be [x, z] (two finite numbers), got "
                                f"{short_repr(point)}")
            # Checked before any arithmetic: 1e308 is finite, but its lengths overflow (a NumPy warning, then NaN).
            if not all(abs(v) <= MAX_PATH_COORDINATE for v in point):
                raise PathError(f"{where}.points[{index}]: each coordinate must be within ±{MAX_PATH_COORDINATE:g} "
                                f"metres, got {short_repr(point)}")
            parsed.append((float(point[0]), float(point[1])))
        if times is not None:
            if (not isinstance(times, Sequence) or isinstance(times, str)
                    or not all(is_finite_number(t) for t in times)):
                raise PathError(f"{where}.times: must be a list of numbers (seconds)")
            if not all(abs(t) <= MAX_TOTAL_SECONDS for t in times):
                raise PathError(f"{where}.times: each time must be within {MAX_TOTAL_SECONDS:g} seconds")
            times = tuple(float(t) for t in times)
        try:
            return cls(tuple(parsed), times)
        except PathError as error:
            raise PathError(f"{where}.{error}") from None

    def to_value(self) -> dict:
        value: dict = {"points": [list(p) for p in self.points]}
        if self.times is not None:
            value["times"] = list(self.times)
        return value

    def sample(self, seconds: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions (T, 2) and unit directions (T, 2) at `seconds` from the span's start (`duration` long)."""
        points = np.asarray(self.points, dtype=np.float64)
        lengths = np.linalg.norm(np.diff(points, axis=0), axis=-1)
        arc = np.concatenate([[0.0], np.cumsum(lengths)])
        if self.times is None:
            times = arc / max(arc[-1], 1e-9) * duration
        else:
            times = np.asarray(self.times, dtype=np.float64)
        distance = np.interp(seconds, times, arc)
        position = np.stack([np.interp(distance, arc, points[:, 0]), np.interp(distance, arc, points[:, 1])], -1)
        segment = np.clip(np.searchsorted(arc, distance, side="right") - 1, 0, len(lengths) - 1)
        chords = np.diff(points, axis=0) / np.maximum(lengths, 1e-9)[:, None]
        direction = chords[segment]
        return position, direction


def _yaw_matrix(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1),
                     np.stack([-s, zero, c], -1)], -2)


def _yaw_of(direction_xz: np.ndarray) -> np.ndarray:
    return np.arctan2(direction_xz[..., 0], direction_xz[..., 1])


def facing_and_travel_offset(joints: np.ndarray, fps: float) -> float:
    """The angle (radians) the motion keeps between its facing and its travel direction, speed-weighted circular
    mean (0: moves the way it faces; about +-pi/2: sidesteps; pi: backwards).  0 when it hardly moves."""
    forward = forward_directions(joints, _ACROSS_PLUS, _ACROSS_MINUS)
    facing = _yaw_of(forward[:, [0, 2]])
    root = gaussian_smooth(joints[:, 0, [0, 2]], 2.0, axis=0)
    velocity = np.gradient(root, axis=0) * fps
    speed = np.linalg.norm(velocity, axis=-1)
    if speed.max() < 0.1:  # standing: no travel direction to keep
        return 0.0
    difference = facing - _yaw_of(velocity)
    weights = speed * (speed > 0.1)
    return float(np.arctan2((weights * np.sin(difference)).sum(), (weights * np.cos(difference)).sum()))


def follow_paths(joints: np.ndarray, fps: float, spans: Sequence[tuple[int, int, RootPath]]) -> np.ndarray:
    """Joints (T, 22, 3) whose pelvis follows each path over its frame span [start, end), see the module docstring.

    Spans must not overlap.  Frames before the first span are moved rigidly onto its start, frames after a span
    (until the next) rigidly onto its end.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise PathError(f"joints: expected shape (T, {NUM_JOINTS}, 3), got {joints.shape}")
    frames = joints.shape[0]
    ordered = sorted(spans, key=lambda span: span[0])
    for (a0, a1, _), (b0, _, _) in zip(ordered, ordered[1:], strict=False):
        if b0 < a1:
            raise PathError(f"paths: the spans [{a0}, {a1}) and [{b0}, ...) overlap")
    if not ordered:
        return joints.copy()
    forward = forward_directions(joints, _ACROSS_PLUS, _ACROSS_MINUS)
    yaw = np.unwrap(_yaw_of(forward[:, [0, 2]]))
    root = joints[:, 0].copy()
    root[:, 1] = 0.0
    local = np.einsum("tij,tkj->tki", _yaw_matrix(-yaw), joints - root[:, None])
    new_yaw, new_root = yaw.copy(), root.copy()
    for start, end, path in ordered:
        if not 0 <= start < end <= frames:
            raise PathError(f"paths: span [{start}, {end}) is outside the motion's {frames} frames")
        seconds = (np.arange(start, end) - start) / fps
        position, direction = path.sample(seconds, (end - start) / fps)
        keep = facing_and_travel_offset(joints[start:end], fps)
        sway = yaw[start:end] - gaussian_smooth(yaw[start:end], 0.5 * fps, axis=0)
        # The path's heading, eased over a quarter second so that a corner turns the body instead of snapping it.
        heading = gaussian_smooth(np.unwrap(_yaw_of(direction)), TURN_SECONDS * fps, axis=0)
        path_yaw = heading + keep + sway
        new_root[start:end, 0], new_root[start:end, 2] = position[:, 0], position[:, 1]
        new_yaw[start:end] = path_yaw
    # Frames between spans: rigid moves joining the nearest path end (or, before the first span, its start).
    anchors = []
    previous_end = None
    for start, end, _ in ordered:
        if previous_end is None and start > 0:
            anchors.append((0, start, start))           # join onto the first span's first frame
        elif previous_end is not None and start > previous_end:
            anchors.append((previous_end, start, previous_end - 1))
        previous_end = end
    if previous_end < frames:
        anchors.append((previous_end, frames, previous_end - 1))
    for lo, hi, joined in anchors:
        # The free stretch [lo, hi) keeps its own motion, turned and moved as a whole so that the original frame
        # `joined` (a path frame next to it) would sit exactly where the path put it: no jump at the join.
        turn = new_yaw[joined] - yaw[joined]
        rotation = _yaw_matrix(np.array(turn))
        new_root[lo:hi] = (root[lo:hi] - root[joined]) @ rotation.T + new_root[joined]
        new_yaw[lo:hi] = yaw[lo:hi] + turn
    placed = np.einsum("tij,tkj->tki", _yaw_matrix(new_yaw), local) + new_root[:, None]
    return placed


def path_spans(timeline) -> list[tuple[int, int, RootPath]]:
    """[start, end) frames (at the timeline's fps) and path of every path in a generation.timeline.Timeline."""
    if timeline.path is not None:
        return [(0, timeline.total_frames, timeline.path)]
    return [(start, end, segment.path) for (start, end), segment in zip(timeline.segment_ranges(), timeline.segments,
                                                                        strict=True) if segment.path is not None]


def motion_on_paths(motion, timeline):
    """The MotionResult `motion` (made for `timeline`, at its fps) with its pelvis on the timeline's paths; bone
    rotations recomputed (the rest of the result is kept)."""
    from dataclasses import replace

    from ..motion.motion_result import MotionResult

    spans = path_spans(timeline)
    if not spans:
        return motion
    placed = follow_paths(motion.joints, motion.fps, spans)
    moved = MotionResult.from_joints(placed, motion.fps, segment_frames=motion.segment_frames,
                                     prompts=motion.segment_prompts, rest_offsets=motion.rest_offsets)
    return replace(moved, timeline_json=motion.timeline_json)
