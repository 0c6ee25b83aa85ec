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
from ...kmm_core.retarget.held_rotations import hold_keyed_rotations
from ...kmm_core.retarget.name_matching import detect_bone_map
from ...kmm_core.retarget.target_skeleton import (
    TargetSkeleton,
    TargetSkeletonError,
    joint_tails,
    tail_directions_of,
)
from ...kmm_core.retarget.transfer import (
    RetargetedMotion,
    SourceMotion,
    check_limb_chains,
    retarget,
    source_from_motion_result,
)
from . import take_keys
from .axes import HUMANML3D_TO_BLENDER

MAP_PROPERTY = "kmm_bone_map"
MAX_STORED_MAP_CHARS = 1 << 20  # a real map is a few kB


def armature_target_skeleton(obj: bpy.types.Object) -> TargetSkeleton:
    """The armature's rest pose as a `TargetSkeleton` (armature space; the object's world transform says how it
    becomes HumanML3D axes and metres: Blender world is Z up, characters face -Y).  The motion is made in the
    armature's own space, so the object's transform shows on top of it as it shows on the character: a uniform scale
    is the metres per unit, a non-uniform (or sheared) one stretches the motion with the mesh, and a mirrored one
    (a negative scale) shows the mirror image of the motion (`armature_frame`).  Linear in the number of bones
    (parents first by one pass over the bones, whatever the depth)."""
    collection = obj.data.bones
    names = [bone.name for bone in collection]
    parent_names = [bone.parent.name if bone.parent else None for bone in collection]
    order = _parents_first(names, parent_names)  # positions in `collection`, parents first
    index = {names[position]: i for i, position in enumerate(order)}
    count = len(names)
    heads, rest_tails, matrices = np.empty(count * 3), np.empty(count * 3), np.empty(count * 16)
    collection.foreach_get("head_local", heads)
    collection.foreach_get("tail_local", rest_tails)
    collection.foreach_get("matrix_local", matrices)  # each 4x4 column by column
    heads, rest_tails = heads.reshape(-1, 3)[order], rest_tails.reshape(-1, 3)[order]
    rest = np.swapaxes(matrices.reshape(-1, 4, 4)[order, :3, :3], -1, -2)
    parents = tuple(index[parent_names[p]] if parent_names[p] is not None else -1 for p in order)
    bone_names = tuple(names[position] for position in order)
    rotation, scale = armature_frame(obj)  # first: a rig scaled to nothing is refused by name before its meshes are read
    foot_points, skin_ends = skinned_points(obj)
    # where each bone ends comes from the joints and the skin, not from where the importer pointed it
    rest_tails = joint_tails(parents, heads, rest_tails, {index[name]: end for name, end in skin_ends.items()})
    to_humanml3d = HUMANML3D_TO_BLENDER.T @ rotation
    return TargetSkeleton(name=obj.name, bone_names=bone_names, parents=parents, rest_heads=heads,
                          rest_rotations=rest, tail_directions=tail_directions_of(heads, rest_tails),
                          to_humanml3d=to_humanml3d, scale_to_metres=scale, rest_tails=rest_tails,
                          foot_points=foot_points)


def _parents_first(names: list[str], parent_names: list[str | None]) -> list[int]:
    """Positions of the bones ordered so that every parent comes before its children (breadth first from the
    roots): one pass over the bones, however deep the hierarchy."""
    children: dict[str | None, list[int]] = {}
    for position, parent in enumerate(parent_names):
        children.setdefault(parent, []).append(position)
    ordered = list(children.get(None, []))
    for position in ordered:  # the list grows while it is read: each bone is visited once
        ordered.extend(children.get(names[position], ()))
    return ordered


MIN_AXIS_SCALE = 1e-6  # an object scale below this (relative to its largest axis) flattens the rig to nothing


