# SPDX-License-Identifier: GPL-3.0-or-later
"""Feet outside the leg chains (IK foot bones hanging from the root, as in three.js' RobotExpressive), without
Blender: the geometric mapper finds the shin above each such foot and says the foot follows it (`parents`) and is
keyed by its place (`placed`); the keys (rotations relative to each bone's own parent in the rig, locations for the
placed feet), composed down the rig's real hierarchy the way Blender poses bones, put every bone where the motion
puts it, and the motion is the one a rig with the feet under the shins gets."""

from __future__ import annotations

import numpy as np
import pytest
from test_retarget_feet import MIXAMO_LIKE, _skeleton

from kmm_core.retarget.bone_map import BoneMapError, bone_map_from_dict
from kmm_core.retarget.name_matching import detect_bone_map
from kmm_core.retarget.transfer import retarget

ROOT = [("root", None, (0, 0, 0), (0, 0, 0.1))]
# The Mixamo-like rig with its feet (and toes) re-parented to a root bone on the floor: IK foot controls.
IK_FEET = ROOT + [(name, "root" if name.endswith("Foot") or parent is None else parent, head, tail)
                  for name, parent, head, tail in MIXAMO_LIKE]
IN_LEGS = ROOT + [(name, parent or "root", head, tail) for name, parent, head, tail in MIXAMO_LIKE]


def _mapped(bones):
    skeleton = _skeleton("ik feet", bones)
    return skeleton, detect_bone_map(skeleton.bone_names, skeleton.parents, skeleton.rest_heads_metres(),
                                     skeleton.name, skeleton.rest_tails_metres())


def test_feet_under_the_root_are_found_below_the_shins():
    _, bone_map = _mapped(IK_FEET)
    assert bone_map.bones["left_ankle"] == "LeftFoot" and bone_map.bones["left_knee"] == "LeftLeg"
    assert bone_map.bones["left_foot"] == "LeftToeBase" and bone_map.bones["pelvis"] == "Hips"
    assert bone_map.parents == {"LeftFoot": "LeftLeg", "RightFoot": "RightLeg"}
    assert sorted(bone_map.placed) == ["LeftFoot", "RightFoot"]
    assert bone_map_from_dict(bone_map.to_dict()).placed == bone_map.placed  # the map file keeps them
    _, in_legs = _mapped(IN_LEGS)
    assert in_legs.placed == () and in_legs.parents == {}


def test_the_keys_composed_down_the_real_hierarchy_put_the_feet_where_the_motion_goes(bandai_walk_source):
    skeleton, bone_map = _mapped(IK_FEET)
    motion = retarget(bandai_walk_source, skeleton, bone_map, feet_on_ground=True)
    rest_axes = skeleton.rest_rotations_humanml3d()
    rest = motion.plan.rest_heads
    local = motion.local_rotations()
    placed = dict(zip(motion.plan.placed, np.moveaxis(motion.placed_locations(), 1, 0), strict=True))
    mover = motion.plan.pelvis_bone
    placed[mover] = motion.pelvis_offset_rig() @ skeleton.rest_rotations[mover]  # the travel, as keyed
    frames = len(local)
    deltas, heads = np.empty_like(motion.deltas), np.empty_like(motion.heads)
    for bone, parent in enumerate(skeleton.parents):  # Blender: the parent's pose, the rest offset, the keys
        parent_delta = np.broadcast_to(np.eye(3), (frames, 3, 3)) if parent < 0 else deltas[:, parent]
        parent_head = np.zeros((frames, 3)) if parent < 0 else heads[:, parent]
        offset = rest[bone] - (0.0 if parent < 0 else rest[parent])
        location = placed.get(bone, np.zeros((frames, 3))) @ rest_axes[bone].T * skeleton.scale_to_metres
        deltas[:, bone] = parent_delta @ rest_axes[bone] @ local[:, bone] @ rest_axes[bone].T
        heads[:, bone] = parent_head + np.einsum("tij,tj->ti", parent_delta, offset + location)
    for name in ("LeftFoot", "RightFoot", "LeftToeBase", "Hips", "LeftLeg"):
        bone = skeleton.index[name]
        assert np.abs(heads[:, bone] - motion.heads[:, bone]).max() < 1e-6, name
        assert np.abs(deltas[:, bone] - motion.deltas[:, bone]).max() < 1e-6, name
    # the placed feet move the rig exactly like feet hanging from the shins
    in_legs = retarget(bandai_walk_source, *_mapped(IN_LEGS), feet_on_ground=True)
    assert np.nanmax(np.abs(motion.joint_points() - in_legs.joint_points())) < 1e-6


def test_a_placed_bone_without_the_bone_it_follows_is_refused_by_name():
    skeleton, bone_map = _mapped(IK_FEET)
    data = bone_map.to_dict()
    del data["parents"]["LeftFoot"]
    with pytest.raises(BoneMapError, match="placed bone 'LeftFoot'.*'parents' entry"):
        bone_map_from_dict(data, "robot.json").check(skeleton.bone_names, skeleton.name)
    with pytest.raises(BoneMapError, match="'placed' must be a list of bone names"):
        bone_map_from_dict({**bone_map.to_dict(), "placed": "LeftFoot"}, "robot.json")
