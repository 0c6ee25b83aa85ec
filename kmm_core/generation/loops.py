# SPDX-License-Identifier: GPL-3.0-or-later
"""Cycles: make a motion whose last frame leads seamlessly back into its first (NumPy, torch-free).

A timeline with ``"loop": true`` is generated a little longer than asked (`extra_frames`), and `close_loop` folds the
extra frames into the start: the motion is described frame by frame in its own facing frame (the pose relative to
the pelvis and the facing direction, plus the pelvis step and turn to the next frame), the first `blend` frames
cross-fade from the continuation of the end (frames N, N+1, ...) into the motion's own start, and the result is
integrated again.  Frame 0 is the exact continuation of frame N - 1 (pose, step and turn of the generated frame N),
so the next repetition starts exactly where the motion would have gone on: poses and velocities run on across the
wrap as between any two generated frames, and the cross-fade happens inside the cycle, over frames 1 .. blend.

The travel of one cycle is `CycleOffset` (dx, dz, dyaw): the next repetition is this one turned by dyaw about the
vertical axis through the origin and moved by (dx, 0, dz).  It is stored with the result (`MotionResult.loop_offset`)
so the cycle can be repeated with its root motion (or played in place).  Axes: HumanML3D (Y up, metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..common.errors import KMMError
from ..common.smoothstep import smoothstep
from ..humanml3d.features import forward_directions
from ..motion.foot_contact import CONTACT_JOINTS, FootLockSettings, detect_contacts
from ..motion.motion_result import MotionResult
from ..motion.skeleton import JOINT_INDEX, NUM_JOINTS
from ..motion.take_cleanup import cleaned_motion
from .timeline import Segment, Timeline

LOOP_BLEND_SECONDS = 0.5
"""How long the start of a loop cross-fades from the end's continuation into its own start."""
# Facing from the hips and shoulders, as HumanML3D's preprocessing does.
_ACROSS_PLUS = (JOINT_INDEX["right_hip"], JOINT_INDEX["right_shoulder"])
_ACROSS_MINUS = (JOINT_INDEX["left_hip"], JOINT_INDEX["left_shoulder"])


class LoopError(KMMError, ValueError):
    """A loop cannot be made from this input (names the argument)."""


@dataclass(frozen=True)
class CycleOffset:
    """Travel of one cycle: the next repetition is this one turned by `dyaw` (radians, about +Y through the origin)
    and moved by (`dx`, 0, `dz`) metres."""

    dx: float
    dz: float
    dyaw: float

    def apply(self, positions: np.ndarray, times: int = 1) -> np.ndarray:
        """Positions (..., 3) moved `times` cycles on (negative: back)."""
        rotation, translation = np.eye(3), np.zeros(3)
        step = _yaw_matrix(self.dyaw)
        for _ in range(abs(times)):
            rotation, translation = step @ rotation, step @ translation + [self.dx, 0.0, self.dz]
        if times < 0:
            rotation, translation = rotation.T, -(rotation.T @ translation)
        return np.asarray(positions, dtype=np.float64) @ rotation.T + translation

    def as_array(self) -> np.ndarray:
        return np.array([self.dx, self.dz, self.dyaw])