def armature_frame(obj: bpy.types.Object) -> tuple[np.ndarray, float]:
    """(a (3, 3) rotation taking armature axes to Blender world axes, metres per armature unit) from the object's
    world matrix W (its rotation and scale, parents included).  W = U S V^T: the rotation is U V^T, the unit the
    cube root of |det W|; a mirrored W (negative determinant) keeps a rotation by flipping the armature axis the
    world shows most nearly horizontal (the motion is then mirrored with the character).  Refused, naming the
    object's scale and the fix: a W that flattens the rig along an axis (a zero scale), and a mirror that also turns
    the rig upside down ((-1, -1, -1): its up axis points down in the scene)."""
    world = _rotation_scale(obj)
    scale_text = tuple(round(obj.scale[i], 6) for i in range(3))
    if not np.all(np.isfinite(world)):
        raise TargetSkeletonError(f"armature {obj.name!r}: its object transform is not finite (object scale "
                                  f"{scale_text}, or a parent's, or a NaN key on it): fix its transform to generate "
                                  "onto it")
    u, singular, vt = np.linalg.svd(world)
    if not singular[0] > 1e-12 or singular[2] < MIN_AXIS_SCALE * singular[0]:
        raise TargetSkeletonError(f"armature {obj.name!r} is scaled to zero (object scale {scale_text}, or a "
                                  "parent's): give it a non-zero scale on every axis to generate onto it")
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        columns = world / np.linalg.norm(world, axis=0)
        up = int(np.argmax(np.abs(columns[2])))  # the armature axis the scene shows most nearly vertical
        if columns[2, up] < 0 and abs(columns[2, up]) > 0.7:
            raise TargetSkeletonError(
                f"armature {obj.name!r} is mirrored upside down (object scale {scale_text}, or a parent's: its up "
                "axis points down in the scene): make its scale positive, or mirror it on one axis only, e.g. "
                "(-1, 1, 1)")
        flip = np.ones(3)
        flip[int(np.argmin(np.abs(columns[2])))] = -1.0  # the most horizontal armature axis
        rotation = rotation * flip[None, :]
    return rotation, float(np.cbrt(abs(np.linalg.det(world))))


def skinned_points(obj: bpy.types.Object) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """From the meshes the armature moves (armature space): per foot bone, the 8 corners of the box around the rest
    vertices it moves most, where the foot mesh ends, so that its soles and toes, not only the bones, stand on the
    floor (foot bones are found by the bone map later; here every bone that carries the lowest vertices of a mesh
    skinned to the armature, or a mesh parented to the bone itself, a robot's rigid foot, is a candidate); and per
    bone, where its skin ends: from its head towards the middle of the vertices it moves most, as far as the
    farthest of them reaches (the tip of a head, a hand without fingers, a one-bone leg's sole, a shin's wheel)."""
    per_bone: dict[str, list[np.ndarray]] = {}
    per_bone_skin: dict[str, list[np.ndarray]] = {}
    for points, owners in _meshes_moved_by(obj):
        heights = points @ np.array(obj.matrix_world, dtype=np.float64)[2, :3]  # Blender's up
        low = heights <= heights.min() + 0.15 * np.ptp(heights)  # the feet: the lowest 15% of the mesh
        for bone in set(owners) - {""}:
            mine = owners == bone
            per_bone_skin.setdefault(bone, []).append(points[mine])
            if np.any(mine & low):
                per_bone.setdefault(bone, []).append(points[mine & low])
    corners = {}
    for bone, points in per_bone.items():
        array = np.concatenate(points)
        low, high = array.min(axis=0), array.max(axis=0)
        corners[bone] = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                                  for z in (low[2], high[2])])
    ends = {}
    for bone, points in per_bone_skin.items():
        head = np.array(obj.data.bones[bone].head_local, dtype=np.float64)
        offsets = np.concatenate(points) - head
        middle = offsets.mean(axis=0)
        reach = float(np.linalg.norm(offsets, axis=-1).max())
        if np.linalg.norm(middle) > 0.05 * reach:  # skin on one side of the head: it says which way the bone goes
            direction = middle / np.linalg.norm(middle)
            ends[bone] = head + direction * float((offsets @ direction).max())
    return corners, ends


