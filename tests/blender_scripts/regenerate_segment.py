# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of "regenerate one segment in place" against the REAL worker (`python -m kmm_core.worker`).

    regenerate_segment.py <model bundle folder>

Generates a three-segment take, regenerates the middle segment with a new prompt and seed through the blocking path
(timers never fire in bpy module mode), and reports the keys of both takes so the pytest side can check that every
key outside the segment is unchanged.  Then the failure paths: a model that cannot be loaded, a take whose motion
file is gone, an action that is not a KMM take; each must leave the scene as it was.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402
import numpy as np  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer, segment_regenerator  # noqa: E402
from kmm_motion.kmm_blender.takes import provenance as take_provenance  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_blender.timeline.segment_table import Row  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion import skeleton  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

bundle = sys.argv[1]
work = _harness.scratch_folder("kmm_regenerate_")
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
settings = scene.kmm
result: dict = {}
real_worker = backend_session.BackendConfig(python=sys.executable, device="cpu", checkpoint=bundle)
CURVES = [(f'pose.bones["{bone}"].rotation_quaternion', c) for bone in skeleton.JOINT_NAMES for c in range(4)]
CURVES += [(f'pose.bones["{skeleton.JOINT_NAMES[0]}"].location', axis) for axis in range(3)]


def keys_of(action: bpy.types.Action) -> dict[str, list]:
    """Every KMM F-curve's keys as [[frame, value], ...] (the action's slot for the armature)."""
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(action, action.slots[0])
    curves = {(fc.data_path, fc.array_index): fc for fc in channelbag.fcurves}
    keys = {}
    for path, index in CURVES:
        points = curves[(path, index)].keyframe_points
        co = np.empty(2 * len(points), dtype=np.float32)
        points.foreach_get("co", co)
        keys[f"{path}[{index}]"] = co.reshape(-1, 2).tolist()
    return keys


def attempt(function) -> str:
    try:
        function()
    except (KMMError, RuntimeError) as error:  # RuntimeError: an operator's ERROR report in module mode
        return str(error)
    return "no error"


# --- a first take from the real worker -------------------------------------------------------------------------
set_rows(settings, [Row("walk forward", 1, 40), Row("turn left", 41, 80), Row("sit down", 81, 120)])
settings.seed = 3
first = job_runner.run_generation_blocking(context, timeout=240, config=real_worker).takes[0]
armature = settings.target_armature
source = take_provenance.read(first.action).source
result["first"] = {"name": first.action.name, "source": source, "keys": keys_of(first.action),
                   "provenance": {key: first.action[key] for key in first.action.keys() if key.startswith("kmm_")}}
source_motion = MotionResult.load(source)
result["source_fps"] = float(source_motion.fps)
result["source_segments"] = np.asarray(source_motion.segment_frames).tolist()

# --- regenerate the middle segment with a new prompt and seed ----------------------------------------------------
settings.active_segment_index = 1
settings.segments[1].prompt = "wave the right hand"
settings.seed = 11
result["poll_with_take"] = bpy.ops.kmm.regenerate_segment.poll()
actions_before = len(bpy.data.actions)
second = job_runner.run_regeneration_blocking(context, timeout=240, config=real_worker).takes[0]
edited = take_provenance.read(second.action).source
edited_motion = MotionResult.load(edited)
start, end = (int(v) for v in source_motion.segment_frames[1])
outside = np.r_[0:start, end:source_motion.num_frames]
result["second"] = {
    "name": second.action.name, "source": edited, "keys": keys_of(second.action),
    "active": armature.animation_data.action.name, "actions_added": len(bpy.data.actions) - actions_before,
    "first_still_there": bpy.data.actions.get(first.action.name) is not None,
    "markers": sorted([m.name, m.frame] for m in second.action.pose_markers),
    "prompts": [str(p) for p in edited_motion.segment_prompts],
    "motion_outside_identical": bool(
        np.array_equal(edited_motion.local_rotations[outside], source_motion.local_rotations[outside])
        and np.array_equal(edited_motion.root_translation[outside], source_motion.root_translation[outside])),
    "motion_inside_changed": bool(not np.array_equal(edited_motion.local_rotations[start:end],
                                                     source_motion.local_rotations[start:end])),
}
# What a plain write of the edited file gives (the keys the new take must hold inside the segment).
fresh = keyframe_writer.take_keys(armature, edited_motion, take_provenance.read(first.action).options, scene)
result["fresh"] = {"frames": fresh.frames.tolist(), "quaternions": fresh.quaternions.tolist(),
                   "locations": fresh.locations.tolist()}

