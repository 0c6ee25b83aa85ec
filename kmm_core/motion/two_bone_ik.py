# SPDX-License-Identifier: GPL-3.0-or-later
"""Analytic two-bone inverse kinematics (a leg hip-knee-ankle, or an arm shoulder-elbow-wrist), NumPy only.

Given the fixed upper joint, a target for the end joint, the two bone lengths and a "pole" direction saying where
the middle joint should bend towards, `solve_two_bone` returns the middle and end positions for every frame:

* bone lengths are kept exactly (the end joint is pulled back along the upper->target line when the target is
  out of reach, or pushed out when it is closer than |upper - lower|);
* the middle joint lies in the plane spanned by the upper->target line and the pole, on the pole's side, so the
  knee or elbow never flips to the other side as long as the pole does not; `bend_pole` builds a stable pole
  from the current middle joint with a fallback direction for nearly straight limbs, where the current bend plane
  is noise.

Shapes: every position is (..., 3) (frames first, any leading shape); lengths are scalars or (...,).  Torch-free,
no dependency on the skeleton, so retargeting onto other rigs can use it as well.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import KMMError

_EPS = 1e-9
REACH_MARGIN = 1e-6
"""Fraction of the full reach kept as slack, so a fully stretched limb still has a defined bend plane."""


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), _EPS)


def _perpendicular(vectors: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The part of `vectors` perpendicular to the unit `axis`."""
    return vectors - np.sum(vectors * axis, axis=-1, keepdims=True) * axis


def bend_pole(upper: np.ndarray, middle: np.ndarray, end: np.ndarray, fallback: np.ndarray,
              fallback_weight: float = 0.02) -> np.ndarray:
    """A pole direction (..., 3) from a posed limb: where `middle` sits off the upper->end line, plus
    `fallback_weight` (metres) of the `fallback` direction (e.g. the way the toes point, for a knee), which only
    matters when the limb is almost straight and the bend plane is undefined."""
    axis = _unit(np.asarray(end, dtype=np.float64) - upper)
    offset = _perpendicular(np.asarray(middle, dtype=np.float64) - upper, axis)
    return offset + fallback_weight * _unit(_perpendicular(np.asarray(fallback, dtype=np.float64), axis))


def solve_two_bone(upper: np.ndarray, target: np.ndarray, pole: np.ndarray, upper_length: float | np.ndarray,
                   lower_length: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Middle and end positions (..., 3) of a two-bone chain rooted at `upper` that reaches for `target`.

    The middle joint bends towards `pole` (a direction, not a point; only its part perpendicular to the
    upper->target line matters; when that part vanishes the bend plane is picked from the world axes).
    """
    upper = np.asarray(upper, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    pole = np.asarray(pole, dtype=np.float64)
    if upper.shape[-1:] != (3,) or target.shape != upper.shape or pole.shape != upper.shape:
        raise KMMError(f"two-bone IK: upper, target and pole must have the same shape (..., 3), got {upper.shape}, "
                       f"{target.shape} and {pole.shape}")
    first = np.asarray(upper_length, dtype=np.float64)
    second = np.asarray(lower_length, dtype=np.float64)
    if np.any(first <= 0) or np.any(second <= 0):
        raise KMMError("two-bone IK: bone lengths must be positive")
    to_target = target - upper
    distance = np.linalg.norm(to_target, axis=-1)
    axis = np.where((distance > _EPS)[..., None], to_target / np.maximum(distance, _EPS)[..., None],
                    np.array([0.0, -1.0, 0.0]))
    shortest = np.abs(first - second) * (1.0 + REACH_MARGIN) + _EPS
    longest = (first + second) * (1.0 - REACH_MARGIN)
    reach = np.clip(distance, shortest, longest)
    # Law of cosines: how far along the axis the middle joint sits, and how far off it.
    along = (first ** 2 + reach ** 2 - second ** 2) / (2.0 * reach)
    off = np.sqrt(np.maximum(first ** 2 - along ** 2, 0.0))
    bend = _perpendicular(pole, axis)
    # A pole along the axis says nothing: bend towards whichever world axis is most perpendicular to the limb.
    world = np.eye(3)[np.argmin(np.abs(axis), axis=-1)]
    bend = np.where((np.linalg.norm(bend, axis=-1) > 1e-8)[..., None], bend, _perpendicular(world, axis))
    bend = _unit(bend)
    middle = upper + along[..., None] * axis + off[..., None] * bend
    end = upper + reach[..., None] * axis
    return middle, end