def _meshes_moved_by(obj: bpy.types.Object):
    """((V, 3) rest vertices in armature space, (V,) the bone moving each vertex most, "" for none) for every mesh
    skinned to `obj` (an Armature modifier) or parented to one of its bones.  Each vertex's groups are read once,
    in one pass over the mesh (the armature is read on every redraw of the Target Rig panel)."""
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
            yield coordinates @ rest[:3, :3].T + rest[:3, 3], np.full(count, bone.name, dtype=object)
            continue
        if not any(isinstance(m, bpy.types.ArmatureModifier) and m.object == obj for m in mesh.modifiers):
            continue
        groups = {group.index: group.name for group in mesh.vertex_groups if group.name in obj.data.bones}
        if not groups:
            continue
        to_armature = np.array(inverse @ mesh.matrix_world, dtype=np.float64)
        owners = np.full(count, "", dtype=object)
        for vertex in mesh.data.vertices:
            best, weight = None, 0.0
            for group in vertex.groups:
                if group.weight > weight and group.group in groups:
                    best, weight = group.group, group.weight
            if best is not None:
                owners[vertex.index] = groups[best]
        yield coordinates @ to_armature[:3, :3].T + to_armature[:3, 3], owners


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
    return target_report(obj)[1]


def linked_problem(obj: bpy.types.Object) -> str | None:
    """Why keys written on `obj` would not stay: an armature linked from a library file (its animation is the
    library's; an action assigned here is lost when the file is saved and reopened)."""
    if obj.library is not None:
        return (f"armature {obj.name!r} is linked from the library {obj.library.filepath!r}: keys put on it are not "
                "saved with this file; make it local (Object > Relations > Make Local) or add a library override "
                "(Object > Library Override > Make) to generate onto it")
    return None


def target_report(obj: bpy.types.Object | None) -> tuple[BoneMap | None, str | None]:
    """(the rig's bone map, None) when `obj` can be a target, else (the map when one was found, the problem): the
    skeleton is read once."""
    if obj is None:
        return None, None
    if obj.type != "ARMATURE":
        return None, f"{obj.name!r} is not an armature"
    bone_map = None
    try:
        target = armature_target_skeleton(obj)  # a rig with no size or a zero scale is refused here, by name
        bone_map = bone_map_for(obj, target)
        bone_map.check(obj.data.bones.keys(), obj.name)
        check_limb_chains(target, bone_map)
    except KMMError as error:
        return bone_map, str(error)
    return bone_map, linked_problem(obj)


def describe_bone_map(obj: bpy.types.Object) -> tuple[str, list[str], str | None]:
    """(map name with its kind, canonical joints the map leaves out, problem or None) for the panel."""
    label, unmatched, problem, _ = describe_target(obj)
    return label, unmatched, problem


def describe_target(obj: bpy.types.Object) -> tuple[str, list[str], str | None, BoneMap | None]:
    """`describe_bone_map` and the map itself, the rig read once (the Target Rig panel's draw)."""
    bone_map, problem = target_report(obj)
    if bone_map is None:
        return "none", list(skeleton.JOINT_NAMES), problem, None
    label = {"preset": f"{bone_map.name} (preset)", "auto": "auto", "user": bone_map.name}
    return label.get(bone_map.kind, bone_map.name), bone_map.unmatched(), problem, bone_map


def source_for(motion, root_motion_in_place: bool, fps: float | None) -> SourceMotion:
    """The canonical source of a MotionResult-like motion, travel removed when in place, resampled to `fps`."""
    source = source_from_motion_result(motion)
    if root_motion_in_place:
        travel = source.positions[:, :1].copy()
        travel[..., 1] = 0.0
        source = SourceMotion(positions=source.positions - travel, global_rotations=source.global_rotations,
                              rest_positions=source.rest_positions, fps=source.fps)
    return resample_source(source, fps) if fps else source


