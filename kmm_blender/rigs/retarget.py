# SPDX-License-Identifier: GPL-3.0-or-later
"""Any armature as a target: its bone map (stored on the armature, else a preset or an automatic match) and the
keys of a take retargeted onto it (kmm_core.retarget does the work; this file only reads and writes Blender data).

The bone map of an armature object lives in its custom property "kmm_bone_map" (the map's JSON text) once the user
fixed a row or imported a map file; until then it is detected from the bone names every time (a preset when one
names the rig's bones, else automatic matching).  `target_problem()` tells, before any generation starts, why a rig
cannot be used.  A KMM armature whose rest pose is the motion's own skeleton keeps the exact path of
take_keys.py; every other armature (foreign rigs, KMM armatures with other proportions) goes through
`retargeted_take_keys`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import bpy
import numpy as np

from ...kmm_core.common.bounded_read import parse_json
from ...kmm_core.common.errors import InputFileError, KMMError
from ...kmm_core.motion import skeleton
from ...kmm_core.retarget.bone_map import BoneMap, BoneMapError, bone_map_from_dict
from ...kmm_core.retarget.bvh_output import resample_source
from ...kmm_core.retarget.facing import face_forward
from ...kmm_core.retarget.name_matching import detect_bone_map
from ...kmm_core.retarget.target_skeleton import TargetSkeleton, TargetSkeletonError
from ...kmm_core.retarget.transfer import RetargetedMotion, SourceMotion, retarget, source_from_motion_result
from . import take_keys
from .axes import HUMANML3D_TO_BLENDER

MAP_PROPERTY = "kmm_bone_map"
MAX_STORED_MAP_CHARS = 1 << 20  # a real map is a few kB


def armature_target_skeleton(obj: bpy.types.Object) -> TargetSkeleton:
    """The armature's rest pose as a `TargetSkeleton` (armature space; the object's rotation and scale say how it
    becomes HumanML3D axes and metres: Blender world is Z up, characters face -Y)."""
    bones = list(obj.data.bones)
    depth = {}
    for bone in bones:
        level, parent = 0, bone.parent
        while parent is not None:
            level, parent = level + 1, parent.parent
        depth[bone.name] = level
    bones.sort(key=lambda b: depth[b.name])
    index = {bone.name: i for i, bone in enumerate(bones)}
    heads = np.array([bone.head_local for bone in bones], dtype=np.float64).reshape(-1, 3)
    rest_tails = np.array([bone.tail_local for bone in bones], dtype=np.float64).reshape(-1, 3)
    tails = rest_tails - heads
    tails /= np.maximum(np.linalg.norm(tails, axis=-1, keepdims=True), 1e-9)
    rest = np.array([[list(row) for row in bone.matrix_local.to_3x3()] for bone in bones]).reshape(-1, 3, 3)
    world = _rotation_scale(obj)
    scale = float(np.cbrt(abs(np.linalg.det(world))))
    if not scale > 1e-6:
        raise TargetSkeletonError(f"armature {obj.name!r} is scaled to zero (object scale "
                                  f"{tuple(round(obj.scale[i], 6) for i in range(3))}, or a parent's): give it a non-zero scale "
                                  "to generate onto it")
    to_humanml3d = HUMANML3D_TO_BLENDER.T @ (world / scale)
    return TargetSkeleton(name=obj.name, bone_names=tuple(b.name for b in bones),
                          parents=tuple(index[b.parent.name] if b.parent else -1 for b in bones),
                          rest_heads=heads, rest_rotations=rest, tail_directions=tails, to_humanml3d=to_humanml3d,
                          scale_to_metres=scale, rest_tails=rest_tails, foot_points=skinned_foot_points(obj))


def skinned_foot_points(obj: bpy.types.Object) -> dict[str, np.ndarray]:
    """Per foot bone, the 8 corners of the box around the rest vertices it moves most (armature space): where the
    foot mesh ends, so that its soles and toes, not only the bones, stand on the floor.  Foot bones are found by the
    bone map later; here every bone that carries the lowest vertices of a mesh skinned to the armature, or a mesh
    parented to the bone itself (a robot's rigid foot), is a candidate."""
    per_bone: dict[str, list[np.ndarray]] = {}
    for points, owners in _meshes_moved_by(obj):
        heights = points @ np.array(obj.matrix_world, dtype=np.float64)[2, :3]  # Blender's up
        low = heights <= heights.min() + 0.15 * np.ptp(heights)  # the feet: the lowest 15% of the mesh
        for vertex in np.flatnonzero(low):
            bone = owners(int(vertex))
            if bone is not None:
                per_bone.setdefault(bone, []).append(points[vertex])
    corners = {}
    for bone, points in per_bone.items():
        array = np.array(points)
        low, high = array.min(axis=0), array.max(axis=0)
        corners[bone] = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                                  for z in (low[2], high[2])])
    return corners