# The provenance survives saving and reopening the file (a later session can still edit the take).
saved = work / "regenerated.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(saved))
bpy.ops.wm.open_mainfile(filepath=str(saved))
context, scene = bpy.context, bpy.context.scene
settings = scene.kmm
armature = settings.target_armature
result["reopened"] = {"active": armature.animation_data.action.name,
                      "source": take_provenance.read(armature.animation_data.action).source}

# --- the panel's way: non-blocking, the timer function driven by hand (timers never fire in module mode) ---------
settings.active_segment_index = 0
settings.seed = 12
job = job_runner.start_regeneration(context, real_worker)
result["timer_running_after_start"] = context.window_manager.kmm_job.running
started = time.monotonic()
while job_runner.tick() is not None:
    if time.monotonic() - started > 240:
        raise RuntimeError("the regeneration did not finish")
    time.sleep(0.05)
third = armature.animation_data.action
result["timer"] = {"state": job.state, "error": job.error, "name": third.name, "keys": keys_of(third),
                   "last_takes": context.window_manager.kmm_job.last_takes}
result["second_after_reopen"] = keys_of(bpy.data.actions[result["second"]["name"]])


# --- failures change nothing ---------------------------------------------------------------------------------------
def scene_state() -> list:
    return [sorted(a.name for a in bpy.data.actions), armature.animation_data.action.name,
            len(bpy.data.objects)]


before = scene_state()
missing_model = backend_session.BackendConfig(python=sys.executable, device="cpu",
                                              checkpoint=str(work / "no_such_bundle"))
result["fail_load"] = attempt(lambda: job_runner.run_regeneration_blocking(context, timeout=240,
                                                                           config=missing_model))
result["fail_load_unchanged"] = scene_state() == before
job_runner.release()

# The operator itself (it uses the preferences' backend, unset here: validation fails before any worker starts).
active_action = armature.animation_data.action
active_source = take_provenance.read(active_action).source
stored = {key: active_action[key] for key in (take_provenance.MOTION, take_provenance.MOTION_SHA256)}
for key in stored:  # a take made before takes carried their own motion: only its path
    del active_action[key]
Path(active_source).rename(work / "moved.npz")
result["gone_file"] = attempt(lambda: bpy.ops.kmm.regenerate_segment())
result["gone_file_unchanged"] = scene_state() == before
Path(work / "moved.npz").rename(active_source)
# A path-only take keeps working while its file exists: the plan sends that very file.
result["path_only_plan_source"] = [segment_regenerator.plan_regeneration(scene, armature, 0).source, active_source]
for key, value in stored.items():
    active_action[key] = value
set_rows(settings, [*[Row(s.prompt, s.start, s.end) for s in settings.segments], Row("jump", 121, 160)])
settings.active_segment_index = 3
result["no_such_segment"] = attempt(lambda: job_runner.run_regeneration_blocking(context, config=real_worker))
result["no_such_segment_unchanged"] = scene_state() == before
armature.animation_data.action = bpy.data.actions.new("hand made")
result["poll_without_kmm_take"] = bpy.ops.kmm.regenerate_segment.poll()
result["not_a_take"] = attempt(lambda: job_runner.run_regeneration_blocking(context, config=real_worker))

package.unregister()
_harness.emit(result)
