# SPDX-License-Identifier: GPL-3.0-or-later
"""The rig's own feet on the floor (kmm_core/retarget/foot_ground.py), without Blender: a real Bandai-Namco walk on
rigs with the rest geometry of the downloaded KayKit mannequin (big stylised feet: its ankle 14.5 cm above the floor)
and of a Mixamo-like rig whose toe bones reach forward on the floor.  The lowest point of each foot chain (ankle, toe,
toe tip, heel) never goes below the rig's rest floor by more than 2% of its height, rests on it while the source
foot is down, and planted ankles slide no more than 2 cm."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.retarget.foot_ground import lowest_foot_points
from kmm_core.retarget.name_matching import detect_bone_map
from kmm_core.retarget.quality import contact_drift, contact_mask
from kmm_core.retarget.target_skeleton import TargetSkeleton, axes_to_humanml3d
from kmm_core.retarget.transfer import retarget

# (name, parent, head, tail) in Blender axes (Z up, facing -Y), metres.
KAYKIT = [("root", None, (0, 0, 0), (0, 0, 0.406)), ("hips", "root", (0, 0, 0.406), (0, 0, 0.598)),
          ("spine", "hips", (0, 0, 0.598), (0, 0, 0.973)), ("chest", "spine", (0, 0, 0.973), (0, 0, 1.224)),
          ("head", "chest", (0, 0, 1.241), (0, 0, 1.492))]
for _s, _x in (("l", 1), ("r", -1)):
    KAYKIT += [(f"upperarm.{_s}", "chest", (0.212 * _x, 0, 1.107), (0.454 * _x, 0.014, 1.107)),
               (f"lowerarm.{_s}", f"upperarm.{_s}", (0.454 * _x, 0.014, 1.107), (0.713 * _x, 0, 1.107)),
               (f"wrist.{_s}", f"lowerarm.{_s}", (0.713 * _x, 0, 1.107), (0.787 * _x, 0, 1.107)),
               (f"hand.{_s}", f"wrist.{_s}", (0.787 * _x, 0, 1.107), (0.861 * _x, 0, 1.107)),
               (f"upperleg.{_s}", "hips", (0.171 * _x, 0, 0.519), (0.171 * _x, -0.008, 0.292)),
               (f"lowerleg.{_s}", f"upperleg.{_s}", (0.171 * _x, -0.008, 0.292), (0.171 * _x, 0.019, 0.145)),
               (f"foot.{_s}", f"lowerleg.{_s}", (0.171 * _x, 0.019, 0.145), (0.171 * _x, -0.096, 0.026)),
               (f"toes.{_s}", f"foot.{_s}", (0.171 * _x, -0.096, 0.026), (0.171 * _x, -0.262, 0.026))]

MIXAMO_LIKE = [("Hips", None, (0, 0, 1.0), (0, 0, 1.1)), ("Spine", "Hips", (0, 0, 1.1), (0, 0, 1.3)),
               ("Spine1", "Spine", (0, 0, 1.3), (0, 0, 1.45)), ("Neck", "Spine1", (0, 0, 1.5), (0, 0, 1.6)),
               ("Head", "Neck", (0, 0, 1.6), (0, 0, 1.8))]
for _side, _x in (("Left", 1), ("Right", -1)):
    MIXAMO_LIKE += [(f"{_side}Arm", "Spine1", (0.18 * _x, 0, 1.45), (0.45 * _x, 0, 1.45)),
                    (f"{_side}ForeArm", f"{_side}Arm", (0.45 * _x, 0, 1.45), (0.7 * _x, 0, 1.45)),
                    (f"{_side}Hand", f"{_side}ForeArm", (0.7 * _x, 0, 1.45), (0.8 * _x, 0, 1.45)),
                    (f"{_side}UpLeg", "Hips", (0.09 * _x, 0, 0.95), (0.09 * _x, 0, 0.52)),
                    (f"{_side}Leg", f"{_side}UpLeg", (0.09 * _x, 0, 0.52), (0.09 * _x, 0.02, 0.1)),
                    (f"{_side}Foot", f"{_side}Leg", (0.09 * _x, 0.02, 0.1), (0.09 * _x, -0.1, 0.02)),
                    (f"{_side}ToeBase", f"{_side}Foot", (0.09 * _x, -0.1, 0.02), (0.09 * _x, -0.2, 0.0))]


def _skeleton(name, bones) -> TargetSkeleton:
    names = [b[0] for b in bones]
    heads = np.array([b[2] for b in bones], float)
    tails = np.array([b[3] for b in bones], float)
    directions = (tails - heads) / np.linalg.norm(tails - heads, axis=-1, keepdims=True)
    return TargetSkeleton(name=name, bone_names=tuple(names),
                          parents=tuple(names.index(b[1]) if b[1] else -1 for b in bones), rest_heads=heads,
                          rest_rotations=np.broadcast_to(np.eye(3), (len(names), 3, 3)).copy(),
                          tail_directions=directions, to_humanml3d=axes_to_humanml3d("+Z", "-Y"), scale_to_metres=1.0,
                          rest_tails=tails)


@pytest.mark.parametrize("rig", [("kaykit_mannequin", KAYKIT), ("mixamo_like", MIXAMO_LIKE)], ids=lambda r: r[0])
def test_the_rigs_own_feet_stand_on_the_floor_and_stay_planted(bandai_walk_source, rig):
    skeleton = _skeleton(*rig)
    bone_map = detect_bone_map(skeleton.bone_names, skeleton.parents, skeleton.rest_heads_metres(), skeleton.name)
    height = float(np.ptp(skeleton.rest_heads_metres()[:, 1]))
    before = retarget(bandai_walk_source, skeleton, bone_map)
    after = retarget(bandai_walk_source, skeleton, bone_map, feet_on_ground=True)
    lowest_before = np.minimum(*lowest_foot_points(before).values())
    lowest = lowest_foot_points(after)
    goal = bandai_walk_source.positions * after.plan.scale
    for side in ("left", "right"):
        assert lowest[side].min() >= -0.02 * height, (side, lowest[side].min())
        down = contact_mask(goal[:, JOINT_INDEX[f"{side}_ankle"]], bandai_walk_source.fps)
        assert down.sum() > 20
        # on the floor while the source foot is down: within 1 cm of it on planted frames
        assert np.median(np.abs(lowest[side][down])) <= 0.01, (side, np.median(lowest[side][down]))
        # no new sliding: a planted ankle moves sideways as little as the source's (within 2 cm); its height follows
        # the rig's own foot rolling over its heel and toes, not the source's smaller foot
        ankle = after.joint_points()[:, JOINT_INDEX[f"{side}_ankle"]] * [1.0, 0.0, 1.0]
        assert contact_drift(ankle, goal[:, JOINT_INDEX[f"{side}_ankle"]] * [1.0, 0.0, 1.0], down) <= 0.02
    # the plain transfer (the motion's scaled ankle height, its foot pitch) is what put these feet through the floor
    assert lowest_before.min() < -0.02 * height, lowest_before.min()
