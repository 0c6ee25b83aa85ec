# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of signals over time (NumPy): the Gaussian smoothing that HumanML3D's facing direction, the decoded
features, root paths and the knee's bend plane share."""

from __future__ import annotations

import numpy as np


def gaussian_smooth(signal: np.ndarray, sigma: float, axis: int = 0, truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter along ``axis`` with edge replication, truncated at ``truncate`` sigma.

    Same kernel and border handling as ``scipy.ndimage.gaussian_filter1d(mode="nearest", truncate=truncate)``, which
    HumanML3D uses to smooth the facing direction; written here so the torch- and scipy-free core has no extra
    dependency.
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    moved = np.moveaxis(np.asarray(signal, dtype=np.float64), axis, 0)
    padded = np.concatenate([np.repeat(moved[:1], radius, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)])
    # Sum of shifted copies: length T windows, cheap for T of a few hundred and kernels of ~160 taps.
    smoothed = np.zeros_like(moved)
    frames = moved.shape[0]
    for tap, weight in enumerate(kernel):
        smoothed += weight * padded[tap:tap + frames]
    return np.moveaxis(smoothed, 0, axis)
