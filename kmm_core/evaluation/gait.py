# SPDX-License-Identifier: GPL-3.0-or-later
"""A walk or run judged as biomechanics judges gait (NumPy): cadence, stride length, speed, stance and double
support from foot contacts, step-time symmetry, two pelvis rises a stride, stance skate, stride-to-stride
regularity.

Joints are (T, 22, 3), metres, HumanML3D axes (Y up), at `fps`.  Measured on straight, steady windows
(`steady_windows`: WINDOW_SECONDS long, the pelvis moving at least MIN_SPEED_LEGS leg lengths a second and turning
at most MAX_TURN_DEGREES), cut the same way from real and generated takes, so a start, a stop or a turn is not
judged as a gait.  Lengths are in leg lengths L (hip -> knee -> ankle, the take's median), so people of any size
compare.

- A foot is down while its ankle or its toe is within CONTACT_HEIGHT_LEGS of the lowest that joint goes in the
  window and slower than CONTACT_SPEED_LEGS (heel strike: the frame a foot comes down; toe-off: the frame it leaves);
  step times are read between frames (`heel_strike_times`: where the foot's margin to being down crosses zero), so
  a run's 7-frame steps are not rounded to whole frames.
- cadence: steps a minute, from the heel strikes of both feet; stride: two steps; stride length: the pelvis's
  horizontal travel over one stride time.
- stance share: the share of each stride a foot is down (real walking: about 0.6); double support: the share of the
  time both are (about 0.2-0.3 at a normal pace; none in a run).
- step-time asymmetry: |left->right step time - right->left step time| / their mean.
- pelvis bob: of the pelvis height's power at one and at two cycles a stride, the share at two (a walk rises over
  each stance leg: two rises a stride; one rise a stride is a limp).
- regularity: the autocorrelation of the left-right ankle height difference one stride apart.
- skate: the mean horizontal speed of a foot while it is down, in L/s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..common.errors import InputTensorError
from ..humanml3d.motion_kind import leg_length
from ..motion.skeleton import JOINT_INDEX

WINDOW_SECONDS = 3.0
MIN_SPEED_LEGS = 0.5         # leg lengths a second: slower is not a steady walk
MAX_TURN_DEGREES = 25.0      # heading change within a window
CONTACT_HEIGHT_LEGS = 0.08   # a foot within this of its lowest (of L) ...
CONTACT_SPEED_LEGS = 1.0     # ... and slower than this (L/s) is down
MEASURES = ("cadence", "stride_length", "speed", "stance", "double_support", "step_asymmetry", "pelvis_bob",
            "regularity", "skate")


@dataclass(frozen=True)
class Gait:
    cadence: float          # steps a minute
    stride_length: float    # leg lengths
    speed: float            # leg lengths a second
    stance: float           # share of a stride each foot is down (mean of the feet)
    double_support: float   # share of the time both feet are down
    step_asymmetry: float   # |left->right - right->left step time| / their mean
    pelvis_bob: float       # share of the pelvis height's stride power at two rises a stride
    regularity: float       # ankle alternation's autocorrelation one stride apart
    skate: float            # stance foot speed, leg lengths a second

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _heading(joints: np.ndarray) -> np.ndarray:
    """(T,) the body's facing angle (radians) from the hips' line."""
    across = joints[:, JOINT_INDEX["left_hip"]] - joints[:, JOINT_INDEX["right_hip"]]
    return np.unwrap(np.arctan2(-across[:, 2], across[:, 0]))


def steady_windows(joints: np.ndarray, fps: float, seconds: float = WINDOW_SECONDS) -> list[slice]:
    """Non-overlapping straight, steady windows of `seconds` (see the module docstring), first to last."""
    joints = np.asarray(joints, dtype=np.float64)
    size = int(round(seconds * fps))
    legs = leg_length(joints)
    pelvis = joints[:, 0, [0, 2]]
    heading = _heading(joints)
    windows, start = [], 0
    while start + size <= len(joints):
        part = slice(start, start + size)
        travel = np.linalg.norm(pelvis[start + size - 1] - pelvis[start]) / seconds / legs
        turn = np.degrees(np.ptp(heading[part]))
        if travel >= MIN_SPEED_LEGS and turn <= MAX_TURN_DEGREES:
            windows.append(part)
            start += size
        else:
            start += max(1, size // 4)
    return windows


def _down_margin(joints: np.ndarray, fps: float, side: str, legs: float) -> np.ndarray:
    """(T,) how far a foot is from being down, in leg lengths (<= 0: down): of its ankle and its toe the nearer to
    being both low and slow (module docstring), each condition's excess over its limit."""
    margins = []
    for part in ("ankle", "foot"):
        point = joints[:, JOINT_INDEX[f"{side}_{part}"]]
        speed = np.zeros(len(point))
        if len(point) > 1:
            speed[1:] = np.linalg.norm(np.diff(point[:, [0, 2]], axis=0), axis=-1) * fps
            speed[0] = speed[1]
        height = (point[:, 1] - point[:, 1].min()) / legs - CONTACT_HEIGHT_LEGS
        margins.append(np.maximum(height, (speed / legs - CONTACT_SPEED_LEGS) / fps))  # L a frame: one scale
    return np.minimum(*margins)


def foot_down(joints: np.ndarray, fps: float, side: str, legs: float) -> np.ndarray:
    """(T,) the frames a foot is down: its ankle or its toe low and slow (module docstring)."""
    return _down_margin(joints, fps, side, legs) <= 0.0


