# SPDX-License-Identifier: GPL-3.0-or-later
"""Swing-foot clearance: between two contacts of a foot, the toe clears the floor the way real steps do (NumPy).

Generated walks shuffle: the swing toe stays within a few centimetres of the floor while it moves forward at 1-4
m/s (`benchmarks/results/foot_skating.md`: kmm-small's swing toes peak at a median 3.1 cm after the former clean-up,
real test-split motion at 9.6 cm).  An animator lifts the swing foot along an arc; `swing_lift` says by how much,
per frame, for one foot:

* a **swing** is a run of frames where the foot (ankle or toe) is held nowhere, with a contact on both sides (the
  foot's own lift-off and touch-down frames stay where the contacts put them, so timing is unchanged); the caller
  counts a foot on the floor by geometry alone (``foot_contact.detect_contacts`` without channels, as the real
  swings of `REAL_SWING_PROFILE` were cut) as held here, so a toe still rolling off the floor after the model's
  contact channel ended is not lifted (on real strides that cost the gait benchmark's stance a frame a step);
* the toe should be at least `REAL_SWING_PROFILE` above the floor at each point of the swing (normalised time 0 =
  the last held frame, 1 = the first held frame again), scaled by the step's horizontal travel over
  `REAL_STRIDE` (capped at 1: a short step gets a lower arc, a shuffle in place none);
* the lift is the amount missing (never negative: a toe already higher keeps its own path), widened by
  `smoothing_seconds` on each side and averaged over the same window, so it rises and falls smoothly; it is zero on
  every held frame.

Besides the arc, a free toe that moves fast is off the floor (`speed_clearance`): at least `SCUFF_CLEARANCE` above
it once it moves faster than `SCUFF_SPEEDS[1]`, rising smoothly from nothing at `SCUFF_SPEEDS[0]`.  The arc only
covers swings between two contacts, at a 25th-percentile height that dips to 1.2 cm mid-swing; generated toes also
scuff the floor next to contacts the detector split or missed and inside swings the arc passes low, which is what
the foot-skating metric counts (a toe within 2.5 cm of the floor moving faster than 0.5 m/s).

The caller (`foot_contact.lock_feet`) raises the whole foot by the lift and re-solves the leg with the analytic
two-bone IK, so bone lengths are kept.  Real motion already clears this profile almost everywhere, so it is left
(nearly) as it is; `benchmarks/measure_foot_skating.py` measures both.
"""

from __future__ import annotations

import numpy as np

from ..common.boolean_runs import true_runs

REAL_SWING_PROFILE = np.array([0.006, 0.019, 0.035, 0.056, 0.076, 0.086, 0.091, 0.083, 0.071, 0.055, 0.037,
                               0.023, 0.013, 0.012, 0.014, 0.028, 0.044, 0.048, 0.041, 0.024, 0.001])
"""Toe (ball of the foot) height above its stance level in metres at 21 evenly spaced points of a swing, from the
last held frame to the first held frame again: the 25th percentile per point over 213 swings of real Bandai-Namco
walks, runs, turns, kicks and bows ("normal" style, canonical HumanML3D joints at 20 fps, contacts by geometry with
`foot_contact.detect_contacts`) whose toe travelled more than 0.3 m.  The shape is a real step's: the toe rises
steeply at toe-off, dips to about 1.2 cm at mid-swing, rises again as the foot flexes before heel strike."""
REAL_STRIDE = 1.29
"""Metres: median horizontal toe travel of those swings; a swing travelling this far or more gets the full profile."""
LIFT_OFF_HEIGHT = 0.025
LIFT_OFF_TRAVEL = 0.4
LIFT_OFF_PHASE = 0.3
"""At toe-off real toes rise at once whatever the step's length: on the first free frame the toe is 2.5 cm (25th
percentile) above its stance level in real swings travelling 0.4 m or more (3.1-3.9 cm median), against 0.4-1.6 cm
for shorter ones; the real profile peaks at phase 0.3."""
SCUFF_CLEARANCE = 0.03
SCUFF_SPEEDS = (0.3, 0.7)
"""Metres above the floor and m/s: a free toe moving horizontally faster than SCUFF_SPEEDS[1] is at least
SCUFF_CLEARANCE above the floor (a smoothstep from 0 at SCUFF_SPEEDS[0]).  Real toes (the 370 test-split clips of
all seven sources, heights above each toe's 5th percentile; benchmarks/results/toe_heights.md) moving at 0.7-1 m/s
are a median 4.3 cm up (24% below 2.5 cm), faster than 1 m/s 6.6 cm (14% below 2.5 cm), at 0.5-0.7 m/s 3.2 cm: the
requirement stays under the real median at every speed."""
TYPICAL_SWING_SECONDS = 0.5
"""A real swing's median duration (10 frames at 20 fps): the phase of a swing cut by the motion's start or end."""


