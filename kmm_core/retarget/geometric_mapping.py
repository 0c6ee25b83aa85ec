# SPDX-License-Identifier: GPL-3.0-or-later
"""Bone maps from the hierarchy and the rest geometry alone, for rigs whose names say nothing (glTF `Node_12`,
COLLADA `leg_joint_L_3`) or leave a bone out (a metarig without `spine.006`, palms but no hand).

1. Feet: the lowest end bone, and the lowest end bone whose branch leaves it above 30% of the height; the bone both
   hang from splits the legs (the pelvis).  Along each chain from the pelvis down, the first two long, downward bones
   are thigh and shin; the next bone is the ankle, the one after it the toes.  Feet outside the leg chains (IK foot
   bones hanging from the root, three.js' RobotExpressive): when no two low end bones part above 30% of the height,
   each low end bone's branch below the bone it shares with the legs is a foot, and its leg the end bone straight
   above it (a long, steep step from that bone's head down to the foot's first bone), nearest first; the two legs
   must part above 30% of the height.  The map then says that each such foot follows its shin (`parents`) and is
   keyed by its place (`placed`).  Two low end bones whose legs have no bone after the shin (Quaternius' 2018
   Knight: the shins' tails reach lower than its IK feet) are not taken as feet.  A leg of one long bone (Kenney's
   Mini Characters) is the hip's bone, its tail the ankle (`tips`); the same for an arm of one bone.
2. Facing: the feet point forward (ankle -> toe tip, both feet averaged); left is up x forward, which also says which
   leg and arm are the left ones (never the names).
3. Hands: the end bones furthest to each side; the bone both hang from is the chest; along each chain from the chest
   out, the longest pair of long bones one after the other are the upper arm (a bone before it the collar) and the
   forearm, and the forearm's child going on along it is the hand, which is a palm or a finger root when the rig
   has no hand bone.
4. Head: the highest end bone hanging from the chest; the top of that chain is the head (an end marker shorter than
   4% of the height is skipped when a neck and a head stay below it: a glTF importer gives every end bone a
   marker's length), a bone between it and the chest the neck.  The spine between pelvis and chest is
   spread over spine1..spine3 like the name matcher does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..motion.skeleton import JOINT_NAMES
from .bone_map import BoneMap, BoneMapError
from .facing import facing_from_feet

LONG_LIMB = 0.08   # fraction of the height: a thigh, shin, upper arm or forearm is at least this long
LEG_SPLIT = 0.3    # fraction of the height: the legs part at least this high above the lowest point
END_MARKER = 0.04  # fraction of the height: an end bone shorter than this only marks where the chain ends
FOOT_LOW = 0.1     # fraction of the height: an end bone reaching this low may be a foot outside the leg chains
STEEP = 0.7        # a shin's step down to its foot is at least this steep (cosine to straight down)


class _Rig:
    def __init__(self, parents: Sequence[int], heads: np.ndarray, tails: np.ndarray | None):
        self.parents = list(parents)
        self.heads = np.asarray(heads, dtype=np.float64)
        self.tips = self.heads if tails is None else np.asarray(tails, dtype=np.float64)
        self.children: list[list[int]] = [[] for _ in self.parents]
        for bone, parent in enumerate(self.parents):
            if parent >= 0:
                self.children[parent].append(bone)
        self.leaves = [b for b, kids in enumerate(self.children) if not kids]
        points = np.concatenate([self.heads, self.tips])
        self.low, self.height = float(points[:, 1].min()), float(np.ptp(points[:, 1]))

    def ancestors(self, bone: int) -> list[int]:
        """`bone` and every bone above it, nearest first."""
        chain = []
        while bone >= 0:
            chain.append(bone)
            bone = self.parents[bone]
        return chain

    def common(self, a: int, b: int) -> int | None:
        above = set(self.ancestors(b))
        return next((x for x in self.ancestors(a) if x in above), None)

    def path(self, top: int, end: int) -> list[int]:
        """The bones below `top` down to `end`, top first."""
        chain = self.ancestors(end)
        return list(reversed(chain[:chain.index(top)]))

    def segment(self, chain: list[int], k: int) -> np.ndarray:
        """From a chain bone's head to the next one's (the last bone: to its tip)."""
        end = self.heads[chain[k + 1]] if k + 1 < len(chain) else self.tips[chain[k]]
        return end - self.heads[chain[k]]

    def lowest(self, bone: int) -> float:
        return float(min(self.heads[bone, 1], self.tips[bone, 1]))


def _long(rig: _Rig, chain: list[int], k: int, downward: bool) -> bool:
    vector = rig.segment(chain, k)
    length = float(np.linalg.norm(vector))
    return length > LONG_LIMB * rig.height and (not downward or -vector[1] > 0.7 * length)


def _limb(rig: _Rig, chain: list[int], downward: bool, what: str, rig_name: str) -> tuple[int, int, int]:
    """Indices in `chain` of its two long bones and of the bone after them: the longest pair of long bones one after
    the other (a long collar before the upper arm, as on Quaternius' 2018 rigs, is not the upper arm), else the
    first two long bones."""
    found = [k for k in range(len(chain) - 1) if _long(rig, chain, k, downward)]
    pairs = [k for k in found if k + 1 in found and k + 2 < len(chain)]
    if pairs:
        first = max(pairs, key=lambda k: float(np.linalg.norm(rig.segment(chain, k))
                                                + np.linalg.norm(rig.segment(chain, k + 1))))
        return first, first + 1, first + 2
    if len(found) < 2:
        raise BoneMapError(f"rig {rig_name!r} cannot be mapped automatically: the {what} chain has no two long bones "
                           "with a bone after them; load a bone map file or pick the bones by hand")
    return found[0], found[1], found[1] + 1


def _feet(rig: _Rig, rig_name: str) -> tuple[int, int, int, dict[int, list[int]]]:
    """(a foot end bone, the other, the pelvis, {foot end bone: its leg chain from below the pelvis}); the chains of
    feet outside the leg chains run down the leg to the shin and go on at the foot (module docstring, step 1)."""
    by_height = sorted(rig.leaves, key=rig.lowest)
    if not by_height:
        raise BoneMapError(f"rig {rig_name!r} has no bones to map")
    first = by_height[0]
    for other in by_height[1:]:
        split = rig.common(first, other)
        if split is not None and rig.heads[split, 1] > rig.low + LEG_SPLIT * rig.height:
            chains = {leaf: rig.path(split, leaf) for leaf in (first, other)}
            if all(_has_limb(rig, chain) or _one_bone(rig, chain, True) for chain in chains.values()):
                return first, other, split, chains
            break  # legs ending at the shins (their tails reach lowest), the feet elsewhere: IK feet, below
    found = _feet_outside_the_legs(rig, by_height)
    if found is not None:
        return found
    raise BoneMapError(f"rig {rig_name!r} cannot be mapped automatically: no two legs part from one bone above "
                       f"{LEG_SPLIT:.0%} of its height, and no foot bones below two such legs")


def _hand(rig: _Rig, forearm: int, found: int) -> int:
    """The forearm's child that goes on along it (a palm, not a thumb hanging from the forearm as on Quaternius'
    2018 rigs): the child whose head lies most nearly in the forearm's own direction; `found` when the forearm has
    no direction of its own (no tails) or one child."""
    direction = rig.tips[forearm] - rig.heads[forearm]
    kids = [k for k in rig.children[forearm] if np.linalg.norm(rig.heads[k] - rig.heads[forearm]) > 1e-9]
    if len(kids) < 2 or np.linalg.norm(direction) < 1e-9:
        return found

    def along(kid: int) -> float:
        offset = rig.heads[kid] - rig.heads[forearm]
        return float(offset @ direction / (np.linalg.norm(offset) * np.linalg.norm(direction)))

    return max(kids, key=along)


def _one_bone(rig: _Rig, chain: list[int], downward: bool) -> bool:
    """A limb of one long bone (Kenney's Mini Characters: `leg-left` from the hip to the foot)."""
    return len(chain) == 1 and _long(rig, chain, 0, downward)


def _has_limb(rig: _Rig, chain: list[int]) -> bool:
    try:
        _limb(rig, chain, True, "leg", "")
    except BoneMapError:
        return False
    return True


def _above_split(rig: _Rig, bone: int | None) -> bool:
    return bone is not None and rig.heads[bone, 1] > rig.low + LEG_SPLIT * rig.height


def _feet_outside_the_legs(rig: _Rig, by_height: list[int]) -> tuple[int, int, int, dict[int, list[int]]] | None:
    """IK feet: low end bones whose branch leaves the legs below LEG_SPLIT, each under the end bone of a leg."""
    low = [leaf for leaf in by_height if rig.lowest(leaf) < rig.low + FOOT_LOW * rig.height]
    legs: dict[int, tuple[int, list[int]]] = {}  # foot end bone -> (shin end bone, foot chain)
    for foot in low:
        best = None
        for shin in rig.leaves:
            split = rig.common(foot, shin)
            if shin == foot or _above_split(rig, split):
                continue
            chain = rig.path(split, foot) if split is not None else list(reversed(rig.ancestors(foot)))
            step = rig.heads[chain[0]] - rig.heads[shin]
            length = float(np.linalg.norm(step))
            if length < LONG_LIMB * rig.height or -step[1] < STEEP * length:
                continue
            distance = float(np.linalg.norm(step[[0, 2]]))
            if best is None or distance < best[0]:
                best = (distance, shin, chain)
        if best is not None and best[1] not in [shin for shin, _ in legs.values()]:
            legs[foot] = (best[1], best[2])
    feet = list(legs)
    for a_index, foot_a in enumerate(feet):
        for foot_b in feet[a_index + 1:]:
            pelvis = rig.common(legs[foot_a][0], legs[foot_b][0])
            if _above_split(rig, pelvis):
                chains = {foot: rig.path(pelvis, legs[foot][0]) + legs[foot][1] for foot in (foot_a, foot_b)}
                return foot_a, foot_b, pelvis, chains
    return None


def geometric_bone_map(bone_names: Sequence[str], parents: Sequence[int], rest_heads: np.ndarray,
                       rest_tails: np.ndarray | None = None, rig_name: str = "rig") -> tuple[BoneMap, np.ndarray]:
    """(the bone map, the rig's unit forward direction) from hierarchy and rest geometry (see the module docstring);
    heads and tails in metres with y up (any facing).  Raises BoneMapError naming what could not be found."""
    names = list(bone_names)
    rig = _Rig(parents, rest_heads, rest_tails)
    foot_a, foot_b, pelvis, chains = _feet(rig, rig_name)
    legs = {}
    tips: dict[str, str] = {}  # one-bone limbs: the hand or foot at the bone's tail
    for leaf in (foot_a, foot_b):
        chain = chains[leaf]
        if _one_bone(rig, chain, True):
            legs[leaf] = (chain, 0, None, None)
            continue
        thigh, shin, ankle = _limb(rig, chain, True, "leg", rig_name)
        legs[leaf] = (chain, thigh, shin, ankle)
    if any(leg[3] is None for leg in legs.values()):  # no feet to read the facing from: glTF's forward
        forward = np.array([0.0, 0.0, 1.0])
    else:
        forward = facing_from_feet(rig.heads, rest_tails, [legs[f][0][legs[f][3]] for f in legs], [foot_a, foot_b])
    left = np.array([forward[2], 0.0, -forward[0]])  # up x forward
    side_of_leg = sorted(legs, key=lambda f: -float(rig.heads[legs[f][0][legs[f][1]]] @ left))
    bones: dict[str, str | None] = {joint: None for joint in JOINT_NAMES}
    bones["pelvis"] = names[pelvis]
    leg_bones = set()
    follows: dict[str, str] = {}  # feet outside the leg chains -> the shin they follow
    for word, leaf in zip(("left", "right"), side_of_leg, strict=True):
        chain, thigh, shin, ankle = legs[leaf]
        leg_bones.update(chain)
        if ankle is None:
            bones[f"{word}_hip"] = tips[f"{word}_ankle"] = names[chain[0]]
            continue
        bones[f"{word}_hip"], bones[f"{word}_knee"] = names[chain[thigh]], names[chain[shin]]
        bones[f"{word}_ankle"] = names[chain[ankle]]
        if rig.parents[chain[ankle]] != chain[shin] and chain[shin] not in rig.ancestors(chain[ankle]):
            follows[names[chain[ankle]]] = names[chain[shin]]
        if ankle + 1 < len(chain):
            bones[f"{word}_foot"] = names[chain[ankle + 1]]
    upper = [b for b in rig.leaves if b not in leg_bones and b not in (foot_a, foot_b)
             and rig.heads[b, 1] > rig.low + LEG_SPLIT * rig.height]
    if len(upper) < 3:
        raise BoneMapError(f"rig {rig_name!r} cannot be mapped automatically: fewer than three chains (two arms and "
                           "the head) above the legs")
    lateral = {b: float((rig.tips[b] - rig.heads[pelvis]) @ left) for b in upper}
    hand_l, hand_r = max(upper, key=lateral.get), min(upper, key=lateral.get)
    chest = rig.common(hand_l, hand_r)
    if chest is None or pelvis not in rig.ancestors(chest):
        raise BoneMapError(f"rig {rig_name!r} cannot be mapped automatically: the arms do not hang from the spine "
                           "above the legs")
    for word, leaf in (("left", hand_l), ("right", hand_r)):
        chain = rig.path(chest, leaf)
        if _one_bone(rig, chain, False):
            bones[f"{word}_shoulder"] = tips[f"{word}_wrist"] = names[chain[0]]
            continue
        shoulder, elbow, wrist = _limb(rig, chain, False, f"{word} arm", rig_name)
        bones[f"{word}_shoulder"], bones[f"{word}_elbow"] = names[chain[shoulder]], names[chain[elbow]]
        bones[f"{word}_wrist"] = names[_hand(rig, chain[elbow], chain[wrist])]
        if shoulder > 0:
            bones[f"{word}_collar"] = names[chain[shoulder - 1]]
    heads = [b for b in upper if chest in rig.ancestors(b) and b not in (hand_l, hand_r)
             and not set(rig.ancestors(b)) & {rig.path(chest, hand_l)[0], rig.path(chest, hand_r)[0]}]
    if heads:
        top = max(heads, key=lambda b: rig.tips[b, 1])
        chain = rig.path(chest, top)
        if len(chain) > 2 and np.linalg.norm(rig.segment(chain, len(chain) - 1)) < END_MARKER * rig.height:
            chain = chain[:-1]
        bones["head"] = names[chain[-1]]
        if len(chain) > 1:
            bones["neck"] = names[chain[0]]
    spine = rig.path(pelvis, chest)  # below the pelvis up to the chest
    if spine:
        bones["spine3"] = names[spine[-1]]
        between = spine[:-1]
        if between:
            bones["spine1"] = names[between[0]]
        if len(between) >= 2:
            bones["spine2"] = names[between[len(between) // 2 if len(between) > 2 else 1]]
    return BoneMap(name="auto", kind="auto", bones=bones, parents=follows, placed=tuple(follows), tips=tips), forward
