# SPDX-License-Identifier: GPL-3.0-or-later
"""The one smoothstep: every fade in and out (locks, blends, edits, loops, retarget weights, prompt kinds)."""

from __future__ import annotations

import numpy as np


def smoothstep(x, start: float = 0.0, end: float = 1.0):
    """0 up to `start`, 1 from `end`, 3s^2 - 2s^3 between (s the clipped position of `x` from `start` to `end`); an
    array for an array, a NumPy float for a number."""
    s = np.clip((x - start) / (end - start), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)
