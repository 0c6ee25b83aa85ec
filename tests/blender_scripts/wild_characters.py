# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: downloaded characters (tests/data/characters, imported with Blender's own glTF importer) and rigs
built here to imitate other families, each given one generated take with NO bone map, keyed through the add-on's
importer exactly as the batch does, then read back from the evaluated rig (one bpy process for all).

    python wild_characters.py take.npz result.json

Per character: the detected map (or the refusal with its reason), and per frame the pelvis head, the wrists and ankles
(bone heads), and the lowest point of each foot (the heads of the ankle and every bone below it, the tails of the mapped
ones, and the vertices of the foot meshes
skinned or parented to those bones) in world space relative to the character's rest floor (measured in the rest pose),
in metres, plus its rest height; the ankles again in the axes the motion was put on the rig in, beside the source's
ankles scaled to the rig.  On a rig with placed feet a segment is regenerated too.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402
import published_rigs  # noqa: E402
from mathutils import Matrix  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402
from kmm_motion.kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

CHARACTERS = Path(__file__).resolve().parents[1] / "data" / "characters"
LAYOUTS = CHARACTERS / "layouts"
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


def from_layout(path: Path, scale=None) -> bpy.types.Object:
    """An armature from a layout file of tests/data/characters/layouts: bones by (name, parent, head, tail) in
    armature space with the object's rotation and scale, or glTF joint nodes (local translation and rotation, Y up)
    turned into Blender's axes with the bone tails its glTF importer gives them; for bones by list, a tail at the only
    child's head, else on along the parent's direction by half its length.  `scale` replaces the object's scale."""
    from mathutils import Quaternion, Vector

    layout = json.loads(path.read_text())
    bones = []
    if layout["kind"] == "gltf_nodes":
        nodes = {node["name"]: node for node in layout["nodes"]}
        y_up_to_z_up = Matrix(((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1)))

        def visit(name, parent_name, parent_matrix, parent_length):
            node = nodes[name]
            x, y, z, w = node["rotation"]
            matrix = parent_matrix @ Matrix.Translation(node["translation"]) @ Quaternion((w, x, y, z)).to_matrix().to_4x4()
            world = y_up_to_z_up @ matrix
            head = world.translation.copy()
            kids = node["children"]
            # Blender's glTF importer (its default "Blender" bone heuristic): the bone along the node's +Y, as long
            # as its nearest child is far, an end bone as long as its parent
            length = min((Vector(nodes[k]["translation"]).length for k in kids), default=parent_length)
            tail = head + (world.to_3x3() @ Vector((0.0, 1.0, 0.0))).normalized() * length
            bones.append((name, parent_name, tuple(head), tuple(tail)))
            for kid in kids:
                visit(kid, name, matrix, length)

        visit(layout["root"], None, Matrix.Identity(4), Vector(nodes[layout["root"]]["translation"]).length)
    else:
        heads = {name: Vector(head) for name, _, head, _ in layout["bones"]}
        children = {}
        for name, parent, _, _ in layout["bones"]:
            children.setdefault(parent, []).append(name)
        for name, parent, head, tail in layout["bones"]:
            if tail is None:
                kids = children.get(name, [])
                if len(kids) == 1 or parent is None:
                    tail = heads[kids[0]]
                else:
                    along = heads[name] - heads[parent]
                    tail = heads[name] + along * 0.5
            bones.append((name, parent, tuple(head), tuple(tail)))
    obj = built(layout["name"], bones)
    placement = layout.get("object", {})
    obj.rotation_euler = [math.radians(a) for a in placement.get("rotation_euler_degrees", (0, 0, 0))]
    obj.scale = scale or placement.get("scale", (1, 1, 1))
    bpy.context.view_layer.update()
    return obj


def _v(point):
    from mathutils import Vector

    return Vector(point)


def scaled(obj: bpy.types.Object, scale) -> bpy.types.Object:
    obj.scale = scale
    bpy.context.view_layer.update()
    return obj


def metarig_without_head() -> list:
    """Rigify metarig names on a base mesh whose spine stops at spine.005 (no spine.006): spine.004 is the neck and
    spine.005 the head, both above the shoulders."""
    return published_rigs.rigify_named_bones("spine.005")


