# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: downloaded characters (tests/data/characters, imported with Blender's own glTF importer) and rigs
built here to imitate other families, each given one generated take with NO bone map, keyed through the add-on's
importer exactly as the batch does, then read back from the evaluated rig (one bpy process for all).

    python wild_characters.py take.npz result.json

Per character: the detected map (or the refusal with its reason), and per frame the pelvis head, the wrists and ankles
(bone heads), and the lowest point of each foot (ankle, toe heads and tails, and the skinned foot mesh's vertices) in
world space relative to the character's rest floor, in metres, plus its rest height.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

CHARACTERS = Path(__file__).resolve().parents[1] / "data" / "characters"
take_path, result_path = sys.argv[1], sys.argv[2]


def clear() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for armature in list(bpy.data.armatures):
        bpy.data.armatures.remove(armature)


def imported(path: Path) -> bpy.types.Object:
    bpy.ops.import_scene.gltf(filepath=str(path))
    bpy.context.view_layer.update()
    return next(o for o in bpy.data.objects if o.type == "ARMATURE")


def built(name: str, bones, turn_degrees: float = 0.0) -> bpy.types.Object:
    """An armature from (name, parent, head, tail) in metres, Z up, facing -Y, then turned about Z."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    turn = Matrix.Rotation(math.radians(turn_degrees), 3, "Z")
    for bone_name, parent, head, tail in bones:
        edit = data.edit_bones.new(bone_name)
        edit.head, edit.tail = turn @ _v(head), turn @ _v(tail)
        if parent:
            edit.parent = data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def _v(point):
    from mathutils import Vector

    return Vector(point)


def metarig_without_head() -> list:
    """Rigify metarig names on a base mesh whose spine stops at spine.005 (no spine.006): spine.004 is the neck and
    spine.005 the head, both above the shoulders."""
    bones = [("spine", None, (0, 0.03, 1.0), (0, 0.02, 1.12)), ("spine.001", "spine", (0, 0.02, 1.12), (0, 0.02, 1.27)),
             ("spine.002", "spine.001", (0, 0.02, 1.27), (0, 0.03, 1.4)),
             ("spine.003", "spine.002", (0, 0.03, 1.4), (0, 0.02, 1.5)),
             ("spine.004", "spine.003", (0, 0.02, 1.5), (0, 0.0, 1.6)), ("spine.005", "spine.004", (0, 0.0, 1.6), (0, 0.0, 1.82))]
    for side, x in (("L", 1), ("R", -1)):
        bones += [(f"shoulder.{side}", "spine.003", (0.02 * x, -0.02, 1.45), (0.17 * x, 0.02, 1.46)),
                  (f"upper_arm.{side}", f"shoulder.{side}", (0.18 * x, 0.02, 1.45), (0.45 * x, 0.03, 1.45)),
                  (f"forearm.{side}", f"upper_arm.{side}", (0.45 * x, 0.03, 1.45), (0.7 * x, 0.0, 1.45)),
                  (f"hand.{side}", f"forearm.{side}", (0.7 * x, 0.0, 1.45), (0.78 * x, 0.0, 1.45)),
                  (f"thigh.{side}", "spine", (0.1 * x, 0.02, 0.98), (0.1 * x, 0.0, 0.53)),
                  (f"shin.{side}", f"thigh.{side}", (0.1 * x, 0.0, 0.53), (0.1 * x, 0.04, 0.09)),
                  (f"foot.{side}", f"shin.{side}", (0.1 * x, 0.04, 0.09), (0.1 * x, -0.1, 0.02)),
                  (f"toe.{side}", f"foot.{side}", (0.1 * x, -0.1, 0.02), (0.1 * x, -0.18, 0.0))]
    return bones


def unnamed_facing_x() -> list:
    """A rig exported with meaningless names (`Bone.012`) and COLLADA-like ordering, facing +X."""
    named = metarig_without_head()
    rename = {name: f"Bone.{i:03d}" for i, (name, *_rest) in enumerate(named)}
    return [(rename[n], rename[p] if p else None, h, t) for n, p, h, t in named]


def foot_lowest(obj: bpy.types.Object, bone_map, meshes) -> dict[str, float]:
    """Lowest world height of each foot: its chain's heads and tails, and the skinned vertices it moves most."""
    lowest = {}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for side in ("left", "right"):
        ankle = bone_map.bones[f"{side}_ankle"]
        chain = [b for b in obj.pose.bones if b.name == ankle or obj.pose.bones[ankle] in b.parent_recursive]
        names = {b.name for b in chain}
        heights = [(obj.matrix_world @ p).z for b in chain for p in (b.head, b.tail)]
        for mesh, weights in meshes:
            evaluated = mesh.evaluated_get(depsgraph)
            vertices = evaluated.data.vertices
            for index, group in weights.items():
                if group in names:
                    heights.append((evaluated.matrix_world @ vertices[index].co).z)
        lowest[side] = min(heights)
    return lowest


def skinned_feet(obj: bpy.types.Object) -> list:
    """(mesh, {vertex index: the bone moving it most}) for the meshes skinned to `obj`."""
    found = []
    for mesh in bpy.data.objects:
        if mesh.type != "MESH" or not any(m.type == "ARMATURE" and m.object == obj for m in mesh.modifiers):
            continue
        names = {g.index: g.name for g in mesh.vertex_groups}
        weights = {}
        for vertex in mesh.data.vertices:
            best = max(vertex.groups, key=lambda g: g.weight, default=None)
            if best is not None and best.weight > 0 and best.group in names:
                weights[vertex.index] = names[best.group]
        found.append((mesh, weights))
    return found


def check(name: str, obj: bpy.types.Object, motion_file: str) -> dict:
    scene = bpy.context.scene
    problem = rig_retarget.target_problem(obj)
    if problem:
        return {"refused": problem}
    bone_map = rig_retarget.bone_map_for(obj)
    meshes = skinned_feet(obj)
    rest_floor = min(foot_lowest(obj, bone_map, meshes).values())
    rest_points = [obj.matrix_world @ b.head_local for b in obj.data.bones]
    height = max(p.z for p in rest_points) - rest_floor
    scene.kmm.target_armature = obj
    take_importer.import_takes(bpy.context, [motion_file], obj, take_keys.WriteOptions())
    action = obj.animation_data.action
    first, last = (int(f) for f in action.frame_range)
    frames = {"pelvis": [], "left_wrist": [], "right_wrist": [], "left_ankle": [], "right_ankle": [], "left_foot": [],
              "right_foot": []}
    for frame in range(first, last + 1):
        scene.frame_set(frame)
        for joint in ("pelvis", "left_wrist", "right_wrist", "left_ankle", "right_ankle"):
            frames[joint].append(list(obj.matrix_world @ obj.pose.bones[bone_map.bones[joint]].head))
        lowest = foot_lowest(obj, bone_map, meshes)
        frames["left_foot"].append(lowest["left"] - rest_floor)
        frames["right_foot"].append(lowest["right"] - rest_floor)
    return {"map": {j: b for j, b in bone_map.bones.items() if b}, "map_name": bone_map.name, "height": height,
            "fps": scene.render.fps, **frames}


bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0
MotionResult.load(take_path)  # a damaged take fails here, before any character
result: dict = {}
builders = {
    "cesium_man": lambda: imported(CHARACTERS / "CesiumMan.gltf"),
    "kaykit_mannequin": lambda: imported(CHARACTERS / "kaykit_mannequin" / "manny_med_mod.gltf"),
    "robot_expressive": lambda: imported(CHARACTERS / "RobotExpressive.glb"),
    "metarig_without_spine_006": lambda: built("MetarigBase", metarig_without_head()),
    "unnamed_facing_plus_x": lambda: built("UnnamedPlusX", unnamed_facing_x(), 90.0),
    "metarig_facing_plus_y": lambda: built("MetarigPlusY", metarig_without_head(), 180.0),
}
for name, build in builders.items():
    clear()
    try:
        result[name] = check(name, build(), take_path)
    except Exception as error:  # reported per character, the others still run
        result[name] = {"error": f"{type(error).__name__}: {error}"}
Path(result_path).write_text(json.dumps(result))
_harness.emit({"characters": sorted(result)})
