# SPDX-License-Identifier: GPL-3.0-or-later
"""The rig motion is retargeted onto, described the same way whether it is a BVH file or a Blender armature.

A `TargetSkeleton` lists the rig's bones (names, parents in hierarchy order), each bone's rest head position and rest
orientation (the bone's axes as matrix columns: Blender's `bone.matrix_local`, the identity for BVH joints) in the
rig's own coordinates, optionally each bone's rest tail (`rest_tails`: the toe tip is the tail of the last toe bone)
and `foot_points` (rest points, rig coordinates, that move with a foot bone: the corners of the skinned foot mesh), plus how those coordinates become HumanML3D's (metres, Y up, the character faces +Z):
`to_humanml3d` (a rotation) and `scale_to_metres`.  Leaf directions (`tail_directions`) give the way a bone without
children points (Blender: head -> tail; BVH: towards its End Site), used to line up hands, head and toes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..common.errors import KMMError

MIN_EXTENT_METRES = 0.01  # a rig's rest heads must span at least this much (a humanoid spans about 1.7 m)
AXES = {"+X": (1, 0, 0), "-X": (-1, 0, 0), "+Y": (0, 1, 0), "-Y": (0, -1, 0), "+Z": (0, 0, 1), "-Z": (0, 0, -1)}


class TargetSkeletonError(KMMError, ValueError):
    """A target skeleton is malformed (names the bone or field)."""


def axes_to_humanml3d(up: str, forward: str) -> np.ndarray:
    """(3, 3) rotation taking vectors of a rig whose up axis is `up` and whose character faces `forward` (each one of
    +X -X +Y -Y +Z -Z) to HumanML3D axes (rows: the rig's left, up, forward; left = up x forward)."""
    if up not in AXES or forward not in AXES:
        raise TargetSkeletonError(f"up and forward must be one of {sorted(AXES)}, got {up!r} and {forward!r}")
    up_vector, forward_vector = np.array(AXES[up], float), np.array(AXES[forward], float)
    if abs(float(up_vector @ forward_vector)) > 0.5:
        raise TargetSkeletonError(f"up ({up}) and forward ({forward}) must be perpendicular")
    return np.stack([np.cross(up_vector, forward_vector), up_vector, forward_vector])


@dataclass(frozen=True)
class TargetSkeleton:
    name: str
    bone_names: tuple[str, ...]
    parents: tuple[int, ...]            # -1 for roots; every parent comes before its children
    rest_heads: np.ndarray              # (B, 3) rig coordinates and units
    rest_rotations: np.ndarray          # (B, 3, 3) bone axes (columns) in rig coordinates
    tail_directions: np.ndarray         # (B, 3) unit direction each bone points in at rest (rig coordinates)
    to_humanml3d: np.ndarray            # (3, 3) rotation: HumanML3D vector = to_humanml3d @ rig vector
    scale_to_metres: float
    rest_tails: np.ndarray | None = None                             # (B, 3) rig coordinates, None: unknown
    foot_points: dict[str, np.ndarray] = field(default_factory=dict)  # bone name -> (K, 3) rig coordinates

    def __post_init__(self) -> None:
        count = len(self.bone_names)
        if len(set(self.bone_names)) != count:
            duplicate = next(n for n in self.bone_names if self.bone_names.count(n) > 1)
            raise TargetSkeletonError(f"skeleton {self.name!r}: bone name {duplicate!r} appears twice")
        if len(self.parents) != count or any(p >= i for i, p in enumerate(self.parents)):
            raise TargetSkeletonError(f"skeleton {self.name!r}: parents must come before their children")
        for field_name, shape in (("rest_heads", (count, 3)), ("rest_rotations", (count, 3, 3)),
                                  ("tail_directions", (count, 3)), ("to_humanml3d", (3, 3))):
            value = np.asarray(getattr(self, field_name), dtype=np.float64)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise TargetSkeletonError(f"skeleton {self.name!r}: {field_name} must be finite with shape {shape}, "
                                          f"got {value.shape}")
            object.__setattr__(self, field_name, value)
        if self.rest_tails is not None:
            tails = np.asarray(self.rest_tails, dtype=np.float64)
            if tails.shape != (count, 3) or not np.all(np.isfinite(tails)):
                raise TargetSkeletonError(f"skeleton {self.name!r}: rest_tails must be finite with shape {(count, 3)}, "
                                          f"got {tails.shape}")
            object.__setattr__(self, "rest_tails", tails)
        points = {}
        for bone, value in self.foot_points.items():
            array = np.asarray(value, dtype=np.float64).reshape(-1, 3)
            if bone not in self.bone_names or not np.all(np.isfinite(array)):
                raise TargetSkeletonError(f"skeleton {self.name!r}: foot points of {bone!r} name no bone of the rig or "
                                          "are not finite")
            points[bone] = array
        object.__setattr__(self, "foot_points", points)
        if not (np.isfinite(self.scale_to_metres) and self.scale_to_metres > 0):
            raise TargetSkeletonError(f"skeleton {self.name!r}: scale_to_metres must be a positive number, got "
                                      f"{self.scale_to_metres}")
        rotation = self.to_humanml3d
        if not (np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) and np.linalg.det(rotation) > 0):
            raise TargetSkeletonError(f"skeleton {self.name!r}: its axes do not map onto HumanML3D's by a rotation "
                                      "(an object scaled to zero, or sheared): give it a non-zero, uniform scale")
        if count > 1:
            heads = self.rest_heads_metres()
            extent = float(np.linalg.norm(heads.max(axis=0) - heads.min(axis=0)))
            if extent < MIN_EXTENT_METRES:
                raise TargetSkeletonError(
                    f"skeleton {self.name!r}: all {count} bone heads sit within {extent * 100:.2f} cm of one point "
                    f"(its rest pose has no size: zero OFFSETs or bone heads), at least {MIN_EXTENT_METRES * 100:.0f} "
                    "cm needed to retarget onto it")

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.bone_names)}

    def rest_heads_metres(self) -> np.ndarray:
        """(B, 3) rest heads in HumanML3D axes and metres."""
        return self.rest_heads @ self.to_humanml3d.T * self.scale_to_metres

    def rest_rotations_humanml3d(self) -> np.ndarray:
        """(B, 3, 3) bone axes expressed in HumanML3D axes (M' = A M)."""
        return self.to_humanml3d @ self.rest_rotations

    def rest_tails_metres(self) -> np.ndarray | None:
        """(B, 3) rest tails in HumanML3D axes and metres (None when the rig does not say)."""
        return None if self.rest_tails is None else self.rest_tails @ self.to_humanml3d.T * self.scale_to_metres

    def foot_points_metres(self, bone: str) -> np.ndarray:
        """(K, 3) the foot points of `bone` in HumanML3D axes and metres (empty when it has none)."""
        return self.foot_points.get(bone, np.zeros((0, 3))) @ self.to_humanml3d.T * self.scale_to_metres

    def turned(self, to_humanml3d: np.ndarray) -> TargetSkeleton:
        """The same rig read with other axes (its detected facing, `facing.py`)."""
        return replace(self, to_humanml3d=np.asarray(to_humanml3d, dtype=np.float64))

    def tail_directions_humanml3d(self) -> np.ndarray:
        return self.tail_directions @ self.to_humanml3d.T

    def children(self) -> list[list[int]]:
        kids: list[list[int]] = [[] for _ in self.bone_names]
        for bone, parent in enumerate(self.parents):
            if parent >= 0:
                kids[parent].append(bone)
        return kids

    def is_ancestor(self, ancestor: int, bone: int) -> bool:
        while bone >= 0:
            if bone == ancestor:
                return True
            bone = self.parents[bone]
        return False


