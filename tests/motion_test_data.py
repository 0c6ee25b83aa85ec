# SPDX-License-Identifier: GPL-3.0-or-later
"""A small real motion of the 22-joint skeleton shared by the motion-file tests and benchmarks: small random turns of
every joint and a slow drift of a root 0.9 m up, as the BVH writer, forward kinematics and MotionResult take it."""

from __future__ import annotations

import numpy as np

from kmm_core.motion.skeleton import NUM_JOINTS


def small_turns(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(root translation (frames, 3), unit quaternions (frames, 22, 4) w-first) of small random turns."""
    rng = np.random.default_rng(seed)
    rotations = np.zeros((frames, NUM_JOINTS, 4))
    rotations[..., 0] = 1.0
    rotations[..., 1:] = rng.normal(0, 0.05, (frames, NUM_JOINTS, 3))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    translation = np.cumsum(rng.normal(0, 0.01, (frames, 3)), axis=0) + [0, 0.9, 0]
    return translation, rotations
