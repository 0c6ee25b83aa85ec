# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: one character, its bones pointing every way importers make them point, one take on each.

    python bone_directions.py take.npz work_dir result.json

The character is a real skinned glTF (tests/gltf_test_rig.py) of the Mixamo layout whose joint nodes have random
local axes, as converted downloads have.  It is imported with Blender's glTF importer under each bone heuristic
("BLENDER", the importer's default, "TEMPERANCE", "FORTUNE"), exported to FBX and imported again with and without
FBX's automatic bone orientation, and imported once more with every bone given a random roll and a random tail.
The world-space rest pose is the same in all of them.  Each gets the take with no bone map (the add-on's importer,
as the panel and the batch do) and, once, the take with a key on the hips bone used as a constraint; the result
has, per variant and frame, the world positions of the mapped joints (metres), the lowest point of each foot
(bones and skinned vertices) above the rest floor, and the rest height.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gltf_test_rig import (  # noqa: E402
    layout_bones,
    lone_arm,
    quadruped,
    wheeled_robot,
    with_legs_on_the_spine,
    with_loose_prop,
    write_skinned_gltf,
)
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_blender.timeline import constraint_source  # noqa: E402
from kmm_motion.kmm_core.motion.skeleton import JOINT_NAMES  # noqa: E402
from kmm_motion.kmm_core.retarget.rig_pose import rig_scale  # noqa: E402

CHARACTERS = Path(__file__).resolve().parents[1] / "data" / "characters"
LAYOUT = CHARACTERS / "layouts" / "mixamo_gltf.json"
DOWNLOADED = {"cesium_man": CHARACTERS / "CesiumMan.gltf", "robot_expressive": CHARACTERS / "RobotExpressive.glb",
              "kaykit_mannequin": CHARACTERS / "kaykit_mannequin" / "manny_med_mod.gltf"}
take_path, work, result_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


def clear() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for collection in (bpy.data.armatures, bpy.data.meshes, bpy.data.actions):
        for item in list(collection):
            collection.remove(item)


def armature() -> bpy.types.Object:
    bpy.context.view_layer.update()
    return next(o for o in bpy.data.objects if o.type == "ARMATURE")


def gltf(path: Path, heuristic: str) -> bpy.types.Object:
    bpy.ops.import_scene.gltf(filepath=str(path), bone_heuristic=heuristic)
    return armature()


def fbx(path: Path, automatic: bool) -> bpy.types.Object:
    bpy.ops.import_scene.fbx(filepath=str(path), automatic_bone_orientation=automatic)
    return armature()


def rolled(path: Path, seed: int) -> bpy.types.Object:
    """The default import with every bone's roll and tail drawn at random (the heads stay)."""
    obj = gltf(path, "BLENDER")
    scale = max(obj.dimensions) / max(obj.scale)  # armature units per the character's size
    draw = random.Random(seed)
    # meshes parented to bones (a robot's rigid parts) hang from their bone's tail: keep them where they are in
    # the rest pose (what the retargeting reads), so the character itself does not change
    obj.data.pose_position = "REST"
    bpy.context.view_layer.update()
    hung = {mesh: mesh.matrix_world.copy() for mesh in bpy.data.objects
            if mesh.parent == obj and mesh.parent_type == "BONE"}
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = obj.data.edit_bones
    for bone in bones:
        bone.use_connect = False
    for bone in bones:
        direction = [draw.gauss(0.0, 1.0) for _ in range(3)]
        norm = math.sqrt(sum(d * d for d in direction))
        length = draw.uniform(0.01, 0.2) * scale  # 1% to 20% of the character, in armature units
        bone.tail = [h + length * d / norm for h, d in zip(bone.head, direction, strict=True)]
        bone.roll = draw.uniform(-math.pi, math.pi)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.update()
    for mesh, world in hung.items():
        mesh.matrix_world = world
    obj.data.pose_position = "POSE"
    return armature()


def world_points(obj: bpy.types.Object, bone_map, ends: dict[str, Vector]) -> dict[str, list[float]]:
    """The mapped joints in world space; a joint at a bone's end (`tips`: a shin ending at its wheel) where that
    end (`ends`, armature space at rest: from the joints and the skin) is carried by the posed bone."""
    points = {}
    for name in JOINT_NAMES:
        point = bone_map.point_of(name)
        if name in bone_map.tips:
            bone = obj.pose.bones[bone_map.tips[name]]
            rest = obj.data.bones[bone.name].matrix_local
            points[name] = list(obj.matrix_world @ bone.matrix @ rest.inverted() @ ends[bone.name])
            continue
        if point is None:
            continue
        first = obj.matrix_world @ obj.pose.bones[point.first].head
        second = obj.matrix_world @ obj.pose.bones[point.second].head
        points[name] = list((1 - point.t) * first + point.t * second)
    return points


def skinned_lowest(obj: bpy.types.Object) -> dict[str, float]:
    """The lowest skinned vertex moved by each foot chain (the ankle bone and those below it)."""
    bone_map = rig_retarget.bone_map_for(obj)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    lowest = {}
    for side in ("left", "right"):
        ankle = obj.pose.bones[bone_map.bones[f"{side}_ankle"] or bone_map.tips[f"{side}_ankle"]]
        chain = {ankle.name} | {b.name for b in obj.pose.bones if ankle in b.parent_recursive}
        heights = [(obj.matrix_world @ obj.pose.bones[name].head).z for name in chain]
        for mesh in bpy.data.objects:
            if mesh.type != "MESH":
                continue
            evaluated = mesh.evaluated_get(depsgraph)
            if mesh.parent == obj and mesh.parent_type == "BONE":  # a rigid part hanging from a bone
                if mesh.parent_bone in chain:
                    heights += [(evaluated.matrix_world @ v.co).z for v in evaluated.data.vertices]
                continue
            groups = {g.index: g.name for g in mesh.vertex_groups}
            for vertex in mesh.data.vertices:
                best = max(vertex.groups, key=lambda g: g.weight, default=None)
                if best is not None and groups.get(best.group) in chain:
                    heights.append((evaluated.matrix_world @ evaluated.data.vertices[vertex.index].co).z)
        lowest[side] = min(heights)
    return lowest


def hips_key(obj: bpy.types.Object, bone_map) -> dict:
    """Keys on the hips bone at frame 10 (the rest pose) and frame 20 (moved 1.2 m forward, the way the rig faces),
    read as "Use My Keys as Constraints" reads them: the canonical poses' pelvis heights and the travel between
    them, and what 1.2 m is on the canonical skeleton (divided by the rig's scale)."""
    from mathutils import Matrix

    obj.animation_data_create().action = bpy.data.actions.new("my_keys")
    for bone in obj.pose.bones:
        bone.matrix_basis = Matrix()
    bpy.context.view_layer.update()
    left = obj.matrix_world @ obj.pose.bones[bone_map.bones["left_hip"]].head
    right = obj.matrix_world @ obj.pose.bones[bone_map.bones["right_hip"]].head
    across = (left - right)
    forward = Vector((-across.y, across.x, 0.0)).normalized()  # left x up, Blender's z up
    hips = obj.pose.bones[bone_map.bones["pelvis"]]
    while hips.bone.use_connect and hips.parent is not None:  # a connected bone cannot move: its parent carries it
        hips = hips.parent
    for frame, shift in ((10, 0.0), (20, 1.2)):
        moved = hips.matrix.copy()
        moved.translation = moved.translation + obj.matrix_world.inverted().to_3x3() @ (forward * shift)
        hips.matrix = moved
        bpy.context.view_layer.update()
        path = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
            hips.rotation_mode, "rotation_euler")
        hips.keyframe_insert(path, frame=frame)  # a key on the hips bone alone, as an animator places the body
        hips.keyframe_insert("location", frame=frame)
        for bone in obj.pose.bones:
            bone.matrix_basis = Matrix()
        bpy.context.view_layer.update()
    poses = constraint_source.poses_from_keys(bpy.context.scene, obj, 1, 135)
    pelvis = [pose["positions"][0] for pose in poses]
    scale = rig_scale(rig_retarget.armature_target_skeleton(obj), bone_map)
    obj.animation_data.action = None
    return {"frames": [pose["frame"] for pose in poses], "pelvis_heights": [p[1] for p in pelvis],
            "travel": float(np.linalg.norm(np.subtract(pelvis[1], pelvis[0])[[0, 2]])), "expected_travel": 1.2 / scale}


