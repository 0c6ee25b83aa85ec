# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: rigs a user may hand over that are odd but not broken, or broken in a way the add-on must name.

    python rig_inputs.py checks <take.npz>           scales, a NaN key, a swapped bone map, a linked armature
    python rig_inputs.py make_linked <library.blend> <scene.blend>
                                                      a library file with the rig, and a scene that links it

`checks` emits, per case, what `target_problem` says (None: accepted) and, for accepted scales, the keys a take puts
on the scaled rig next to the keys on the same rig unscaled (the motion is made in the armature's own space).
"""

from __future__ import annotations

import math
import sys

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402
import published_rigs  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402


def rig(name: str) -> bpy.types.Object:
    """A humanoid with Rigify metarig names (the preset maps it), metres, Z up, facing -Y."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = published_rigs.rigify_named_bones("spine.006")
    for bone_name, parent, head, tail in bones:
        edit = data.edit_bones.new(bone_name)
        edit.head, edit.tail = head, tail
        if parent:
            edit.parent = data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def keys_of(obj: bpy.types.Object, motion: MotionResult) -> list[list[float]]:
    """The quaternions and the travel a take keys on `obj` (read-only: what would be written)."""
    keys = rig_retarget.retargeted_take_keys(obj, motion, take_keys.WriteOptions(), bpy.context.scene)
    return [keys.quaternions.reshape(len(keys.quaternions), -1).tolist(), keys.locations.tolist()]


def checks(take_path: str) -> dict:
    motion = MotionResult.load(take_path)
    result: dict = {}
    plain = rig("Plain")
    result["plain_keys"] = keys_of(plain, motion)
    for label, scale in (("stretched_z", (1.0, 1.0, 1.001)), ("non_uniform", (0.87, 1.0, 1.0)),
                         ("mirrored_x", (-1.0, 1.0, 1.0)), ("mirrored_all", (-1.0, -1.0, -1.0)),
                         ("flat_y", (1.0, 0.0, 1.0))):
        obj = rig(f"Scaled_{label}")
        obj.scale = scale
        bpy.context.view_layer.update()
        problem = rig_retarget.target_problem(obj)
        result[label] = {"problem": problem}
        if problem is None:
            result[label]["keys"] = keys_of(obj, motion)
    nan_rig = rig("NaNKey")
    bone = nan_rig.pose.bones["forearm.L"]
    bone.rotation_mode = "QUATERNION"
    bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    bone.keyframe_insert("rotation_quaternion", frame=1)
    bone.rotation_quaternion = (math.nan, 0.0, 0.0, 0.0)
    bone.keyframe_insert("rotation_quaternion", frame=5)
    bpy.context.scene.frame_set(5)
    bone_map = rig_retarget.bone_map_for(nan_rig)
    try:
        rig_retarget.evaluated_joint_points(nan_rig, bone_map)
        result["nan_key"] = None
    except KMMError as error:
        result["nan_key"] = str(error)
    from kmm_motion.kmm_blender.timeline import constraint_source

    try:  # "Use My Keys as Constraints" reads the same points
        constraint_source.poses_from_keys(bpy.context.scene, nan_rig, 1, 10)
        result["nan_key_poses"] = None
    except KMMError as error:
        result["nan_key_poses"] = str(error)
    swapped = rig("Swapped")
    detected = rig_retarget.bone_map_for(swapped)
    rig_retarget.store_bone_map(swapped, detected.with_bone("left_knee", "foot.L").with_bone("left_ankle", "shin.L"))
    result["swapped_map"] = rig_retarget.target_problem(swapped)
    return result


def make_linked(library: str, scene_file: str) -> dict:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    rig("LinkedRig")
    bpy.ops.wm.save_as_mainfile(filepath=library)
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(library, link=True) as (source, target):
        target.objects = ["LinkedRig"]
    for obj in target.objects:
        bpy.context.scene.collection.objects.link(obj)
    linked = bpy.data.objects["LinkedRig"]
    problem = rig_retarget.target_problem(linked)
    bpy.ops.wm.save_as_mainfile(filepath=scene_file)
    return {"linked_problem": problem, "library": linked.library is not None}


if sys.argv[1] == "checks":
    _harness.emit(checks(sys.argv[2]))
else:
    _harness.emit(make_linked(sys.argv[2], sys.argv[3]))