def unnamed_facing_x() -> list:
    """A rig exported with meaningless names (`Bone.012`) and COLLADA-like ordering, facing +X."""
    named = metarig_without_head()
    rename = {name: f"Bone.{i:03d}" for i, (name, *_rest) in enumerate(named)}
    return [(rename[n], rename[p] if p else None, h, t) for n, p, h, t in named]


def foot_lowest(obj: bpy.types.Object, bone_map, meshes) -> dict[str, float]:
    """Lowest world height of each foot: its chain's heads (the ankle and every bone below it), the tails of the
    bones the map names (an end bone's tail is only what an importer guessed), and the skinned vertices the chain
    moves most; a one-bone leg's tail."""
    lowest = {}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for side in ("left", "right"):
        ankle = bone_map.bones[f"{side}_ankle"]
        if ankle is None:  # one bone per limb: the foot is the leg bone's tail (and the mesh that bone moves)
            leg = obj.pose.bones[bone_map.tips[f"{side}_ankle"]]
            names, heights = {leg.name}, [(obj.matrix_world @ leg.tail).z]
        else:
            chain = [b for b in obj.pose.bones if b.name == ankle or obj.pose.bones[ankle] in b.parent_recursive]
            names, mapped = {b.name for b in chain}, set(bone_map.bones.values())
            heights = [(obj.matrix_world @ p).z for b in chain for p in ((b.head, b.tail) if b.name in mapped
                                                                             else (b.head,))]
        for mesh, weights in meshes:
            evaluated = mesh.evaluated_get(depsgraph)
            vertices = evaluated.data.vertices
            for index, group in weights.items():
                if group in names:
                    heights.append((evaluated.matrix_world @ vertices[index].co).z)
        lowest[side] = min(heights)
    return lowest


def joint_point(obj: bpy.types.Object, bone_map, joint: str):
    """Where `joint` is on the posed rig (armature space): its bone's head, or the tail of a one-bone limb."""
    if bone_map.bones[joint]:
        return obj.pose.bones[bone_map.bones[joint]].head
    return obj.pose.bones[bone_map.tips[joint]].tail


def skinned_feet(obj: bpy.types.Object) -> list:
    """(mesh, {vertex index: the bone moving it most}) for the meshes skinned to `obj` or parented to its bones."""
    found = []
    for mesh in bpy.data.objects:
        if mesh.type == "MESH" and mesh.parent == obj and mesh.parent_type == "BONE":
            found.append((mesh, {vertex.index: mesh.parent_bone for vertex in mesh.data.vertices}))
            continue
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
    obj.data.pose_position = "REST"  # the rest floor (a downloaded file may come with its own animation playing)
    bpy.context.view_layer.update()
    rest_floor = min(foot_lowest(obj, bone_map, meshes).values())
    obj.data.pose_position = "POSE"
    rest_points = [obj.matrix_world @ b.head_local for b in obj.data.bones]
    height = max(p.z for p in rest_points) - rest_floor
    scene.kmm.target_armature = obj
    take_importer.import_takes(bpy.context, [motion_file], obj, take_keys.WriteOptions())
    action = obj.animation_data.action
    first, last = (int(f) for f in action.frame_range)
    frames = {"pelvis": [], "left_wrist": [], "right_wrist": [], "left_ankle": [], "right_ankle": [], "left_foot": [],
              "right_foot": [], "ankles_as_moved": []}
    # the motion as put on this rig (HumanML3D axes turned to its facing, metres): the scaled source's ankles beside
    # the evaluated ones, so a planted foot's slide is measured against the source's own
    planned = rig_retarget.retarget_onto(obj, rig_retarget.source_for(MotionResult.load(motion_file), False,
                                                                     float(scene.render.fps)))
    source_ankles = planned.plan.scale * rig_retarget.source_for(MotionResult.load(motion_file), False, float(
        scene.render.fps)).positions[:, [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]]
    for frame in range(first, last + 1):
        scene.frame_set(frame)
        for joint in ("pelvis", "left_wrist", "right_wrist", "left_ankle", "right_ankle"):
            frames[joint].append(list(obj.matrix_world @ joint_point(obj, bone_map, joint)))
        lowest = foot_lowest(obj, bone_map, meshes)
        frames["left_foot"].append(lowest["left"] - rest_floor)
        frames["right_foot"].append(lowest["right"] - rest_floor)
        evaluated = rig_retarget.evaluated_joint_points(obj, bone_map, planned.skeleton)
        frames["ankles_as_moved"].append(evaluated[[JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]].tolist())
    frames["source_ankles"] = source_ankles[:last + 1 - first].tolist()
    found = {"map": {j: b for j, b in bone_map.bones.items() if b}, "map_name": bone_map.name, "height": height,
             "fps": scene.render.fps, "parents": dict(bone_map.parents), "placed": list(bone_map.placed),
             "tips": dict(bone_map.tips), **frames}
    if bone_map.placed:
        found["regenerated"] = regenerate_second_segment(obj, motion_file, list(bone_map.placed))
    return found


