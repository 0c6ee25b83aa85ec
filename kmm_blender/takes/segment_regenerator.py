# SPDX-License-Identifier: GPL-3.0-or-later
"""Regenerate one segment of the active take in place, without touching the user's work outside it.

The worker's `edit` request (mode `regenerate`) remakes one segment of the MotionResult file that produced the take
(its path is stored on the action, see take_provenance) and keeps every other motion frame bit-identical.  The add-on
then makes a NEW action: a copy of the current take in which only the keys on the segment's scene frames are
replaced by the new motion's.  Everything outside those frames is the old action's own data (including any keys the
user edited by hand), the old take stays in the file (fake user) to go back to, and a failure at any point removes
the copy again, so nothing changes.

Frames replaced: with the take resampled to the scene rate, a scene key depends on the two motion frames around it,
so every key whose motion-time position lies strictly between the last kept frame before the segment and the first
kept frame after it is replaced.  The new rotations take the sign of the key just before the segment (q and -q are
the same rotation; a matching sign keeps the interpolation between neighbouring keys on the short arc).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ...kmm_core.common.errors import KMMError
from ...kmm_core.motion import skeleton
from ...kmm_core.motion.motion_result import MotionResult
from ...kmm_core.worker.protocol import Edit
from ..rigs import take_keys
from . import importer as take_importer
from . import keyframe_writer
from . import provenance as take_provenance

_INTERPOLATION_LINEAR = 1  # KeyFrame.interpolation enum value of 'LINEAR' (as the writer sets it)
_POSITION_TOLERANCE = 1e-6  # motion frames; resampled positions are sums of floats


@dataclass(frozen=True)
class RegenerationPlan:
    """What to regenerate, captured when the request is sent (the UI may change while the worker runs)."""

    armature_name: str
    action_name: str
    source: str  # the take's MotionResult file
    segment: int  # index into the source's segments
    prompt: str | None  # None: keep the segment's prompt
    motion_range: tuple[int, int]  # the segment's [start, end) in source motion frames
    provenance: take_provenance.Provenance


def plan_regeneration(scene: bpy.types.Scene, armature: bpy.types.Object | None, segment: int,
                      row_prompt: str = "") -> RegenerationPlan:
    """Check that segment `segment` of `armature`'s active take can be regenerated (read-only).

    `row_prompt`: the prompt now in the table row; when it differs from the take's, the segment gets the new one.
    """
    if armature is None or armature.type != "ARMATURE":
        raise KMMError("no target armature: generate a take first (or pick the armature in Settings)")
    action = armature.animation_data.action if armature.animation_data else None
    provenance = take_provenance.read(action)
    assert action is not None  # read() raised otherwise
    fps = scene.render.fps / scene.render.fps_base
    if abs(provenance.scene_fps - fps) > 1e-6:
        raise KMMError(f"the scene frame rate changed since take {action.name!r} was made "
                       f"({provenance.scene_fps:g} -> {fps:g} fps): set it back or generate a new take")
    source_path = take_provenance.motion_file(action, provenance)  # the stored copy when the file is gone
    source = MotionResult.load(source_path)
    prompts = [str(prompt) for prompt in source.segment_prompts]
    if not 0 <= segment < len(prompts):
        raise KMMError(f"segment {segment + 1}: take {action.name!r} has {len(prompts)} segment(s)")
    start, end = (int(value) for value in source.segment_frames[segment])
    new_prompt = row_prompt.strip()
    return RegenerationPlan(armature_name=armature.name, action_name=action.name, source=source_path,
                            segment=segment, prompt=new_prompt if new_prompt and new_prompt != prompts[segment]
                            else None, motion_range=(start, end), provenance=provenance)


def edit_request(plan: RegenerationPlan, output_dir: str, *, seed: int | None, guidance: float | None,
                 steps: int | None) -> Edit:
    """The protocol `Edit` request (mode regenerate) for `plan` (validated when sent)."""
    return Edit(mode="regenerate", source=plan.source, output_dir=output_dir, segment=plan.segment,
                prompt=plan.prompt, seed=seed, variations=1, guidance=guidance, steps=steps)


def replaced_keys(keys: take_keys.TakeKeys, motion_range: tuple[int, int]) -> np.ndarray:
    """Boolean mask over `keys.frames`: the keys that depend on a motion frame inside [start, end)."""
    start, end = motion_range
    position = np.arange(len(keys.frames)) / keys.frames_per_motion_frame  # motion-time of each key
    return (position > start - 1 + _POSITION_TOLERANCE) & (position < end - _POSITION_TOLERANCE)


def apply_regeneration(context: bpy.types.Context, plan: RegenerationPlan,
                       result_path: str) -> keyframe_writer.Take:
    """Make the new take from the worker's result and make it the armature's active action. All or nothing."""
    scene = context.scene
    armature = bpy.data.objects.get(plan.armature_name)
    if armature is None or armature.type != "ARMATURE" or armature.animation_data is None:
        raise KMMError(f"armature {plan.armature_name!r} no longer exists")
    old = bpy.data.actions.get(plan.action_name)
    if old is None:
        raise KMMError(f"take {plan.action_name!r} no longer exists")
    motion = MotionResult.load(result_path)
    keys = keyframe_writer.take_keys(armature, motion, plan.provenance.options, scene)
    mask = replaced_keys(keys, plan.motion_range)
    if not mask.any():
        raise KMMError(f"segment {plan.segment + 1} covers no scene frame of take {old.name!r}")
    frames = keys.frames[mask]
    slot_identifier = _active_slot_identifier(armature)
    modes = keyframe_writer.recorded_rotation_modes(old)  # each bone is keyed in the mode the take was written in
    _kmm_curves(old, slot_identifier, old.name, keys, modes)  # every KMM curve must be there before anything changes

    previous_action = armature.animation_data.action
    new = old.copy()
    try:
        new.name = _take_name(old.name, plan.segment)
        curves = _kmm_curves(new, slot_identifier, new.name, keys, modes)
        for joint, bone in enumerate(keys.bone_names):
            mode = modes.get(bone, "QUATERNION")
            channel, count = keyframe_writer.rotation_channel(mode)
            path = f'pose.bones["{bone}"].{channel}'
            bone_curves = [curves[(path, c)] for c in range(count)]
            rotation = _continuing_rotation(keys.quaternions[mask, joint], mode, bone_curves, frames, keys.frames)
            for component in range(count):
                _replace_keys(bone_curves[component], frames, rotation[:, component])
        location_path = f'pose.bones["{keys.location_bone}"].location'
        for axis in range(3):
            _replace_keys(curves[(location_path, axis)], frames, keys.locations[mask, axis])
        for located, bone in enumerate(keys.located_bones):
            for axis in range(3):
                _replace_keys(curves[(f'pose.bones["{bone}"].location', axis)], frames,
                              keys.located_values()[mask, located, axis])
        if plan.prompt is not None:
            _rename_marker(new, plan, keys)
        take_provenance.record(new, result_path, plan.provenance.options, scene)
        _assign(armature, new, slot_identifier)
    except BaseException:
        if previous_action is not None:
            _assign(armature, previous_action, slot_identifier)
        bpy.data.actions.remove(new)
        raise
    return keyframe_writer.Take(action=new, frame_start=float(keys.frames[0]), frame_end=float(keys.frames[-1]))


# ---- internals ----------------------------------------------------------------------------------------------------
def _take_name(old_name: str, segment: int) -> str:
    """'KMM walk +1 seed 3' -> 'KMM walk +1 seed 3 seg2'; regenerating again does not pile up suffixes, and a name
    already taken gets ' #2', ' #3', ... instead of Blender's '.001'."""
    base = re.sub(r"( seg\d+)?( #\d+)?(\.\d{3})?$", "", old_name)
    return take_importer.unique_name(f"{base[:52]} seg{segment + 1}", bpy.data.actions.keys())


