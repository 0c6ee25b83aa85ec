# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: the animator's own key poses steer generation, on a Mixamo-named rig, on Rigify's metarig and on
the rig Rigify generates from it (keyed on its FK controls, the limbs switched to FK, as an animator keys it).

For each rig: the pose is keyed at two frames (frame 20: arms lowered; frame 100: the right arm raised and the hips
moved 1.2 m forward), "Use my keys as constraints" turns the keys into pose constraints, and Generate runs the way
the panel runs it (`job_runner.start_generation`, the REAL worker with the shipped kmm-small model, the controller's
timer driven by hand) for a two-prompt timeline.  The rig's evaluated canonical joint points at the keyed frames
are compared before (the keys) and after (the take); one undo must give back the keyed animation exactly.
Then bad input: an effector on a bone the armature does not have, one outside the timeline, two disagreeing
targets at one frame: Generate refuses each with a message naming it, starts no job and changes nothing.
"""

from __future__ import annotations

import os

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
import key_posing  # noqa: E402
from key_posing import swing  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.timeline import constraint_source, segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion.kinematics import inverse_kinematics  # noqa: E402
from kmm_motion.kmm_core.motion.skeleton import tpose_offsets  # noqa: E402
from kmm_motion.kmm_core.retarget.rig_pose import fitted_canonical_pose, standing_offset  # noqa: E402
from kmm_motion.kmm_core.retarget.transfer import retarget, source_from_rotations  # noqa: E402

KEY_FRAMES = (20, 100)
result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
scene.frame_start, scene.frame_end = 1, 120

metarig, generated, mixamo = key_posing.add_rigify_and_mixamo(context)
rigs = {"rigify_metarig": metarig.name, "rigify": generated.name, "mixamo": mixamo.name}
BONES = {"rigify_metarig": ("upper_arm.L", "upper_arm.R", "spine"),
         "rigify": ("upper_arm_fk.L", "upper_arm_fk.R", "torso"),
         "mixamo": ("mixamorig:LeftArm", "mixamorig:RightArm", "mixamorig:Hips")}


def key_pose(obj, frame: int) -> None:
    for bone in obj.pose.bones:
        path = "rotation_quaternion" if bone.rotation_mode == "QUATERNION" else (
            "rotation_axis_angle" if bone.rotation_mode == "AXIS_ANGLE" else "rotation_euler")
        bone.keyframe_insert(path, frame=frame)
        bone.keyframe_insert("location", frame=frame)


def key_two_poses(name: str, obj) -> None:
    left, right, hips = BONES[name]
    key_posing.start_keying(context, obj, f"{name}_keys")
    swing(context, obj, left, (0, 0, -1), 70)
    swing(context, obj, right, (0, 0, -1), 70)
    key_pose(obj, KEY_FRAMES[0])
    for bone in obj.pose.bones:
        bone.matrix_basis = Matrix()
    context.view_layer.update()
    swing(context, obj, left, (0, 0, -1), 70)
    swing(context, obj, right, (0, 0, 1), 60)
    hip = obj.pose.bones[hips]
    moved = hip.matrix.copy()
    moved.translation = moved.translation + obj.matrix_world.inverted().to_3x3() @ Vector((0, -1.2, 0))
    hip.matrix = moved
    context.view_layer.update()
    key_pose(obj, KEY_FRAMES[1])


def joint_points(obj) -> np.ndarray:
    return key_posing.joint_points(obj, KEY_FRAMES)


def keyed_state(obj) -> dict:
    action = obj.animation_data.action if obj.animation_data else None
    return {"action": action.name if action else None, "actions": sorted(a.name for a in bpy.data.actions),
            "points": [p.round(6).tolist() for p in joint_points(obj)]}


config = key_posing.worker_config()
settings = scene.kmm
settings.random_seed = False
settings.seed = 3
set_rows(settings, [segment_table.Row("a person walks forward", 1, 60),
                    segment_table.Row("a person waves with the right hand", 61, 120)])
for name in list(rigs):
    obj = bpy.data.objects[rigs[name]]
    scene = bpy.context.scene  # an undo replaces every data-block: take them afresh
    settings = scene.kmm
    key_two_poses(name, obj)
    settings.target_armature = obj
    outcome = bpy.ops.kmm.use_keys_as_constraints()
    poses = constraint_source.stored_poses(settings)
    keyed = joint_points(obj)
    scene.frame_set(1)
    bpy.ops.ed.undo_push(message=f"{name} keyed")
    before = keyed_state(obj)
    job = key_posing.generate_and_wait(config, limit_s=240)
    after_points = joint_points(obj)
    leg = float(np.mean([np.linalg.norm(keyed[0][a] - keyed[0][b]) + np.linalg.norm(keyed[0][b] - keyed[0][c])
                         for a, b, c in ((1, 4, 7), (2, 5, 8))]))
    errors = [float(np.linalg.norm(a - k, axis=-1).mean()) for a, k in zip(after_points, keyed, strict=True)]
    # What retargeting alone reproduces of each keyed pose (its canonical pose sent straight back onto the rig and
    # raised by the feet rule's standing offset, as a take is).
    target_skeleton = rig_retarget.armature_target_skeleton(obj)
    bone_map = rig_retarget.bone_map_for(obj, target_skeleton)
    round_trip = []
    for points in keyed:
        pose = fitted_canonical_pose(points, target_skeleton, bone_map)
        root, rotations = inverse_kinematics(np.repeat(pose[None], 2, axis=0), tpose_offsets())
        back = retarget(source_from_rotations(root, rotations, tpose_offsets(), 30.0), target_skeleton, bone_map,
                        only_needed_bones=True).joint_points()[0] + [0.0, standing_offset(target_skeleton, bone_map), 0.0]
        round_trip.append(float(np.linalg.norm(back - points, axis=-1).mean()))
    result[name] = {"operator": sorted(outcome), "pose_frames": [p["frame"] for p in poses],
                    "job": [job.state, job.error], "take": obj.animation_data.action.name,
                    "mean_error_m": errors, "leg_m": leg, "round_trip_m": round_trip,
                    "joint_errors_m": [np.linalg.norm(a - k, axis=-1).round(3).tolist()
                                       for a, k in zip(after_points, keyed, strict=True)]}
    object_name = obj.name
    bpy.ops.ed.undo()
    obj = bpy.data.objects[object_name]
    result[name]["undo_restores"] = keyed_state(obj) == before
    job_runner.release()

# Bad input: each refused before any job starts, naming what is wrong; the scene is left as it was.
obj = bpy.data.objects[rigs["mixamo"]]
scene = bpy.context.scene
settings = scene.kmm
settings.target_armature = obj
target = bpy.data.objects.new("HandTarget", None)
scene.collection.objects.link(target)
target.location = (0.3, -0.4, 1.2)
other = bpy.data.objects.new("OtherTarget", None)
scene.collection.objects.link(other)
other.location = (-0.5, -0.4, 1.0)


def refusal(setup) -> dict:
    settings.effectors.clear()
    setup()
    before = keyed_state(obj)
    try:
        job_runner.build_request(scene)
        message = ""
    except KMMError as error:
        message = str(error)
    return {"message": message, "unchanged": keyed_state(obj) == before,
            "running": bool(bpy.context.window_manager.kmm_job.running)}


def unknown_bone():
    row = settings.effectors.add()
    row.joint, row.target, row.bone, row.start, row.end = "right_wrist", obj, "mixamorig:NoSuchBone", 30, 30


def outside():
    row = settings.effectors.add()
    row.joint, row.target, row.start, row.end = "right_wrist", target, 500, 510


def conflicting():
    for empty in (target, other):
        row = settings.effectors.add()
        row.joint, row.target, row.start, row.end = "left_wrist", empty, 40, 40


def unreachable():
    row = settings.effectors.add()
    target.location = (0.0, -0.4, 4.0)
    row.joint, row.target, row.start, row.end = "right_wrist", target, 40, 40


result["bad"] = {name: refusal(setup) for name, setup in (("unknown_bone", unknown_bone), ("outside", outside),
                                                          ("conflicting", conflicting),
                                                          ("unreachable", unreachable))}
result["environment"] = os.environ.get("KMM_CHECKPOINTS_DIR", "")
_harness.emit(result)
