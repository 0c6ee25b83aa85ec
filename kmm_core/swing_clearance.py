# SPDX-License-Identifier: GPL-3.0-or-later
"""Swing-foot clearance: between two contacts of a foot, the toe clears the floor the way real steps do (NumPy).

Generated walks shuffle: the swing toe stays within a few centimetres of the floor while it moves forward at 1-4
m/s (kmm-small's walks peak at a median 2.9 cm above the floor, real Bandai-Namco walks at 9.7 cm).  An animator
lifts the swing foot along an arc; `swing_lift` says by how much, per frame, for one foot:

* a **swing** is a run of frames where the foot (ankle or toe) is held nowhere, with a contact on both sides (the
  foot's own lift-off and touch-down frames stay where the contacts put them, so timing is unchanged);
* the toe should be at least `REAL_SWING_PROFILE` above the floor at each point of the swing (normalised time 0 =
  the last held frame, 1 = the first held frame again), scaled by the step's horizontal travel over
  `REAL_STRIDE` (capped at 1: a short step gets a lower arc, a shuffle in place none);
* the lift is the amount missing (never negative: a toe already higher keeps its own path), widened by
  `smoothing_seconds` on each side and averaged over the same window, so it rises and falls smoothly; it is zero on
  every held frame.

The caller (`foot_contact.lock_feet`) raises the whole foot by the lift and re-solves the leg with the analytic
two-bone IK, so bone lengths are kept.  Real motion already clears this profile almost everywhere, so it is left
(nearly) as it is; `benchmarks/measure_foot_skating.py` measures both.
"""

from __future__ import annotations

import numpy as np

REAL_SWING_PROFILE = np.array([0.006, 0.019, 0.035, 0.056, 0.076, 0.086, 0.091, 0.083, 0.071, 0.055, 0.037,
                               0.023, 0.013, 0.012, 0.014, 0.028, 0.044, 0.048, 0.041, 0.024, 0.001])
"""Toe (ball of the foot) height above its stance level in metres at 21 evenly spaced points of a swing, from the
last held frame to the first held frame again: the 25th percentile per point over 213 swings of real Bandai-Namco
walks, runs, turns, kicks and bows ("normal" style, canonical HumanML3D joints at 20 fps, contacts by geometry with
`foot_contact.detect_contacts`) whose toe travelled more than 0.3 m.  The shape is a real step's: the toe rises
steeply at toe-off, dips to about 1.2 cm at mid-swing, rises again as the foot flexes before heel strike."""
REAL_STRIDE = 1.29
"""Metres: median horizontal toe travel of those swings; a swing travelling this far or more gets the full profile."""


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def swing_gaps(held: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of not-held frames with a held frame on both sides."""
    held = np.asarray(held, dtype=bool)
    return [(start, end) for start, end in _runs(~held) if start > 0 and end < held.shape[0]]


def _widen_and_smooth(values: np.ndarray, width: int) -> np.ndarray:
    """A running max over 2*width+1 frames, then a running mean over the same window (never below `values`)."""
    if width < 1 or not values.any():
        return values
    padded = np.pad(values, width, mode="edge")
    widened = np.max(np.lib.stride_tricks.sliding_window_view(padded, 2 * width + 1), axis=-1)
    kernel = np.ones(2 * width + 1) / (2 * width + 1)
    smoothed = np.convolve(np.pad(widened, width, mode="edge"), kernel, mode="valid")
    return np.maximum(smoothed, values)


def swing_lift(toe: np.ndarray, held: np.ndarray, fps: float, floor: float, smoothing_seconds: float = 0.05,
               profile: np.ndarray = REAL_SWING_PROFILE, stride: float = REAL_STRIDE) -> np.ndarray:
    """(T,) metres to raise a foot so its toe (T, 3) clears `floor` + the profile during every swing.

    `held` (T,) bool: frames where the foot (ankle or toe) is held on a contact.  See the module docstring.
    """
    toe = np.asarray(toe, dtype=np.float64)
    held = np.asarray(held, dtype=bool)
    frames = toe.shape[0]
    needed = np.zeros(frames)
    points = np.linspace(0.0, 1.0, len(profile))
    for start, end in swing_gaps(held):
        last, first = start - 1, end  # the held frames on either side
        travel = float(np.linalg.norm(toe[first, [0, 2]] - toe[last, [0, 2]]))
        scale = min(1.0, travel / stride)
        phase = (np.arange(start, end) - last) / (first - last)
        clearance = floor + scale * np.interp(phase, points, profile)
        needed[start:end] = np.maximum(0.0, clearance - toe[start:end, 1])
    width = int(round(smoothing_seconds * fps))
    return np.where(held, 0.0, _widen_and_smooth(needed, width))
