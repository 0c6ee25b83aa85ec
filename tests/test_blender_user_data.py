# SPDX-License-Identifier: GPL-3.0-or-later
"""A take never costs the animator their own work and never keys garbage, in real headless Blender
(blender_scripts/user_data_kept.py): the rig's own action survives saving, every bone keeps its rotation mode and is
keyed in it (Generate and Regenerate Segment alike), degenerate rigs are refused by name before anything is written,
and a timeline Blender cannot hold leaves the segment table as it was."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def outcome() -> dict:
    return run_blender_script("user_data_kept.py", timeout=600)


def test_the_users_own_action_survives_a_take_and_a_saved_file(outcome):
    assert outcome["user_action_users_before"] == 1 and not outcome["user_action_fake_user_before"]
    assert outcome["user_action_after_reopen"] == {"fake_user": True}
    assert any("'UserWalk'" in warning and "kept" in warning for warning in outcome["warnings"]), outcome["warnings"]


def test_every_bone_keeps_its_rotation_mode_and_is_keyed_in_it(outcome):
    assert outcome["modes_after"] and outcome["modes_after_regeneration"]
    assert outcome["rotation_channels"] == {"upper_arm.L": ["rotation_euler"], "thigh.R": ["rotation_euler"],
                                            "forearm.L": ["rotation_axis_angle"], "spine.001": ["rotation_euler"],
                                            "spine": ["rotation_quaternion"]}
    recorded = outcome["recorded_modes"]  # the metarig's own shoulders are YXZ: kept too (they used to be switched)
    assert recorded == {"upper_arm.L": "XYZ", "thigh.R": "ZXY", "forearm.L": "AXIS_ANGLE", "spine.001": "YXZ",
                        "shoulder.L": "YXZ", "shoulder.R": "YXZ"}
    # the same take keyed in Euler / axis-angle poses the rig exactly as keyed in quaternions
    assert outcome["pose_difference_to_quaternion_twin"] < 1e-4


def test_a_regenerated_segment_is_keyed_in_the_bones_modes_and_keeps_the_keys_outside(outcome):
    assert outcome["regenerated_active"]
    assert outcome["euler_keys_outside_kept"] and outcome["euler_keys_inside_changed"]
    assert outcome["largest_euler_step_radians"] < 1.0  # continuous Euler curves: no turn-sized jump at the seams


def test_degenerate_rigs_are_refused_by_name_before_anything_is_written(outcome):
    assert "scaled to zero" in outcome["zero_scale_problem"] and "'metarig'" in outcome["zero_scale_problem"]
    assert "scaled to zero" in outcome["zero_scale_import"]
    assert "'FlatRig'" in outcome["flat_problem"] and "one point" in outcome["flat_problem"]
    assert "one point" in outcome["flat_import"]
    assert outcome["actions_unchanged"]


def test_a_timeline_beyond_blenders_frames_leaves_the_table_as_it_was(outcome):
    assert "segments[0].end" in outcome["huge_import"] and "beyond Blender's last frame" in outcome["huge_import"]
    assert "segment 2" in outcome["huge_rows"]
    assert outcome["table_kept"] == [["walk forward", 1, 60]]


def test_a_bone_map_nested_too_deeply_in_the_blend_is_a_problem_the_panel_can_show(outcome):
    assert "nests lists/objects too deeply" in outcome["nested_map_problem"], outcome["nested_map_problem"]
    assert "kmm_bone_map" in outcome["nested_map_problem"]
    label, problem = outcome["nested_map_described"]
    assert label == "none" and problem == outcome["nested_map_problem"]