def _active_slot_identifier(armature: bpy.types.Object) -> str | None:
    """The slot the armature plays (Blender 4.4+ slotted actions), None before 4.4."""
    slot = getattr(armature.animation_data, "action_slot", None)
    return slot.identifier if slot is not None else None


def _kmm_curves(action: bpy.types.Action, slot_identifier: str | None, name: str,
                keys: take_keys.TakeKeys | None = None,
                modes: dict[str, str] | None = None) -> dict[tuple[str, int], Any]:
    """The take's F-curves by (data path, index); KMMError when one the writer makes is missing."""
    if slot_identifier is not None:
        from bpy_extras import anim_utils

        slot = next((s for s in action.slots if s.identifier == slot_identifier), None)
        channelbag: Any = None if slot is None else anim_utils.action_get_channelbag_for_slot(  # type: ignore[func-returns-value]  # returns the channelbag
            action, slot)
        fcurves = list(channelbag.fcurves) if channelbag is not None else []
    else:
        fcurves = list(action.fcurves)  # type: ignore[attr-defined]  # 4.2-4.3 API, gone from the 5.0 stubs
    curves = {(fcurve.data_path, fcurve.array_index): fcurve for fcurve in fcurves}
    bones, location_bone = (keys.bone_names, keys.location_bone) if keys else (skeleton.JOINT_NAMES,
                                                                                skeleton.JOINT_NAMES[0])
    channels = {bone: keyframe_writer.rotation_channel((modes or {}).get(bone, "QUATERNION")) for bone in bones}
    needed = [(f'pose.bones["{bone}"].{channels[bone][0]}', c) for bone in bones for c in range(channels[bone][1])]
    needed += [(f'pose.bones["{bone}"].location', axis) for bone in [location_bone, *(keys.located_bones if keys else ())]
               for axis in range(3)]
    missing = [f"{path}[{index}]" for path, index in needed if (path, index) not in curves]
    if missing:
        raise KMMError(f"take {name!r} lacks the F-curves {missing[:3]}{' ...' if len(missing) > 3 else ''}: "
                       "only complete KMM takes can be edited")
    return curves


