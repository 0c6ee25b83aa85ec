# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: build the KMM armature, write the fixture motion as takes, evaluate the pose, compare positions.

Prints one JSON result (see _harness.emit); exits non-zero on any exception.
"""

from __future__ import annotations

import time

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
from kmm_motion.kmm_blender.rigs import armature_builder, take_keys  # noqa: E402
from kmm_motion.kmm_blender.rigs.axes import positions_to_blender  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer  # noqa: E402
from kmm_motion.kmm_core.motion import skeleton  # noqa: E402

result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0

# --- armature -----------------------------------------------------------------------------------------------
started = time.perf_counter()
armature = armature_builder.create_armature(context)
result["armature_seconds"] = time.perf_counter() - started
bones = armature.data.bones
result["bone_names"] = [bone.name for bone in bones]
result["bone_parents"] = {bone.name: (bone.parent.name if bone.parent else None) for bone in bones}
rest_heads = np.array([bones[name].head_local for name in skeleton.JOINT_NAMES])
expected_heads = armature_builder.tpose_rest_positions()
result["rest_head_error"] = float(np.abs(rest_heads - expected_heads).max())
result["rest_min_z"] = float(rest_heads[:, 2].min())
# Each non-leaf bone must point at its main child; leaves must have a real length.
tails = np.array([bones[name].tail_local for name in skeleton.JOINT_NAMES])
result["bone_lengths"] = {name: float(np.linalg.norm(tails[i] - rest_heads[i])) for i, name in enumerate(skeleton.JOINT_NAMES)}
main_child = {"pelvis": "spine1", "spine3": "neck", "left_hip": "left_knee", "left_shoulder": "left_elbow",
              "right_knee": "right_ankle", "left_elbow": "left_wrist"}
result["tail_to_child_error"] = max(
    float(np.linalg.norm(np.array(bones[p].tail_local) - np.array(bones[c].head_local))) for p, c in main_child.items()
)
left_wrist = np.array(bones["left_wrist"].head_local)
result["left_wrist_rest"] = left_wrist.tolist()  # left side is +X in Blender too
result["head_rest"] = np.array(bones["head"].head_local).tolist()
result["missing_bones_of_new"] = armature_builder.missing_bones(armature)
result["missing_bones_of_none"] = len(armature_builder.missing_bones(None))

# --- takes --------------------------------------------------------------------------------------------------
motion = fixture_motion.load_fixture_motion()
frames = len(motion.local_rotations)
result["source_vs_fk_max_error"] = float(np.linalg.norm(motion.joints - motion.source_joints, axis=-1).max())


def evaluated_heads(frame: int) -> np.ndarray:
    scene.frame_set(frame)
    world = armature.matrix_world
    return np.array([list(world @ armature.pose.bones[name].head) for name in skeleton.JOINT_NAMES])


def compare(take_frames: list[tuple[int, int]], expected_world: np.ndarray) -> float:
    """Max distance (m) between evaluated bone heads at scene frame f and expected joints at motion frame m."""
    worst = 0.0
    for scene_frame, motion_frame in take_frames:
        expected = positions_to_blender(expected_world[motion_frame])
        worst = max(worst, float(np.linalg.norm(evaluated_heads(scene_frame) - expected, axis=-1).max()))
    return worst


cases = []
for api in ("channelbag", "datablock"):
    for root_motion in (take_keys.ROOT_MOTION_WORLD, take_keys.ROOT_MOTION_IN_PLACE):
        for fps_mode in (take_keys.FPS_RESAMPLE, take_keys.FPS_FRAME_PER_FRAME):
            cases.append((api, root_motion, fps_mode))

actions_before = len(bpy.data.actions)
errors = {}
timings = {}
for api, root_motion, fps_mode in cases:
    options = take_keys.WriteOptions(root_motion=root_motion, fps_mode=fps_mode, start_frame=10,
                                           action_name=f"take {api} {root_motion} {fps_mode}", api=api)
    started = time.perf_counter()
    take = keyframe_writer.write_take(armature, motion, options, scene)
    timings[f"{api}/{root_motion}/{fps_mode}"] = time.perf_counter() - started
    expected = motion.joints.copy()
    if root_motion == take_keys.ROOT_MOTION_IN_PLACE:
        expected[:, :, [0, 2]] -= motion.root_translation[:, None, [0, 2]]
    if fps_mode == take_keys.FPS_RESAMPLE:
        # 24 fps scene, 20 fps motion: every 6th scene frame is exactly every 5th motion frame.
        pairs = [(10 + 6 * k, 5 * k) for k in range((frames - 1) // 5 + 1)]
        expected_count = int(round((frames - 1) * 24 / 20)) + 1
    else:
        pairs = [(10 + m, m) for m in range(0, frames, 7)]
        expected_count = frames
    key = f"{api}/{root_motion}/{fps_mode}"
    errors[key] = compare(pairs, expected)
    if root_motion == take_keys.ROOT_MOTION_WORLD:  # against the recorded HumanML3D joints themselves
        result.setdefault("errors_vs_recorded", {})[key] = compare(pairs, motion.source_joints)
    result.setdefault("frame_ranges", {})[key] = [take.frame_start, take.frame_end, expected_count]
    assert armature.animation_data.action == take.action
    result.setdefault("marker_frames", {})[key] = [m.frame for m in take.action.pose_markers]
result["position_errors"] = errors
result["write_seconds"] = timings
result["actions_added"] = len(bpy.data.actions) - actions_before
last = armature.animation_data.action
result["fcurve_count"] = sum(len(bag.fcurves) for layer in last.layers for strip in layer.strips for bag in strip.channelbags)
result["markers"] = [(m.name, m.frame) for m in last.pose_markers]
result["slot_identifier"] = armature.animation_data.action_slot.identifier if armature.animation_data.action_slot else None

# Interpolated frames (between motion frames) must stay on the skeleton: bone lengths preserved.
heads = evaluated_heads(13)
result["interpolated_bone_length_error"] = float(max(
    abs(np.linalg.norm(heads[j] - heads[p]) - skeleton.BONE_LENGTHS[j]) for j, p in enumerate(skeleton.PARENTS) if p >= 0
))

# --- NLA push -----------------------------------------------------------------------------------------------
take = keyframe_writer.write_take(armature, motion, take_keys.WriteOptions(push_to_nla=True, start_frame=1), scene)
result["nla_tracks"] = [t.name for t in armature.animation_data.nla_tracks]
result["nla_strip_range"] = [take.nla_track.strips[0].frame_start, take.nla_track.strips[0].frame_end]
result["action_after_nla"] = armature.animation_data.action.name if armature.animation_data.action else None
result["nla_error"] = compare([(1 + 6 * k, 5 * k) for k in range(0, 30, 3)], motion.joints)

# --- speed on a long motion (1000 frames at scene fps) -------------------------------------------------------
long_motion = fixture_motion.load_fixture_motion()
reps = int(np.ceil(1000 / frames))
long_motion.local_rotations = np.concatenate([motion.local_rotations] * reps)[:1000]
long_motion.root_translation = np.concatenate([motion.root_translation] * reps)[:1000]
long_motion.fps = 24.0
started = time.perf_counter()
keyframe_writer.write_take(armature, long_motion, take_keys.WriteOptions(), scene)
result["write_1000_frames_seconds"] = time.perf_counter() - started

# --- rejected inputs change nothing -------------------------------------------------------------------------
actions_before = len(bpy.data.actions)
rejections = {}
bad = fixture_motion.load_fixture_motion(frames=10)
bad.local_rotations = bad.local_rotations[:, :21]
for label, target, candidate in (
    ("bad_shape", armature, bad),
    ("not_armature", bpy.data.objects.new("empty", None), motion),
):
    try:
        keyframe_writer.write_take(target, candidate, take_keys.WriteOptions(), scene)
        rejections[label] = None
    except take_keys.KeyframeWriteError as error:
        rejections[label] = str(error)
result["rejections"] = rejections
result["actions_added_by_rejections"] = len(bpy.data.actions) - actions_before

# --- a motion made for another skeleton is retargeted onto the armature, not refused -------------------------------
other_rest = fixture_motion.load_fixture_motion(frames=10)
other_rest.rest_offsets = other_rest.rest_offsets * 1.1  # a taller skeleton: the armature's rest does not fit
other_take = keyframe_writer.write_take(armature, other_rest, take_keys.WriteOptions(), scene)
result["other_rest_take_frames"] = [other_take.frame_start, other_take.frame_end]

_harness.emit(result)
