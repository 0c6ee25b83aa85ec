# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: Generate onto a foreign rig (Blender's Rigify human metarig) is ONE undo step.

The metarig gets a previous animation of its own and an undo step is pushed (the state the user sees).  Generate
then runs the way the panel runs it: `job_runner.start_generation` with the stand-in worker (real MotionResult files,
no model) and the job controller's timer function driven by hand (timers never fire in the bpy module), so the take
is retargeted, written and its undo step pushed by the controller.  One `bpy.ops.ed.undo()` must bring back the
previous animation exactly (action, evaluated pose of every bone at every frame, rotation modes, actions, frame
range); one `bpy.ops.ed.redo()` must bring the take back.  The bpy module has one window, so undo runs headless.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _harness

user_dir = _harness.start()
import addon_utils  # noqa: E402
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.timeline import segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402

STANDIN = str(Path(__file__).resolve().parents[1] / "standin_worker.py")
FRAMES = range(1, 91, 7)
result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
scene.frame_start, scene.frame_end = 1, 40  # the take (90 frames) makes the range grow

addon_utils.enable("rigify", default_set=True)
bpy.ops.object.armature_human_metarig_add()
rig_name = context.view_layer.objects.active.name
rig = bpy.data.objects[rig_name]
bpy.ops.ed.undo_push(message="metarig added")  # a step below the user's animation: an undo has somewhere to go

# The rig's previous animation: an action of the user's own on a few bones (Euler and quaternion bones).
previous = bpy.data.actions.new("UserWalk")
rig.animation_data_create().action = previous
rig.pose.bones["upper_arm.L"].rotation_mode = "XYZ"
for frame, angle in ((1, 0.0), (30, 0.6), (60, -0.4)):
    rig.pose.bones["upper_arm.L"].rotation_euler = (angle, 0.2, 0.0)
    rig.pose.bones["upper_arm.L"].keyframe_insert("rotation_euler", frame=frame)
    rig.pose.bones["spine"].location = (0.0, 0.0, angle * 0.1)
    rig.pose.bones["spine"].keyframe_insert("location", frame=frame)
    rig.pose.bones["thigh.R"].rotation_quaternion = (1.0, angle * 0.5, 0.0, 0.0)
    rig.pose.bones["thigh.R"].keyframe_insert("rotation_quaternion", frame=frame)


def snapshot() -> dict:
    """Everything a take writes or changes, read back from the current (possibly undone) data."""
    obj = bpy.data.objects[rig_name]
    frame_before = bpy.context.scene.frame_current
    poses = []
    for frame in FRAMES:
        bpy.context.scene.frame_set(frame)
        poses.append([[round(v, 6) for row in bone.matrix for v in row] for bone in obj.pose.bones])
    bpy.context.scene.frame_set(frame_before)
    action = obj.animation_data.action if obj.animation_data else None
    return {"action": action.name if action else None,
            "actions": sorted(a.name for a in bpy.data.actions),
            "rotation_modes": {bone.name: bone.rotation_mode for bone in obj.pose.bones},
            "custom": {bone.name: {k: float(bone[k]) for k in bone.keys() if isinstance(bone[k], (int, float))}
                       for bone in obj.pose.bones},
            "frame_range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
            "nla_tracks": len(obj.animation_data.nla_tracks) if obj.animation_data else 0,
            "poses": poses}


scene.frame_set(1)
bpy.ops.ed.undo_push(message="user animation")
before = snapshot()

settings = scene.kmm
settings.target_armature = rig
settings.random_seed = False
settings.seed = 5
set_rows(settings, [segment_table.Row("walk forward", 1, 90)])
config = backend_session.BackendConfig(python=sys.executable, worker_args=(STANDIN,),
                                       extra_env=(("KMM_STANDIN_MODE", "ok"),))
job = job_runner.start_generation(context, config)
started = time.monotonic()
while job_runner.tick() is not None:
    if time.monotonic() - started > 120:
        raise RuntimeError("the generation did not finish")
    time.sleep(0.05)
result["job"] = [job.state, job.error]
after = snapshot()
result["take"] = after["action"]
result["frame_range"] = [before["frame_range"], after["frame_range"]]
result["changed_by_take"] = after != before and after["action"] != before["action"]
job_runner.release()

bpy.ops.ed.undo()
undone = snapshot()
result["undo_restores"] = {key: undone[key] == before[key] for key in before}
result["undone_action"] = undone["action"]
result["pose_difference_after_undo"] = max(
    abs(a - b) for frame_a, frame_b in zip(undone["poses"], before["poses"], strict=True)
    for bone_a, bone_b in zip(frame_a, frame_b, strict=True) for a, b in zip(bone_a, bone_b, strict=True))

bpy.ops.ed.redo()
redone = snapshot()
result["redo_restores_take"] = redone == after

_harness.emit(result)