def _meshes_moved_by(obj: bpy.types.Object):
    """((V, 3) rest vertices in armature space, vertex -> the bone moving it most or None) for every mesh skinned to
    `obj` (an Armature modifier) or parented to one of its bones."""
    from mathutils import Matrix

    inverse = obj.matrix_world.inverted()
    for mesh in bpy.data.objects:
        if mesh.type != "MESH":
            continue
        count = len(mesh.data.vertices)
        coordinates = np.empty(count * 3)
        mesh.data.vertices.foreach_get("co", coordinates)
        coordinates = coordinates.reshape(-1, 3)
        if mesh.parent == obj and mesh.parent_type == "BONE" and mesh.parent_bone in obj.data.bones:
            bone = obj.data.bones[mesh.parent_bone]
            # at rest the mesh hangs from its bone's rest tail (Blender's bone parenting)
            rest = np.array(bone.matrix_local @ Matrix.Translation((0.0, bone.length, 0.0))
                            @ mesh.matrix_parent_inverse @ mesh.matrix_basis, dtype=np.float64)
            yield coordinates @ rest[:3, :3].T + rest[:3, 3], (lambda vertex, name=bone.name: name)
            continue
        if not any(isinstance(m, bpy.types.ArmatureModifier) and m.object == obj for m in mesh.modifiers):
            continue
        groups = {group.index: group.name for group in mesh.vertex_groups if group.name in obj.data.bones}
        if not groups:
            continue
        to_armature = np.array(inverse @ mesh.matrix_world, dtype=np.float64)
        vertices = mesh.data.vertices

        def owner(vertex: int, vertices=vertices, groups=groups) -> str | None:
            best = max((g for g in vertices[vertex].groups if g.group in groups), key=lambda g: g.weight, default=None)
            return groups[best.group] if best is not None and best.weight > 0.0 else None

        yield coordinates @ to_armature[:3, :3].T + to_armature[:3, 3], owner


def stored_bone_map(obj: bpy.types.Object) -> BoneMap | None:
    text = obj.get(MAP_PROPERTY) if obj is not None else None
    if not text:
        return None
    where = f"armature {obj.name!r} property {MAP_PROPERTY!r}"
    if len(str(text)) > MAX_STORED_MAP_CHARS:
        raise BoneMapError(f"{where}: the stored bone map holds {len(str(text))} characters, more than "
                           f"{MAX_STORED_MAP_CHARS}")
    try:  # bounded like every JSON the project reads: a map nested too deeply is an error, never a RecursionError
        data = parse_json(str(text), where, "stored bone map")
    except InputFileError as error:
        raise BoneMapError(str(error)) from None
    return bone_map_from_dict(data, where)


def store_bone_map(obj: bpy.types.Object, bone_map: BoneMap) -> None:
    obj[MAP_PROPERTY] = json.dumps(bone_map.to_dict())


def clear_bone_map(obj: bpy.types.Object) -> None:
    if obj.get(MAP_PROPERTY) is not None:
        del obj[MAP_PROPERTY]


def _rotation_scale(obj: bpy.types.Object) -> np.ndarray:
    """(3, 3) the object's world rotation and scale."""
    matrix = obj.matrix_world.to_3x3()
    return np.array([[matrix[row][column] for column in range(3)] for row in range(3)], dtype=np.float64)


def bone_map_for(obj: bpy.types.Object, skeleton_: TargetSkeleton | None = None) -> BoneMap:
    """The armature's stored map, else the detected one (preset or automatic); BoneMapError when none fits."""
    stored = stored_bone_map(obj)
    if stored is not None:
        return stored
    target = skeleton_ or armature_target_skeleton(obj)
    return detect_bone_map(target.bone_names, target.parents, target.rest_heads_metres(), obj.name,
                           target.rest_tails_metres())


