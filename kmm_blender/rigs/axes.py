# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place where HumanML3D axes become Blender axes.

kmm_core works in HumanML3D axes (Y up, the character faces +Z, its left is +X); Blender scenes are Z up and
characters face -Y.  The change of basis (x, y, z) -> (x, -z, y) is a proper rotation (90 degrees about X), so it
maps rotations by conjugation and keeps left as +X.
"""

from __future__ import annotations

import numpy as np

# Column-vector matrix C with blender = C @ humanml3d.
HUMANML3D_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def positions_to_blender(positions: np.ndarray) -> np.ndarray:
    """Points or directions (..., 3) from HumanML3D axes to Blender axes."""
    positions = np.asarray(positions, dtype=np.float64)
    return np.stack([positions[..., 0], -positions[..., 2], positions[..., 1]], axis=-1)


def rotation_matrices_to_blender(matrices: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) acting on HumanML3D vectors -> the same rotations acting on Blender vectors."""
    return HUMANML3D_TO_BLENDER @ np.asarray(matrices, dtype=np.float64) @ HUMANML3D_TO_BLENDER.T