def run(obj: bpy.types.Object, constraint: bool = False) -> dict:
    scene = bpy.context.scene
    problem = rig_retarget.target_problem(obj)
    if problem:
        return {"refused": problem}
    bone_map = rig_retarget.bone_map_for(obj)
    obj.data.pose_position = "REST"
    bpy.context.view_layer.update()
    rest_floor = min(skinned_lowest(obj).values())
    height = max((obj.matrix_world @ b.head_local).z for b in obj.data.bones) - rest_floor
    obj.data.pose_position = "POSE"
    rest_roll = {b.name: list(b.matrix_local.to_3x3().col[1]) for b in obj.data.bones}
    keyed_hips = hips_key(obj, bone_map) if bone_map.bones.get("left_hip") and bone_map.bones.get("right_hip") else None
    skeleton = rig_retarget.armature_target_skeleton(obj)
    ends = {name: Vector(skeleton.rest_tails[skeleton.index[name]]) for name in bone_map.tips.values()}
    scene.kmm.target_armature = obj
    imported = take_importer.import_takes(bpy.context, [take_path], obj, take_keys.WriteOptions())
    action = obj.animation_data.action
    first, last = (int(f) for f in action.frame_range)
    frames: dict[str, list] = {"points": [], "left_foot": [], "right_foot": [], "extra": []}
    extra = [b.name for b in obj.pose.bones if b.name.startswith(("Skirt", "Tail", "Lantern"))]
    for frame in range(first, last + 1):
        scene.frame_set(frame)
        frames["points"].append(world_points(obj, bone_map, ends))
        frames["extra"].append({name: list(obj.matrix_world @ obj.pose.bones[name].head) for name in extra})
        lowest = skinned_lowest(obj)
        frames["left_foot"].append(lowest["left"] - rest_floor)
        frames["right_foot"].append(lowest["right"] - rest_floor)
    return {"map": {j: b for j, b in bone_map.bones.items() if b}, "height": height, "rest_floor": rest_floor, "fps": scene.render.fps,
            "bone_axes": rest_roll, "warnings": imported.warnings, "hips_key": keyed_hips, "location_bone": imported.takes[0].action.name and
            _location_bone(action), **frames}


