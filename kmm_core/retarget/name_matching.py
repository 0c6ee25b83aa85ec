# SPDX-License-Identifier: GPL-3.0-or-later
"""Automatic bone maps for rigs no preset fits: names find the hands, feet and head; the hierarchy finds the rest.

1. Names.  A bone name is split into a side (`.L/_L/Left/left_/l_/_l/lThigh/FootL/CC_Base_L_...`, and the same for right)
   and a body-part word after dropping namespaces (`mixamorig:`), rig prefixes (`DEF-`, `J_Bip_`, `CC_Base_`, ...)
   and separators.  Synonyms (thigh/upleg/upperleg/femur, shin/calf/leg/lowerleg/tibia, forearm/lowerarm/radius,
   clavicle/collar/shoulder, ...) say which part a word names.
2. Hierarchy.  From each hand, the first non-twist ancestors are the forearm, upper arm and (when it is not shared
   by both arms) the collar; from each foot, the shin and thigh.  The bone both thighs and the spine hang from is the
   pelvis, the bone both collars hang from the chest; the spine between them is spread over spine1..spine3, the
   bones between chest and head give the neck.  Names of the chain bones are checked against the synonyms.
3. Rest geometry breaks ties: among several candidates for a hand or foot the one highest in the hierarchy (fewest
   ancestors) wins, and when names give no side the bone's rest position left or right of the body decides.
4. When the names find no hand, foot or head (glTF `Node_12`, COLLADA `leg_joint_L_3`, palms but no hand bone), the
   map comes from the hierarchy and rest geometry alone (`geometric_mapping.py`); a head the names miss is taken
   from it too, its left and right following the names where they say a side (`sides_from_names`).
   `detect_bone_map` also completes a preset that names all but one of its joints from that map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..motion.skeleton import JOINT_NAMES
from .bone_map import REQUIRED_JOINTS, BoneMap, BoneMapError, best_preset_map, presets
from .geometric_mapping import geometric_bone_map
from .rig_shape import many_legged, unmappable_message

_PREFIXES = ("mixamorig", "def-", "org-", "j_bip_", "cc_base_", "bip01", "bip001", "c_", "rl_", "valvebiped.bip01_",
             "b_")
_SIDE_PATTERNS = {
    "L": (r"(^|[._\-\s])l($|[._\-\s])", r"left", r"^l(?=[A-Z])", r"[._\-]l$", r"(?<=[a-z0-9])L$"),
    "R": (r"(^|[._\-\s])r($|[._\-\s])", r"right", r"^r(?=[A-Z])", r"[._\-]r$", r"(?<=[a-z0-9])R$"),
}
_PARTS = {
    "hand": ("hand", "wrist"),
    "foot": ("foot", "ankle"),
    "toe": ("toe", "toes", "toebase", "ball"),
    "head": ("head",),
    "neck": ("neck",),
    "forearm": ("forearm", "lowerarm", "elbow", "radius", "forearmbend"),
    "upperarm": ("upperarm", "arm", "humerus", "shldr", "shldrbend", "shoulder"),
    "collar": ("clavicle", "collar", "shoulder"),
    "shin": ("shin", "calf", "leg", "lowerleg", "tibia", "knee"),
    "thigh": ("thigh", "upleg", "upperleg", "femur", "thighbend"),
}
_ALL_PART_WORDS = {word for words in _PARTS.values() for word in words} | {"hipjoint", "fingers", "thumb"}
_SKIP_WORDS = ("twist", "roll", "share", "helper", "ik", "pole", "target", "mch", "end", "nub", "corrective")


def _side_and_word(name: str) -> tuple[str | None, str]:
    base = name.rsplit(":", 1)[-1]
    side = None
    for candidate, patterns in _SIDE_PATTERNS.items():
        if any(re.search(pattern, base, flags=0 if pattern.startswith(("^l(", "^r(", "(?<=")) else re.IGNORECASE)
               for pattern in patterns):
            side = candidate
            break
    word = base.lower()
    for prefix in _PREFIXES:
        if word.startswith(prefix):
            word = word[len(prefix):]
    word = re.sub(r"(left|right)", "", word)
    word = re.sub(r"(^|[._\-\s])[lr]($|[._\-\s])", r"\1\2", word)
    if side is not None and re.match(r"^[lr][A-Z]", base):
        word = word[1:]
    elif side is not None and re.search(r"(?<=[a-z0-9])[LR]$", base):
        word = word[:-1]  # three.js / Quaternius' FootL, UpperLegR
    word = re.sub(r"[._\-\s]|\d+$", "", word)
    word = re.sub(r"\d+", "", word)
    if side is None and len(word) > 2 and word[0] in "lr" and word[1:] in _ALL_PART_WORDS:
        side, word = word[0].upper(), word[1:]  # CMU's lowercase lfemur, rwrist
    return side, word


def _is_part(word: str, part: str) -> bool:
    return word in _PARTS[part]


def _skipped(word: str) -> bool:
    return any(skip in word for skip in _SKIP_WORDS)


def auto_bone_map(bone_names: Sequence[str], parents: Sequence[int], rest_positions: np.ndarray | None = None,
                  rig: str = "rig", rest_tails: np.ndarray | None = None) -> BoneMap:
    """A bone map found from names and hierarchy, else from hierarchy and rest geometry (see the module docstring).
    `rest_positions` (B, 3) and `rest_tails` in HumanML3D axes and metres settle sides that names leave open and
    allow the geometric map.  Raises BoneMapError naming what could not be found."""
    if many_legged(parents, rest_positions):
        found_roles, _ = named_roles(bone_names, parents, rest_positions)
        raise BoneMapError(unmappable_message(rig, list(bone_names), list(parents), rest_positions, found_roles, []))
    try:
        found = _name_bone_map(bone_names, parents, rest_positions, rig)
    except BoneMapError:
        if rest_positions is None:
            raise
        try:
            return sides_from_names(geometric_bone_map(bone_names, parents, rest_positions, rest_tails, rig)[0])
        except BoneMapError:
            found, missing = named_roles(bone_names, parents, rest_positions)
            raise BoneMapError(unmappable_message(rig, list(bone_names), list(parents), rest_positions, found,
                                                  missing)) from None
    if found.bones["head"] or found.bones["neck"] or rest_positions is None:
        return found
    try:
        geometric = geometric_bone_map(bone_names, parents, rest_positions, rest_tails, rig)[0]
    except BoneMapError:
        return found
    bones = dict(found.bones)
    for joint in ("head", "neck"):
        if geometric.bones[joint] and geometric.bones[joint] not in bones.values():
            bones[joint] = geometric.bones[joint]
    return replace(found, bones=bones)


class _NamedBones:
    """A rig's bones read by name: each bone's side and part word (`_side_and_word`), its depth in the hierarchy,
    and the shallowest bone naming a part on a side (the side from the name, else from where the bone is)."""

    def __init__(self, bone_names: Sequence[str], parents: Sequence[int], rest_positions: np.ndarray | None):
        self.names = list(bone_names)
        self.info = [_side_and_word(name) for name in self.names]
        self.depth: list[int] = []
        for parent in parents:
            self.depth.append(0 if parent < 0 else self.depth[parent] + 1)
        self.rest_positions = rest_positions

    def side_of(self, bone: int) -> str | None:
        side = self.info[bone][0]
        if side is None and self.rest_positions is not None:
            x = self.rest_positions[bone, 0] - float(np.median(self.rest_positions[:, 0]))
            side = "L" if x > 1e-6 else "R" if x < -1e-6 else None
        return side

    def find(self, part: str, side: str | None) -> int | None:
        found = [b for b, (_, word) in enumerate(self.info) if _is_part(word, part) and not _skipped(word)
                 and self.side_of(b) == side]
        return min(found, key=lambda b: self.depth[b]) if found else None


def named_roles(bone_names: Sequence[str], parents: Sequence[int],
                rest_positions: np.ndarray | None) -> tuple[dict[str, str], list[str]]:
    """({role: bone} the names find, [roles a two-legged character needs that they do not]): the hands, the feet,
    the thighs and the head, each side by name or by where it is."""
    named = _NamedBones(bone_names, parents, rest_positions)
    found: dict[str, str] = {}
    missing: list[str] = []
    for part, sided in (("hand", True), ("foot", True), ("thigh", True), ("head", False)):
        for side, word in ((("L", "left "), ("R", "right ")) if sided else ((None, ""),)):
            bone = named.find(part, side)
            if bone is not None:
                found[f"{word}{part}"] = named.names[bone]
            elif part != "thigh":
                missing.append(f"a {word}{part} bone")
    return found, missing


def _swapped_side(joint: str) -> str:
    for word, other in (("left_", "right_"), ("right_", "left_")):
        if joint.startswith(word):
            return other + joint[len(word):]
    return joint


def sides_from_names(bone_map: BoneMap) -> BoneMap:
    """A geometric map with its left and right exchanged when the bones' names say so: the geometry reads the sides
    from which way the rig faces, the names (`FootL`, `UpperLeg.R`) say them outright, and a rig's names do not
    change with the importer.  Exchanged only when more of the mapped bones' names contradict the map than agree
    with it."""
    agree = disagree = 0
    for joint, bone in list(bone_map.bones.items()) + list(bone_map.tips.items()):
        side = _side_and_word(bone)[0] if bone else None
        wanted = "L" if joint.startswith("left_") else "R" if joint.startswith("right_") else None
        if side and wanted:
            agree += side == wanted
            disagree += side != wanted
    if disagree <= agree:
        return bone_map
    return replace(bone_map, bones={_swapped_side(j): b for j, b in bone_map.bones.items()},
                   tips={_swapped_side(j): b for j, b in bone_map.tips.items()})


def _name_bone_map(bone_names: Sequence[str], parents: Sequence[int], rest_positions: np.ndarray | None,
                   rig: str) -> BoneMap:
    """Steps 1-3 of the module docstring: names first, the hierarchy for the chains between them."""
    named = _NamedBones(bone_names, parents, rest_positions)
    names, info, find = named.names, named.info, named.find

    def ancestors(bone: int) -> list[int]:
        chain, bone = [], parents[bone]
        while bone >= 0:
            chain.append(bone)
            bone = parents[bone]
        return chain

    def chain_up(bone: int, count: int) -> list[int]:
        """The first `count` ancestors that are not twist/helper bones."""
        kept = [a for a in ancestors(bone) if not _skipped(info[a][1])]
        return kept[:count]

    def common(a: int, b: int) -> int | None:
        other = set(ancestors(b)) | {b}
        return next((x for x in [a] + ancestors(a) if x in other), None)

    bones: dict[str, str | None] = {joint: None for joint in JOINT_NAMES}
    problems = []
    hands = {side: find("hand", side) for side in "LR"}
    feet = {side: find("foot", side) for side in "LR"}
    # No foot bones (wheels, hooves on a biped, legs ending at the shins): each shin's end stands in for the foot
    shins = {side: find("shin", side) for side in "LR"} if None in feet.values() else {}
    shin_ends = all(shins.get(side) is not None and len(chain_up(shins[side], 1)) == 1 for side in "LR")
    for side, word in (("L", "left"), ("R", "right")):
        if hands[side] is None:
            problems.append(f"no {word} hand bone")
        if feet[side] is None and not shin_ends:
            problems.append(f"no {word} foot bone")
    if problems:
        raise BoneMapError(f"rig {rig!r} cannot be mapped automatically: {', '.join(problems)}; load a bone map "
                           "file or pick the bones by hand")
    collars: dict[str, int] = {}
    thighs: dict[str, int] = {}
    tips: dict[str, str] = {}
    for side, word in (("L", "left"), ("R", "right")):
        arm = chain_up(hands[side], 3)
        if feet[side] is None:  # the shin's end (its tail) is the ankle
            feet[side] = shins[side]
            tips[f"{word}_ankle"] = names[shins[side]]
        leg = chain_up(feet[side], 2 if f"{word}_ankle" not in tips else 1)
        leg = [feet[side]] + leg if f"{word}_ankle" in tips else leg
        if len(arm) < 2 or len(leg) < 2:
            raise BoneMapError(f"rig {rig!r}: the {word} arm or leg has too few bones above the hand/foot")
        bones[f"{word}_wrist"] = names[hands[side]]
        bones[f"{word}_elbow"] = names[arm[0]]
        bones[f"{word}_shoulder"] = names[arm[1]]
        if len(arm) > 2:
            collars[side] = arm[2]
        bones[f"{word}_ankle"] = None if f"{word}_ankle" in tips else names[feet[side]]
        bones[f"{word}_knee"] = names[leg[0]]
        bones[f"{word}_hip"] = names[leg[1]]
        thighs[side] = leg[1]
        if f"{word}_ankle" in tips:
            continue
        toes = [c for c, p in enumerate(parents) if p == feet[side] and not _skipped(info[c][1])]
        toe = next((c for c in toes if _is_part(info[c][1], "toe")), toes[0] if len(toes) == 1 else None)
        bones[f"{word}_foot"] = names[toe] if toe is not None else None
    upper_l = names.index(bones["left_shoulder"])
    upper_r = names.index(bones["right_shoulder"])
    chest = common(upper_l, upper_r)
    legs = common(thighs["L"], thighs["R"])
    pelvis = common(legs, chest) if legs is not None and chest is not None else None
    if pelvis is None or chest is None:
        raise BoneMapError(f"rig {rig!r}: the legs (or arms) do not hang from one common bone")
    # Collars: the upper arm's parent when it is not the chest itself (one per side).
    for side, word in (("L", "left"), ("R", "right")):
        if side in collars and collars[side] != chest and collars[side] in ancestors(
                names.index(bones[f"{word}_shoulder"])) and chest in ancestors(collars[side]):
            bones[f"{word}_collar"] = names[collars[side]]
    if chest in (thighs["L"], thighs["R"]) or pelvis not in ancestors(chest) + [chest]:
        raise BoneMapError(f"rig {rig!r}: the arms do not hang from the spine above the legs")
    # The pelvis: the highest bone below which both legs and the spine hang, not above a lone root bone.
    spine = [chest] + ancestors(chest)
    spine = spine[:spine.index(pelvis) + 1] if pelvis in spine else [chest]
    spine.reverse()  # pelvis ... chest
    spine = [b for b in spine if not _skipped(info[b][1])]
    bones["pelvis"] = names[spine[0]]
    middle = spine[1:]
    if middle:
        bones["spine3"] = names[middle[-1]]
        between = middle[:-1]
        if len(between) >= 1:
            bones["spine1"] = names[between[0]]
        if len(between) >= 2:
            bones["spine2"] = names[between[len(between) // 2 if len(between) > 2 else 1]]
    heads = [b for b, (_, word) in enumerate(info) if _is_part(word, "head") and chest in ancestors(b)]
    head = min(heads, key=lambda b: named.depth[b]) if heads else None
    if head is not None:
        bones["head"] = names[head]
        neck = [a for a in ancestors(head) if a != chest and chest in ancestors(a) and not _skipped(info[a][1])]
        if neck:
            bones["neck"] = names[neck[-1]]
    return BoneMap(name="auto", kind="auto", bones=bones, tips=tips)


def detect_bone_map(bone_names: Sequence[str], parents: Sequence[int], rest_positions: np.ndarray | None = None,
                    rig: str = "rig", rest_tails: np.ndarray | None = None) -> BoneMap:
    """The best shipped preset for this rig when one names all its joints; else a preset naming all but one of
    them, that one joint taken from the geometric map; else `auto_bone_map`."""
    found = best_preset_map(bone_names)
    if found is not None:
        return found[0]
    if rest_positions is not None:
        completed = _preset_missing_one(bone_names, parents, rest_positions, rest_tails, rig)
        if completed is not None:
            return completed
    return auto_bone_map(bone_names, parents, rest_positions, rig, rest_tails)


def _preset_missing_one(bone_names, parents, rest_positions, rest_tails, rig) -> BoneMap | None:
    for candidate in presets():
        bone_map, found = candidate.resolve(bone_names)
        missing = [j for j in JOINT_NAMES if candidate.bones.get(j) and not bone_map.bones[j]]
        if len(missing) != 1 or found < len(REQUIRED_JOINTS):
            continue
        try:
            geometric = geometric_bone_map(bone_names, parents, rest_positions, rest_tails, rig)[0]
        except BoneMapError:
            return None
        bone = geometric.bones[missing[0]]
        if bone is None or bone in bone_map.bones.values():
            continue
        bones = {**bone_map.bones, missing[0]: bone}
        return BoneMap(name=f"{bone_map.name} + geometry ({missing[0]})", kind="auto", bones=bones,
                       points=bone_map.points, parents=bone_map.parents, pose_settings=bone_map.pose_settings)
    return None
