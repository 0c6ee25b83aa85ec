# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's panel workflow in real headless Blender: table operators, timeline files, validation, applying
motion files, and non-blocking generation through a real worker subprocess (a protocol-true stand-in until the
torch server exists) including cancel, crash and load failures.  One bpy process for the module."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def workflow(humanml3d_fixture_dir):
    return run_blender_script("panel_workflow.py")


def test_table_operators_keep_rows_contiguous(workflow):
    # 24 fps scene: new rows last 2 s (48 frames) and follow the previous one.
    assert workflow["after_add"] == [["walk forward", 1, 48], ["wave the left hand", 49, 96], ["sit down", 97, 144]]
    assert workflow["after_duplicate"][1] == ["walk forward", 49, 96]
    assert [r[0] for r in workflow["after_move_down"]] == ["walk forward", "wave the left hand", "walk forward",
                                                          "sit down"]
    assert workflow["active_after_move"] == 2
    assert workflow["after_remove"] == workflow["after_add"]
    assert workflow["after_fit"] == [["walk forward", 1, 40], ["wave the left hand", 41, 80], ["sit down", 81, 120]]


def test_problems_are_reported_on_their_rows_and_block_generation(workflow):
    assert workflow["row_problems"] == {"1": "prompt: the prompt is empty",
                                        "2": "start: a gap of 3 frame(s) after the previous segment (ends at frame 80)"}
    assert "segment 2" in workflow["generate_invalid"] and "empty" in workflow["generate_invalid"]
    assert workflow["error_after_invalid"] == "segment 2: prompt: the prompt is empty"
    assert workflow["actions_added_by_invalid"] == 0
    assert workflow["problems_after_fix"] == 0


def test_timeline_export_and_import_round_trip(workflow):
    assert workflow["export"] == "FINISHED"
    exported = workflow["exported_json"]
    assert exported["fps"] == 24
    assert [s["prompt"] for s in exported["segments"]] == ["walk forward", "wave the left hand", "sit down"]
    assert workflow["reimported"] == [[s["prompt"], s["start"], s["end"]] for s in exported["segments"]]
    # FlowMDM lengths are 20 fps frames: 40 -> 2 s -> 48 frames at 24 fps, laid out from the scene start.
    assert workflow["imported_flowmdm"] == [["run", 1, 48], ["jump", 49, 120]]
    assert "broken.json" in workflow["import_broken"] and "segments[0]" in workflow["import_broken"]
    assert workflow["table_after_broken_import"] == workflow["imported_flowmdm"]


def test_motion_file_becomes_a_take_on_a_new_armature(workflow):
    assert workflow["apply_file"] == "FINISHED"
    assert workflow["target_after_apply"] == "KMM Skeleton"
    assert workflow["action_after_apply"] == "KMM walk"


def test_generation_does_not_block_and_writes_one_take(workflow):
    assert workflow["start_seconds"] < 0.5
    assert workflow["running_right_after_start"] is True
    assert workflow["ok_run"]["ticks"] > 1
    assert workflow["ok_job"] == ["done", "", 1]
    assert workflow["ok_actions_added"] == 1
    assert workflow["ok_active_action"] == "KMM walk forward +2 seed 7"
    status, error, last_takes, running = workflow["ok_status"]
    assert status.startswith("Done") and error == "" and last_takes == "KMM walk forward +2 seed 7" and running is False
    assert workflow["ok_markers"] == [1, 42, 83]  # one marker per segment, on the scene frames of the table
    assert workflow["variations_actions_added"] == 2
    # The stand-in's two variations are one motion a metre apart: the panel says so, naming both takes.
    first, second = sorted(workflow["variations_takes"])
    alike = [message for level, message in workflow["variations_reports"]
             if level == "WARNING" and "came out as the same motion" in message]
    assert len(alike) == 1 and f'"{second}" like "{first}"' in alike[0] and "add a style" in alike[0], \
        workflow["variations_reports"]


def test_cancel_crash_and_load_failure_change_nothing_and_are_shown(workflow):
    slow = workflow["slow"]
    assert slow["state"] == "cancelled" and max(slow["progress_seen"]) > 0
    crash = workflow["crash"]
    assert crash["state"] == "failed" and "stopped unexpectedly" in crash["panel_error"]
    assert "out of memory" in crash["panel_detail"] and "Device to CPU" in crash["advice"]
    load = workflow["fail_load"]
    assert load["state"] == "failed" and "could not be loaded" in load["panel_error"] and load["advice"]
    for case in (slow, crash, load):
        assert case["actions_added"] == 0 and case["objects_added"] == 0 and case["panel_running"] is False
    state, error, advice, added = workflow["no_python"]
    assert state == "failed" and "no backend is installed" in error and "Install Backend" in advice and added == 0


def test_headless_blocking_generation_and_release(workflow):
    assert len(workflow["blocking_takes"]) == 1 and workflow["blocking_actions_added"] == 1
    assert workflow["worker_exit_after_release"] == 0
    assert workflow["session_after_release"] is True
    assert workflow["unregistered_clean"] is True
