# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: a take never costs the user their own work, and never keys garbage.

A Rigify human metarig carries the animator's own action ("UserWalk", no fake user: it has exactly one user, the
rig) on bones in three rotation modes (Euler XYZ, Euler ZXY, axis-angle) beside quaternion bones.  Then:
1. a take is written onto it (the importer every route uses: the panel's Generate, the batch, Apply Motion File):
   UserWalk keeps a fake user and survives saving and reopening the file; every bone keeps its rotation mode and
   the take is keyed in it; the Euler/axis-angle take poses the rig exactly as the same take keyed on a copy of the
   rig whose bones are all quaternions;
2. a segment of that take is regenerated (a real "edited" MotionResult, frames outside the segment bit-identical):
   the modes still hold and the new take is keyed in them; keys outside the segment stay as they were;
3. degenerate targets are refused by name before anything is written: the rig scaled to zero, and a rig whose bone
   heads all sit at one point; the scene's actions are unchanged;
4. a timeline whose frames Blender cannot hold is refused, and the segment table keeps its rows.
"""

from __future__ import annotations

import json

import _harness
import numpy as np

user_dir = _harness.start()
import addon_utils  # noqa: E402
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_blender.takes import segment_regenerator  # noqa: E402
from kmm_motion.kmm_blender.timeline import segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import rows_of, set_rows  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

work = _harness.scratch_folder("kmm_user_data_")
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 20, 1.0
result: dict = {"blender_version": list(bpy.app.version)}

source = fixture_motion.three_segment_take(MotionResult)  # a real HumanML3D clip, 20 fps
SEGMENTS = fixture_motion.FIXTURE_SEGMENTS
source_path = source.save(work / "source.npz")

addon_utils.enable("rigify", default_set=True)
bpy.ops.object.armature_human_metarig_add()
rig = context.view_layer.objects.active
MODES = {"upper_arm.L": "XYZ", "thigh.R": "ZXY", "forearm.L": "AXIS_ANGLE", "spine.001": "YXZ"}
user_action = bpy.data.actions.new("UserWalk")
rig.animation_data_create().action = user_action
for bone, mode in MODES.items():
    rig.pose.bones[bone].rotation_mode = mode
for frame, angle in ((1, 0.0), (30, 0.6)):
    rig.pose.bones["upper_arm.L"].rotation_euler = (angle, 0.2, 0.0)
    rig.pose.bones["upper_arm.L"].keyframe_insert("rotation_euler", frame=frame)
modes_before = {bone.name: bone.rotation_mode for bone in rig.pose.bones}
result["user_action_users_before"] = user_action.users
result["user_action_fake_user_before"] = user_action.use_fake_user

# A twin of the rig with every bone in quaternion mode: the reference pose of the same take.
twin = rig.copy()
twin.data = rig.data.copy()
twin.animation_data_clear()
scene.collection.objects.link(twin)
for bone in twin.pose.bones:
    bone.rotation_mode = "QUATERNION"

def fcurves_of(action, obj) -> list:
    """The action's F-curves for `obj` (its slot's channelbag on Blender 4.4+, Action.fcurves before)."""
    slot = getattr(obj.animation_data, "action_slot", None)
    if slot is None:
        return list(action.fcurves)
    from bpy_extras import anim_utils

    own = next(s for s in action.slots if s.identifier == slot.identifier)
    return list(anim_utils.action_get_channelbag_for_slot(action, own).fcurves)


options = take_keys.WriteOptions(start_frame=1.0)
imported = take_importer.import_takes(context, [str(source_path)], rig, options)
take = imported.takes[0].action
reference = take_importer.import_takes(context, [str(source_path)], twin, options).takes[0].action
result["warnings"] = imported.warnings
result["modes_after"] = {bone.name: bone.rotation_mode for bone in rig.pose.bones} == modes_before
result["rotation_channels"] = {bone: sorted({c.data_path.rsplit(".", 1)[-1] for c in fcurves_of(take, rig)
                                            if c.data_path.startswith(f'pose.bones["{bone}"].rotation')})
                               for bone in (*MODES, "spine")}
result["recorded_modes"] = json.loads(take.get("kmm_rotation_modes", "{}"))


def world_poses(obj, frames) -> np.ndarray:
    poses = []
    for frame in frames:
        scene.frame_set(frame)
        poses.append([[v for row in (obj.matrix_world @ bone.matrix) for v in row] for bone in obj.pose.bones])
    return np.array(poses)


FRAMES = list(range(1, 170, 13))
result["pose_difference_to_quaternion_twin"] = float(np.abs(world_poses(rig, FRAMES) - world_poses(twin, FRAMES)).max())

# 2. regenerate the middle segment with a real edited result (outside frames bit-identical)
start, end = SEGMENTS[1]
edited = fixture_motion.with_segment_reversed(source, 1, "turn back")
edited_path = edited.save(work / "edited.npz")
plan = segment_regenerator.plan_regeneration(scene, rig, 1, "turn back")
regenerated = segment_regenerator.apply_regeneration(context, plan, str(edited_path)).action
result["regenerated_active"] = rig.animation_data.action == regenerated
result["modes_after_regeneration"] = {bone.name: bone.rotation_mode for bone in rig.pose.bones} == modes_before


def curve_keys(action, path: str, count: int) -> np.ndarray:
    curves = {(c.data_path, c.array_index): c for c in fcurves_of(action, rig)}
    out = []
    for index in range(count):
        fcurve = curves[(path, index)]
        co = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        out.append(co.reshape(-1, 2))
    return np.stack(out)


euler_path = 'pose.bones["upper_arm.L"].rotation_euler'
old_keys, new_keys = curve_keys(take, euler_path, 3), curve_keys(regenerated, euler_path, 3)
outside = (old_keys[0, :, 0] < start + 1) | (old_keys[0, :, 0] > end)  # scene frame = motion frame + 1
result["euler_keys_outside_kept"] = bool(np.array_equal(old_keys[:, outside], new_keys[:, outside]))
result["euler_keys_inside_changed"] = bool(not np.allclose(old_keys[:, ~outside, 1], new_keys[:, ~outside, 1]))
steps = np.abs(np.diff(new_keys[:, :, 1], axis=1))
result["largest_euler_step_radians"] = float(steps.max())

# saved and reopened: the user's action is still there
blend = work / "kept.blend"
rig_name = rig.name
bpy.ops.wm.save_as_mainfile(filepath=str(blend))
bpy.ops.wm.open_mainfile(filepath=str(blend))
kept = bpy.data.actions.get("UserWalk")
result["user_action_after_reopen"] = None if kept is None else {"fake_user": kept.use_fake_user}

# 3. degenerate targets: refused by name, nothing written
def import_error(target) -> str:
    """The error of writing the take onto `target` ("no error" when it is written)."""
    try:
        take_importer.import_takes(bpy.context, [str(source_path)], target, options)
    except KMMError as error:
        return str(error)
    return "no error"


scene = bpy.context.scene
rig = bpy.data.objects[rig_name]
actions_before = sorted(a.name for a in bpy.data.actions)
rig.scale = (0.0, 0.0, 0.0)
bpy.context.view_layer.update()
result["zero_scale_problem"] = rig_retarget.target_problem(rig)
result["zero_scale_import"] = import_error(rig)
rig.scale = (1.0, 1.0, 1.0)

bpy.ops.object.select_all(action="DESELECT")
bpy.ops.object.armature_human_metarig_add()
flat = bpy.context.view_layer.objects.active
flat.name = "FlatRig"
bpy.ops.object.mode_set(mode="EDIT")
for bone in flat.data.edit_bones:
    bone.use_connect = False  # a connected child would drag its parent's tail onto the point too
for bone in flat.data.edit_bones:
    length = bone.length
    bone.head = (0.0, 0.0, 0.0)
    bone.tail = (0.0, 0.0, max(length, 0.01))
bpy.ops.object.mode_set(mode="OBJECT")
result["flat_problem"] = rig_retarget.target_problem(flat)
result["flat_import"] = import_error(flat)
result["actions_unchanged"] = sorted(a.name for a in bpy.data.actions) == actions_before

# 4. a timeline beyond Blender's frames: refused, the table keeps its rows
settings = bpy.context.scene.kmm
set_rows(settings, [segment_table.Row("walk forward", 1, 60)])
huge = work / "huge.json"
huge.write_text(json.dumps({"fps": 20, "segments": [{"prompt": "walk", "start": 2**31 + 5, "end": 2**31 + 60}]}))
try:
    segment_table.import_rows(huge, 20.0, 1)
    result["huge_import"] = "no error"
except KMMError as error:
    result["huge_import"] = str(error)
try:
    set_rows(settings, [segment_table.Row("walk", 1, 30), segment_table.Row("run", 31, 2**31 + 10)])
    result["huge_rows"] = "no error"
except KMMError as error:
    result["huge_rows"] = str(error)
result["table_kept"] = [[r.prompt, r.start, r.end] for r in rows_of(settings)]

# 5. a bone map stored in the .blend nested far too deeply: a clear problem for the panel, never a RecursionError
nested = bpy.data.objects[rig_name]
nested["kmm_bone_map"] = "[" * 100_000 + "]" * 100_000
result["nested_map_problem"] = rig_retarget.target_problem(nested)
result["nested_map_described"] = list(rig_retarget.describe_bone_map(nested)[::2])
package.unregister()
_harness.emit(result)
