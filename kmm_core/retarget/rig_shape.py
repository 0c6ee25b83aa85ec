# SPDX-License-Identifier: GPL-3.0-or-later
"""What a rig that cannot be mapped is, said so that its owner can act: its shape from the rest geometry (how many
limbs reach the floor, how many chains reach out to the sides), the roles the names and the geometry did find and
on which bones, what is missing, and one piece of advice.

    rig 'Dog' is not a two-legged character: it looks like a four-legged rig (4 limbs reach the floor: b_LeftHand_011,
    b_RightHand_011, b_LeftFoot01_017, b_RightFoot01_017). Found: ... Missing: ... Pick the bones in the Target Rig
    panel (Blender) or give a bone map file (--bone-map) if it is a two-legged character after all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GROUND = 0.12        # a limb reaches the floor when its end is within this share of the rig's height of its lowest point
FLAT = 0.25          # a rig whose height is under this share of its width stands on nothing (an arm, a prop)
ADVICE = ("pick the bones in the Target Rig panel (Blender) or give a bone map file (--bone-map) if it is a "
          "two-legged character after all")


def _children(parents: Sequence[int]) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in parents]
    for bone, parent in enumerate(parents):
        if parent >= 0:
            kids[parent].append(bone)
    return kids


def _ancestors(parents: Sequence[int], bone: int) -> list[int]:
    chain = []
    while bone >= 0:
        chain.append(bone)
        bone = parents[bone]
    return chain


def ground_limbs(parents: Sequence[int], heads: np.ndarray) -> list[int]:
    """The limbs that reach the floor, one end bone each: end bones within GROUND of the lowest point, those that
    part from each other only near the floor (a foot's toes) or end next to each other (an IK foot bone beside its
    leg's end) counted once."""
    heads = np.asarray(heads, dtype=np.float64)
    kids = _children(parents)
    low, height = float(heads[:, 1].min()), float(np.ptp(heads[:, 1]))
    ends = [b for b, k in enumerate(kids) if not k and heads[b, 1] <= low + GROUND * height]
    limbs: list[int] = []
    for end in sorted(ends, key=lambda b: heads[b, 1]):
        mine = set(_ancestors(parents, end))
        same = False
        for other in limbs:
            split = next((b for b in _ancestors(parents, other) if b in mine), None)
            apart = float(np.linalg.norm((heads[end] - heads[other])[[0, 2]]))
            if split is None or heads[split, 1] <= low + 2 * GROUND * height or apart < GROUND * height:
                same = True  # toes of one foot, or an IK foot beside its leg's end
                break
        if not same:
            limbs.append(end)
    return limbs


def _flat(heads: np.ndarray) -> tuple[bool, float, float]:
    """(whether the rest pose is far wider than tall: it stands on nothing, its height, its width), metres."""
    extent = np.ptp(heads, axis=0)
    width = float(max(extent[0], extent[2]))
    return bool(extent[1] < FLAT * width), float(extent[1]), width


def rig_shape(parents: Sequence[int], heads: np.ndarray) -> tuple[str | None, list[int]]:
    """(what the rig is when it cannot be a two-legged character, "a 4-legged rig ...", "one limb ...", or None when
    it looks like one (two or three limbs on the floor: a tail may touch it); the end bones of the limbs that reach
    the floor)."""
    heads = np.asarray(heads, dtype=np.float64)
    if len(heads) == 0:
        return "it has no bones", []
    flat, height, width = _flat(heads)
    if flat:
        branches = sum(1 for k in _children(parents) if len(k) > 1)
        what = "one limb on its own (one chain of bones, no body)" if branches <= 1 else "a flat rig"
        return (f"it looks like {what}: it is {height * 100:.0f} cm tall and {width * 100:.0f} cm wide, nothing "
                "stands on a floor"), []
    limbs = ground_limbs(parents, heads)
    if len(limbs) >= 4:
        return f"it looks like a {len(limbs)}-legged rig ({len(limbs)} limbs reach the floor)", limbs
    if len(limbs) <= 1:
        return "no legs found (no two limbs reach the floor)", []
    return None, limbs


def many_legged(parents: Sequence[int], heads: np.ndarray | None) -> bool:
    """Whether the rest pose stands on four or more limbs (refused before any name is read: an animal rig's
    `LeftHand` is a front paw)."""
    if heads is None or len(heads) == 0 or _flat(np.asarray(heads, dtype=np.float64))[0]:
        return False
    return len(ground_limbs(parents, heads)) >= 4


def unmappable_message(rig: str, bone_names: Sequence[str], parents: Sequence[int], heads: np.ndarray | None,
                       found: dict[str, str], missing: Sequence[str]) -> str:
    """The one message for a rig that cannot be mapped: what it is, the roles found ({role: bone}), what is
    missing, one piece of advice."""
    shape, limbs = rig_shape(parents, heads) if heads is not None and len(bone_names) else (None, [])
    if shape is not None:
        on_floor = f": {', '.join(bone_names[b] for b in limbs)}" if limbs else ""
        parts = [f"rig {rig!r} is not a two-legged character: {shape}{on_floor}."]
    else:
        parts = [f"rig {rig!r} cannot be mapped automatically."]
    if found:
        parts.append("Found: " + ", ".join(f"{role} {bone!r}" for role, bone in found.items()) + ".")
    else:
        parts.append("Found: none of the hips, legs, arms or head by name or by shape.")
    if missing:
        parts.append("Missing: " + ", ".join(missing) + ".")
    parts.append(ADVICE[0].upper() + ADVICE[1:] + ".")
    return " ".join(parts)