SIDE_CHILDREN = 0.25  # children all nearer a bone's head than this share of its skin's reach hang at its side


def joint_tails(parents, heads: np.ndarray, own_tails: np.ndarray,
                skin_ends: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """(B, 3) where each bone ends, from the joint positions and the hierarchy, never from where an importer put the
    bone's tail (importers point bones along arbitrary node axes: Blender's glTF importer at its defaults, FBX
    without automatic orientation).  A bone with one child ends at that child's head, with several at their heads'
    mean (whichever child an importer pointed it at); a leaf
    ends where its skin ends (`skin_ends`, rig coordinates: the tip of the vertices it moves), and so does a bone
    whose children all hang at its side, near its head, while its skin reaches far beyond them (a robot's shin
    ending at its wheel with a knee cap as its only child); only a bone with neither children nor skin keeps its
    own tail (a bare armature's tails are what its author drew).  Children whose heads sit on the bone's own head
    give no end."""
    heads = np.asarray(heads, dtype=np.float64)
    own_tails = np.asarray(own_tails, dtype=np.float64)
    skin_ends = skin_ends or {}
    children: list[list[int]] = [[] for _ in range(len(heads))]
    for bone, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(bone)
    scale = float(np.linalg.norm(np.ptp(heads, axis=0))) if len(heads) > 1 else 1.0
    tails = own_tails.copy()
    for bone, kids in enumerate(children):
        away = [k for k in kids if np.linalg.norm(heads[k] - heads[bone]) > 1e-4 * scale]
        skin = skin_ends.get(bone)
        if skin is not None and (not away or max(np.linalg.norm(heads[k] - heads[bone]) for k in away)
                                 < SIDE_CHILDREN * np.linalg.norm(skin - heads[bone])):
            tails[bone] = skin
        elif away:
            tails[bone] = heads[away].mean(axis=0)
    return tails


def tail_directions_of(heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """(B, 3) unit head -> tail directions (+y where a bone has no length)."""
    directions = np.asarray(tails, dtype=np.float64) - np.asarray(heads, dtype=np.float64)
    norms = np.linalg.norm(directions, axis=-1, keepdims=True)
    return np.where(norms > 1e-9, directions / np.maximum(norms, 1e-12), np.array([0.0, 1.0, 0.0]))


def bvh_target_skeleton(motion, up: str = "+Y", forward: str = "+Z", scale_to_metres: float | None = None,
                        name: str | None = None) -> TargetSkeleton:
    """A `TargetSkeleton` from a parsed BVH file (`kmm_core.bvh.reader.BvhMotion`): its real joints (End Sites only
    set the direction of their parent), rest heads from the OFFSETs, identity rest orientations.

    `scale_to_metres` defaults to a guess from the rest height: centimetres when the skeleton is taller than 3 units,
    else metres (pass it for other units, e.g. CMU's 0.056444)."""
    joints = motion.joint_indices
    keep = {old: new for new, old in enumerate(joints)}
    names = tuple(motion.names[j] for j in joints)
    parents = tuple(keep.get(motion.parents[j], -1) if motion.parents[j] >= 0 else -1 for j in joints)
    positions = np.zeros((len(motion.names), 3))
    for joint, parent in enumerate(motion.parents):
        positions[joint] = motion.offsets[joint] + (positions[parent] if parent >= 0 else 0.0)
    heads = positions[list(joints)]
    tails = np.zeros_like(heads)
    children: list[list[int]] = [[] for _ in motion.names]  # once, so the loop below stays linear in the joints
    for joint, parent in enumerate(motion.parents):
        if parent >= 0:
            children[parent].append(joint)
    for new, old in enumerate(joints):
        kids = children[old]
        if kids:
            direction = np.mean(positions[kids], axis=0) - positions[old]
        else:
            direction = positions[old] - positions[motion.parents[old]] if motion.parents[old] >= 0 else np.zeros(3)
        norm = np.linalg.norm(direction)
        tails[new] = direction / norm if norm > 1e-9 else (0.0, 1.0, 0.0)
    to_humanml3d = axes_to_humanml3d(up, forward)
    if scale_to_metres is None:
        height = np.ptp(heads @ to_humanml3d.T, axis=0)[1]
        scale_to_metres = 0.01 if height > 3.0 else 1.0
    return TargetSkeleton(name=name or str(motion.path), bone_names=names, parents=parents, rest_heads=heads,
                          rest_rotations=np.broadcast_to(np.eye(3), (len(names), 3, 3)).copy(),
                          tail_directions=tails, to_humanml3d=to_humanml3d, scale_to_metres=float(scale_to_metres))


def canonical_target_skeleton(offsets: np.ndarray | None = None, name: str = "KMM skeleton") -> TargetSkeleton:
    """The KMM armature as a target: the 22 canonical joints (SMPL names) in the rest pose `offsets` (default the
    T-pose), HumanML3D axes and metres."""
    from ..motion.skeleton import JOINT_NAMES, PARENTS, TPOSE_OFFSET_DIRECTIONS, rest_positions, tpose_offsets

    offsets = tpose_offsets() if offsets is None else np.asarray(offsets, dtype=np.float64)
    heads = rest_positions(offsets)
    tails = np.array(TPOSE_OFFSET_DIRECTIONS, copy=True)
    for joint, parent in enumerate(PARENTS):
        kids = [c for c, p in enumerate(PARENTS) if p == joint]
        if kids:
            tails[joint] = heads[kids].mean(axis=0) - heads[joint]
        elif parent >= 0:
            tails[joint] = heads[joint] - heads[parent]
    tails /= np.maximum(np.linalg.norm(tails, axis=-1, keepdims=True), 1e-9)
    return TargetSkeleton(name=name, bone_names=JOINT_NAMES, parents=PARENTS, rest_heads=heads,
                          rest_rotations=np.broadcast_to(np.eye(3), (len(JOINT_NAMES), 3, 3)).copy(),
                          tail_directions=tails, to_humanml3d=np.eye(3), scale_to_metres=1.0)