def _location_bone(action) -> list[str]:
    """The bones whose location the take keys."""
    from bpy_extras import anim_utils

    curves = anim_utils.action_get_channelbag_for_slot(action, action.slots[0]).fcurves
    return sorted({c.data_path.split('"')[1] for c in curves if c.data_path.endswith(".location")})


bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0
character = write_skinned_gltf(layout_bones(LAYOUT), work / "mixamo_random_axes.gltf", seed=7)
fbx_file = work / "mixamo_random_axes.fbx"
clear()
gltf(character, "BLENDER")
bpy.ops.export_scene.fbx(filepath=str(fbx_file), object_types={"ARMATURE", "MESH"}, add_leaf_bones=False,
                         bake_anim=False)
skirted = write_skinned_gltf(with_legs_on_the_spine(layout_bones(LAYOUT)), work / "legs_on_the_spine.gltf", seed=3)
with_prop = write_skinned_gltf(with_loose_prop(layout_bones(LAYOUT)), work / "loose_prop.gltf", seed=5)
robot, wheels = wheeled_robot(layout_bones(LAYOUT))
robot_file = write_skinned_gltf(robot, work / "wheeled_robot.gltf", seed=9, ends=wheels)
animal = write_skinned_gltf(quadruped(), work / "quadruped.gltf", seed=4)
arm = write_skinned_gltf(lone_arm(), work / "lone_arm.gltf", seed=6)
variants = {
    "gltf_blender": lambda: gltf(character, "BLENDER"),
    "gltf_temperance": lambda: gltf(character, "TEMPERANCE"),
    "gltf_fortune": lambda: gltf(character, "FORTUNE"),
    "fbx_automatic_orientation": lambda: fbx(fbx_file, True),
    "fbx_as_written": lambda: fbx(fbx_file, False),
    "random_rolls_and_tails": lambda: rolled(character, 11),
    "legs_on_the_spine": lambda: gltf(skirted, "BLENDER"),
    "loose_prop": lambda: gltf(with_prop, "BLENDER"),
    "wheeled_robot": lambda: gltf(robot_file, "BLENDER"),
    "quadruped": lambda: gltf(animal, "BLENDER"),
    "lone_arm": lambda: gltf(arm, "BLENDER"),
}
for downloaded, path in DOWNLOADED.items():  # the downloaded characters under every option too
    for heuristic in ("BLENDER", "TEMPERANCE", "FORTUNE"):
        variants[f"{downloaded}__{heuristic.lower()}"] = (lambda p=path, h=heuristic: gltf(p, h))
    variants[f"{downloaded}__random_rolls"] = (lambda p=path: rolled(p, 5))
    if downloaded != "robot_expressive":  # skinned characters through FBX too (the robot's parts are rigid meshes)
        clear()
        gltf(path, "BLENDER")
        exported = work / f"{downloaded}.fbx"
        bpy.ops.export_scene.fbx(filepath=str(exported), object_types={"ARMATURE", "MESH"}, add_leaf_bones=False,
                                 bake_anim=False)
        variants[f"{downloaded}__fbx_automatic_orientation"] = (lambda f=exported: fbx(f, True))
        variants[f"{downloaded}__fbx_as_written"] = (lambda f=exported: fbx(f, False))
result: dict = {}
for name, build in variants.items():
    clear()
    try:
        result[name] = run(build())
    except Exception as error:  # reported per variant, the others still run
        import traceback

        result[name] = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
Path(result_path).write_text(json.dumps(result))
_harness.emit({"variants": sorted(result)})
