# SPDX-License-Identifier: GPL-3.0-or-later
"""One bone per limb without Blender: the Kenney Mini Characters layout (tests/data/characters/layouts/kenney_mini.json)
as a TargetSkeleton, mapped with no bone map (the hip and shoulder drive the limb's bone, the ankle and wrist are its
tail: the map's `tips`), the real Bandai-Namco walk put on it with the feet on the ground; the `tips` entries in a
map file, and where they cannot work (a BVH target has no bone tails)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.retarget.bone_map import BoneMapError, bone_map_from_dict
from kmm_core.retarget.foot_ground import lowest_foot_points
from kmm_core.retarget.name_matching import detect_bone_map
from kmm_core.retarget.quality import contact_drift, contact_mask
from kmm_core.retarget.target_skeleton import TargetSkeleton, axes_to_humanml3d
from kmm_core.retarget.transfer import RetargetError, retarget

LAYOUT = Path(__file__).resolve().parent / "data" / "characters" / "layouts" / "kenney_mini.json"


def _kenney(with_tails: bool = True) -> TargetSkeleton:
    bones = json.loads(LAYOUT.read_text())["bones"]
    names = [b[0] for b in bones]
    heads, tails = np.array([b[2] for b in bones], float), np.array([b[3] for b in bones], float)
    return TargetSkeleton(name="KenneyMini", bone_names=tuple(names),
                          parents=tuple(names.index(b[1]) if b[1] else -1 for b in bones), rest_heads=heads,
                          rest_rotations=np.broadcast_to(np.eye(3), (len(names), 3, 3)).copy(),
                          tail_directions=(tails - heads) / np.linalg.norm(tails - heads, axis=-1, keepdims=True),
                          to_humanml3d=axes_to_humanml3d("+Z", "-Y"), scale_to_metres=1.0,
                          rest_tails=tails if with_tails else None)


def _detected(skeleton: TargetSkeleton):
    return detect_bone_map(skeleton.bone_names, skeleton.parents, skeleton.rest_heads_metres(), skeleton.name,
                           skeleton.rest_tails_metres())


def test_one_bone_limbs_are_mapped_with_their_tails_and_the_map_file_keeps_them():
    bone_map = _detected(_kenney())
    assert bone_map.bones["left_hip"] == "leg-left" and bone_map.bones["right_shoulder"] == "arm-right"
    assert bone_map.tips == {"left_ankle": "leg-left", "right_ankle": "leg-right", "left_wrist": "arm-left",
                             "right_wrist": "arm-right"}
    assert bone_map.bones["left_knee"] is None and bone_map.one_bone_limb("left_knee")  # no knee: the leg is one bone
    assert {"left_knee", "left_elbow"} <= set(bone_map.unmatched())
    assert not {"left_ankle", "left_wrist"} & set(bone_map.unmatched())  # at the tails
    assert bone_map_from_dict(json.loads(json.dumps(bone_map.to_dict())), "map.json") == bone_map
    bone_map.check(_kenney().bone_names, "KenneyMini")
    with pytest.raises(BoneMapError, match="'tips' names an unknown canonical joint 'left_paw'"):
        bone_map_from_dict({**bone_map.to_dict(), "tips": {"left_paw": "arm-left"}}, "map.json")
    with pytest.raises(BoneMapError, match="bone 'leg-gone' \\(whose tail is joint 'left_ankle'\\) is not in rig"):
        bone_map_from_dict({**bone_map.to_dict(), "tips": {**bone_map.tips, "left_ankle": "leg-gone"}},
                           "map.json").check(_kenney().bone_names, "KenneyMini")


def test_a_one_bone_leg_keeps_its_planted_foot_and_stays_above_the_floor(bandai_walk_source):
    skeleton = _kenney()
    motion = retarget(bandai_walk_source, skeleton, _detected(skeleton), feet_on_ground=True)
    height = float(np.ptp(skeleton.rest_heads_metres()[:, 1]))
    goal = bandai_walk_source.positions * motion.plan.scale
    lowest = lowest_foot_points(motion)
    points = motion.joint_points()
    for side in ("left", "right"):
        assert lowest[side].min() >= -0.02 * height, (side, lowest[side].min())
        down = contact_mask(goal[:, JOINT_INDEX[f"{side}_ankle"]], bandai_walk_source.fps)
        assert down.sum() > 20
        along = np.array([1.0, 0.0, 1.0])
        foot = points[:, JOINT_INDEX[f"{side}_ankle"]] * along
        assert contact_drift(foot, goal[:, JOINT_INDEX[f"{side}_ankle"]] * along, down) <= 0.02
        # the foot is over the source's ankle: the leg is aimed at it, not carried along by the thigh's rotation
        assert np.median(np.linalg.norm(foot[down] - goal[down, JOINT_INDEX[f"{side}_ankle"]] * along, axis=-1)) < 0.01
    travel = np.linalg.norm(points[-1, JOINT_INDEX["pelvis"]] - points[0, JOINT_INDEX["pelvis"]])
    assert travel > 0.5 * height


def test_tips_need_bone_tails_a_bvh_target_does_not_have(bandai_walk_source):
    bone_map = _detected(_kenney())
    with pytest.raises(RetargetError, match="'tips' need the bones' tails"):
        retarget(bandai_walk_source, _kenney(with_tails=False), bone_map)
