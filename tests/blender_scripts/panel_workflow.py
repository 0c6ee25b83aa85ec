# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the add-on's workflow: timeline table operators, import/export, validation, applying a motion
file, and generation through the backend session with a stand-in worker process (success, cancel, crash, failed
load, headless blocking run, release).  The timer function is driven by hand: timers never fire in bpy module mode.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import controller as job_controller  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

STANDIN = str(Path(__file__).resolve().parents[1] / "standin_worker.py")
work = _harness.scratch_folder("kmm_workflow_")
result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
scene.frame_start, scene.frame_end = 1, 120
settings = scene.kmm
state = context.window_manager.kmm_job


def table() -> list:
    return [[s.prompt, s.start, s.end] for s in settings.segments]


def config(mode: str) -> backend_session.BackendConfig:
    return backend_session.BackendConfig(python=sys.executable, worker_args=(STANDIN,),
                                         extra_env=(("KMM_STANDIN_MODE", mode),))


# --- table editing -------------------------------------------------------------------------------------------
for prompt in ("walk forward", "wave the left hand", "sit down"):
    assert bpy.ops.kmm.segment_add() == {"FINISHED"}
    settings.segments[-1].prompt = prompt
result["after_add"] = table()
settings.active_segment_index = 0
bpy.ops.kmm.segment_duplicate()
result["after_duplicate"] = table()
settings.active_segment_index = 1
bpy.ops.kmm.segment_move(direction="DOWN")
result["after_move_down"] = table()
result["active_after_move"] = settings.active_segment_index
bpy.ops.kmm.segment_remove()
result["after_remove"] = table()
bpy.ops.kmm.fit_to_scene()
result["after_fit"] = table()

# --- validation shown per row; invalid tables are never sent --------------------------------------------------
settings.segments[1].prompt = "  "
settings.segments[2].start = settings.segments[2].start + 3
from kmm_motion.kmm_blender.ui import panel  # noqa: E402

result["row_problems"] = {str(k): v for k, v in panel._problems(context).items()}
actions_before = len(bpy.data.actions)


def call(operator, **kwargs) -> str:
    """Run an operator; in bpy module mode an ERROR report raises RuntimeError carrying the message."""
    try:
        return ",".join(sorted(operator(**kwargs)))
    except RuntimeError as error:
        return f"error: {error}"


result["generate_invalid"] = call(bpy.ops.kmm.generate)
result["error_after_invalid"] = state.error
result["actions_added_by_invalid"] = len(bpy.data.actions) - actions_before
bpy.ops.kmm.fit_to_scene()
settings.segments[1].prompt = "wave the left hand"
result["problems_after_fix"] = len(panel._problems(context))

# --- export / import -------------------------------------------------------------------------------------------
exported = work / "timeline.json"
result["export"] = call(bpy.ops.kmm.timeline_export, filepath=str(exported))
result["exported_json"] = json.loads(exported.read_text())
flowmdm = work / "flowmdm.json"
flowmdm.write_text(json.dumps({"lengths": [40, 60], "text": ["run", "jump"]}))
bpy.ops.kmm.timeline_import(filepath=str(flowmdm))
result["imported_flowmdm"] = table()
broken = work / "broken.json"
broken.write_text('{"fps": 24, "segments": [{"prompt": "x", "start": 1}]}')
result["import_broken"] = call(bpy.ops.kmm.timeline_import, filepath=str(broken))
result["table_after_broken_import"] = table()
bpy.ops.kmm.timeline_import(filepath=str(exported))
result["reimported"] = table()

# --- applying a motion file -----------------------------------------------------------------------------------
source = fixture_motion.load_fixture_motion(frames=60)
npz = MotionResult(fps=20.0, joints=source.joints, root_translation=source.root_translation,
                   local_rotations=source.local_rotations, segment_frames=[[0, 60]],
                   segment_prompts=("walk",)).save(work / "walk.npz")
result["apply_file"] = call(bpy.ops.kmm.apply_motion_file, filepath=str(npz))
armature = settings.target_armature
result["target_after_apply"] = armature.name if armature else None
result["action_after_apply"] = armature.animation_data.action.name