def heel_strike_times(joints: np.ndarray, fps: float, side: str, legs: float) -> np.ndarray:
    """Frames (fractional) where a foot comes down: each of `heel_strikes`, placed between the frame before and it
    where its margin to being down (`_down_margin`) crosses zero, linearly.  At 20 fps a running step lasts about 7
    frames: whole frames alone make one step of a stride a frame (about 0.13 of a step) longer than the other."""
    return _strike_times(_down_margin(joints, fps, side, legs))


def _strike_times(margin: np.ndarray) -> np.ndarray:
    """`heel_strike_times` from a foot's margin to being down (`_down_margin`)."""
    frames = heel_strikes(margin <= 0.0)
    before, at = margin[frames - 1], margin[frames]
    return frames - np.clip(-at / np.maximum(before - at, 1e-12), 0.0, 1.0)


def heel_strikes(down: np.ndarray) -> np.ndarray:
    """Frames where a foot comes down (after at least one frame up)."""
    return np.flatnonzero(down[1:] & ~down[:-1]) + 1


def _band_power(signal: np.ndarray, fps: float, frequency: float) -> float:
    """Power of `signal` (detrended) at `frequency` Hz (a single-frequency projection)."""
    t = np.arange(len(signal)) / fps
    values = signal - np.polyval(np.polyfit(t, signal, 1), t)
    return float(abs(np.sum(values * np.exp(-2j * np.pi * frequency * t))) ** 2)


def measure_gait(joints: np.ndarray, fps: float) -> Gait | None:
    """The gait of one window of joints (T, 22, 3); None when it has too few steps to measure (fewer than two heel
    strikes of each foot)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or not np.all(np.isfinite(joints)):
        raise InputTensorError(f"joints: expected finite (T, 22, 3), got {joints.shape}")
    legs = leg_length(joints)
    margins = {side: _down_margin(joints, fps, side, legs) for side in ("left", "right")}
    down = {side: margin <= 0.0 for side, margin in margins.items()}   # foot_down, the margin read once
    strikes = {side: heel_strikes(down[side]) for side in down}
    if min(len(s) for s in strikes.values()) < 2:
        return None
    times = {side: _strike_times(margins[side]) for side in down}   # the same strikes, sub-frame
    events = sorted([(float(t), "left") for t in times["left"]] + [(float(t), "right") for t in times["right"]])
    alternating = [(a, b) for a, b in zip(events, events[1:], strict=False) if a[1] != b[1]]
    if len(alternating) < 2:
        return None
    step_times = [(b[0] - a[0]) / fps for a, b in alternating]
    left_right = [(b[0] - a[0]) / fps for a, b in alternating if a[1] == "left"]
    right_left = [(b[0] - a[0]) / fps for a, b in alternating if a[1] == "right"]
    step = float(np.mean(step_times))
    stride_time = 2.0 * step
    first, last = min(int(s[0]) for s in strikes.values()), max(int(s[-1]) for s in strikes.values())
    pelvis = joints[:, 0, [0, 2]]
    speed = float(np.linalg.norm(pelvis[last] - pelvis[first]) / max((last - first) / fps, 1e-9)) / legs
    stance = []
    for side in down:
        frames = strikes[side]
        stance.append(float(down[side][frames[0]:frames[-1]].mean()))
    both = float((down["left"] & down["right"])[first:last].mean())
    asymmetry = (abs(np.mean(left_right) - np.mean(right_left)) / step) if left_right and right_left else 0.0
    height = joints[:, 0, 1]
    once, twice = _band_power(height, fps, 1.0 / stride_time), _band_power(height, fps, 2.0 / stride_time)
    bob = twice / (once + twice) if once + twice > 0 else 0.0
    alternation = joints[:, JOINT_INDEX["left_ankle"], 1] - joints[:, JOINT_INDEX["right_ankle"], 1]
    lag = int(round(stride_time * fps))
    values = alternation - alternation.mean()
    regularity = (float(values[:-lag] @ values[lag:] / np.sqrt((values[:-lag] @ values[:-lag])
                                                               * (values[lag:] @ values[lag:])))
                  if 0 < lag < len(values) - 2 and np.any(values) else 0.0)
    skates = []
    for side in down:
        ankle = joints[:, JOINT_INDEX[f"{side}_ankle"], :][:, [0, 2]]
        moving = np.linalg.norm(np.diff(ankle, axis=0), axis=-1) * fps / legs
        planted = down[side][1:] & down[side][:-1]
        if planted.any():
            skates.append(float(moving[planted].mean()))
    return Gait(cadence=60.0 / step, stride_length=speed * stride_time, speed=speed, stance=float(np.mean(stance)),
                double_support=both, step_asymmetry=float(asymmetry), pelvis_bob=float(bob),
                regularity=regularity, skate=float(np.mean(skates)) if skates else 0.0)


RUN_WINDOW_SECONDS = 2.0
"""Runs are cut into 2-s windows: real running takes are short (Bandai-Namco's: 2.2-2.5 s)."""


def take_gaits(joints: np.ndarray, fps: float, seconds: float = WINDOW_SECONDS) -> list[Gait]:
    """The gait of every steady window of a take (windows too short of steps left out)."""
    gaits = []
    for window in steady_windows(joints, fps, seconds):
        gait = measure_gait(joints[window], fps)
        if gait is not None:
            gaits.append(gait)
    return gaits
