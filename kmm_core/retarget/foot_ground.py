# SPDX-License-Identifier: GPL-3.0-or-later
"""The character's own feet on the ground after a transfer (NumPy; `transfer.retarget` calls it).

The transfer scales the source by leg length (hip to ankle), so a rig whose ankle sits higher above its soles than
the scaled source's (big stylised feet), or whose toes reach further down, would stand with its ankle at the motion's
ankle height and push its toes through the floor.  Here the rig's own foot chain decides instead:

- the foot chain of a side is the bone the ankle drives and every bone below it; its points are their heads, their
  tails (the toe tip is the tail of the last toe bone), a heel (the ankle straight down on the floor, carried by the
  ankle bone) and, where the rig is skinned, the corners of the foot mesh (`TargetSkeleton.foot_points`);
- the floor is where those points rest when the rig stands in its rest pose (the lowest of them);
- `standing_offset`: the whole body is raised (or lowered) by the rig's own standing ankle height above that floor
  minus the scaled source's ankle height on its planted frames, so a planted ankle stands at the rig's own height;
- `ground_feet`, per frame and side: while the source foot is flat on the ground (ankle and ball planted) the foot
  bones take their rest pitch and roll under the transferred heading (the sole follows the floor); while the source
  foot touches the ground (ankle or ball planted) the lowest chain point is brought to the floor; on every frame it is
  kept from going below it.  The leg reaches the new ankle by the same two-bone IK, the foot keeping its orientation.
  Planted ankles keep their horizontal goal, so stance feet do not slide.
"""

from __future__ import annotations

import numpy as np

from ..motion.rotations import matrix_to_quat, quat_to_matrix
from ..motion.skeleton import JOINT_INDEX
from .quality import contact_mask

BLEND_FRAMES = 3  # contact weights are smoothed over this many frames, so a foot never pops onto the floor