def _yaw_matrix(angle: float | np.ndarray) -> np.ndarray:
    """Rotation(s) about +Y taking +Z to (sin a, 0, cos a)."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1),
                     np.stack([-s, zero, c], -1)], -2)


def blend_frames(fps: float) -> int:
    return max(2, int(round(LOOP_BLEND_SECONDS * fps)))


def extra_frames(fps: float) -> int:
    """Frames to generate beyond the cycle: the cross-fade plus one step to continue from."""
    return blend_frames(fps) + 1


def facing_yaw(joints: np.ndarray) -> np.ndarray:
    """(T,) unwrapped facing angle per frame (0 = facing +Z)."""
    forward = forward_directions(np.asarray(joints, dtype=np.float64), _ACROSS_PLUS, _ACROSS_MINUS)
    return np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))


def close_loop(joints: np.ndarray, cycle_frames: int, blend: int | None = None
               ) -> tuple[np.ndarray, CycleOffset]:
    """A cycle of `cycle_frames` frames from `joints` (T, 22, 3) that run at least `blend` + 1 frames longer, and
    the offset from one repetition to the next.  `blend` defaults to all the extra frames but one."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise LoopError(f"joints: expected shape (T, {NUM_JOINTS}, 3), got {joints.shape}")
    total = joints.shape[0]
    blend = total - cycle_frames - 1 if blend is None else blend
    if cycle_frames < 2 or blend < 1 or cycle_frames + blend + 1 > total or blend > cycle_frames:
        raise LoopError(f"cycle_frames: a {cycle_frames}-frame cycle blended over {blend} frames needs "
                        f"{cycle_frames + max(blend, 1) + 1} frames and a cycle at least as long as the blend, "
                        f"got {total}")
    yaw = facing_yaw(joints)
    root = joints[:, 0].copy()
    root[:, 1] = 0.0
    unturn = _yaw_matrix(-yaw)  # (T, 3, 3): world -> facing frame
    local = np.einsum("tij,tkj->tki", unturn, joints - root[:, None])
    step = np.einsum("tij,tj->ti", unturn[:-1], root[1:] - root[:-1])
    turn = np.diff(yaw)
    # Weight of the motion's own start: 0 on frame 0 (the exact continuation of the end), rising to 1 at `blend`.
    weight = smoothstep(np.arange(blend) / blend)
    own, later = slice(0, blend), slice(cycle_frames, cycle_frames + blend)
    local_c, step_c, turn_c = local[:cycle_frames].copy(), step[:cycle_frames].copy(), turn[:cycle_frames].copy()
    local_c[own] = weight[:, None, None] * local[own] + (1 - weight[:, None, None]) * local[later]
    step_c[own] = weight[:, None] * step[own] + (1 - weight[:, None]) * step[later]
    turn_c[own] = weight * turn[own] + (1 - weight) * turn[later]
    # Integrate again from the first frame's place and facing.
    yaw_c = yaw[0] + np.concatenate([[0.0], np.cumsum(turn_c)])            # (N + 1,): frame N included
    moves = np.einsum("tij,tj->ti", _yaw_matrix(yaw_c[:-1]), step_c)
    root_c = root[0] + np.concatenate([np.zeros((1, 3)), np.cumsum(moves, axis=0)])  # (N + 1, 3)
    looped = np.einsum("tij,tkj->tki", _yaw_matrix(yaw_c[:-1]), local_c) + root_c[:-1, None]
    dyaw = float(yaw_c[-1] - yaw_c[0])
    # Frame N = frame 0 turned by dyaw about the origin, then moved: translation = root_N - R(dyaw) root_0.
    translation = root_c[-1] - _yaw_matrix(dyaw) @ root_c[0]
    return looped, CycleOffset(float(translation[0]), float(translation[2]), math.remainder(dyaw, 2 * math.pi))


def repeat_cycle(joints: np.ndarray, offset: CycleOffset, repetitions: int) -> np.ndarray:
    """(repetitions * N, 22, 3): the cycle played `repetitions` times, each moved on by `offset`."""
    return np.concatenate([offset.apply(joints, k) for k in range(repetitions)])


def _without_drift_at_a_held_wrap(cycle: np.ndarray, offset: CycleOffset, fps: float,
                                  channels: np.ndarray | None) -> tuple[np.ndarray, CycleOffset]:
    """When a foot stays on the ground across the wrap, the cycle's travel must not slide it: the foot's mean
    horizontal drift while held there (over the held frames at both ends) is removed from the whole cycle, spread
    evenly over its frames, and from the offset, so a held foot lands on itself in the next repetition.  With both
    feet down across the wrap (standing, an idle) the cycle is made to neither turn nor travel (`_standing_still`):
    a body that creeps or slowly turns then stands still; a walk keeps its steps and a turning walk its turn."""
    frames = cycle.shape[0]
    # Contacts of the cycle followed by its own next repetition: a run through the wrap is one run.
    pair = np.concatenate([cycle, offset.apply(cycle)])
    contacts = detect_contacts(pair, fps, None if channels is None else np.concatenate([channels, channels]))
    held_at_wrap = contacts[frames - 1] & contacts[frames]
    left, right = held_at_wrap[:2].any(), held_at_wrap[2:].any()  # columns: left ankle, left toe, right ankle, toe
    if left and right:
        # Both feet down across the wrap (a stance, an idle): the cycle must neither turn nor travel, or every
        # repetition moves the standing body a little further and drags its held feet.  Turn and travel are taken
        # out evenly over the cycle (the turn about the pelvis' mean position); the foot lock then holds the feet
        # on one spot through every wrap.
        return _standing_still(cycle, offset)
    velocities = []
    for column, joint in enumerate(CONTACT_JOINTS):
        if not held_at_wrap[column]:
            continue
        held = contacts[:, column]
        start, end = frames - 1, frames
        while start > 0 and held[start - 1]:
            start -= 1
        while end < 2 * frames - 1 and held[end + 1]:
            end += 1
        path = pair[start:end + 1, joint]
        velocities.append((path[-1] - path[0]) / max(end - start, 1))
    if not velocities:
        return cycle, offset
    drift = np.mean(velocities, axis=0)
    drift[1] = 0.0
    correction = -drift * frames  # per cycle
    fixed = cycle + (np.arange(frames) / frames)[:, None, None] * correction
    return fixed, CycleOffset(offset.dx + float(correction[0]), offset.dz + float(correction[2]), offset.dyaw)