def swing_gaps(held: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of not-held frames with a held frame on both sides."""
    held = np.asarray(held, dtype=bool)
    return [(start, end) for start, end in true_runs(~held) if start > 0 and end < held.shape[0]]


def widen_and_smooth(values: np.ndarray, width: int) -> np.ndarray:
    """A running max over 2*width+1 frames, then a running mean over the same window (never below `values`);
    `values` itself when `width` < 1 or it is all zero."""
    if width < 1 or not values.any():
        return values
    padded = np.pad(values, width, mode="edge")
    widened = np.max(np.lib.stride_tricks.sliding_window_view(padded, 2 * width + 1), axis=-1)
    kernel = np.ones(2 * width + 1) / (2 * width + 1)
    smoothed = np.convolve(np.pad(widened, width, mode="edge"), kernel, mode="valid")
    return np.maximum(smoothed, values)


def clearance_profile(phase: np.ndarray, travel: float, profile: np.ndarray = REAL_SWING_PROFILE,
                      stride: float = REAL_STRIDE) -> np.ndarray:
    """Metres above the stance level the toe should at least reach at `phase` (0..1) of a swing travelling
    `travel` metres: the real profile scaled by travel / stride (at most 1); over the toe-off part (phase up to
    `LIFT_OFF_PHASE`) at least `LIFT_OFF_HEIGHT`, scaled down for steps shorter than `LIFT_OFF_TRAVEL`."""
    points = np.linspace(0.0, 1.0, len(profile))
    clearance = min(1.0, travel / stride) * np.interp(phase, points, profile)
    lift_off = LIFT_OFF_HEIGHT * min(1.0, travel / LIFT_OFF_TRAVEL)
    toe_off = (phase > 0) & (phase <= LIFT_OFF_PHASE)
    return np.where(toe_off, np.maximum(clearance, lift_off), clearance)


def speed_clearance(speed: np.ndarray, height: float = SCUFF_CLEARANCE, speeds: tuple[float, float] = SCUFF_SPEEDS
                    ) -> np.ndarray:
    """Metres above the floor a free toe moving at `speed` (m/s, horizontal) should at least be: 0 up to
    `speeds[0]`, `height` from `speeds[1]` on, a smoothstep between."""
    x = np.clip((np.asarray(speed, dtype=np.float64) - speeds[0]) / (speeds[1] - speeds[0]), 0.0, 1.0)
    return height * x * x * (3.0 - 2.0 * x)


def swing_lift(toe: np.ndarray, held: np.ndarray, fps: float, floor: float, smoothing_seconds: float = 0.05,
               scuff_clearance: float = SCUFF_CLEARANCE) -> np.ndarray:
    """(T,) metres to raise a foot so its toe (T, 3) clears `floor` + `clearance_profile` during every swing.

    `held` (T,) bool: frames where the foot (ankle or toe) is held on a contact; then every free frame whose toe moves
    fast is raised to `speed_clearance` (`scuff_clearance` = 0 turns that off).  See the module docstring.
    """
    toe = np.asarray(toe, dtype=np.float64)
    held = np.asarray(held, dtype=bool)
    frames = toe.shape[0]
    needed = np.zeros(frames)
    if not held.any():
        return needed
    typical = max(1, int(round(TYPICAL_SWING_SECONDS * fps)))
    for start, end in true_runs(~held):
        if start > 0 and end < frames:  # a whole swing: from the held frame before to the held frame after
            last, first = start - 1, end
        elif start > 0:  # the motion ends in the air: a typical swing from the last held frame
            last, first = start - 1, start - 1 + typical + 1
        else:  # the motion starts in the air: a typical swing ending at the first held frame
            last, first = end - typical - 1, end
        span = np.arange(max(start, last + 1), min(end, first))
        if span.size == 0:
            continue
        seen = (min(max(last, 0), frames - 1), min(max(first, 0), frames - 1))
        travel = float(np.linalg.norm(toe[seen[1], [0, 2]] - toe[seen[0], [0, 2]]))
        phase = (span - last) / (first - last)
        needed[span] = np.maximum(0.0, floor + clearance_profile(phase, travel) - toe[span, 1])
    width = int(round(smoothing_seconds * fps))
    lift = np.where(held, 0.0, widen_and_smooth(needed, width))
    if scuff_clearance > 0 and frames > 1:
        speed = np.linalg.norm(np.gradient(toe[:, [0, 2]], axis=0), axis=-1) * fps
        scuff = np.maximum(0.0, floor + speed_clearance(speed, scuff_clearance) - (toe[:, 1] + lift))
        lift = lift + np.where(held, 0.0, widen_and_smooth(np.where(held, 0.0, scuff), width))
    return lift