def _continuing_rotation(quaternions: np.ndarray, mode: str, curves: list, frames: np.ndarray,
                         all_frames: np.ndarray) -> np.ndarray:
    """The new (n, 4) pose-bone quaternions as the values of the bone's channel in `mode`, continuing the kept key
    next to them: quaternions flipped onto its hemisphere, Euler angles compatible with it (no turn-sized jump)."""
    if frames[0] > all_frames[0]:
        neighbour, first = frames[0] - 1.0, True
    elif frames[-1] < all_frames[-1]:
        neighbour, first = frames[-1] + 1.0, False
    else:  # the segment is the whole take: nothing to continue
        return keyframe_writer.rotation_values(quaternions, mode)
    kept = np.array([curve.evaluate(neighbour) for curve in curves])
    if mode == "QUATERNION":
        own = quaternions[0] if first else quaternions[-1]
        return -quaternions if float(np.dot(kept, own)) < 0.0 else quaternions
    if first:  # Euler angles continue the kept key's (axis-angle has no such choice: `kept` is not used)
        return keyframe_writer.rotation_values(quaternions, mode, compatible=kept)
    return keyframe_writer.rotation_values(quaternions[::-1], mode, compatible=kept)[::-1]


def _replace_keys(fcurve: Any, frames: np.ndarray, values: np.ndarray) -> None:
    """Remove the keys on `frames` (sorted, one per frame) and insert `values` there; other keys stay as they are."""
    points = fcurve.keyframe_points
    first, last = float(frames[0]) - 0.5, float(frames[-1]) + 0.5
    doomed = [index for index, point in enumerate(points) if first < point.co[0] < last]
    for index in reversed(doomed):
        points.remove(points[index], fast=True)
    kept = len(points)
    points.add(len(frames))
    co = np.empty(2 * len(points), dtype=np.float32)
    points.foreach_get("co", co)
    co[2 * kept:] = np.column_stack([frames, values]).astype(np.float32).ravel()
    points.foreach_set("co", co)
    interpolation = np.empty(len(points), dtype=np.int32)
    points.foreach_get("interpolation", interpolation)
    interpolation[kept:] = _INTERPOLATION_LINEAR
    points.foreach_set("interpolation", interpolation)
    fcurve.update()  # sorts the keys by frame and recomputes handles


def _rename_marker(action: bpy.types.Action, plan: RegenerationPlan, keys: take_keys.TakeKeys) -> None:
    frame = int(round(plan.provenance.options.start_frame + plan.motion_range[0] * keys.frames_per_motion_frame))
    for marker in action.pose_markers:
        if marker.frame == frame:
            marker.name = str(plan.prompt)[:63]
            return


def _assign(armature: bpy.types.Object, action: bpy.types.Action, slot_identifier: str | None) -> None:
    animation_data = armature.animation_data
    assert animation_data is not None
    animation_data.action = action
    if slot_identifier is not None:
        slot = next((s for s in action.slots if s.identifier == slot_identifier), None)
        if slot is not None:
            animation_data.action_slot = slot
