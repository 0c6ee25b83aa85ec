# SPDX-License-Identifier: GPL-3.0-or-later
"""The KMM armature and the keyframe writer in real headless Blender (one bpy process for the whole module)."""

from __future__ import annotations

import numpy as np
import pytest
from blender_scripts.runner import run_blender_script

from kmm_core.motion.resample import resampled_frame_count

pytestmark = pytest.mark.blender

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)


@pytest.fixture(scope="module")
def blender_result(humanml3d_fixture_dir):
    return run_blender_script("apply_motion.py")


def test_armature_has_one_named_bone_per_joint_with_skeleton_parents(blender_result):
    from kmm_core.motion import skeleton

    assert sorted(blender_result["bone_names"]) == sorted(JOINT_NAMES)
    for joint, parent in enumerate(skeleton.PARENTS):
        expected = skeleton.JOINT_NAMES[parent] if parent >= 0 else None
        assert blender_result["bone_parents"][skeleton.JOINT_NAMES[joint]] == expected


def test_armature_rest_is_the_tpose_standing_on_the_floor_facing_minus_y(blender_result):
    assert blender_result["rest_head_error"] < 1e-5
    assert abs(blender_result["rest_min_z"]) < 1e-6
    assert blender_result["tail_to_child_error"] < 1e-6
    x, y, z = blender_result["left_wrist_rest"]
    assert x > 0.7 and abs(y) < 0.05  # left arm straight out along +X (collar slightly back, as in SMPL)
    assert blender_result["head_rest"][2] > 1.4  # Z up
    assert all(length > 0.04 for length in blender_result["bone_lengths"].values())
    assert blender_result["missing_bones_of_new"] == [] and blender_result["missing_bones_of_none"] == 22


def test_evaluated_pose_matches_the_motion_joints_for_every_api_and_option(blender_result):
    errors = blender_result["position_errors"]
    assert len(errors) == 8
    for case, error in errors.items():
        assert error < 0.01, f"{case}: bone heads {error * 100:.2f} cm away from the motion's joints"
    assert blender_result["nla_error"] < 0.01
    # The project's IK reproduces the recorded clip, so the Blender pose lands on the real HumanML3D joints too.
    assert len(blender_result["errors_vs_recorded"]) == 4
    for case, error in blender_result["errors_vs_recorded"].items():
        assert error < 0.01, f"{case}: {error * 100:.2f} cm from the recorded joints"
    assert blender_result["interpolated_bone_length_error"] < 1e-4


def test_each_write_is_one_new_action_with_the_expected_frames(blender_result):
    assert blender_result["actions_added"] == 8
    assert blender_result["fcurve_count"] == 22 * 4 + 3
    for case, (first, last, count) in blender_result["frame_ranges"].items():
        assert first == 10 and last - first + 1 == count, case
    markers = blender_result["markers"]
    assert [name for name, _ in markers] == ["a person walks forward", "then turns around"]
    # The last take was written frame-per-frame from frame 10; segment 2 starts at motion frame 85.
    assert markers[0][1] == 10 and markers[1][1] == 10 + 85
    # Resampled takes (20 -> 24 fps) place the second segment's marker at the same time: 85 / 20 s after the start.
    for case, marker_frames in blender_result["marker_frames"].items():
        expected_second = 10 + (round(85 * 24 / 20) if case.endswith("/RESAMPLE") else 85)
        assert marker_frames == [10, expected_second], case


def test_nla_push_leaves_the_take_in_a_strip(blender_result):
    assert blender_result["nla_tracks"] == ["KMM take"]
    assert blender_result["nla_strip_range"] == [1.0, float(round(169 * 24 / 20) + 1)]
    assert blender_result["action_after_nla"] is None


def test_writing_is_fast(blender_result):
    assert blender_result["write_1000_frames_seconds"] < 1.0
    assert np.median(list(blender_result["write_seconds"].values())) < 0.5


def test_rejected_motion_or_target_adds_nothing(blender_result):
    assert "(T, 22, 4)" in blender_result["rejections"]["bad_shape"]
    assert "not an armature" in blender_result["rejections"]["not_armature"]
    assert blender_result["actions_added_by_rejections"] == 0


def test_motion_for_another_skeleton_is_retargeted_not_refused(blender_result):
    first, last = blender_result["other_rest_take_frames"]
    assert last - first + 1 == resampled_frame_count(10, 20.0, 24.0)  # kmm_core.motion.resample's one frame-count rule