# --- generation, non-blocking (the timer function driven by hand) -----------------------------------------------


def drive(timeout: float = 60.0, cancel_at_progress: float | None = None) -> dict:
    """Tick like the timer does until the job ends; records the progress the panel would show."""
    seen, ticks, started, cancelled = [], 0, time.monotonic(), False
    while job_runner.tick() is not None:
        seen.append((round(state.progress, 3), state.status))
        ticks += 1
        if cancel_at_progress is not None and not cancelled and state.progress >= cancel_at_progress:
            job_runner.cancel()
            cancelled = True
        if time.monotonic() - started > timeout:
            raise RuntimeError("job did not finish")
        time.sleep(0.05)
    return {"progress_seen": seen, "ticks": ticks}


scene.kmm.seed = 7
actions_before = len(bpy.data.actions)
started = time.perf_counter()
job = job_runner.start_generation(context, config("ok"))
result["start_seconds"] = time.perf_counter() - started
result["running_right_after_start"] = state.running
result["ok_run"] = drive()
result["ok_job"] = [job.state, job.error, len(job.paths)]
result["ok_actions_added"] = len(bpy.data.actions) - actions_before
result["ok_active_action"] = armature.animation_data.action.name
result["ok_status"] = [state.status, state.error, state.last_takes, state.running]
pose_frames = [m.frame for m in armature.animation_data.action.pose_markers]
result["ok_markers"] = pose_frames
undo_available = True
try:
    bpy.ops.ed.undo()
    result["after_undo_action"] = armature.animation_data.action.name if armature.animation_data.action else None
except RuntimeError as error:
    result["after_undo_action"] = f"undo unavailable: {error}"

scene.kmm.variations = 2
actions_before = len(bpy.data.actions)
reports: list[tuple[str, str]] = []
shown = job_controller.report
job_controller.report = lambda level, message: (reports.append((level, message)), shown(level, message))
job = job_runner.start_generation(context, config("ok"))
drive()
job_controller.report = shown
result["variations_actions_added"] = len(bpy.data.actions) - actions_before
result["variations_takes"] = [action.name for action in bpy.data.actions][actions_before:]
result["variations_reports"] = reports
scene.kmm.variations = 1

for mode, cancel_at in (("slow", 0.1), ("crash", None), ("fail_load", None)):
    actions_before = len(bpy.data.actions)
    objects_before = len(bpy.data.objects)
    job = job_runner.start_generation(context, config(mode))
    run = drive(cancel_at_progress=cancel_at)
    result[mode] = {"state": job.state, "error": job.error, "advice": job.advice, "trace": job.trace[-300:],
                    "panel_error": state.error, "panel_running": state.running, "panel_detail": state.detail,
                    "progress_seen": sorted({p for p, _ in run["progress_seen"]}),
                    "actions_added": len(bpy.data.actions) - actions_before,
                    "objects_added": len(bpy.data.objects) - objects_before, "ticks": run["ticks"]}

# No backend Python configured (the preferences' default): a clear error, nothing changes.
job_runner.release()
actions_before = len(bpy.data.actions)
job = job_runner.start_generation(context)
drive()
result["no_python"] = [job.state, job.error, job.advice, len(bpy.data.actions) - actions_before]

# --- headless blocking run (what batch.py does) ------------------------------------------------------------------
actions_before = len(bpy.data.actions)
imported = job_runner.run_generation_blocking(context, timeout=60, config=config("ok"))
result["blocking_takes"] = [take.action.name for take in imported.takes]
result["blocking_actions_added"] = len(bpy.data.actions) - actions_before
worker = job_runner.current_session().client
job_runner.release()
result["worker_exit_after_release"] = worker.returncode
result["session_after_release"] = job_runner.current_session() is None

package.unregister()
result["unregistered_clean"] = not hasattr(bpy.types.Scene, "kmm") and not hasattr(bpy.types, "KMM_PT_main")
_harness.emit(result)
