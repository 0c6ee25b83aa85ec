# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the canonical 22-bone KMM armature in its T-pose rest.

One bone per skeleton joint, named as `skeleton.JOINT_NAMES`, its head at the joint.  Motion rotations are relative
to `skeleton.tpose_offsets()`, so the armature's rest pose must be exactly that T-pose; bone orientation (which way
a bone points, its roll) is free because keyframe_writer reads the bones' rest matrices back from Blender.

Bones point along the limb toward their (main) child joint so the rig looks and poses like a normal character rig;
leaf joints (toes, head, wrists) get a short tail continuing their own direction.  The whole armature stands on the
floor (z = 0) facing -Y, as Blender characters do.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Vector

from ...kmm_core.motion import skeleton
from .axes import positions_to_blender

DEFAULT_ARMATURE_NAME = "KMM Skeleton"

# The child a bone with several children points at (pelvis -> spine, chest -> neck).
_MAIN_CHILD = {skeleton.JOINT_INDEX["pelvis"]: skeleton.JOINT_INDEX["spine1"],
               skeleton.JOINT_INDEX["spine3"]: skeleton.JOINT_INDEX["neck"]}
# Tail lengths (metres) of bones without children: toes, head (to the crown), hands.
_LEAF_LENGTHS = {"left_foot": 0.06, "right_foot": 0.06, "head": 0.2, "left_wrist": 0.1, "right_wrist": 0.1}


def tpose_rest_positions(offsets: np.ndarray | None = None) -> np.ndarray:
    """(22, 3) joint positions of the rest pose `offsets` (default the T-pose) in Blender axes, lowest joint on the
    floor (z = 0)."""
    offsets = skeleton.tpose_offsets() if offsets is None else np.asarray(offsets, dtype=np.float64)
    positions = positions_to_blender(skeleton.rest_positions(offsets))
    positions[:, 2] -= positions[:, 2].min()
    return positions


def bone_tails(heads: np.ndarray) -> np.ndarray:
    """(22, 3) tail of every bone given the joint positions (Blender axes)."""
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent >= 0:
            children.setdefault(parent, []).append(joint)
    directions = np.array(positions_to_blender(skeleton.TPOSE_OFFSET_DIRECTIONS))
    # A leaf continues its own bone's direction (from the parent), whatever the rest pose.
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent >= 0 and joint not in children:
            own = heads[joint] - heads[parent]
            if np.linalg.norm(own) > 1e-6:
                directions[joint] = own / np.linalg.norm(own)
    tails = np.empty_like(heads)
    for joint, name in enumerate(skeleton.JOINT_NAMES):
        kids = children.get(joint, [])
        if kids:
            tails[joint] = heads[_MAIN_CHILD.get(joint, kids[0])]
        else:
            tails[joint] = heads[joint] + directions[joint] * _LEAF_LENGTHS[name]
    return tails


def _roll_reference(direction: np.ndarray) -> Vector:
    """Which way a bone's local Z should face: forward (-Y) for upright bones, up (+Z) for horizontal ones."""
    return Vector((0.0, -1.0, 0.0)) if abs(direction[2]) > 0.7 else Vector((0.0, 0.0, 1.0))


def create_armature(
    context: bpy.types.Context,
    name: str = DEFAULT_ARMATURE_NAME,
    collection: bpy.types.Collection | None = None,
    offsets: np.ndarray | None = None,
) -> bpy.types.Object:
    """Create the KMM armature object (rest pose `offsets`, default the T-pose; quaternion rotation mode) and make
    it active.  Pass a motion's `rest_offsets` when it was made for another rest skeleton.

    Leaves the new armature in object mode; any other object in edit/pose mode is switched to object mode first,
    because edit bones can only be created in the armature's own edit mode.
    """
    armature = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, armature)
    (collection or context.scene.collection).objects.link(obj)

    view_layer = context.view_layer
    if view_layer.objects.active is not None and view_layer.objects.active.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    obj.select_set(True)

    heads = tpose_rest_positions(offsets)
    tails = bone_tails(heads)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones = armature.edit_bones
        for joint, bone_name in enumerate(skeleton.JOINT_NAMES):
            bone = edit_bones.new(bone_name)
            bone.head = Vector(heads[joint])
            bone.tail = Vector(tails[joint])
            bone.align_roll(_roll_reference(tails[joint] - heads[joint]))
            parent = skeleton.PARENTS[joint]
            if parent >= 0:
                bone.parent = edit_bones[skeleton.JOINT_NAMES[parent]]
                bone.use_connect = False  # heads stay exactly at the joints even where they are not the parent's tail
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")

    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    armature.display_type = "OCTAHEDRAL"
    obj.show_in_front = True
    return obj


def missing_bones(obj: bpy.types.Object | None) -> list[str]:
    """Names of the KMM joints an object lacks as bones (all of them if it is not an armature)."""
    if obj is None or obj.type != "ARMATURE":
        return list(skeleton.JOINT_NAMES)
    present = set(obj.data.bones.keys())
    return [name for name in skeleton.JOINT_NAMES if name not in present]