def target_problem(obj: bpy.types.Object | None) -> str | None:
    """Why `obj` cannot be a target (None: it can).  Cheap enough for the panel's draw and checked before a
    generation starts."""
    if obj is None:
        return None
    if obj.type != "ARMATURE":
        return f"{obj.name!r} is not an armature"
    try:
        target = armature_target_skeleton(obj)  # a rig with no size or a zero scale is refused here, by name
        bone_map = bone_map_for(obj, target)
        bone_map.check(obj.data.bones.keys(), obj.name)
    except KMMError as error:
        return str(error)
    return None


def describe_bone_map(obj: bpy.types.Object) -> tuple[str, list[str], str | None]:
    """(map name with its kind, canonical joints the map leaves out, problem or None) for the panel."""
    problem = target_problem(obj)
    try:
        bone_map = bone_map_for(obj)
    except KMMError:
        return "none", list(skeleton.JOINT_NAMES), problem
    label = {"preset": f"{bone_map.name} (preset)", "auto": "auto", "user": bone_map.name}
    return label.get(bone_map.kind, bone_map.name), bone_map.unmatched(), problem


def source_for(motion, root_motion_in_place: bool, fps: float | None) -> SourceMotion:
    """The canonical source of a MotionResult-like motion, travel removed when in place, resampled to `fps`."""
    source = source_from_motion_result(motion)
    if root_motion_in_place:
        travel = source.positions[:, :1].copy()
        travel[..., 1] = 0.0
        source = SourceMotion(positions=source.positions - travel, global_rotations=source.global_rotations,
                              rest_positions=source.rest_positions, fps=source.fps)
    return resample_source(source, fps) if fps else source


def location_bone(obj: bpy.types.Object, motion: RetargetedMotion) -> str:
    """The bone whose location carries the travel: the pelvis bone, or the nearest unconnected bone above it."""
    bone = obj.data.bones[motion.skeleton.bone_names[motion.plan.pelvis_bone]]
    while bone.use_connect and bone.parent is not None:
        bone = bone.parent
    return bone.name


def retarget_onto(obj: bpy.types.Object, source: SourceMotion) -> RetargetedMotion:
    """`source` on the armature: facing read from its rest pose, its own feet on its rest floor."""
    target = armature_target_skeleton(obj)
    bone_map = bone_map_for(obj, target)
    return retarget(source, face_forward(target, bone_map), bone_map, only_needed_bones=True, feet_on_ground=True)


@dataclass
class KeyedValues:
    """What a retargeted take keys on the rig, per frame (see `keyed_values`)."""

    bone_names: list[str]        # bones keyed by rotation
    quaternions: np.ndarray      # (T, K, 4) their pose quaternions
    location_bone: str           # the bone whose location carries the travel
    locations: np.ndarray        # (T, 3) its pose locations
    located_bones: list[str]     # further bones keyed by location: the map's placed bones and the bones above them
    located: np.ndarray          # (T, L, 3) their pose locations


def keyed_values(obj: bpy.types.Object, motion: RetargetedMotion) -> KeyedValues:
    """The rotations of the driven bones, the travel on the location bone, and the places of the map's placed bones
    (IK feet under the root: location and rotation), the bones above them keyed at rest."""
    driven = motion.driven_bones()
    names = [motion.skeleton.bone_names[b] for b in driven]
    quaternions = motion.local_quaternions()[:, driven]
    mover = location_bone(obj, motion)
    index = motion.skeleton.index[mover]
    rest = motion.skeleton.rest_rotations[index]
    locations = motion.pelvis_offset_rig() @ rest  # R^T delta, row-vector form; the bone's parent stays at rest
    # Undriven bones above driven ones (a root, a CC_Base_Pelvis, an in-chain twist bone) are keyed at rest, so the
    # take does not depend on whatever pose they were left in; rig mechanism bones (MCH-/ORG-/DEF-) are left alone.
    at_rest = []
    for bone in driven:
        ancestor = obj.data.bones[motion.skeleton.bone_names[bone]].parent
        while ancestor is not None:
            if (ancestor.name not in names and ancestor.name not in at_rest
                    and not ancestor.name.startswith(("MCH-", "ORG-", "DEF-"))):
                at_rest.append(ancestor.name)
            ancestor = ancestor.parent
    if mover not in names and mover not in at_rest:
        at_rest.append(mover)
    names += at_rest
    identity = np.tile([1.0, 0.0, 0.0, 0.0], (len(quaternions), len(at_rest), 1))
    # A placed bone's keys put it where the motion goes from its parent's rest: its parents' locations are keyed at
    # rest too (a glTF import leaves the root bone moved by the file's node pose).
    placed = [motion.skeleton.bone_names[b] for b in motion.plan.placed]
    above = []
    for name in placed:
        ancestor = obj.data.bones[name].parent
        while ancestor is not None:
            if ancestor.name in at_rest and ancestor.name != mover and ancestor.name not in above:
                above.append(ancestor.name)
            ancestor = ancestor.parent
    located = np.concatenate([motion.placed_locations(), np.zeros((len(quaternions), len(above), 3))], axis=1)
    return KeyedValues(bone_names=names, quaternions=np.concatenate([quaternions, identity], axis=1),
                       location_bone=mover, locations=locations, located_bones=placed + above, located=located)


