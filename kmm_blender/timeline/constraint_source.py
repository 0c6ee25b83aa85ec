# SPDX-License-Identifier: GPL-3.0-or-later
"""The animator's keys and targets in the scene -> the timeline's constraints (``kmm_core/generation/constraints.py``).

* **Key poses** ("Use my keys as constraints"): every frame the target armature's action has a key on, inside the
  timeline, becomes a full-body pose.  The rig is evaluated at that frame, its joints read through the bone map
  (``rigs/retarget.py`` ``evaluated_joint_points``: the retargeting map used in reverse) and brought onto the
  canonical skeleton by ``kmm_core/retarget/rig_pose.py``.  The poses are stored on the scene as JSON
  (``kmm.constraint_poses``), so they are saved with the file and undone with it.
* **Targets**: the table of end-effector rows (``KMM_PG_effector``): a joint, an object (an empty) or a bone of an
  armature, a frame range.  Read when Generate builds its request, so moving the empty changes the target.

All positions are HumanML3D axes relative to the target armature's origin (as the take is keyed), divided by the
rig's scale (``rig_pose.rig_scale``).
"""

from __future__ import annotations

import json

import bpy
import numpy as np

from ...kmm_core.common.bounded_read import parse_json
from ...kmm_core.common.errors import InputFileError, KMMError
from ...kmm_core.retarget.rig_pose import canonical_point, fitted_canonical_pose, rig_scale
from ..rigs import retarget as rig_retarget
from ..rigs.axes import HUMANML3D_TO_BLENDER


def keyed_frames(armature: bpy.types.Object) -> list[int]:
    """Whole frames the armature's active action has a key on (any F-curve of a pose bone), sorted."""
    action = armature.animation_data.action if armature.animation_data else None
    if action is None:
        raise KMMError(f"armature {armature.name!r} has no action: key its pose at some frames first")
    frames: set[int] = set()
    for curve in _fcurves(action, armature):
        if curve.data_path.startswith("pose.bones["):
            frames.update(int(round(point.co[0])) for point in curve.keyframe_points)
    if not frames:
        raise KMMError(f"armature {armature.name!r}: its action {action.name!r} has no pose bone keys")
    return sorted(frames)


def _fcurves(action, armature):
    """The action's F-curves (Blender 4.4+ keeps them in layers/strips/channelbags; older ones in action.fcurves)."""
    if hasattr(action, "fcurves") and len(getattr(action, "fcurves", ())) > 0:
        return list(action.fcurves)
    curves = []
    for layer in getattr(action, "layers", ()):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", ()):
                curves.extend(bag.fcurves)
    return curves


def _scale(armature: bpy.types.Object) -> float:
    target = rig_retarget.armature_target_skeleton(armature)
    return rig_scale(target, rig_retarget.bone_map_for(armature, target))


def poses_from_keys(scene: bpy.types.Scene, armature: bpy.types.Object, first: int, last: int,
                    weight: object = "hard") -> list[dict]:
    """A pose constraint for every keyed frame of `armature` within first..last (the scene's current frame is
    restored).  Raises KMMError naming the rig, frame and joint when a pose cannot be read."""
    frames = [frame for frame in keyed_frames(armature) if first <= frame <= last]
    if not frames:
        raise KMMError(f"armature {armature.name!r}: no key falls inside the timeline (frames {first} to {last})")
    target = rig_retarget.armature_target_skeleton(armature)
    bone_map = rig_retarget.bone_map_for(armature, target)
    current = scene.frame_current, scene.frame_subframe
    poses = []
    try:
        for frame in frames:
            scene.frame_set(frame)
            points = rig_retarget.evaluated_joint_points(armature, bone_map)
            pose = fitted_canonical_pose(points, target, bone_map, f"armature {armature.name!r} at frame {frame}")
            poses.append({"type": "pose", "frame": frame, "positions": pose.round(6).tolist(),
                          **({} if weight == "hard" else {"weight": weight})})
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return poses


def stored_poses(settings) -> list[dict]:
    """The pose constraints kept on the scene (``kmm.constraint_poses``), [] when none."""
    text = settings.constraint_poses
    if not text:
        return []
    try:
        value = parse_json(text, "scene property kmm.constraint_poses", "stored constraints")
    except InputFileError as error:
        raise KMMError(str(error)) from None
    if not isinstance(value, list):
        raise KMMError("scene property kmm.constraint_poses: expected a list of constraints")
    return value


def store_poses(settings, poses: list[dict]) -> None:
    settings.constraint_poses = json.dumps(poses) if poses else ""


def _world_point(row) -> np.ndarray:
    obj = row.target
    if obj is None:
        raise KMMError(f"target of the {row.joint} row: pick an empty or an armature (with a bone)")
    if obj.type == "ARMATURE" and row.bone:
        bone = obj.pose.bones.get(row.bone)
        if bone is None:
            raise KMMError(f"target of the {row.joint} row: armature {obj.name!r} has no bone {row.bone!r}")
        return np.array(obj.matrix_world @ bone.head, dtype=np.float64)
    return np.array(obj.matrix_world.translation, dtype=np.float64)


def effector_constraints(scene: bpy.types.Scene, armature: bpy.types.Object) -> list[dict]:
    """The effector rows as constraints: each target's position at the row's first frame, relative to the
    armature."""
    rows = list(scene.kmm.effectors)  # type: ignore[attr-defined]
    if not rows:
        return []
    scale = _scale(armature)
    origin = np.array(armature.matrix_world.translation, dtype=np.float64)
    current = scene.frame_current, scene.frame_subframe
    constraints = []
    try:
        for row in rows:
            scene.frame_set(row.start)
            offset = (_world_point(row) - origin) @ HUMANML3D_TO_BLENDER  # C^T v for row vectors
            entry = {"type": "effector", "joint": row.joint, "start": row.start, "end": max(row.start, row.end),
                     "position": canonical_point(offset, scale).round(6).tolist()}
            if not row.hard:
                entry["weight"] = row.weight
            constraints.append(entry)
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return constraints


def scene_constraints(scene: bpy.types.Scene) -> list[dict]:
    """Every constraint of the scene (stored key poses, then effector rows), for the generate request."""
    settings = scene.kmm  # type: ignore[attr-defined]
    armature = settings.target_armature
    poses = stored_poses(settings)
    if armature is None:
        if poses or len(settings.effectors):
            raise KMMError("constraints: pick the target armature they were keyed on")
        return []
    return poses + effector_constraints(scene, armature)