def _children(parents: list[int]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for child, parent in enumerate(parents):
        kids.setdefault(parent, []).append(child)
    return kids


def foot_chain(plan, side: str) -> list[int]:
    """The ankle bone of `side` and every bone below it (effective parents), parents first; [] without an ankle."""
    ankle = plan.bone_of.get(JOINT_INDEX[f"{side}_ankle"])
    if ankle is None:
        return []
    kids, chain, stack = _children(plan.parents), [], [ankle]
    while stack:
        bone = stack.pop(0)
        chain.append(bone)
        stack.extend(kids.get(bone, []))
    return chain


def _rest_points(plan, chain: list[int]) -> list[tuple[int, np.ndarray]]:
    """(bone, (K, 3) rest points it carries) for a foot chain, HumanML3D metres, heel not yet included."""
    skeleton = plan.skeleton
    tails = skeleton.rest_tails_metres()
    carried = []
    for bone in chain:
        points = [plan.rest_heads[bone][None]]
        if tails is not None:
            points.append(tails[bone][None])
        points.append(skeleton.foot_points_metres(skeleton.bone_names[bone]))
        carried.append((bone, np.concatenate(points)))
    return carried


def rest_floor(plan) -> float | None:
    """Height (metres) the feet rest on in the rig's rest pose: the lowest point of both foot chains."""
    lows = [points[:, 1].min() for side in ("left", "right") for _, points in _rest_points(plan, foot_chain(plan, side))]
    return float(min(lows)) if lows else None


def _planted(goal: np.ndarray, joint: str, fps: float) -> np.ndarray:
    return contact_mask(goal[:, JOINT_INDEX[joint]], fps)


def standing_offset(plan, goal: np.ndarray, fps: float) -> float:
    """Metres to raise the scaled source so that its planted ankles stand at the rig's own ankle height above the
    rig's rest floor (0 when the rig has no feet to stand on)."""
    floor = rest_floor(plan)
    if floor is None:
        return 0.0
    rig_heights, source_heights = [], []
    for side in ("left", "right"):
        ankle = plan.bone_of.get(JOINT_INDEX[f"{side}_ankle"])
        if ankle is None:
            continue
        rig_heights.append(plan.rest_heads[ankle][1] - floor)
        track = goal[:, JOINT_INDEX[f"{side}_ankle"], 1]
        planted = _planted(goal, f"{side}_ankle", fps)
        source_heights.append(track[planted] if planted.any() else track.min(keepdims=True))
    if not rig_heights:
        return 0.0
    return float(floor + np.mean(rig_heights) - np.median(np.concatenate(source_heights)))


def _smooth(weights: np.ndarray) -> np.ndarray:
    if len(weights) < BLEND_FRAMES:
        return weights
    kernel = np.ones(BLEND_FRAMES) / BLEND_FRAMES
    padded = np.pad(weights, BLEND_FRAMES // 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")[:len(weights)]


def _heading_only(deltas: np.ndarray, forward_rest: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about the up axis that turn `forward_rest` to the heading `deltas` give it."""
    forward = deltas @ forward_rest
    angle = (np.arctan2(forward[:, 0], forward[:, 2]) - np.arctan2(forward_rest[0], forward_rest[2]))
    cos, sin = np.cos(angle), np.sin(angle)
    turn = np.zeros((len(angle), 3, 3))
    turn[:, 0, 0], turn[:, 0, 2], turn[:, 1, 1], turn[:, 2, 0], turn[:, 2, 2] = cos, sin, 1.0, -sin, cos
    return turn


def _blend(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Normalised quaternion blend of rotation matrices a -> b by weight (T,)."""
    qa, qb = matrix_to_quat(a), matrix_to_quat(b)
    qb = np.where((np.sum(qa * qb, axis=-1) < 0)[:, None], -qb, qb)
    mixed = qa * (1 - weight)[:, None] + qb * weight[:, None]
    return quat_to_matrix(mixed / np.linalg.norm(mixed, axis=-1, keepdims=True))


def _posed(motion, carried: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """(T, K) heights of every carried point of a chain in the current pose."""
    rest = motion.plan.rest_heads
    heights = [motion.heads[:, bone, None, 1] + np.einsum("tj,kj->tk", motion.deltas[:, bone, 1], points - rest[bone])
               for bone, points in carried]
    return np.concatenate(heights, axis=1)


def ground_feet(motion, goal: np.ndarray, fps: float, leg_ik) -> np.ndarray:
    """Put the rig's foot chains on its rest floor (see the module docstring); `leg_ik(motion, goal)` re-solves the
    legs.  Returns the goal with the ankles' new heights (the input is not changed)."""
    plan = motion.plan
    floor = rest_floor(plan)
    goal = goal.copy()
    if floor is None:
        return goal
    for side in ("left", "right"):
        chain = foot_chain(plan, side)
        if not chain:
            continue
        ankle = chain[0]
        carried = _rest_points(plan, chain)
        heel = plan.rest_heads[ankle].copy()
        heel[1] = floor
        carried[0] = (ankle, np.concatenate([carried[0][1], heel[None]]))
        heel_down = _planted(goal, f"{side}_ankle", fps)
        ball = plan.bone_of.get(JOINT_INDEX[f"{side}_foot"])
        toe_down = _planted(goal, f"{side}_foot", fps) if ball is not None else heel_down
        flat = _smooth((heel_down & toe_down).astype(float))
        touching = _smooth((heel_down | toe_down).astype(float))
        reach = np.concatenate([p for _, p in carried]) - plan.rest_heads[ankle]
        reach[:, 1] = 0.0
        forward_rest = reach[np.argmax(np.linalg.norm(reach, axis=-1))]  # towards the toe tip: it gives the heading
        if np.linalg.norm(forward_rest) < 1e-6:
            forward_rest = np.array([0.0, 0.0, 1.0])
        level = _heading_only(motion.deltas[:, ankle], forward_rest / np.linalg.norm(forward_rest))
        for bone in chain:
            if bone in plan.driver or bone == ankle:
                motion.deltas[:, bone] = _blend(motion.deltas[:, bone], level, flat)
        _forward_chain(motion, chain)
        lowest = _posed(motion, carried).min(axis=1)
        below = floor - lowest
        lift = touching * below + (1 - touching) * np.maximum(below, 0.0)
        goal[:, JOINT_INDEX[f"{side}_ankle"], 1] += np.maximum(lift, below)
    leg_ik(motion, goal)
    return goal


def _forward_chain(motion, chain: list[int]) -> None:
    """Heads of the chain below its first bone from their parents' poses (undriven bones follow their parents)."""
    plan, rest = motion.plan, motion.plan.rest_heads
    for bone in chain[1:]:
        parent = plan.parents[bone]
        if bone not in plan.driver:
            motion.deltas[:, bone] = motion.deltas[:, parent]
        motion.heads[:, bone] = motion.heads[:, parent] + motion.deltas[:, parent] @ (rest[bone] - rest[parent])


def lowest_foot_points(motion) -> dict[str, np.ndarray]:
    """(T,) height of the lowest foot chain point per side, relative to the rig's rest floor (what the tests check)."""
    plan = motion.plan
    floor = rest_floor(plan)
    result = {}
    for side in ("left", "right"):
        chain = foot_chain(plan, side)
        if chain and floor is not None:
            result[side] = _posed(motion, _rest_points(plan, chain)).min(axis=1) - floor
    return result
