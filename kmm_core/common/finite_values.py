# SPDX-License-Identifier: GPL-3.0-or-later
"""The last check before anything is written or keyed: no NaN or infinite value leaves the project.

Every writer of motion (MotionResult .npz, BVH, retargeted BVH, SMPL .npz) and the add-on's keyer call
`require_finite` on the numbers they are about to write, after every earlier check, so a degenerate input that
slipped through (a rig with no size, a zero-scaled object) ends as a clear error instead of a file of `nan`.
"""

from __future__ import annotations

import numpy as np

from .errors import KMMError


class NonFiniteError(KMMError, ValueError):
    """Numbers about to be written or keyed are NaN or infinite (names the output and the field)."""


def require_finite(where: str, **values: object) -> None:
    """Raise NonFiniteError naming `where`, the field and the first bad index when any value is NaN or infinite."""
    for field, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(f"{where}: {field} holds {int(bad.sum())} NaN or infinite value(s) (the first at "
                                 f"index {first}); nothing was written")
