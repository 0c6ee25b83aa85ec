# SPDX-License-Identifier: GPL-3.0-or-later
"""The Lock Feet, Loop and Path options in real Blender: the Settings sub-panel shows them, Lock Feet is on by
default, the generate request carries them (a loop needs a single row; a curve or empties become the path), and a
headless batch run with --no-foot-lock produces a take from an unlocked MotionResult (real worker, shipped model)."""

from __future__ import annotations

import json
import sys

import pytest
from blender_scripts.runner import run_blender_script
from test_blender_real_worker import run_batch

from kmm_core.bundle.model_bundle import default_bundle_path
from kmm_core.motion.motion_result import MotionResult

pytestmark = pytest.mark.blender


def test_lock_feet_loop_and_path_are_settings_options_that_reach_the_request():
    result = run_blender_script("motion_options.py")
    assert result["default"] is True and result["name"] == "Lock Feet"
    assert "foot_lock" in result["settings_panel_draws"] and "loop" in result["settings_panel_draws"]
    assert result["requests"] == {"True": True, "False": False}
    assert result["loop_request"] is True
    assert result["loop_two_rows"] == "Loop: a loop is one prompt cycling; the table has 2 segments"
    assert "path_object" in result["settings_panel_draws"]
    assert result["curve_path"] == [[0.0, 0.0], [0.0, 2.0], [1.0, 3.0]]
    assert result["empty_path"] == [[0.0, -1.0], [1.0, -1.0], [2.0, -1.0]]


def test_batch_no_foot_lock_makes_a_take_from_unlocked_motion(tmp_path):
    run_blender_script("batch_scene.py", "make", str(tmp_path / "scene.blend"))
    (tmp_path / "timeline.json").write_text(json.dumps({"fps": 24, "segments": [
        {"prompt": "walk forward", "start": 1, "end": 48}]}))
    flags = []
    for extra in ((), ("--no-foot-lock",)):
        workdir = tmp_path / ("off" if extra else "on")
        workdir.mkdir()
        completed = run_batch(workdir, "--blend", str(tmp_path / "scene.blend"), "--timeline",
                              str(tmp_path / "timeline.json"), "--python", sys.executable, "--checkpoint",
                              str(default_bundle_path()), "--device", "cpu", "--seed", "2", "--save", "out.blend",
                              *extra)
        assert completed.returncode == 0, completed.stderr[-3000:]
        saved = run_blender_script("inspect_take.py", str(workdir / "out.blend"))
        (take,) = saved["takes"].values()
        # the batch removed its motion folder: the take's own copy, carried in the .blend, is what it was made from
        flags.append(MotionResult.load(take["motion_file"]).foot_lock)
    assert flags == [True, False]
