# SPDX-License-Identifier: GPL-3.0-or-later
"""What a number read from a user's file (timeline JSON/TOML, a path, a constraint) must be before any arithmetic.

JSON's integers have no size limit: a 400-digit integer is a valid ``int`` but raises OverflowError in any
arithmetic with floats, and ``true`` is an ``int`` in Python.  Every reader of such values asks here, so the three
that do (``generation/timeline.py``, ``paths.py``, ``constraints.py``) agree on what a finite number is.
"""

from __future__ import annotations

import math


def is_number(value: object) -> bool:
    """An int or float, not a bool (finite or not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite_float(value: object) -> float | None:
    """`value` as a finite float, or None when it is not a number, not finite, or too large for a float."""
    if not is_number(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def is_finite_number(value: object) -> bool:
    """A number (not a bool) that is also a finite float."""
    return finite_float(value) is not None
