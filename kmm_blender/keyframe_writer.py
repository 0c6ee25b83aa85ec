# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a generated motion onto an armature as one new action (a "take").

The motion (kmm_core MotionResult: root translation + per-joint rotations relative to the T-pose rest, in parent
space, HumanML3D axes) becomes quaternion and location F-curves on the pose bones, written in one pass per F-curve
(`keyframe_points.add` + `foreach_set`), which is two orders of magnitude faster than keyframe_insert per frame.

Rotation conversion.  Let C be the HumanML3D -> Blender change of basis, q_j the joint's local rotation and R_j the
bone's rest orientation in armature space (`bone.matrix_local`).  Blender evaluates a pose bone as
    M_j = M_parent @ (R_parent^-1 R_j) @ L_j,
and we want M_j's rotation to be the motion's global rotation (in Blender axes) applied to the rest orientation,
G'_j R_j with G'_j = G'_parent (C q_j C^T).  Solving gives L_j = R_j^T (C q_j C^T) R_j: the local rotation
expressed in the bone's own rest frame.  The same formula holds for the root (no parent), so any bone roll and any
armature whose rest pose is the KMM T-pose works.

Action API differences handled here: Blender 4.2-4.3 `action.fcurves.new`; 4.4+ slotted actions
(`action.fcurve_ensure_for_datablock`); 5.0 removed `Action.fcurves`, channelbags come from
`bpy_extras.anim_utils.action_ensure_channelbag_for_slot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import bpy
import numpy as np

from ..kmm_core import rotations, skeleton
from ..kmm_core.errors import KMMError
from ..kmm_core.resample import make_quaternions_continuous, resample_positions, resample_rotations
from .axes import HUMANML3D_TO_BLENDER, positions_to_blender

ROOT_MOTION_WORLD = "WORLD"  # the pelvis travels through the scene as generated
ROOT_MOTION_IN_PLACE = "IN_PLACE"  # horizontal travel removed, height and turning kept
FPS_RESAMPLE = "RESAMPLE"  # keep real time: resample the motion to the scene's frame rate
FPS_FRAME_PER_FRAME = "FRAME_PER_FRAME"  # one motion frame per scene frame (plays faster/slower)

_INTERPOLATION_LINEAR = 1  # KeyFrame.interpolation enum value of 'LINEAR' (foreach_set takes the integer)
_REST_TOLERANCE = 1e-3  # metres; the armature's rest must be the motion's rest skeleton (offsets from parents)


class MotionLike(Protocol):
    """What the writer reads from a motion (kmm_core.motion_result.MotionResult satisfies it)."""

    fps: float
    root_translation: np.ndarray
    local_rotations: np.ndarray
    segment_frames: np.ndarray
    segment_prompts: Any


class KeyframeWriteError(KMMError):
    """The motion or the target armature cannot be written as keyframes."""


@dataclass
class WriteOptions:
    root_motion: str = ROOT_MOTION_WORLD
    fps_mode: str = FPS_RESAMPLE
    start_frame: float = 1.0  # scene frame of the motion's first frame
    push_to_nla: bool = False
    action_name: str = "KMM take"
    # Which F-curve API to use; None picks the best one the running Blender has (tests force each in turn).
    api: str | None = None


@dataclass
class Take:
    action: bpy.types.Action
    frame_start: float
    frame_end: float
    nla_track: bpy.types.NlaTrack | None = None


# ----------------------------------------------------------------------------------------------------------------
# Pure NumPy preparation (no bpy state touched)

def validate_motion(motion: MotionLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (root_translation (T, 3), local_rotations (T, 22, 4)) as float64, or raise naming the bad field."""
    translation = np.asarray(motion.root_translation, dtype=np.float64)
    local = np.asarray(motion.local_rotations, dtype=np.float64)
    frames = local.shape[0] if local.ndim == 3 else -1
    if local.ndim != 3 or local.shape[1:] != (skeleton.NUM_JOINTS, 4) or frames < 1:
        raise KeyframeWriteError(f"local_rotations must have shape (T, {skeleton.NUM_JOINTS}, 4), got {local.shape}")
    if translation.shape != (frames, 3):
        raise KeyframeWriteError(f"root_translation must have shape ({frames}, 3), got {translation.shape}")
    if not (np.isfinite(translation).all() and np.isfinite(local).all()):
        raise KeyframeWriteError("motion contains NaN or infinite values")
    if not float(motion.fps) > 0:
        raise KeyframeWriteError(f"fps must be positive, got {motion.fps}")
    names = getattr(motion, "joint_names", None)
    if names is not None and tuple(str(n) for n in names) != skeleton.JOINT_NAMES:
        raise KeyframeWriteError(f"joint_names {list(names)} differ from the KMM skeleton {list(skeleton.JOINT_NAMES)}")
    return translation, rotations.qnormalize(local)


def check_rest_matches(motion: MotionLike, armature_offsets: np.ndarray, armature_name: str) -> None:
    """The rotations only reproduce the motion on an armature whose rest pose is the motion's rest skeleton."""
    rest = getattr(motion, "rest_offsets", None)
    rest = skeleton.tpose_offsets() if rest is None else np.asarray(rest, np.float64)
    expected = positions_to_blender(rest)[1:]
    worst = float(np.abs(armature_offsets[1:] - expected).max())
    if worst > _REST_TOLERANCE:
        joint = int(np.abs(armature_offsets[1:] - expected).max(axis=-1).argmax()) + 1
        raise KeyframeWriteError(
            f"armature {armature_name!r} has another rest pose than the motion's rest skeleton (bone "
            f"{skeleton.JOINT_NAMES[joint]!r} is {worst * 100:.1f} cm off): use an armature built for this motion")


def resample_take(translation: np.ndarray, local: np.ndarray, source_fps: float,
                  target_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Root translation and local rotations at the scene's frame rate, by kmm_core's one resampling rule."""
    if abs(source_fps - target_fps) < 1e-9:
        return translation, local
    return (resample_positions(translation, source_fps, target_fps),
            resample_rotations(local, source_fps, target_fps))


def bone_local_rotations(local: np.ndarray, rest_rotations: np.ndarray) -> np.ndarray:
    """(T, 22, 4) pose-bone quaternions L_j = R_j^T (C q_j C^T) R_j for rest orientations R_j (22, 3, 3)."""
    basis = np.swapaxes(rest_rotations, -1, -2) @ HUMANML3D_TO_BLENDER  # R_j^T C, (22, 3, 3)
    matrices = basis @ rotations.quat_to_matrix(local) @ np.swapaxes(basis, -1, -2)
    return make_quaternions_continuous(rotations.matrix_to_quat(matrices))


def root_locations(translation: np.ndarray, rest_head: np.ndarray, rest_rotation: np.ndarray, root_motion: str) -> np.ndarray:
    """(T, 3) pelvis pose-bone locations (bone rest frame) that put the pelvis at the motion's root position."""
    if root_motion == ROOT_MOTION_IN_PLACE:
        translation = translation.copy()
        translation[:, [0, 2]] = 0.0  # HumanML3D ground plane is x/z
    elif root_motion != ROOT_MOTION_WORLD:
        raise KeyframeWriteError(f"unknown root motion option {root_motion!r}")
    return (positions_to_blender(translation) - rest_head) @ rest_rotation  # R^T (p - h), row-vector form


# ----------------------------------------------------------------------------------------------------------------
# F-curve creation across Blender versions

def available_api(action: bpy.types.Action) -> str:
    from bpy_extras import anim_utils

    if hasattr(anim_utils, "action_ensure_channelbag_for_slot") and hasattr(action, "slots"):
        return "channelbag"  # 4.4+ (the only way left in 5.0)
    if hasattr(action, "fcurve_ensure_for_datablock"):
        return "datablock"
    return "legacy"  # 4.2-4.3: Action.fcurves


class _FCurveFactory:
    """Creates F-curves on a fresh action for one armature object with whichever API the Blender has."""

    def __init__(self, action: bpy.types.Action, obj: bpy.types.Object, api: str):
        self.action, self.obj, self.api = action, obj, api
        self.slot = None
        if api == "channelbag":
            from bpy_extras import anim_utils

            self.slot = action.slots.new(id_type="OBJECT", name=obj.name)
            # fake-bpy-module declares the anim_utils helpers as returning None; they return the ActionChannelbag.
            self._channelbag: Any = anim_utils.action_ensure_channelbag_for_slot(  # type: ignore[func-returns-value]
                action, self.slot)
        elif api not in ("datablock", "legacy"):
            raise KeyframeWriteError(f"unknown F-curve API {api!r}")

    def new(self, data_path: str, index: int, group: str) -> bpy.types.FCurve:
        if self.api == "channelbag":
            return self._channelbag.fcurves.new(data_path, index=index, group_name=group)
        if self.api == "datablock":
            # Needs the action assigned to the object first (write_take does that); creates the slot on first use.
            if _ensure_takes_group_name():
                return self.action.fcurve_ensure_for_datablock(self.obj, data_path, index=index, group_name=group)
            fcurve = self.action.fcurve_ensure_for_datablock(self.obj, data_path, index=index)
            self._put_in_group(fcurve, group)
            return fcurve
        return self.action.fcurves.new(  # type: ignore[attr-defined]  # 4.2-4.3 API, gone from the 5.0 stubs
            data_path, index=index, action_group=group)

    def _put_in_group(self, fcurve: bpy.types.FCurve, group: str) -> None:
        """Blender 4.4.0 has no group_name argument: add the group to the slot's channelbag by hand."""
        from bpy_extras import anim_utils

        assert self.obj.animation_data is not None  # write_take assigned the action before creating F-curves
        channelbag: Any = anim_utils.action_get_channelbag_for_slot(  # type: ignore[func-returns-value]
            self.action, self.obj.animation_data.action_slot)
        fcurve.group = channelbag.groups.get(group) or channelbag.groups.new(group)


def _ensure_takes_group_name() -> bool:
    """Whether Action.fcurve_ensure_for_datablock accepts group_name (4.5+; 4.4.0 does not)."""
    function = bpy.types.Action.bl_rna.functions[  # type: ignore[attr-defined]  # stubs: bl_rna lacks .functions
        "fcurve_ensure_for_datablock"]
    return "group_name" in function.parameters.keys()


def _fill(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    points = fcurve.keyframe_points
    points.add(len(frames))
    points.foreach_set("co", np.column_stack([frames, values]).astype(np.float32).ravel())
    points.foreach_set("interpolation", np.full(len(frames), _INTERPOLATION_LINEAR, dtype=np.int32))
    fcurve.update()


# ----------------------------------------------------------------------------------------------------------------
# The take

@dataclass
class TakeKeys:
    """The keyframe values of one take, before any Blender data is touched."""

    frames: np.ndarray  # (N,) scene frames, one key per frame
    quaternions: np.ndarray  # (N, 22, 4) pose-bone rotations, sign-continuous along time
    locations: np.ndarray  # (N, 3) pelvis pose-bone locations
    frames_per_motion_frame: float  # scene frames per motion frame (1 unless resampled)
    segment_starts: np.ndarray  # (S,) motion frame where each segment starts
    # The bones keyed (quaternions' axis 1) and the one whose location carries the travel: the KMM joints, or
    # the bones a retargeting bone map drives on another rig (rig_retarget.py).
    bone_names: tuple[str, ...] = skeleton.JOINT_NAMES
    location_bone: str = skeleton.JOINT_NAMES[0]
    pose_settings: tuple[tuple[str, str, float], ...] = ()  # (bone, custom property, value) set with the take


def take_keys(obj: bpy.types.Object, motion: MotionLike, options: WriteOptions, scene: bpy.types.Scene) -> TakeKeys:
    """Validate `motion` and armature `obj` and compute the keys `write_take` writes (read-only: changes nothing)."""
    if obj is None or obj.type != "ARMATURE":
        raise KeyframeWriteError(f"target {getattr(obj, 'name', None)!r} is not an armature")
    if options.fps_mode not in (FPS_RESAMPLE, FPS_FRAME_PER_FRAME):
        raise KeyframeWriteError(f"unknown fps option {options.fps_mode!r}")
    if not _is_motion_armature(obj, motion):  # any other rig (or other proportions): retarget onto it
        from . import rig_retarget

        return rig_retarget.retargeted_take_keys(obj, motion, options, scene)
    translation, local = validate_motion(motion)
    local = make_quaternions_continuous(local)
    segment_starts = np.asarray(motion.segment_frames).reshape(-1, 2)[:, 0]
    if len(segment_starts) != len(list(motion.segment_prompts)):
        raise KeyframeWriteError(f"{len(segment_starts)} segment_frames but {len(list(motion.segment_prompts))} "
                                 "segment_prompts")

    scene_fps = scene.render.fps / scene.render.fps_base
    if options.fps_mode == FPS_RESAMPLE:
        translation, local = resample_take(translation, local, float(motion.fps), scene_fps)
        frames_per_motion_frame = scene_fps / float(motion.fps)
    else:
        frames_per_motion_frame = 1.0
    # After resampling (or in frame-per-frame mode) every motion frame is one scene frame.
    frames = options.start_frame + np.arange(len(local), dtype=np.float64)

    bones = [obj.data.bones[name] for name in skeleton.JOINT_NAMES]
    heads = np.array([bone.head_local for bone in bones], dtype=np.float64)
    parent_heads = heads[[max(parent, 0) for parent in skeleton.PARENTS]]
    check_rest_matches(motion, heads - parent_heads, obj.name)
    rest = np.array([[list(row) for row in bone.matrix_local.to_3x3()] for bone in bones])
    return TakeKeys(frames=frames, quaternions=bone_local_rotations(local, rest),
                    locations=root_locations(translation, np.array(bones[0].head_local), rest[0],
                                             options.root_motion),
                    frames_per_motion_frame=frames_per_motion_frame, segment_starts=segment_starts)


def _is_motion_armature(obj: bpy.types.Object, motion: MotionLike) -> bool:
    """Whether `obj` is a KMM armature whose rest pose is the motion's own skeleton (the exact, direct path)."""
    if any(name not in obj.data.bones for name in skeleton.JOINT_NAMES):
        return False
    from . import rig_retarget

    if rig_retarget.stored_bone_map(obj) is not None:
        return False  # the user gave this armature its own map
    heads = np.array([obj.data.bones[name].head_local for name in skeleton.JOINT_NAMES], dtype=np.float64)
    try:
        check_rest_matches(motion, heads - heads[[max(p, 0) for p in skeleton.PARENTS]], obj.name)
    except KeyframeWriteError:
        return False
    return True


def write_take(
    obj: bpy.types.Object,
    motion: MotionLike,
    options: WriteOptions | None = None,
    scene: bpy.types.Scene | None = None,
) -> Take:
    """Write `motion` onto armature `obj` as a new action and make it the active one (or push it to the NLA).

    Validates everything before touching Blender data, so a bad motion or armature changes nothing.
    """
    options = options or WriteOptions()
    scene = scene or bpy.context.scene
    keys = take_keys(obj, motion, options, scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    frames, bone_quaternions, locations = keys.frames, keys.quaternions, keys.locations
    frames_per_motion_frame, segment_starts = keys.frames_per_motion_frame, keys.segment_starts
    pelvis = obj.data.bones[keys.location_bone]

    keyed = set(keys.bone_names)
    for pose_bone in obj.pose.bones:
        if pose_bone.name in keyed:
            pose_bone.rotation_mode = "QUATERNION"
    for bone, prop, value in keys.pose_settings:  # e.g. Rigify's IK/FK switches set to FK
        if bone in obj.pose.bones:
            obj.pose.bones[bone][prop] = value
    animation_data = obj.animation_data or obj.animation_data_create()
    action = bpy.data.actions.new(options.action_name)
    action.use_fake_user = True  # earlier takes survive being replaced by later ones
    api = options.api or available_api(action)
    if api == "datablock":
        animation_data.action = action
    factory = _FCurveFactory(action, obj, api)

    for joint, name in enumerate(keys.bone_names):
        data_path = f'pose.bones["{name}"].rotation_quaternion'
        for component in range(4):
            _fill(factory.new(data_path, component, name), frames, bone_quaternions[:, joint, component])
    for axis in range(3):
        _fill(factory.new(f'pose.bones["{pelvis.name}"].location', axis, pelvis.name), frames, locations[:, axis])

    for start, prompt in zip(segment_starts, list(motion.segment_prompts), strict=True):
        marker = action.pose_markers.new(str(prompt)[:63])
        marker.frame = int(round(options.start_frame + float(start) * frames_per_motion_frame))

    animation_data.action = action
    if factory.slot is not None:
        animation_data.action_slot = factory.slot
    take = Take(action=action, frame_start=float(frames[0]), frame_end=float(frames[-1]))
    if options.push_to_nla:
        track = animation_data.nla_tracks.new()
        track.name = action.name
        track.strips.new(action.name, int(round(frames[0])), action)
        animation_data.action = None  # like "Push Down": the strip plays the take, the action slot is free again
        take.nla_track = track
    return take
