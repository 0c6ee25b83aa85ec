# SPDX-License-Identifier: GPL-3.0-or-later
"""The character's own feet on the ground after a transfer (NumPy; `transfer.retarget` calls it).

The transfer scales the source by leg length (hip to ankle), so a rig whose ankle sits higher above its soles than
the scaled source's (big stylised feet), or whose toes reach further down, would push its toes through the floor,
and a rig whose rest pose stands somewhere else than the motion's floor (an armature whose origin is at its hips)
would float or sink.  Here the rig's own foot chain decides, relative to what the source's feet do:

- the foot chain of a side is the bone the ankle drives and every bone below it, named by the map or not; its points
  are their heads, the tails of the bones the map drives (the toe tip is the tail of the last toe bone; an end bone
  no joint drives, Mixamo's `Toe_End`, counts by its head), the corners of the foot mesh where the rig has one
  (`TargetSkeleton.foot_points`) and a heel under the ankle, carried by the ankle bone (on the floor for a rest
  foot that stands, see below);
- the rig's floor is where those points rest in its rest pose (the lowest of them);
- the source's clearance on a frame is how far its foot is lifted off its own standing position: the smaller of the
  ankle's and the ball's rise above their heights on the frames where the foot stands flat (0 while either touches);
- `standing_weight`: a rig whose rest foot points down from the ankle like the source's foot standing flat (a
  modelled character, weight 1) rather than like the source's rest foot (a skeleton in the motion's own T-pose, feet
  horizontal, weight 0) takes its rest pitch and roll under the transferred heading while the source foot is flat:
  its sole follows the floor.  A rig in the motion's own rest pose keeps the source's pitch, so that it reproduces
  the source; a rest foot pitched in between is turned part of the way;
- `ground_feet`: the whole body moves up or down by one distance, the median over the flat frames of how far the
  lowest chain point is from the floor plus the source's clearance (so a planted foot stands on the rig's floor, and
  a rig with the source's own skeleton and rest pose is only moved, never changed); then, per frame and side, while
  the source foot touches the ground the lowest chain point is put at the floor plus the source's clearance, and on
  every frame it is kept from going below the floor.  The leg reaches the new ankle by the same two-bone IK, the foot
  keeping its orientation.  Ankles keep their horizontal goal, so stance feet do not slide.
"""

from __future__ import annotations

import numpy as np

from ..motion.rotations import matrix_to_quat, quat_to_matrix
from ..motion.skeleton import JOINT_INDEX
from .facing import legs_point_down
from .quality import contact_mask

BLEND_FRAMES = 3  # contact weights are smoothed over this many frames, so a foot never pops onto the floor


def _children(parents: list[int]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for child, parent in enumerate(parents):
        kids.setdefault(parent, []).append(child)
    return kids


def _subtree(parents: list[int], top: int) -> list[int]:
    """`top` and every bone below it, parents first."""
    kids, found, stack = _children(parents), [], [top]
    while stack:
        bone = stack.pop(0)
        found.append(bone)
        stack.extend(kids.get(bone, []))
    return found


def foot_chain(plan, side: str) -> list[int]:
    """The ankle bone of `side` and every bone below it (effective parents), parents first; [] without an ankle."""
    ankle = plan.bone_of.get(JOINT_INDEX[f"{side}_ankle"])
    return [] if ankle is None else _subtree(plan.parents, ankle)


def _rest_points(plan, chain: list[int]) -> list[tuple[int, np.ndarray]]:
    """(bone, (K, 3) rest points it carries) for a foot chain, HumanML3D metres, heel not included.  A bone the map
    does not drive (Mixamo's `Toe_End`) counts by its head: its tail is only what an importer guessed for an end
    bone."""
    skeleton = plan.skeleton
    tails = skeleton.rest_tails_metres()
    carried = []
    for bone in chain:
        points = [plan.rest_heads[bone][None]]
        if tails is not None and bone in plan.driver:
            points.append(tails[bone][None])
        points.append(skeleton.foot_points_metres(skeleton.bone_names[bone]))
        carried.append((bone, np.concatenate(points)))
    return carried


def rest_floor(plan) -> float | None:
    """Height (metres) the feet rest on in the rig's rest pose: the lowest point of both foot chains."""
    lows = [points[:, 1].min() for side in ("left", "right") for _, points in _rest_points(plan, foot_chain(plan, side))]
    return float(min(lows)) if lows else None


def _pitch(vector: np.ndarray) -> np.ndarray:
    """Downward angle (radians) of (..., 3) vectors below the horizontal plane."""
    return np.arctan2(-vector[..., 1], np.linalg.norm(vector[..., [0, 2]], axis=-1))


def _rig_foot_vector(plan, side: str) -> np.ndarray | None:
    """Rest vector from the rig's ankle to its ball (the map's foot joint), else along the ankle bone."""
    ankle_joint, ball_joint = JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]
    points = plan.rest_points()
    if ankle_joint not in points:
        return None
    if ball_joint in points and np.linalg.norm(points[ball_joint] - points[ankle_joint]) > 1e-4:
        return points[ball_joint] - points[ankle_joint]
    return plan.skeleton.tail_directions_humanml3d()[plan.bone_of[ankle_joint]]


