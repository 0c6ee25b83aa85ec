# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on in every Blender it claims, not only the bpy 5.0.1 of the main venv: 4.2 LTS (`Action.fcurves`),
4.5 LTS (slotted actions and the channelbag helper), and 5.2 (the current Blender, Python 3.13 and numpy 2).

Each Python executable listed in KMM_EXTRA_BLENDER_PYTHONS (os.pathsep-separated; each must have a `bpy` wheel and
numpy, nothing else) runs tests/blender_scripts/apply_motion_any_version.py, which applies a real MotionResult made
from the HumanML3D fixture with every F-curve API that Blender offers and registers/unregisters the extension.
Without the variable, the venvs .ci/run creates are used: .venv-bpy42 (4.2.23), .venv-bpy45 (4.5) and .venv-bpy52
(5.2, Python 3.13).  The full add-on suite (real worker, backend install) runs on 5.0 only; see docs/blender.md
"Blender versions tested".
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from blender_scripts.runner import RESULT_PREFIX, SCRIPTS

pytestmark = pytest.mark.blender

ENV_VAR = "KMM_EXTRA_BLENDER_PYTHONS"
POSITION_TOLERANCE = 0.01  # metres: evaluated bone heads vs the motion's joints after the axis change
BONE_CHANNELS = 22 * 4 + 3  # a quaternion per joint plus the pelvis location
REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_BLENDER_PYTHONS = [REPO_ROOT / name / "bin" / "python" for name in (".venv-bpy42", ".venv-bpy45", ".venv-bpy52")]
PYTHONS = [entry for entry in os.environ.get(ENV_VAR, "").split(os.pathsep) if entry.strip()]
if not PYTHONS:
    PYTHONS = [str(python) for python in REPO_BLENDER_PYTHONS if python.is_file()]  # made by .ci/run


def _run(python: str) -> dict:
    if not Path(python).is_file():
        pytest.fail(f"{ENV_VAR} lists {python!r}, which is not a file")
    # The script gets a clean environment apart from what a subprocess needs: no PYTHONPATH from this venv leaks in.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run([python, str(SCRIPTS / "apply_motion_any_version.py")], capture_output=True,
                               text=True, timeout=300, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise AssertionError(f"{python} failed (exit {completed.returncode})\n--- stdout ---\n"
                             f"{completed.stdout[-4000:]}\n--- stderr ---\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


@pytest.fixture(scope="module", params=PYTHONS or [None], ids=lambda p: "unset" if p is None else p)
def version_result(request, humanml3d_fixture_dir) -> dict:
    if request.param is None:
        pytest.skip(f"{ENV_VAR} is not set: no older Blender (bpy wheel venv) to test; "
                    "e.g. KMM_EXTRA_BLENDER_PYTHONS=/path/to/venv-bpy42/bin/python")
    return _run(request.param)


def _expected_default_apis(version: tuple[int, ...]) -> set[str]:
    """4.2-4.3 only have Action.fcurves; 4.4 adds slotted actions (fcurve_ensure_for_datablock); the channelbag
    helper of bpy_extras arrives later (4.5 or 5.0, which has nothing else)."""
    if version < (4, 4, 0):
        return {"legacy"}
    if version < (4, 5, 0):
        return {"datablock"}
    if version < (5, 0, 0):
        return {"datablock", "channelbag"}
    return {"channelbag"}


def test_blender_is_a_supported_version(version_result):
    assert tuple(version_result["blender_version"]) >= (4, 2, 0)


def test_writer_picks_the_api_of_that_blender(version_result):
    version = tuple(version_result["blender_version"])
    assert version_result["default_api"] in _expected_default_apis(version)
    if version < (4, 4, 0):
        assert version_result["apis"] == ["legacy"]  # no slotted actions before 4.4
    else:
        assert "datablock" in version_result["apis"]


def test_every_api_reproduces_the_joints(version_result):
    errors = version_result["position_errors"]
    assert set(errors) == {f"{api}/{mode}" for api in version_result["apis"] for mode in ("RESAMPLE", "FRAME_PER_FRAME")}
    for case, error in errors.items():
        assert error < POSITION_TOLERANCE, f"{case}: {error * 100:.2f} cm"
    assert version_result["nla_error"] < POSITION_TOLERANCE


def test_takes_have_all_channels_markers_and_become_active(version_result):
    for case, count in version_result["fcurve_counts"].items():
        assert count == BONE_CHANNELS, case
        assert version_result["ungrouped_or_misgrouped"][case] == 0, case
        assert version_result["group_counts"][case] == 22, case
        assert version_result["active_is_take"][case], case
        # Resampled takes (motion 20 fps -> scene 24 fps) keep real time; the others use one frame per frame.
        scale = 24 / 20 if case.endswith("/RESAMPLE") else 1.0
        starts = [frame for _, frame in version_result["markers"][case]]
        assert starts == [10 + round(start * scale) for start in version_result["segment_starts"]], case
        last = 10 + round((version_result["motion_frames"] - 1) * scale)
        assert version_result["frame_ranges"][case] == [10.0, float(last)], case
    assert version_result["nla_action_after_push"] is None


def test_a_take_carries_its_motion_through_save_and_reload(version_result):
    assert version_result["restored_motion_identical"] is True


def test_extension_registers_and_unregisters_cleanly(version_result):
    before, registered, after = (version_result[key] for key in ("before_register", "registered", "after_unregister"))
    assert before["types"] == [] and not before["has_scene_kmm"]
    assert registered["has_scene_kmm"] and "KMM_PT_main" in registered["types"] and "generate" in registered["ops"]
    assert set(registered["scene_props"]) - set(before["scene_props"]) == {"kmm"}
    assert set(registered["wm_props"]) - set(before["wm_props"]) == {"kmm_job"}
    assert after == before
    assert version_result["registered_again"] == registered["types"]
