# SPDX-License-Identifier: GPL-3.0-or-later
"""Gait regularity of a walk or run (NumPy): how steadily it steps.

The peak of the autocorrelation of the pelvis height and of the left-right ankle-height alternation at lags of
0.3-1.5 s, averaged: a steady real walk is close to 1, a walk that glides or wanders far below.  The evaluation
reports it per subset (``evaluation/body_motion.py``, ``evaluation/animator_subsets.py``), and generation ranks a
steady walk's candidate decodes by it (``generation/walk_candidates.py``).  Joints are (T, 22, 3), metres,
HumanML3D axes (Y up).
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputTensorError
from ..motion.skeleton import JOINT_INDEX
from .features import check_joints

GAIT_LAGS_SECONDS = (0.3, 1.5)


def autocorrelation_peak(signal: np.ndarray, fps: float, lags: tuple[float, float] = GAIT_LAGS_SECONDS) -> float:
    """The highest normalised autocorrelation of `signal` (detrended) at lags within `lags` seconds; 0 for a flat
    signal or one too short for the smallest lag."""
    values = np.asarray(signal, dtype=np.float64)
    values = values - np.polyval(np.polyfit(np.arange(len(values)), values, 1), np.arange(len(values)))
    energy = float(values @ values)
    first, last = int(round(lags[0] * fps)), min(int(round(lags[1] * fps)), len(values) // 2)
    if energy <= 1e-12 or last < first:
        return 0.0
    # unbiased: each lag's product normalised by the energies of the two overlapping parts
    peaks = []
    for lag in range(first, last + 1):
        a, b = values[:-lag], values[lag:]
        denominator = np.sqrt(float(a @ a) * float(b @ b))
        peaks.append(float(a @ b) / denominator if denominator > 1e-12 else 0.0)
    return max(peaks)


def gait_peaks(joints: np.ndarray, fps: float) -> tuple[float, float]:
    """The autocorrelation peaks (0.3-1.5 s) of the pelvis height and of the left-right ankle-height difference of
    joints (T, 22, 3), as given (`gait_regularity` checks them first)."""
    pelvis = joints[:, JOINT_INDEX["pelvis"], 1]
    alternation = joints[:, JOINT_INDEX["left_ankle"], 1] - joints[:, JOINT_INDEX["right_ankle"], 1]
    return autocorrelation_peak(pelvis, fps), autocorrelation_peak(alternation, fps)


def gait_regularity(joints: np.ndarray, fps: float) -> float:
    """Mean of the two `gait_peaks`: about 0.9-1.0 for a steady real walk."""
    if not np.isfinite(fps) or fps <= 0:
        raise InputTensorError(f"fps: must be a positive number, got {fps}")
    return 0.5 * sum(gait_peaks(check_joints(joints, min_frames=4), fps))
