# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion data of the 22-joint skeleton shared by tests and benchmarks: a small real motion (small random turns of
every joint and a slow drift of a root 0.9 m up, as the BVH writer, forward kinematics and MotionResult take it) and
the standing T-pose a pose constraint can hold."""

from __future__ import annotations

import numpy as np

from kmm_core.motion.skeleton import NUM_JOINTS, rest_positions, tpose_offsets


def small_turns(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(root translation (frames, 3), unit quaternions (frames, 22, 4) w-first) of small random turns."""
    rng = np.random.default_rng(seed)
    rotations = np.zeros((frames, NUM_JOINTS, 4))
    rotations[..., 0] = 1.0
    rotations[..., 1:] = rng.normal(0, 0.05, (frames, NUM_JOINTS, 3))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    translation = np.cumsum(rng.normal(0, 0.01, (frames, 3)), axis=0) + [0, 0.9, 0]
    return translation, rotations


def standing_pose() -> list[list[float]]:
    """The canonical T-pose's 22 world joint positions with the lowest joint on the floor (a reachable pose), as a
    pose constraint's `positions` list."""
    positions = rest_positions(tpose_offsets())
    positions[:, 1] -= positions[:, 1].min()
    return positions.round(3).tolist()