def _standing_still(cycle: np.ndarray, offset: CycleOffset) -> tuple[np.ndarray, CycleOffset]:
    """The cycle turned back by `offset.dyaw` x (frame / F) about its pelvis' mean horizontal position and moved back
    by the travel left after that x (frame / F), with the offset of a cycle that neither turns nor travels."""
    frames = cycle.shape[0]
    progress = np.arange(frames) / frames
    centre = np.array([cycle[:, 0, 0].mean(), 0.0, cycle[:, 0, 2].mean()])
    turned = np.einsum("fij,fkj->fki", _yaw_matrix(-offset.dyaw * progress), cycle - centre) + centre
    # The next repetition started at R(dyaw) p + d; turned back by the whole dyaw about the centre it is p + travel.
    travel = _yaw_matrix(-offset.dyaw) @ (np.array([offset.dx, 0.0, offset.dz]) - centre) + centre
    travel[1] = 0.0
    return turned - progress[:, None, None] * travel, CycleOffset(0.0, 0.0, 0.0)


def generation_timeline(timeline: Timeline) -> Timeline:
    """What to generate for a loop timeline: its one segment, `extra_frames` longer (not itself a loop)."""
    segment = timeline.segments[0]
    return Timeline((Segment(segment.prompt, segment.frames + extra_frames(timeline.fps)),), timeline.fps,
                    max_total_seconds=timeline.max_total_seconds + 1.0)


def loop_motion(motion: MotionResult, timeline: Timeline, channels: np.ndarray | None = None,
                foot_lock: bool = True) -> MotionResult:
    """The loop `timeline` asks for, from `motion` generated for `generation_timeline(timeline)` (unlocked).

    With `foot_lock`, three repetitions are cleaned together (`take_cleanup.cleaned_motion`, `channels` the contact
    channels of the generated frames) and the middle one is kept, so held feet and planted hands carry over the
    wrap.
    """
    cycle_frames = timeline.total_frames
    cycle, offset = close_loop(motion.joints, cycle_frames, blend_frames(motion.fps))
    segments = np.array([[0, cycle_frames]], dtype=np.int64)
    common = {"segment_frames": segments, "prompts": timeline.prompts, "rest_offsets": motion.rest_offsets}
    if not foot_lock:
        result = MotionResult.from_joints(cycle, motion.fps, **common)
        return replace(result, timeline_json=timeline.to_json(), loop_offset=offset.as_array())
    cycle_channels = None if channels is None else np.asarray(channels)[:cycle_frames]
    cycle, offset = _without_drift_at_a_held_wrap(cycle, offset, motion.fps, cycle_channels)
    tiled = MotionResult.from_joints(repeat_cycle(cycle, offset, 3), motion.fps, rest_offsets=motion.rest_offsets)
    tiled_channels = None if cycle_channels is None else np.tile(cycle_channels, (3, 1))
    # Sliding stances are not held in a loop: a lock pulled along a sliding foot can land on the wrap frame.
    locked = cleaned_motion(tiled, tiled_channels, FootLockSettings(relative_speed_limit=0.0))
    middle = offset.apply(locked.joints[cycle_frames:2 * cycle_frames], -1)
    result = MotionResult.from_joints(middle, motion.fps, **common)
    return replace(result, timeline_json=timeline.to_json(), loop_offset=offset.as_array(), foot_lock=True,
                   foot_contacts=locked.foot_contacts[cycle_frames:2 * cycle_frames])
