# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: key poses on a character imported with the glTF importer's defaults (its bones along random node
axes, tests/gltf_test_rig.py) become constraints, and the generated take holds what was keyed, rotations included.

    python held_keys.py work_dir

Frame 20: the arms lowered, the whole body keyed.  Frame 100: the whole body keyed with the hips moved 1.2 m
forward, the right arm raised, the left hand bent 40 degrees and the left upper arm twisted 45 degrees about itself.
Every bone is posed about the joints (its head and its child's head), never along its own axes.  "Use My Keys as
Constraints" reads the keys, Generate runs the REAL worker as the panel does; the result has, at each keyed frame,
the angle between the keyed and the generated orientation of the bent hand and the twisted arm (and of every keyed
bone the map drives), the joints' distances, and the hips' height keyed and generated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import key_posing  # noqa: E402
from gltf_test_rig import layout_bones, write_skinned_gltf  # noqa: E402
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.timeline import constraint_source, segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402

LAYOUT = Path(__file__).resolve().parents[1] / "data" / "characters" / "layouts" / "mixamo_gltf.json"
KEY_FRAMES = (20, 100)
work = Path(sys.argv[1])
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
scene.frame_start, scene.frame_end = 1, 120
bpy.ops.import_scene.gltf(filepath=str(write_skinned_gltf(layout_bones(LAYOUT), work / "character.gltf", seed=7)))
obj = next(o for o in bpy.data.objects if o.type == "ARMATURE")
context.view_layer.update()
P = "mixamorig:"


def turn_about(bone_name: str, axis_world, degrees: float) -> None:
    """Turn the posed bone (and what hangs from it) about its head, about a world axis."""
    bone = obj.pose.bones[bone_name]
    axis = (obj.matrix_world.inverted().to_3x3() @ Vector(axis_world)).normalized()
    turn = Matrix.Rotation(np.radians(degrees), 4, axis)
    bone.matrix = Matrix.Translation(bone.head) @ turn @ Matrix.Translation(-bone.head) @ bone.matrix
    context.view_layer.update()


def along(bone_name: str, child_name: str) -> Vector:
    """The world direction from a bone's head to its child's head (what the joints say, not the bone's axes)."""
    head, child = obj.pose.bones[bone_name].head, obj.pose.bones[child_name].head
    return (obj.matrix_world.to_3x3() @ (child - head)).normalized()


def key_everything(frame: int) -> None:
    for bone in obj.pose.bones:
        bone.rotation_mode = "QUATERNION"
        bone.keyframe_insert("rotation_quaternion", frame=frame)
        bone.keyframe_insert("location", frame=frame)


def rest() -> None:
    for bone in obj.pose.bones:
        bone.matrix_basis = Matrix()
    context.view_layer.update()


key_posing.start_keying(context, obj, "my_keys")
# frame 20: both arms lowered 70 degrees (each turned about the axis that takes it towards straight down)
forward = Vector((0.0, -1.0, 0.0))  # the character faces -Y in Blender
for side in ("Left", "Right"):
    arm = along(P + f"{side}Arm", P + f"{side}ForeArm")
    turn_about(P + f"{side}Arm", arm.cross(Vector((0.0, 0.0, -1.0))).normalized(), 70.0)
key_everything(KEY_FRAMES[0])
rest()
# frame 100: hips forward, right arm raised, left hand bent, left upper arm twisted
hips = obj.pose.bones[P + "Hips"]
moved = hips.matrix.copy()
moved.translation = moved.translation + obj.matrix_world.inverted().to_3x3() @ Vector((0.0, -1.2, 0.0))
hips.matrix = moved
context.view_layer.update()
right = along(P + "RightArm", P + "RightForeArm")
turn_about(P + "RightArm", right.cross(Vector((0.0, 0.0, 1.0))).normalized(), 60.0)
left_arm = along(P + "LeftArm", P + "LeftForeArm")
turn_about(P + "LeftArm", left_arm.cross(Vector((0.0, 0.0, -1.0))).normalized(), 50.0)  # lowered a little
turn_about(P + "LeftArm", along(P + "LeftArm", P + "LeftForeArm"), 45.0)  # twisted about itself
hand = along(P + "LeftHand", P + "LeftHandMiddle1")
turn_about(P + "LeftHand", hand.cross(forward).normalized(), 40.0)  # bent
key_everything(KEY_FRAMES[1])

keyed = {}
for frame in KEY_FRAMES:
    scene.frame_set(frame)
    keyed[frame] = {b.name: [list(row) for row in b.matrix.to_3x3()] for b in obj.pose.bones}
keyed_points = key_posing.joint_points(obj, KEY_FRAMES)

settings = scene.kmm
settings.random_seed = False
settings.seed = 3
set_rows(settings, [segment_table.Row("a person walks forward", 1, 60),
                    segment_table.Row("a person waves with the right hand", 61, 120)])
settings.target_armature = obj
outcome = bpy.ops.kmm.use_keys_as_constraints()
poses = constraint_source.stored_poses(settings)
job = key_posing.generate_and_wait(key_posing.worker_config(), limit_s=400)
after_points = key_posing.joint_points(obj, KEY_FRAMES)
bone_map = rig_retarget.bone_map_for(obj)
driven = sorted(bone_map.driven_bones().values())


def angle(a, b) -> float:
    a, b = np.array(a), np.array(b)
    a, b = a / np.linalg.norm(a, axis=0), b / np.linalg.norm(b, axis=0)
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1.0, 1.0))))


angles = {}
for frame in KEY_FRAMES:
    scene.frame_set(frame)
    angles[frame] = {name: angle(keyed[frame][name], obj.pose.bones[name].matrix.to_3x3()) for name in driven}
_harness.emit({"operator": sorted(outcome), "pose_frames": [p["frame"] for p in poses],
               "rotations_stored": [sorted(r) for _, r in sorted(constraint_source.held_rotations(scene, obj))],
               "job": [job.state, job.error], "take": obj.animation_data.action.name,
               "angles": {str(f): a for f, a in angles.items()},
               "joint_errors_m": [np.linalg.norm(a - k, axis=-1).round(4).tolist()
                                  for a, k in zip(after_points, keyed_points, strict=True)],
               "hips_keyed_m": [float(p[0][1]) for p in keyed_points],
               "hips_take_m": [float(p[0][1]) for p in after_points],
               "pelvis": bone_map.bones["pelvis"]})
