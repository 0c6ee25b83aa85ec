# SPDX-License-Identifier: GPL-3.0-or-later
"""take_keys.bone_local_rotations (quaternion form, fast) equals the matrix form it replaced, signs included
(real bpy in a subprocess: tests/blender_scripts/bone_rotations.py)."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script


@pytest.mark.blender
def test_quaternion_form_equals_matrix_form_with_the_same_signs():
    result = run_blender_script("bone_rotations.py")
    assert result["shape"] == [300, 22, 4]
    assert result["input_first_w_min"] < 0  # the sign rule is exercised
    assert result["first_w_min"] >= 0
    assert result["max_difference"] < 1e-9
