# SPDX-License-Identifier: GPL-3.0-or-later
"""Which way a rig faces, read from its rest pose instead of assumed: its mapped left hip is on its left (or, where the
hips give no side, its feet point forward: ankle -> toe tip, both feet averaged).  `face_forward` turns a `TargetSkeleton`'s axes about the up axis by the detected facing, snapped to a
quarter turn (a rig built facing +X or +Y is read as facing forward; feet splayed a few degrees change nothing).  A rig
whose rest legs do not point down (a BVH rest pose with every bone along one axis) keeps its axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bone_map import BoneMap
from .target_skeleton import TargetSkeleton


def facing_from_feet(heads: np.ndarray, tails: np.ndarray | None, ankles: Sequence[int],
                     toe_ends: Sequence[int]) -> np.ndarray:
    """Unit horizontal forward direction (HumanML3D axes, y up) from ankle heads to the toe ends' tips (their heads
    when tails are unknown); +z when the feet give no direction."""
    tips = heads if tails is None else tails
    forward = sum((tips[toe] - heads[ankle] for ankle, toe in zip(ankles, toe_ends, strict=True)), np.zeros(3))
    forward[1] = 0.0
    norm = float(np.linalg.norm(forward))
    return forward / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])


UPRIGHT = 0.7  # a rest leg points down when its hip -> ankle vector is at least this steep (cosine to straight down)


def legs_point_down(legs: Sequence[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether every (hip, ankle) rest point pair (HumanML3D axes, y up) points down: only a rest pose standing on its
    legs says with its feet which way it faces and where its floor is (a BVH skeleton whose rest pose lays every
    bone along one axis says neither)."""
    for hip, ankle in legs:
        leg = np.asarray(ankle, dtype=np.float64) - np.asarray(hip, dtype=np.float64)
        if -leg[1] < UPRIGHT * np.linalg.norm(leg):
            return False
    return bool(legs)


def quarter_turns(forward: np.ndarray) -> int:
    """How many quarter turns about up (counter-clockwise seen from above) take +z to `forward`, nearest."""
    return int(np.round(np.arctan2(forward[0], forward[2]) / (np.pi / 2))) % 4


def rig_forward(skeleton: TargetSkeleton, bone_map: BoneMap) -> np.ndarray:
    """The rig's forward direction in its current HumanML3D axes: from its mapped hips (forward = left x up, left
    from the right hip's head to the left one's), which depend only on where the joints are and which side the map
    puts them on; from the map's ankles and toes (the last bone below each ankle when the map names no toe) when
    the hips sit on one point."""
    index = skeleton.index
    heads, tails = skeleton.rest_heads_metres(), skeleton.rest_tails_metres()
    left_hip, right_hip = bone_map.bones.get("left_hip"), bone_map.bones.get("right_hip")
    if left_hip and right_hip:
        left = heads[index[left_hip]] - heads[index[right_hip]]
        forward = np.array([-left[2], 0.0, left[0]])  # left x up, level
        if np.linalg.norm(forward) > 1e-6 * max(float(np.ptp(heads[:, 1])), 1e-9):
            return forward / np.linalg.norm(forward)
    ankles, toes = [], []
    for side in ("left", "right"):
        ankle = bone_map.bones.get(f"{side}_ankle")
        if not ankle:
            continue
        toe = bone_map.bones.get(f"{side}_foot") or ankle
        ankles.append(index[ankle])
        toes.append(index[toe])
    if tails is None and all(a == t for a, t in zip(ankles, toes, strict=True)):
        return np.array([0.0, 0.0, 1.0])
    return facing_from_feet(heads, tails, ankles, toes)


def face_forward(skeleton: TargetSkeleton, bone_map: BoneMap) -> TargetSkeleton:
    """`skeleton` read so that the rig faces HumanML3D's forward (+z): its axes turned by the detected facing (none
    when its rest legs do not point down)."""
    heads, index = skeleton.rest_heads_metres(), skeleton.index
    legs = [(heads[index[hip]], heads[index[ankle]]) for hip, ankle in
            ((bone_map.bones.get(f"{side}_hip"), bone_map.bones.get(f"{side}_ankle")) for side in ("left", "right"))
            if hip and ankle]
    if not legs_point_down(legs):
        return skeleton
    turns = quarter_turns(rig_forward(skeleton, bone_map))
    if turns == 0:
        return skeleton
    angle = -turns * np.pi / 2  # undo the facing
    cos, sin = np.cos(angle), np.sin(angle)
    turn = np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])
    return skeleton.turned(turn @ skeleton.to_humanml3d)