def location_bone(obj: bpy.types.Object, motion: RetargetedMotion, skinned: set[str]) -> str:
    """The bone whose location carries the travel: the topmost bone above the pelvis bone that carries skin of its
    own or of bones beside the pelvis's (a `Hips` holding a skirt and a tail while the legs hang from `Spine`: the
    skirt, the tail and the mesh travel with the body; not above IK feet the map places), else the pelvis bone or
    the nearest unconnected bone above it.  `skinned`: the rig's `skinned_bones`."""
    pelvis = obj.data.bones[motion.skeleton.bone_names[motion.plan.pelvis_bone]]
    placed = {motion.skeleton.bone_names[b] for b in motion.plan.placed}
    carrier = None
    below = pelvis
    for ancestor in pelvis.parent_recursive:
        beside = [b for b in ancestor.children_recursive if b != below and below not in b.parent_recursive]
        if any(b.name in placed for b in beside):
            break  # IK feet beside the body are keyed by their place from this bone's rest: it must not move
        if ancestor.name in skinned or any(b.name in skinned for b in beside):
            carrier = ancestor
        below = ancestor
    if carrier is not None:
        return carrier.name
    bone = pelvis
    while bone.use_connect and bone.parent is not None:
        bone = bone.parent
    return bone.name


def skinned_bones(obj: bpy.types.Object) -> set[str]:
    """Names of the bones that move some mesh: a vertex group with weight in a mesh skinned to `obj`, or a mesh
    parented to the bone."""
    names: set[str] = set()
    for mesh in bpy.data.objects:
        if mesh.type != "MESH":
            continue
        if mesh.parent == obj and mesh.parent_type == "BONE":
            names.add(mesh.parent_bone)
            continue
        if not any(isinstance(m, bpy.types.ArmatureModifier) and m.object == obj for m in mesh.modifiers):
            continue
        groups = {group.index: group.name for group in mesh.vertex_groups if group.name in obj.data.bones}
        for vertex in mesh.data.vertices:
            names.update(groups[g.group] for g in vertex.groups if g.group in groups and g.weight > 0.0)
    return names


def left_behind(obj: bpy.types.Object, keyed: set[str], skinned: set[str]) -> list[str]:
    """Bones that move skin (`skinned`) but that no keyed bone moves (not keyed, nor below a keyed bone): a prop or
    a second root beside the body stays where it is while the body walks away."""
    return sorted(bone.name for bone in obj.data.bones
                  if bone.name in skinned and bone.name not in keyed
                  and not any(parent.name in keyed for parent in bone.parent_recursive))


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
    warnings: list[str]          # what the take leaves behind (`left_behind`)


def keyed_values(obj: bpy.types.Object, motion: RetargetedMotion) -> KeyedValues:
    """The rotations of the driven bones, the travel on the location bone, and the places of the map's placed bones
    (IK feet under the root: location and rotation), the bones above them keyed at rest."""
    driven = motion.driven_bones()
    names = [motion.skeleton.bone_names[b] for b in driven]
    quaternions = motion.local_quaternions()[:, driven]
    skinned = skinned_bones(obj)  # once for the take: both the travel's bone and the warning read it
    mover = location_bone(obj, motion, skinned)
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
    behind = left_behind(obj, set(names) | {mover} | set(placed), skinned)
    warnings = [f"armature {obj.name!r}: {len(behind)} bone(s) that move its mesh follow none of the keyed bones "
                f"and stay where they are while the body moves: {', '.join(behind[:8])}"
                f"{' ...' if len(behind) > 8 else ''} (parent them under the hips, or map them in the Target Rig "
                "panel)"] if behind else []
    return KeyedValues(bone_names=names, quaternions=np.concatenate([quaternions, identity], axis=1),
                       location_bone=mover, locations=locations, located_bones=placed + above, located=located,
                       warnings=warnings)


