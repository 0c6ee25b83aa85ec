# SPDX-License-Identifier: GPL-3.0-or-later
"""Partial key poses in real Blender (blender_scripts/partial_keys.py): the right arm keyed alone at two frames of a
walk, on the Rigify rig and on a Mixamo-named rig, holds that arm only; the take's right wrist passes within 3 cm of
the keyed place (seen from the chest), the legs still walk, undo restores the keys; bad partial keys are refused by
name with nothing changed, Import Timeline keeps a file's constraints, and too many keyed frames are refused."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

pytestmark = pytest.mark.blender
RIGHT_ARM = ["right_collar", "right_shoulder", "right_elbow", "right_wrist"]


@pytest.fixture(scope="module")
def partial_run() -> dict:
    return run_blender_script("partial_keys.py", timeout=900)


@pytest.mark.parametrize("rig", ["rigify", "mixamo"])
def test_right_arm_keys_hold_the_arm_and_the_legs_still_walk(partial_run, rig):
    result = partial_run[rig]
    assert result["operator"] == ["FINISHED"] and result["pose_frames"] == [40, 110], result
    assert result["pose_joints"] == [RIGHT_ARM, RIGHT_ARM]
    assert result["summaries"] == ["frame 40: right arm", "frame 110: right arm"]
    assert result["job"] == ["done", ""], result["job"]
    assert result["take"] != f"{rig}_arm_keys"
    # The keyed arm, seen from the chest, is met on the rig (retargeting's round trip included): within 3 cm
    # (measured 2026-11-24: Rigify rig 0.02 and 0.02 cm, Mixamo-named rig 0.01 and 0.6 cm; the Rigify rig was 8.0 and
    # 2.2 cm while its chest, which carries the spine2 and spine3 points too, turned as a compromise between them).
    assert max(result["wrist_error_m"]) < 0.03, result
    # The legs are the model's walk: the hips travel (at least 2 leg lengths in 5 s) and the feet take turns ahead.
    assert result["pelvis_travel_m"] > 2 * result["leg_m"], result
    assert result["foot_swaps"] >= 4, result
    assert result["undo_restores"]


def test_bad_partial_keys_are_refused_by_name_and_change_nothing(partial_run):
    stored = partial_run["bad"]["stored_key"]
    assert "constraints[0].joints[1]: unknown joint 'right_hand'" in stored["message"], stored
    assert stored["unchanged"] and not stored["running"]
    imported = partial_run["bad"]["import"]
    assert "constraints[0].joints[1]: unknown joint 'right_hand'" in imported["message"], imported
    assert imported["unchanged"] and not imported["running"]
    # a NaN in a stored key: named by the constraint and field, not by the scene property holding them
    nan = partial_run["bad"]["nan_stored_key"]
    assert "constraints[0].positions[5] (right_knee)" in nan["message"], nan
    assert "kmm.constraint_poses" not in nan["message"] and nan["unchanged"] and not nan["running"]
    # Use My Keys with a stored map naming a bone the rig lacks: refused by name (it was a traceback)
    missing = partial_run["bad"]["missing_bone"]
    assert "Use My Keys as Constraints:" in missing["message"] and "mixamorig:NoSuchHand" in missing["message"]
    assert "Traceback" not in missing["message"] and missing["unchanged"] and not missing["running"]


def test_import_timeline_keeps_the_files_constraints(partial_run):
    kept = partial_run["import_keeps"]
    assert kept["operator"] == ["FINISHED"]
    assert kept["types"] == ["pose", "facing"] and kept["frames"] == [60, 80]
    assert kept["joints"][0] == RIGHT_ARM and kept["rows"] == [["a person walks forward", 1, 90]]
    # The panel shows which frames and which joints are held.
    assert partial_run["panel_labels"] == ["frame 60: right arm", "frame 80: facing"]


def test_too_many_keyed_frames_are_refused_naming_the_count(partial_run):
    cap, keyed = partial_run["cap_value"], partial_run["cap_keyed"]
    assert keyed > cap
    assert f"{keyed} keyed frames inside the timeline, at most {cap}" in partial_run["cap"], partial_run["cap"]


def test_reading_the_keys_can_be_cancelled_with_nothing_changed(partial_run):
    """The panel's operator reads the keys in steps (modal, on a timer; here one keyed frame or one step of the fit
    per timer event): events other than the timer wait, Esc
    midway puts the scene's frame back and leaves the kept key poses as they were; run to the end, the steps store
    the same poses as the all-at-once path."""
    cancel = partial_run["cancel"]
    assert cancel["returned"] == [["RUNNING_MODAL"], ["RUNNING_MODAL"], ["CANCELLED"]], cancel
    assert cancel["midway"] == {"frame": 40, "fraction": 0.25}  # one of two keyed frames read, the frame moved
    assert cancel["frame_after"] == 7 and cancel["unchanged"] and cancel["ended"] == 1
    assert cancel["reports"] == [["WARNING", "Use My Keys as Constraints cancelled: the key poses are unchanged"]]
    finish = partial_run["modal_finish"]
    assert finish["returned"] == ["FINISHED"] and finish["ended"] == 1, finish
    # One step per keyed frame read, then one per fixed-point step of the fit (at most 12) and the last one.
    assert 2 + 1 < finish["steps"] <= 2 + 12 + 1, finish
    assert finish["same_as_at_once"] and finish["poses"] == 2 and finish["frame_after"] == 7
    assert finish["reports"] == [["INFO", "2 key pose(s): frame 40: right arm; frame 110: right arm"]]
