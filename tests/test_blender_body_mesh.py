# SPDX-License-Identifier: GPL-3.0-or-later
"""The SMPL body mesh on the KMM armature, in real headless Blender (one bpy process for the whole module).

Synthetic SMPL-family model files (one tetrahedron per joint; tests/smpl_synthetic_model.py) stand in for the real,
unshippable ones; the motion is the real HumanML3D fixture clip.  See blender_scripts/body_mesh.py.
"""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

from kmm_core.motion.skeleton import JOINT_NAMES  # the bone names, pinned by test_blender_keyframes.py

pytestmark = pytest.mark.blender

CASES = ("tpose/smpl", "apose/smpl", "apose/smplh")


@pytest.fixture(scope="module")
def blender_result(humanml3d_fixture_dir, tmp_path_factory):
    return run_blender_script("body_mesh.py", str(tmp_path_factory.mktemp("body_mesh")), str(humanml3d_fixture_dir))


@pytest.mark.parametrize("case", CASES)
def test_mesh_is_the_whole_model_skinned_to_the_armature(blender_result, case):
    body = blender_result["cases"][case]
    armature = f"KMM {case}"
    assert body["parent"] == armature and body["parent_type"] == "OBJECT"
    assert body["modifiers"] == [["ARMATURE", armature]]
    assert body["vertex_groups"] == list(JOINT_NAMES)
    assert body["vertices"] == body["model_vertices"] and body["faces"] == body["model_vertices"]  # 4 faces / 4 verts
    # Joints beyond the 22 body joints (SMPL hands, SMPL-H fingers) are skinned to their wrists.
    assert body["extra_groups"] == ["left_wrist", "right_wrist"]
    assert body["found_again"]
    assert body["seconds"] < 1.0


@pytest.mark.parametrize("case", CASES)
def test_bound_mesh_sits_on_the_rest_pose_and_follows_the_take(blender_result, case):
    body = blender_result["cases"][case]
    # Each joint's tetrahedron centre on its joint at rest, then on the posed bone heads and the clip's joints.
    assert body["rest_error"] < 1e-4
    assert body["vs_bones"] < 1e-3, f"skinned tetrahedra {body['vs_bones'] * 100:.2f} cm from the bone heads"
    assert body["vs_joints"] < 0.015, f"skinned tetrahedra {body['vs_joints'] * 100:.2f} cm from the clip's joints"


def test_binding_turns_the_model_rest_pose_into_ours(blender_result):
    # SMPL's hand joints, bound by the wrist's rotation, continue our forearm whatever the model's rest arm angle.
    for case in ("tpose/smpl", "apose/smpl"):
        assert blender_result["cases"][case]["hand_error"] < 1e-3, case
    # The A-pose model's arm tetrahedra are turned back up by exactly the 45 degrees its arms were lowered.
    assert blender_result["apose_vs_tpose_bound"] < 1e-4
    assert blender_result["apose_vs_tpose_unturned"] > 0.01  # (the comparison can tell a missing turn apart)


def test_malformed_model_is_a_clear_warning_and_changes_nothing(blender_result):
    assert "bad.npz" in blender_result["malformed_error"] and "weights" in blender_result["malformed_error"]
    assert blender_result["malformed_warning"].startswith("KMM: the take is applied, but the body mesh")
    assert "missing key(s) weights" in blender_result["malformed_warning"]
    assert "weights" in blender_result["wrong_shape_warning"] and "(96, 3)" in blender_result["wrong_shape_warning"]
    assert blender_result["malformed_counts_unchanged"]
    assert blender_result["malformed_children"] == 0


def test_preference_adds_the_body_once_and_only_when_set(blender_result):
    plain = blender_result["no_preference"]
    assert plain == {"children": 0, "warnings": [], "new_meshes": 0, "new_objects": 1}  # just the armature
    with_preference = blender_result["with_preference"]
    assert len(with_preference["bodies"]) == 1  # a second take on the same armature does not add another body
    assert with_preference["warnings"] == [] and with_preference["takes"] == 2
    bad = blender_result["bad_preference"]
    assert bad["new_actions"] == 1 and bad["action"].startswith("KMM motion")  # the take stays
    assert bad["children"] == 0 and len(bad["warnings"]) == 1 and "weights" in bad["warnings"][0]
