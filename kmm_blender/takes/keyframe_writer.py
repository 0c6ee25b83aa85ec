# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a generated motion onto an armature as one new action (a "take").

The keys come from the rig layer: `rigs/take_keys.py` on a KMM armature built for the motion, `rigs/retarget.py` on
any other rig; this module only decides which and writes them.

The motion (kmm_core MotionResult: root translation + per-joint rotations relative to the T-pose rest, in parent
space, HumanML3D axes) becomes rotation (in each bone's own mode) and location F-curves on the pose bones, written in one pass per F-curve
(`keyframe_points.add` + `foreach_set` of buffers in the keys' own field types + `handles_recalc`), which is two orders
of magnitude faster than keyframe_insert per frame (10 minutes at 30 fps: about 0.25 s, benchmarks/results/
blender_apply.md).

Action API differences handled here: Blender 4.2-4.3 `action.fcurves.new`; 4.4+ slotted actions
(`action.fcurve_ensure_for_datablock`); 5.0 removed `Action.fcurves`, channelbags come from
`bpy_extras.anim_utils.action_ensure_channelbag_for_slot`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ...kmm_core.common.bounded_read import parse_json
from ...kmm_core.common.errors import InputFileError
from ...kmm_core.common.finite_values import require_finite
from ..rigs.retarget import retargeted_take_keys, stored_bone_map
from ..rigs.take_keys import (
    FPS_FRAME_PER_FRAME,
    FPS_RESAMPLE,
    KeyframeWriteError,
    MotionLike,
    TakeKeys,
    WriteOptions,
    fits_motion_skeleton,
    motion_armature_keys,
)
from ..timeline import constraint_source

_INTERPOLATION_LINEAR = 1  # KeyFrame.interpolation enum value of 'LINEAR' (foreach_set takes the integer)


ROTATION_MODES = "kmm_rotation_modes"  # action property: JSON {bone: rotation mode} of the bones not keyed as quaternions
_EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


@dataclass
class Take:
    action: bpy.types.Action
    frame_start: float
    frame_end: float
    nla_track: bpy.types.NlaTrack | None = None
    kept_action: str | None = None  # the user's own action the armature played before, kept with a fake user
    warnings: tuple[str, ...] = ()  # what the keys could not move (`TakeKeys.warnings`)


# ----------------------------------------------------------------------------------------------------------------
# Each bone keyed in its own rotation mode (the user's choice is never changed)

def rotation_channel(mode: str) -> tuple[str, int]:
    """(F-curve property, channel count) of a pose bone's rotation in `mode` (QUATERNION, AXIS_ANGLE or an Euler
    order such as XYZ)."""
    if mode == "QUATERNION":
        return "rotation_quaternion", 4
    if mode == "AXIS_ANGLE":
        return "rotation_axis_angle", 4
    if mode in _EULER_ORDERS:
        return "rotation_euler", 3
    raise KeyframeWriteError(f"unknown rotation mode {mode!r}")


def rotation_values(quaternions: np.ndarray, mode: str, compatible: np.ndarray | None = None) -> np.ndarray:
    """(N, 4) unit pose-bone quaternions (w, x, y, z) as the (N, k) values of the bone's rotation channel in `mode`.

    Euler angles follow Blender's own conversion (`to_euler` with the previous frame's angles as the compatible
    ones), so they never jump by a turn between keys; `compatible` continues from a key already there."""
    quaternions = np.asarray(quaternions, dtype=np.float64)
    if mode == "QUATERNION":
        return quaternions
    from mathutils import Euler, Quaternion

    if mode == "AXIS_ANGLE":
        values = np.empty((len(quaternions), 4))
        for frame, quaternion in enumerate(quaternions):
            axis, angle = Quaternion(quaternion).to_axis_angle()
            values[frame] = (angle, axis[0], axis[1], axis[2])
        return values
    rotation_channel(mode)  # an unknown mode is refused by name
    order: Any = mode  # one of _EULER_ORDERS (the stubs want the literal)
    values = np.empty((len(quaternions), 3))
    previous = Euler(tuple(compatible), order) if compatible is not None else None
    for frame, quaternion in enumerate(quaternions):
        euler = Quaternion(quaternion).to_euler(order, previous) if previous is not None else Quaternion(
            quaternion).to_euler(order)
        values[frame] = euler
        previous = euler
    return values


def recorded_rotation_modes(action: bpy.types.Action) -> dict[str, str]:
    """The bones a take keyed in another mode than quaternions, as recorded by `write_take` (older takes: none)."""
    text = action.get(ROTATION_MODES)
    try:
        modes = parse_json(str(text), f"take {action.name!r}", "recorded rotation modes") if text else {}
    except InputFileError:
        raise KeyframeWriteError(f"take {action.name!r}: its recorded rotation modes are damaged") from None
    if not isinstance(modes, dict) or not all(isinstance(v, str) for v in modes.values()):
        raise KeyframeWriteError(f"take {action.name!r}: its recorded rotation modes are damaged")
    return {str(bone): mode for bone, mode in modes.items()}


def keep_users_action(animation_data: bpy.types.AnimData | None) -> str | None:
    """Give the action the armature plays a fake user when nothing else would keep it once a take replaces it (it
    would be gone when the file is saved); returns its name then, else None.  Takes have their fake user already."""
    action = animation_data.action if animation_data is not None else None
    if action is None or action.use_fake_user or action.users > 1:
        return None
    action.use_fake_user = True
    return action.name


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


class _KeyBuffers:
    """The flat arrays foreach_set takes, allocated once per take: (frame, value) pairs and the interpolations.

    Both match the key's own field types, so bpy copies them in without looking at each item: float32 pairs for
    "co", and uint8 for "interpolation" (a char in Blender's BezTriple: an int32 array makes bpy walk it item by
    item, ten times slower).  The keys go in frame order, so `handles_recalc` (the second half of
    `FCurve.update()`, whose first half sorts the keys) gives the same handles; out-of-order frames still sort."""

    def __init__(self, frames: np.ndarray):
        self.co = np.empty(2 * len(frames), dtype=np.float32)
        self.co[0::2] = frames
        self.interpolation = np.full(len(frames), _INTERPOLATION_LINEAR, dtype=np.uint8)
        self.in_frame_order = bool(np.all(np.diff(self.co[0::2]) > 0))

    def fill(self, fcurve: bpy.types.FCurve, values: np.ndarray) -> None:
        points = fcurve.keyframe_points
        points.add(len(self.interpolation))
        self.co[1::2] = values
        points.foreach_set("co", self.co)
        points.foreach_set("interpolation", self.interpolation)
        if self.in_frame_order:
            points.handles_recalc()
        else:
            fcurve.update()


# ----------------------------------------------------------------------------------------------------------------
# The take

def take_keys(obj: bpy.types.Object, motion: MotionLike, options: WriteOptions, scene: bpy.types.Scene) -> TakeKeys:
    """Validate `motion` and armature `obj` and compute the keys `write_take` writes (read-only: changes nothing):
    the exact keys on a KMM armature built for the motion, else (any other rig, other proportions, or a rig the
    user gave its own bone map) the motion retargeted onto it, the orientations of its keyed bones held at the
    key poses' frames (`constraint_source.held_rotations`)."""
    if obj is None or obj.type != "ARMATURE":
        raise KeyframeWriteError(f"target {getattr(obj, 'name', None)!r} is not an armature")
    if options.fps_mode not in (FPS_RESAMPLE, FPS_FRAME_PER_FRAME):
        raise KeyframeWriteError(f"unknown fps option {options.fps_mode!r}")
    if stored_bone_map(obj) is None and fits_motion_skeleton(obj, motion):
        keys = motion_armature_keys(obj, motion, options, scene)
    else:
        keys = retargeted_take_keys(obj, motion, options, scene, constraint_source.held_rotations(scene, obj))
    # the last check before any key is written: nothing non-finite reaches the user's rig
    require_finite(f"keys of {options.action_name!r} on {obj.name!r}", rotations=keys.quaternions,
                   locations=keys.locations, placed_locations=keys.located_values(), frames=keys.frames)
    return keys


def write_take(
    obj: bpy.types.Object,
    motion: MotionLike,
    options: WriteOptions | None = None,
    scene: bpy.types.Scene | None = None,
) -> Take:
    """Write `motion` onto armature `obj` as a new action and make it the active one (or push it to the NLA).

    Validates everything before touching Blender data, so a bad motion or armature changes nothing (no NaN or
    infinite value is ever keyed).  The user's work stays: each bone is keyed in its own rotation mode (Euler, axis
    angle or quaternion, recorded on the take for later edits) and the action the armature played before keeps a
    fake user, so saving the file never drops it (`Take.kept_action` names it).
    """
    options = options or WriteOptions()
    scene = scene or bpy.context.scene
    keys = take_keys(obj, motion, options, scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    frames, bone_quaternions, locations = keys.frames, keys.quaternions, keys.locations
    frames_per_motion_frame, segment_starts = keys.frames_per_motion_frame, keys.segment_starts
    pelvis = obj.data.bones[keys.location_bone]

    modes = {name: obj.pose.bones[name].rotation_mode for name in keys.bone_names}
    for mode in set(modes.values()):
        rotation_channel(mode)  # every mode known before anything changes
    kept_action = keep_users_action(obj.animation_data)
    for bone, prop, value in keys.pose_settings:  # e.g. Rigify's IK/FK switches set to FK
        if bone in obj.pose.bones:
            obj.pose.bones[bone][prop] = value
    animation_data = obj.animation_data or obj.animation_data_create()
    action = bpy.data.actions.new(options.action_name)
    action.use_fake_user = True  # earlier takes survive being replaced by later ones
    other_modes = {name: mode for name, mode in modes.items() if mode != "QUATERNION"}
    if other_modes:
        action[ROTATION_MODES] = json.dumps(other_modes)
    api = options.api or available_api(action)
    if api == "datablock":
        animation_data.action = action
    factory = _FCurveFactory(action, obj, api)

    buffers = _KeyBuffers(frames)
    for joint, name in enumerate(keys.bone_names):
        channel, count = rotation_channel(modes[name])
        values = rotation_values(bone_quaternions[:, joint], modes[name])
        for component in range(count):
            buffers.fill(factory.new(f'pose.bones["{name}"].{channel}', component, name), values[:, component])
    for axis in range(3):
        buffers.fill(factory.new(f'pose.bones["{pelvis.name}"].location', axis, pelvis.name), locations[:, axis])
    for located, name in enumerate(keys.located_bones):  # IK feet under the root, placed where the motion goes
        for axis in range(3):
            buffers.fill(factory.new(f'pose.bones["{name}"].location', axis, name),
                         keys.located_values()[:, located, axis])

    for start, prompt in zip(segment_starts, list(motion.segment_prompts), strict=True):
        marker = action.pose_markers.new(str(prompt)[:63])
        marker.frame = int(round(options.start_frame + float(start) * frames_per_motion_frame))

    action.update_tag(refresh={"TIME"})  # what FCurve.update() told the depsgraph per F-curve: the keys changed
    animation_data.action = action
    if factory.slot is not None:
        animation_data.action_slot = factory.slot
    take = Take(action=action, frame_start=float(frames[0]), frame_end=float(frames[-1]), kept_action=kept_action,
                warnings=keys.warnings)
    if options.push_to_nla:
        track = animation_data.nla_tracks.new()
        track.name = action.name
        track.strips.new(action.name, int(round(frames[0])), action)
        animation_data.action = None  # like "Push Down": the strip plays the take, the action slot is free again
        take.nla_track = track
    return take
