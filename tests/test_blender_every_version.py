# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on as users get it, in every Blender .ci/run installs (the dev environment's 5.0, and 4.2, 4.5, 5.2): the
built zip installed, a timeline generated and a segment regenerated with the real worker; and a .blend with takes
saved by the add-on before its restructure (blender_scripts/old_takes_e26ec61.blend, Blender
4.2, commit e26ec61) opens and keeps working with this version, in the dev environment's Blender 5.0 and in the other
Blenders .ci/run installs (4.2, 4.5, 5.2): table, settings, target, stored bone map, provenance, the motion file
restored from the .blend, and Regenerate Segment on a KMM armature and on a retargeted Rigify rig."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from blender_scripts.runner import RESULT_PREFIX, SCRIPTS
from conftest import BACKEND_PYTHON313

pytestmark = pytest.mark.blender
REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHONS = [sys.executable] + [str(REPO_ROOT / name / "bin" / "python") for name in (".venv-bpy42", ".venv-bpy45",
                                                                                     ".venv-bpy52")
                              if (REPO_ROOT / name / "bin" / "python").is_file()]


def backend_for(blender_python: str) -> str:
    """The backend Python a user of that Blender has: in Blender 5.1+ (Python 3.13) the add-on makes it with
    Blender's own Python, so the 5.2 run drives the Python 3.13 backend .ci/run makes; the others this Python."""
    if Path(blender_python).parents[1].name == ".venv-bpy52" and BACKEND_PYTHON313.is_file():
        return str(BACKEND_PYTHON313)
    return sys.executable


def _run(python: str, script: str, *args: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    completed = subprocess.run([python, str(SCRIPTS / script), *args], capture_output=True, text=True,
                               timeout=900, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(lines[-1][len(RESULT_PREFIX):])


@pytest.fixture(scope="module", params=PYTHONS, ids=lambda python: Path(python).parents[1].name)
def blender_python(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def reopened(blender_python) -> dict:
    return _run(blender_python, "old_takes.py")


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    from kmm_blender import build_extension

    return build_extension.build(tmp_path_factory.mktemp("dist"))


def test_the_built_zip_installs_generates_and_regenerates_a_segment(blender_python, built_zip, tiny_bundle):
    outcome = _run(blender_python, "zip_generate_regenerate.py", str(built_zip), backend_for(blender_python),
                   str(tiny_bundle))
    assert outcome["enabled"] and "/extensions/user_default/kmm_motion/kmm_blender/jobs/runner.py" in outcome[
        "module_file"]
    name, start, end, armature = outcome["generated"]
    assert name.startswith("KMM walk forward") and (start, end) == (1.0, 96.0) and armature == "KMM Skeleton"
    new_name, active, markers = outcome["regenerated"]
    assert " seg2" in new_name and active and markers == ["turn right", "walk forward"]


def test_the_table_settings_target_and_bone_map_read_back(reopened):
    assert reopened["rows"] == [["walk", 1, 60], ["turn", 61, 110], ["walk back", 111, 170]]
    assert reopened["seed"] == [7, False] and reopened["target"] == "metarig" and reopened["stored_map"]


@pytest.mark.parametrize("armature", ["KMM Skeleton", "metarig"])
def test_an_old_take_regenerates_a_segment_in_place(reopened, armature):
    take = reopened[armature]
    assert take["source_restored"], take  # its file was deleted after saving: the bytes came from the .blend
    assert take["new_active"] and " seg2" in take["new_take"] and take["same_channels"]
    assert take["outside_kept"] and take["inside_changed"]
    assert take["markers"] == ["turn back", "walk", "walk back"]
    assert take["regenerated_carries_its_file"]  # (Blender truncated bytes written over a copied take's at a 0 byte)