def regenerate_second_segment(obj: bpy.types.Object, motion_file: str, placed: list[str]) -> dict:
    """Regenerate the take's second segment (the worker's result stands in as a file: the same take with the body
    turned 15 degrees from that segment on) and compare the new take's F-curves with the old one's, outside and
    inside the segment; the placed bones' location curves among them."""
    from kmm_motion.kmm_blender.takes import segment_regenerator

    old = obj.animation_data.action
    motion = MotionResult.load(motion_file)
    start = int(motion.segment_frames[1][0])
    rotations = motion.local_rotations.copy()
    rotations[start:, 0] = [math.cos(math.radians(7.5)), 0.0, math.sin(math.radians(7.5)), 0.0]
    edited = MotionResult(**{**motion.__dict__, "local_rotations": rotations})
    edited_path = edited.save(Path(motion_file).with_name("regenerated.npz"))
    plan = segment_regenerator.plan_regeneration(bpy.context.scene, obj, 1)
    new = segment_regenerator.apply_regeneration(bpy.context, plan, str(edited_path)).action
    first, last = (int(f) for f in old.frame_range)
    border = first + start * bpy.context.scene.render.fps / motion.fps
    outside, inside = range(first, int(border) - 2), range(int(border) + 2, last + 1)

    def values(action, frames, placed_only=False):
        curves = [c for c in _fcurves(action) if not placed_only
                  or any(c.data_path == f'pose.bones["{b}"].location' for b in placed)]
        return [[c.evaluate(f) for f in frames] for c in curves]

    import numpy as np

    return {"kept_outside": float(np.abs(np.subtract(values(old, outside), values(new, outside))).max()),
            "changed_inside": float(np.abs(np.subtract(values(old, inside), values(new, inside))).max()),
            "placed_changed_inside": float(np.abs(np.subtract(values(old, inside, True),
                                                              values(new, inside, True))).max()),
            "placed_curves": len(values(new, inside, True)), "active": obj.animation_data.action == new}


def _fcurves(action) -> list:
    from bpy_extras import anim_utils

    return list(anim_utils.action_get_channelbag_for_slot(action, action.slots[0]).fcurves)


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
    "mixamo_gltf": lambda: from_layout(LAYOUTS / "mixamo_gltf.json"),
    "quaternius_knight_2018": lambda: from_layout(LAYOUTS / "quaternius_knight_2018.json"),
    "kenney_mini": lambda: from_layout(LAYOUTS / "kenney_mini.json"),
    "metarig_scaled_0_87_1_1": lambda: scaled(built("MetarigScaled", metarig_without_head()), (0.87, 1.0, 1.0)),
    "metarig_mirrored": lambda: scaled(built("MetarigMirrored", metarig_without_head()), (-1.0, 1.0, 1.0)),
}
for name, build in builders.items():
    clear()
    try:
        result[name] = check(name, build(), take_path)
    except Exception as error:  # reported per character, the others still run
        result[name] = {"error": f"{type(error).__name__}: {error}"}
Path(result_path).write_text(json.dumps(result))
_harness.emit({"characters": sorted(result)})
