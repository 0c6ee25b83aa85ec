# SPDX-License-Identifier: GPL-3.0-or-later
"""Change the frame rate of motion arrays: linear interpolation for positions, slerp for rotations.

Both keep the first frame and sample at times k / target_fps that do not pass the last source frame, so a clip
of T frames at fps_in becomes floor((T - 1) * fps_out / fps_in) + 1 frames (at least one).
"""

from __future__ import annotations

import numpy as np

from .errors import KMMError
from .rotations import qnormalize, slerp


def _sample_points(num_frames: int, source_fps: float, target_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target frame: the source frame before it, the one after it, and the blend weight between them."""
    if not (source_fps > 0 and target_fps > 0):
        raise KMMError(f"frame rates must be positive, got source {source_fps} and target {target_fps}")
    if num_frames < 1:
        raise KMMError("cannot resample a motion with no frames")
    duration = (num_frames - 1) / source_fps
    # The small tolerance keeps the last frame when the duration is an exact multiple of the target step.
    count = int(np.floor(duration * target_fps + 1e-6)) + 1
    source_time = np.arange(count) * (source_fps / target_fps)
    before = np.minimum(np.floor(source_time + 1e-9).astype(np.int64), num_frames - 1)
    after = np.minimum(before + 1, num_frames - 1)
    weight = np.clip(source_time - before, 0.0, 1.0)
    return before, after, weight


def resample_positions(values: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Linearly resample (T, ...) values (positions, translations) along the first axis."""
    values = np.asarray(values)
    before, after, weight = _sample_points(values.shape[0], source_fps, target_fps)
    weight = weight.reshape((-1,) + (1,) * (values.ndim - 1))
    return (1.0 - weight) * values[before] + weight * values[after]


def make_quaternions_continuous(quaternions: np.ndarray) -> np.ndarray:
    """Flip signs of (T, ..., 4) quaternions so that each frame is on the same hemisphere as the one before
    (q and -q are the same rotation; interpolation and curve editors want the nearer one)."""
    q = np.array(quaternions, dtype=np.float64, copy=True)
    for frame in range(1, q.shape[0]):
        flip = np.sum(q[frame] * q[frame - 1], axis=-1, keepdims=True) < 0.0
        q[frame] = np.where(flip, -q[frame], q[frame])
    return q


def resample_rotations(quaternions: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Resample (T, ..., 4) unit quaternions (w, x, y, z) with slerp along the shortest arc."""
    quaternions = qnormalize(np.asarray(quaternions, dtype=np.float64))
    before, after, weight = _sample_points(quaternions.shape[0], source_fps, target_fps)
    weight = np.broadcast_to(weight.reshape((-1,) + (1,) * (quaternions.ndim - 2)),
                             (len(weight),) + quaternions.shape[1:-1])
    return make_quaternions_continuous(slerp(quaternions[before], quaternions[after], weight))
