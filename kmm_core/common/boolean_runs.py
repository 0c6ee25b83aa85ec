# SPDX-License-Identifier: GPL-3.0-or-later
"""The one finder of runs of True in a 1-D mask: foot contacts, swings, a walk's tokens."""

from __future__ import annotations

import numpy as np


def true_runs(mask) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a 1-D boolean array (a NumPy array, a list, or a CPU tensor)."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
