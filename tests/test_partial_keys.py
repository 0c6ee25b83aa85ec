# SPDX-License-Identifier: GPL-3.0-or-later
"""Key poses an animator can trust (no bpy): partial key poses in the timeline file and their refusals, which joints a
rig's keyed bones hold, all of a rig's keyed poses fitted in one pass (the same poses as one at a time), and
generation with the shipped model keeping planted feet planted around keys while meeting them (a small run of
benchmarks/measure_key_pose_contacts.py)."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from kmm_core.generation.timeline import Timeline, TimelineError
from kmm_core.motion.skeleton import rest_positions, tpose_offsets
from kmm_core.retarget.bone_map import best_preset_map
from kmm_core.retarget.rig_pose import held_summary, keyed_joints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
STANDING = rest_positions(tpose_offsets()) + np.array([0.0, 0.93, 0.0])
BASE = {"fps": 30, "segments": [{"prompt": "a person walks", "start": 1, "end": 120}]}
RIGHT_ARM = ("right_collar", "right_shoulder", "right_elbow", "right_wrist")


def timeline_with(*constraints) -> Timeline:
    return Timeline.from_dict({**BASE, "constraints": list(constraints)})


def test_a_partial_pose_round_trips_and_holds_only_its_joints():
    timeline = timeline_with({"type": "pose", "frame": 10, "positions": STANDING.tolist(),
                              "joints": ["right_elbow", "right_shoulder"]},
                             {"type": "pose", "frame": 10, "positions": STANDING.tolist(), "joints": ["root"]})
    assert Timeline.from_dict(timeline.to_dict()) == timeline
    arm, root = timeline.constraints
    assert timeline.to_dict()["constraints"][0]["joints"] == ["right_shoulder", "right_elbow"]
    assert arm.is_partial and arm.placed_joints() == () and root.held == (0,) and root.placed_joints() == (0,)


@pytest.mark.parametrize(("joints", "message"), [
    (["right_shoulder", "right_hand"], "constraints[0].joints[1]: unknown joint 'right_hand' (one of: pelvis,"),
    ([], "constraints[0].joints: must be a non-empty list of joint names"),
    ("right_arm", "constraints[0].joints: must be a non-empty list of joint names"),
    (["root", "pelvis"], "constraints[0].joints[1]: pelvis is named twice"),
])
def test_bad_joint_lists_are_refused_naming_the_constraint_and_field(joints, message):
    with pytest.raises(TimelineError) as error:
        timeline_with({"type": "pose", "frame": 10, "positions": STANDING.tolist(), "joints": joints})
    assert message in str(error.value)


def test_two_poses_at_one_frame_may_not_hold_the_same_joint():
    with pytest.raises(TimelineError) as error:
        timeline_with({"type": "pose", "frame": 10, "positions": STANDING.tolist(), "joints": list(RIGHT_ARM)},
                      {"type": "pose", "frame": 10, "positions": STANDING.tolist()})
    assert "constraints[1].frame: conflicts with constraints[0]: both key the right_collar at frame 10" in str(
        error.value)


MIXAMO = ["Hips", "Spine", "Spine1", "Spine2", "Neck", "Head"] + [
    f"{side}{part}" for side in ("Left", "Right")
    for part in ("Shoulder", "Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot", "ToeBase", "HandIndex1")]
MIXAMO_PARENTS = {"Hips": None, "Spine": "Hips", "Spine1": "Spine", "Spine2": "Spine1", "Neck": "Spine2",
                  "Head": "Neck", **{f"{s}Shoulder": "Spine2" for s in ("Left", "Right")},
                  **{f"{s}Arm": f"{s}Shoulder" for s in ("Left", "Right")},
                  **{f"{s}ForeArm": f"{s}Arm" for s in ("Left", "Right")},
                  **{f"{s}Hand": f"{s}ForeArm" for s in ("Left", "Right")},
                  **{f"{s}HandIndex1": f"{s}Hand" for s in ("Left", "Right")},
                  **{f"{s}UpLeg": "Hips" for s in ("Left", "Right")}, **{f"{s}Leg": f"{s}UpLeg" for s in ("Left", "Right")},
                  **{f"{s}Foot": f"{s}Leg" for s in ("Left", "Right")},
                  **{f"{s}ToeBase": f"{s}Foot" for s in ("Left", "Right")}}


@pytest.mark.parametrize(("keyed", "held", "words"), [
    ({"RightArm", "RightForeArm", "RightHand"}, RIGHT_ARM, "right arm"),
    ({"RightHand"}, RIGHT_ARM, "right arm"),
    ({"Hips"}, ("pelvis",), "root"),
    ({"LeftFoot"}, ("left_ankle", "left_foot"), "left_ankle, left_foot"),
    ({"RightUpLeg", "Head"}, ("right_hip", "right_knee", "right_ankle", "right_foot", "head"), "head, right leg"),
    ({"LeftHandIndex1"}, (), "nothing"),
    (set(MIXAMO), None, "whole body"),
])
def test_keyed_bones_hold_the_joints_they_move(keyed, held, words):
    bone_map = best_preset_map(MIXAMO)[0]
    joints = keyed_joints(keyed, bone_map, MIXAMO_PARENTS)
    assert joints == held
    assert held_summary(joints) == words


def test_a_control_carrying_mapped_bones_holds_the_highest_joint_it_carries():
    """Rigify's `hips` control is in no map but carries the pelvis' point and the thighs: keyed, it holds the root."""
    from kmm_core.retarget.bone_map import preset

    bone_map = preset("rigify").resolve(["torso", "hips", "chest", "neck", "head", "ORG-spine", "ORG-spine.001",
                                         "ORG-spine.002", "ORG-spine.003"] + [
        f"{name}.{side}" for side in "LR" for name in ("thigh_fk", "shin_fk", "foot_fk", "toe_fk", "shoulder",
                                                       "upper_arm_fk", "forearm_fk", "hand_fk")])[0]
    assert keyed_joints({"hips"}, bone_map, {"hips": "torso", "torso": None}) == ("pelvis",)


def test_all_keyed_poses_are_fitted_at_once_as_one_at_a_time(bandai_namco_archive, tmp_path):
    """A real rig (the Bandai-Namco BVH skeleton) posed by a real walk: the poses fitted together equal each fitted
    alone (the rig's plan and standing offset are worked out once, every step retargets all poses together)."""
    from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
    from kmm_core.retarget.rig_pose import fitted_canonical_pose, fitted_canonical_poses
    from kmm_core.retarget.target_skeleton import bvh_target_skeleton
    from kmm_core.retarget.transfer import retarget, source_from_positions

    with tarfile.open(bandai_namco_archive, "r:xz") as tar:
        member = next(m for m in tar if m.name.endswith("dataset-1_walk_normal_001.bvh"))
        (tmp_path / "walk.bvh").write_bytes(tar.extractfile(member).read())
    motion = read_bvh(tmp_path / "walk.bvh")
    bone_map, preset = best_preset_map(tuple(motion.names[j] for j in motion.joint_indices))
    target = bvh_target_skeleton(motion, scale_to_metres=preset.bvh.get("scale_to_metres"))
    joints = bvh_to_canonical_joints(motion, builtin_joint_map("bandai_namco"), 30.0)
    joints = joints - [0.0, joints[..., 1].min(), 0.0]
    points = retarget(source_from_positions(joints[::20][:6], 30.0), target, bone_map,
                      only_needed_bones=True).joint_points()
    together = fitted_canonical_poses(points, target, bone_map)
    alone = np.stack([fitted_canonical_pose(p, target, bone_map) for p in points[:3]])
    assert together.shape == (len(points), 22, 3)
    np.testing.assert_allclose(together[:3], alone, atol=1e-9)


@pytest.fixture(scope="module")
def bundle():
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(1)
    return ModelBundle.load(Path(__file__).resolve().parents[1] / "kmm_core" / "checkpoints" / "kmm-small",
                            device="cpu")


def test_keys_are_met_and_planted_feet_stay_planted_in_a_walk(bundle):
    """One walk of the benchmark: an off-prompt full pose (arms up) mid-walk and a wrist target; then the right arm
    keyed alone at two frames.  Keys met (3 cm / 2 cm), no speed spike near them, planted toes no faster than 1.5x
    the same take without constraints, the walk still travels."""
    from measure_key_pose_contacts import measure_case, walk_cases

    full, arm = walk_cases(bundle, 0)
    for case in (full, arm):
        result = measure_case(bundle, case)
        assert max(result["poses"]) < 0.03 and max(result["targets"], default=0.0) < 0.02, result
        assert result["peak"] <= 1.5 and result["toes"] <= 1.5 and result["travel"] >= 0.7, result
    # The arm keys leave the legs to the model: the walk's planted steps are all kept and it travels as far.
    assert result["planted_kept"] > 0.9 and result["travel"] > 0.95