def evaluated_joint_points(obj: bpy.types.Object, bone_map: BoneMap,
                           facing: TargetSkeleton | None = None) -> np.ndarray:
    """(22, 3) the canonical joints on the armature's current evaluated pose, HumanML3D axes and metres, relative to
    the object's origin, in the armature's own frame (`armature_frame`; NaN for joints the map leaves out): what the
    tests compare with the source.  `facing` (the skeleton a retargeting used, `RetargetedMotion.skeleton`) reads
    them in its axes: turned by the rig's detected facing, as the motion was put on it.  A mapped joint that is not a
    number (a NaN key) is refused naming the bone and the frame."""
    rotation, unit = armature_frame(obj)  # the axes the motion is made in (a mirror or a stretch shows on top)
    world = rotation * unit
    if facing is not None:
        world = (HUMANML3D_TO_BLENDER @ facing.to_humanml3d) * facing.scale_to_metres
    points = np.full((skeleton.NUM_JOINTS, 3), np.nan)
    for joint, name in enumerate(skeleton.JOINT_NAMES):
        point = bone_map.point_of(name)
        if name in bone_map.tips:  # a one-bone limb's hand or foot: the bone's tail
            points[joint] = np.array(obj.pose.bones[bone_map.tips[name]].tail, dtype=np.float64)
            continue
        if point is None:
            continue
        first = np.array(obj.pose.bones[point.first].head, dtype=np.float64)
        second = np.array(obj.pose.bones[point.second].head, dtype=np.float64)
        points[joint] = (1 - point.t) * first + point.t * second
    mapped = [joint for joint, name in enumerate(skeleton.JOINT_NAMES)
              if bone_map.point_of(name) is not None or name in bone_map.tips]
    if not np.all(np.isfinite(points[mapped])):
        raise KMMError(_non_finite_pose(obj, bone_map, [skeleton.JOINT_NAMES[j] for j in mapped
                                                        if not np.all(np.isfinite(points[j]))]))
    return (points @ world.T) @ HUMANML3D_TO_BLENDER  # C^T v for row vectors


def _non_finite_pose(obj: bpy.types.Object, bone_map: BoneMap, joints: list[str]) -> str:
    """The one line for a pose that is not a number: the bone whose own keys (or driver) are NaN or infinite, found
    from the top of the hierarchy down, else the first mapped bone whose pose is; the frame."""
    frame = bpy.context.scene.frame_current
    bones = list(obj.pose.bones)
    order = _parents_first([bone.name for bone in bones], [bone.parent.name if bone.parent else None for bone in bones])
    culprit = next((bones[position].name for position in order
                    if not np.all(np.isfinite(np.array(bones[position].matrix_basis, dtype=np.float64)))), None)
    if culprit is None:
        culprit = bone_map.bones.get(joints[0]) or bone_map.tips.get(joints[0]) or joints[0]
    return (f"armature {obj.name!r}: bone {culprit!r} has a pose that is not a number (NaN or infinite) at frame "
            f"{frame}, so {', '.join(joints)} cannot be read: fix or delete that bone's keys (or driver) at that "
            "frame")


def retargeted_take_keys(obj: bpy.types.Object, motion: take_keys.MotionLike, options: take_keys.WriteOptions,
                         scene: bpy.types.Scene,
                         held: list[tuple[int, dict[str, np.ndarray]]] | None = None) -> take_keys.TakeKeys:
    """TakeKeys of `motion` retargeted onto armature `obj` (read-only: changes nothing); `held`: (scene frame,
    {bone: keyed armature-space orientation}) of the animator's key poses, met at their frames
    (`held_rotations.py`).  Raises KeyframeWriteError naming the field, bone or joint when the motion or the rig
    does not fit."""
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
        per_key = 1.0 if resampling else scene_fps / float(motion.fps)
        hold_keyed_rotations(retargeted, [(int(round((frame - options.start_frame) / per_key)), rotations)
                                          for frame, rotations in held or []])
    except KMMError as error:
        raise take_keys.KeyframeWriteError(f"cannot retarget onto {obj.name!r}: {error}") from None
    values = keyed_values(obj, retargeted)
    frames = options.start_frame + np.arange(len(values.quaternions), dtype=np.float64)
    return take_keys.TakeKeys(
        frames=frames, quaternions=values.quaternions, locations=values.locations,
        frames_per_motion_frame=scene_fps / float(motion.fps) if resampling else 1.0, segment_starts=segment_starts,
        bone_names=tuple(values.bone_names), location_bone=values.location_bone, pose_settings=bone_map.pose_settings,
        located_bones=tuple(values.located_bones), located=values.located, warnings=tuple(values.warnings))