def evaluated_joint_points(obj: bpy.types.Object, bone_map: BoneMap,
                           facing: TargetSkeleton | None = None) -> np.ndarray:
    """(22, 3) the canonical joints on the armature's current evaluated pose, HumanML3D axes and metres, relative to
    the object's origin (NaN for joints the map leaves out): what the tests compare with the source.  `facing` (the
    skeleton a retargeting used, `RetargetedMotion.skeleton`) reads them in its axes: turned by the rig's detected
    facing, as the motion was put on it."""
    world = _rotation_scale(obj)
    if facing is not None:
        world = (HUMANML3D_TO_BLENDER @ facing.to_humanml3d) * facing.scale_to_metres
    points = np.full((skeleton.NUM_JOINTS, 3), np.nan)
    for joint, name in enumerate(skeleton.JOINT_NAMES):
        point = bone_map.point_of(name)
        if point is None:
            continue
        first = np.array(obj.pose.bones[point.first].head, dtype=np.float64)
        second = np.array(obj.pose.bones[point.second].head, dtype=np.float64)
        points[joint] = (1 - point.t) * first + point.t * second
    return (points @ world.T) @ HUMANML3D_TO_BLENDER  # C^T v for row vectors


def retargeted_take_keys(obj: bpy.types.Object, motion: take_keys.MotionLike, options: take_keys.WriteOptions,
                         scene: bpy.types.Scene) -> take_keys.TakeKeys:
    """TakeKeys of `motion` retargeted onto armature `obj` (read-only: changes nothing).  Raises
    KeyframeWriteError naming the field, bone or joint when the motion or the rig does not fit."""
    take_keys.validate_motion(motion)
    segment_starts = np.asarray(motion.segment_frames).reshape(-1, 2)[:, 0]
    if len(segment_starts) != len(list(motion.segment_prompts)):
        raise take_keys.KeyframeWriteError(f"{len(segment_starts)} segment_frames but "
                                                 f"{len(list(motion.segment_prompts))} segment_prompts")
    scene_fps = scene.render.fps / scene.render.fps_base
    resampling = options.fps_mode == take_keys.FPS_RESAMPLE
    in_place = options.root_motion == take_keys.ROOT_MOTION_IN_PLACE
    if options.root_motion not in (take_keys.ROOT_MOTION_WORLD, take_keys.ROOT_MOTION_IN_PLACE):
        raise take_keys.KeyframeWriteError(f"unknown root motion option {options.root_motion!r}")
    try:
        bone_map = bone_map_for(obj)
        retargeted = retarget_onto(obj, source_for(motion, in_place, scene_fps if resampling else None))
    except KMMError as error:
        raise take_keys.KeyframeWriteError(f"cannot retarget onto {obj.name!r}: {error}") from None
    values = keyed_values(obj, retargeted)
    frames = options.start_frame + np.arange(len(values.quaternions), dtype=np.float64)
    return take_keys.TakeKeys(
        frames=frames, quaternions=values.quaternions, locations=values.locations,
        frames_per_motion_frame=scene_fps / float(motion.fps) if resampling else 1.0, segment_starts=segment_starts,
        bone_names=tuple(values.bone_names), location_bone=values.location_bone, pose_settings=bone_map.pose_settings,
        located_bones=tuple(values.located_bones), located=values.located)
