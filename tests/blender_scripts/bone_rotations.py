# SPDX-License-Identifier: GPL-3.0-or-later
"""take_keys.bone_local_rotations (quaternion form) against the matrix form it replaced, L = B q B^T with
B = R^T C, on a smooth random motion and random rest frames; emits the largest difference and the first-key signs.

    bone_rotations.py
"""

from __future__ import annotations

import _harness

user_dir = _harness.start()
package = _harness.import_extension_package(user_dir)
import importlib  # noqa: E402

import numpy as np  # noqa: E402

take_keys = importlib.import_module(f"{_harness.PACKAGE_NAME}.kmm_blender.rigs.take_keys")
axes = importlib.import_module(f"{_harness.PACKAGE_NAME}.kmm_blender.rigs.axes")
rotations = importlib.import_module(f"{_harness.PACKAGE_NAME}.kmm_core.motion.rotations")

rng = np.random.default_rng(0)
steps = rotations.axis_angle_to_quat(rng.normal(scale=0.05, size=(300, 22, 3)))
local = np.empty((300, 22, 4))
local[0] = rotations.qnormalize(rng.normal(size=(22, 4)))  # some bones start with w < 0
for t in range(1, 300):
    local[t] = rotations.qmul(local[t - 1], steps[t])
local = take_keys.make_quaternions_continuous(local)
rest = rotations.quat_to_matrix(rotations.qnormalize(rng.normal(size=(22, 4))))

basis = np.swapaxes(rest, -1, -2) @ axes.HUMANML3D_TO_BLENDER
expected = take_keys.make_quaternions_continuous(
    rotations.matrix_to_quat(basis @ rotations.quat_to_matrix(local) @ np.swapaxes(basis, -1, -2)))
actual = take_keys.bone_local_rotations(local, rest)
_harness.emit({"shape": list(actual.shape), "max_difference": float(np.abs(actual - expected).max()),
               "first_w_min": float(actual[0, :, 0].min()), "input_first_w_min": float(local[0, :, 0].min())})
