# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer's bulk key writing (foreach_set of float32 co and uint8 interpolation, handles_recalc) writes exactly
the keys a key-by-key write gives (insert, interpolation per key, FCurve.update()): frames, values, handles, handle
types and interpolation, bit for bit, on a real retargeted take and an exact one, in this venv's Blender and in
each repository Blender venv there is (.venv-bpy42/45/52: legacy and channelbag F-curve APIs).
(tests/blender_scripts/keys_per_key_reference.py)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from blender_scripts.runner import RESULT_PREFIX, SCRIPTS

pytestmark = pytest.mark.blender

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHONS = [sys.executable] + [str(REPO_ROOT / name / "bin" / "python") for name in
                              (".venv-bpy42", ".venv-bpy45", ".venv-bpy52")
                              if (REPO_ROOT / name / "bin" / "python").is_file()]
FCURVES = {"exact": 22 * 4 + 3, "retargeted": 21 * 4 + 3 + 3}  # retargeted: one bone in Euler (3 channels)
ALL_CHANNELS = ["location", "rotation_axis_angle", "rotation_euler", "rotation_quaternion"]


@pytest.fixture(scope="module", params=PYTHONS, ids=lambda python: Path(python).parents[1].name or python)
def comparison(request, humanml3d_fixture_dir) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run([request.param, str(SCRIPTS / "keys_per_key_reference.py")], capture_output=True,
                               text=True, timeout=300, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise AssertionError(f"{request.param} failed (exit {completed.returncode})\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


@pytest.mark.parametrize("take", ["exact", "retargeted"])
def test_bulk_keys_equal_keys_written_one_by_one(comparison, take):
    result = comparison[take]
    assert result["fcurves"] == result["reference_fcurves"] == FCURVES[take]
    assert result["missing"] == []
    assert result["keys_compared"] > 100 * FCURVES[take]  # the whole resampled clip on every F-curve
    assert result["differing"] == {"co": 0, "handle_left": 0, "handle_right": 0, "interpolation": 0,
                                   "handle_left_type": 0, "handle_right_type": 0}
    assert result["groups_differing"] == 0
    assert result["handle_y_spread"] > 0.01  # real auto-clamped handles, not flat ones


def test_the_retargeted_take_is_retargeted_and_keys_every_rotation_mode(comparison):
    assert comparison["retargeted_fits_exactly"] is False
    assert comparison["retargeted"]["channels"] == ALL_CHANNELS