def stands_upright(plan) -> bool:
    """Whether the rig's rest legs point down (`facing.legs_point_down`): only then is its rest floor a floor."""
    points = plan.rest_points()
    legs = [(points[JOINT_INDEX[f"{side}_hip"]], points[JOINT_INDEX[f"{side}_ankle"]]) for side in ("left", "right")
            if JOINT_INDEX[f"{side}_hip"] in points and JOINT_INDEX[f"{side}_ankle"] in points]
    return len(legs) == 2 and legs_point_down(legs)


def _flat(goal: np.ndarray, side: str, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(heel down, ball down) masks of the source foot of `side`."""
    heel = contact_mask(goal[:, JOINT_INDEX[f"{side}_ankle"]], fps)
    return heel, contact_mask(goal[:, JOINT_INDEX[f"{side}_foot"]], fps)


def standing_weight(plan, goal: np.ndarray, source_rest: np.ndarray, fps: float) -> float:
    """How much the rig's rest feet point down from the ankle like the source's feet standing flat (1: a modelled
    character) rather than like the source's rest feet (0: a skeleton in the motion's own T-pose, feet horizontal),
    from the ankle -> ball pitch of the rig's rest, the source's rest and the source's flat frames (module docstring)."""
    rig, rest, standing = [], [], []
    for side in ("left", "right"):
        vector = _rig_foot_vector(plan, side)
        ankle, ball = JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]
        heel_down, ball_down = _flat(goal, side, fps)
        flat = heel_down & ball_down
        if vector is None or not flat.any():
            continue
        rig.append(float(_pitch(vector)))
        rest.append(float(_pitch(source_rest[ball] - source_rest[ankle])))
        standing.append(float(np.median(_pitch(goal[flat, ball] - goal[flat, ankle]))))
    if not rig or abs(np.mean(standing) - np.mean(rest)) < 1e-3:
        return 0.0
    return float(np.clip((np.mean(rig) - np.mean(rest)) / (np.mean(standing) - np.mean(rest)), 0.0, 1.0))


def source_clearance(goal: np.ndarray, side: str, fps: float) -> np.ndarray:
    """(T,) how far the source foot of `side` is lifted off its standing position (module docstring), >= 0."""
    heel_down, ball_down = _flat(goal, side, fps)
    flat = heel_down & ball_down
    rises = []
    for joint, down in ((f"{side}_ankle", heel_down), (f"{side}_foot", ball_down)):
        height = goal[:, JOINT_INDEX[joint], 1]
        standing = height[flat] if flat.any() else height[down] if down.any() else height
        rises.append(height - np.median(standing))
    return np.maximum(np.minimum(*rises), 0.0)


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


def _carried_with_heel(plan, chain: list[int], floor: float, standing: float) -> list[tuple[int, np.ndarray]]:
    """The chain's rest points and a heel under the ankle: on the floor for a standing rest foot, at the ankle's own
    height for a rest foot in the source's T-pose (`standing` 0), in between for the rest."""
    carried = _rest_points(plan, chain)
    point = plan.rest_heads[chain[0]].copy()
    point[1] = floor + (1.0 - standing) * (point[1] - floor)
    carried[0] = (chain[0], np.concatenate([carried[0][1], point[None]]))
    return carried


def _standing_rotation(source, goal: np.ndarray, side: str, fps: float) -> np.ndarray:
    """(3, 3) the source ankle's rotation (relative to its rest) while the foot stands flat, heading removed: the
    pitch and roll its rest foot takes to stand (the identity when the foot never stands flat)."""
    heel_down, ball_down = _flat(goal, side, fps)
    flat = heel_down & ball_down
    if not flat.any():
        return np.eye(3)
    ankle, ball = JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]
    forward = source.rest_positions[ball] - source.rest_positions[ankle]
    forward[1] = 0.0
    forward = forward / np.linalg.norm(forward) if np.linalg.norm(forward) > 1e-6 else np.array([0.0, 0.0, 1.0])
    rotations = source.global_rotations[flat, ankle]
    tilts = matrix_to_quat(np.swapaxes(_heading_only(rotations, forward), -1, -2) @ rotations)
    tilts *= np.where(tilts[:, :1] < 0, -1.0, 1.0)
    mean = tilts.mean(axis=0)
    return quat_to_matrix(mean / np.linalg.norm(mean))


def _stand_feet_like_the_rig(motion, chain: list[int], standing: float, ankle_rotations: np.ndarray,
                             standing_rotation: np.ndarray) -> None:
    """A rig whose rest foot stands (weight `standing`): its rest foot is the source's standing foot, so the chain's
    ankle turns by the source ankle's rotation without the source's standing tilt (D <- G S^T, G the source ankle's
    (T, 3, 3) `ankle_rotations`, S the standing rotation: a source foot flat on the ground puts the rig's foot in its
    rest pitch and roll under the transferred heading, a heel the source lifts lifts the rig's heel as much; the
    aim at the source's ball from where the rig's ankle was before the leg IK plays no part) and the bones below it
    turn with it; their heads are placed again."""
    ankle = chain[0]
    before = motion.deltas[:, ankle].copy()
    retilted = ankle_rotations @ standing_rotation.T
    motion.deltas[:, ankle] = _blend(before, retilted, np.full(len(before), standing))
    turn = motion.deltas[:, ankle] @ np.swapaxes(before, -1, -2)
    for bone in chain[1:]:
        motion.deltas[:, bone] = turn @ motion.deltas[:, bone]
    _forward_chain(motion, chain)


def ground_feet(motion, goal: np.ndarray, source, leg_ik) -> float:
    """Put the rig's foot chains on its rest floor (see the module docstring); `source` is the SourceMotion,
    `goal` its positions scaled to the rig, `leg_ik(motion, goal)` re-solves the legs.  Changes `motion` and `goal`
    (the ankles' new heights) in place; returns the vertical distance (metres) the whole body was moved by (0 when
    the rig's rest pose does not stand: nothing is changed then)."""
    plan, fps = motion.plan, source.fps
    floor = rest_floor(plan)
    if floor is None or not stands_upright(plan):
        return 0.0
    standing = standing_weight(plan, goal, source.rest_positions, fps)
    feet = {}
    for side in ("left", "right"):
        chain = foot_chain(plan, side)
        if not chain:
            continue
        carried = _carried_with_heel(plan, chain, floor, standing)
        heel_down, ball_down = _flat(goal, side, fps)
        if standing > 0.0 and chain[0] not in plan.tips:  # a one-bone leg's foot turns with the leg
            _stand_feet_like_the_rig(motion, chain, standing, source.global_rotations[:, JOINT_INDEX[f"{side}_ankle"]],
                                     _standing_rotation(source, goal, side, fps))
        wanted = floor + source_clearance(goal, side, fps)  # where the lowest chain point belongs while touching
        feet[side] = (carried, wanted, heel_down & ball_down, _smooth((heel_down | ball_down).astype(float)))
    if not feet:
        return 0.0
    gaps = [(wanted - _posed(motion, carried).min(axis=1))[flat] for carried, wanted, flat, _ in feet.values()]
    gaps = np.concatenate(gaps)
    offset = float(np.median(gaps)) if len(gaps) else float(
        np.median(np.concatenate([wanted - _posed(motion, carried).min(axis=1) for carried, wanted, _, _
                                  in feet.values()])))
    moved = _subtree(plan.parents, plan.pelvis_bone)  # bones above the pelvis (a root) stay where they are keyed
    motion.heads[:, moved, 1] += offset
    goal[..., 1] += offset
    for side, (carried, wanted, _, touching) in feet.items():
        lowest = _posed(motion, carried).min(axis=1)
        above = wanted - lowest          # up (or down) to the floor plus the source's clearance
        below = np.maximum(floor - lowest, 0.0)  # never under the floor
        lift = touching * above + (1 - touching) * below
        goal[:, JOINT_INDEX[f"{side}_ankle"], 1] += np.maximum(lift, below)
    leg_ik(motion, goal)
    _lift_above_one_bone_feet(motion, feet, floor, moved)
    return offset


def _lift_above_one_bone_feet(motion, feet: dict, floor: float, moved: list[int]) -> None:
    """A one-bone leg (the map's `tips`) cannot bend to keep its foot out of the floor: where its foot would go
    under, the body is lifted by that much on that frame."""
    sides = [side for side in feet if feet[side][0][0][0] in motion.plan.tips]
    if not sides:
        return
    under = np.max([np.maximum(floor - _posed(motion, feet[side][0]).min(axis=1), 0.0) for side in sides], axis=0)
    motion.heads[:, moved, 1] += under[:, None]


def _forward_chain(motion, chain: list[int]) -> None:
    """Heads of the chain below its first bone from their parents' poses (undriven bones follow their parents)."""
    plan, rest = motion.plan, motion.plan.rest_heads
    for bone in chain[1:]:
        parent = plan.parents[bone]
        if bone not in plan.driver:
            motion.deltas[:, bone] = motion.deltas[:, parent]
        motion.heads[:, bone] = motion.heads[:, parent] + motion.deltas[:, parent] @ (rest[bone] - rest[parent])


def lowest_foot_points(motion) -> dict[str, np.ndarray]:
    """(T,) height of the lowest foot chain point per side (heads, tails, foot mesh corners), relative to the rig's
    rest floor (what the tests check)."""
    plan = motion.plan
    floor = rest_floor(plan)
    result = {}
    for side in ("left", "right"):
        chain = foot_chain(plan, side)
        if chain and floor is not None:
            result[side] = _posed(motion, _rest_points(plan, chain)).min(axis=1) - floor
    return result
