# SPDX-License-Identifier: GPL-3.0-or-later
"""Glue between Blender and the backend session: start a generation from the scene's settings, follow it with a
timer, and write the takes when it finishes.

Interactive Blender: `start_generation()` returns at once; a persistent `bpy.app.timers` function pumps the session
a few times per second, mirrors the job onto `WindowManager.kmm_job` (drawn by the panel) and, when the job is done,
writes the takes and pushes one undo step.  Background Blender (`blender -b`, where timers never fire):
`run_generation_blocking()` runs the same steps synchronously.  Either way a failed or cancelled job changes nothing
in the scene and its reason is shown in the panel and reported.  Regenerating one segment of the active take
(`start_regeneration()` / `run_regeneration_blocking()`) is the same kind of job: an `edit` request whose result
segment_regenerator turns into a new take.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from ..kmm_core.errors import KMMError
from ..kmm_core.worker.protocol import MAX_SEED
from . import armature_builder, keyframe_writer, path_source, segment_regenerator, segment_table, take_importer
from .backend_session import (
    CANCELLED,
    DONE,
    FAILED,
    BackendConfig,
    BackendSession,
    GenerationJob,
    generate_request,
    last_line,
)
from .preferences import ADDON_PACKAGE, get_preferences
from .properties import rows_of, scene_fps

TIMER_INTERVAL = 0.2  # seconds between pumps while a job runs

_session: BackendSession | None = None


@dataclass
class _JobTarget:
    """Where a job's result goes, captured when it starts (the UI may change meanwhile)."""

    scene_name: str
    armature_name: str | None
    options: keyframe_writer.WriteOptions
    regeneration: segment_regenerator.RegenerationPlan | None = None  # set for "regenerate segment" jobs


_job_targets: dict[int, _JobTarget] = {}


def backend_config(context: bpy.types.Context | None = None) -> BackendConfig:
    prefs = get_preferences(context)
    return BackendConfig(python=bpy.path.abspath(prefs.python_path) if prefs.python_path else "",
                         device=prefs.device, checkpoint=bpy.path.abspath(prefs.checkpoint) or None)


def session(config: BackendConfig | None = None) -> BackendSession:
    """The add-on's session; a new one (the old worker released) when the preferences changed."""
    global _session
    config = config or backend_config()
    if _session is not None and _session.config != config and (_session.job is None or _session.job.finished):
        _session.release()
        _session = None
    if _session is None:
        _session = BackendSession(config)
    return _session


def current_session() -> BackendSession | None:
    return _session


def results_dir() -> Path:
    """A fresh folder for one job's .npz files: in the extension's user folder, else the temp folder."""
    try:
        base = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="results", create=True))
    except (ValueError, RuntimeError, KeyError):  # not running as an installed extension
        base = Path(tempfile.gettempdir()) / "kmm_results"
    folder = base / time.strftime("%Y%m%d-%H%M%S")
    suffix = 0
    while folder.exists():
        suffix += 1
        folder = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    folder.mkdir(parents=True)
    return folder


def build_request(scene: bpy.types.Scene) -> tuple[dict, _JobTarget]:
    """Validate the scene's timeline and settings; the generate request and where its result goes."""
    settings = scene.kmm  # type: ignore[attr-defined]  # registered at run time by properties.register()
    rows = rows_of(settings)
    problems = segment_table.row_problems(rows, scene_fps(scene))
    if problems:
        index, reason = min(problems.items())
        where = "timeline" if index < 0 else f"segment {index + 1}"
        raise KMMError(f"{where}: {reason}")
    target = settings.target_armature
    if target is not None and armature_builder.missing_bones(target):
        raise KMMError(f"armature {target.name!r} lacks the KMM bones {armature_builder.missing_bones(target)}")
    if settings.random_seed:
        settings.seed = random.randrange(MAX_SEED)  # shown in the panel so a good take can be reproduced
    timeline = segment_table.build_timeline(rows, scene_fps(scene)).to_dict()
    if settings.loop:
        if len(rows) != 1:
            raise KMMError(f"Loop: a loop is one prompt cycling; the table has {len(rows)} segments")
        timeline["loop"] = True
    if settings.path_object is not None:
        timeline["path"] = path_source.path_points(settings.path_object, settings.target_armature)
    request = generate_request(timeline, str(results_dir()), seed=settings.seed, variations=settings.variations,
                               guidance=settings.guidance, steps=settings.steps, foot_lock=settings.foot_lock)
    options = keyframe_writer.WriteOptions(root_motion=settings.root_motion, fps_mode=settings.fps_mode,
                                           start_frame=float(rows[0].start), push_to_nla=settings.push_to_nla)
    return request, _JobTarget(scene.name, target.name if target else None, options)


def build_regeneration_request(scene: bpy.types.Scene, segment: int | None = None,
                               prompt: str | None = None) -> tuple[dict, _JobTarget]:
    """Validate a "regenerate one segment of the active take" job; the edit request and its target.

    `segment` (0-based) defaults to the table's selected row, `prompt` to that row's prompt (a prompt equal to the
    take's own, or empty, keeps it)."""
    settings = scene.kmm  # type: ignore[attr-defined]  # registered at run time by properties.register()
    rows = rows_of(settings)
    index = settings.active_segment_index if segment is None else segment
    if segment is None and not 0 <= index < len(rows):
        raise KMMError("select the segment to regenerate in the timeline table")
    if prompt is None:
        prompt = rows[index].prompt if 0 <= index < len(rows) else ""
    plan = segment_regenerator.plan_regeneration(scene, settings.target_armature, index, prompt)
    if settings.random_seed:
        settings.seed = random.randrange(MAX_SEED)
    request = segment_regenerator.edit_request(plan, str(results_dir()), seed=settings.seed,
                                               guidance=settings.guidance, steps=settings.steps)
    return request, _JobTarget(scene.name, plan.armature_name, plan.provenance.options, regeneration=plan)


def start_generation(context: bpy.types.Context, config: BackendConfig | None = None) -> GenerationJob:
    """Submit the scene's timeline; returns at once (the timer takes over). Raises KMMError on invalid input.
    `config` overrides the preferences (scripts and tests)."""
    request, target = build_request(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return _start(context, request, target, config)


def start_regeneration(context: bpy.types.Context, config: BackendConfig | None = None) -> GenerationJob:
    """Regenerate the selected segment of the active take in the background (like start_generation)."""
    request, target = build_regeneration_request(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return _start(context, request, target, config)


def _start(context: bpy.types.Context, request: dict, target: _JobTarget,
           config: BackendConfig | None) -> GenerationJob:
    backend = session(config or backend_config(context))
    job = backend.submit(request)
    _job_targets[id(job)] = target
    _mirror(job, backend)
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.05, persistent=True)
    return job


def run_generation_blocking(context: bpy.types.Context, timeout: float | None = None,
                            config: BackendConfig | None = None) -> take_importer.ImportedTakes:
    """Headless: generate and write the takes before returning; raises KMMError with the reason on failure."""
    request, target = build_request(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return _run_blocking(context, request, target, timeout, config)


def run_regeneration_blocking(context: bpy.types.Context, timeout: float | None = None,
                              config: BackendConfig | None = None, segment: int | None = None,
                              prompt: str | None = None) -> take_importer.ImportedTakes:
    """Headless: regenerate one segment of the active take (see build_regeneration_request); its one new take is
    `.takes[0]`."""
    request, target = build_regeneration_request(context.scene, segment, prompt)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return _run_blocking(context, request, target, timeout, config)


def _run_blocking(context: bpy.types.Context, request: dict, target: _JobTarget, timeout: float | None,
                  config: BackendConfig | None) -> take_importer.ImportedTakes:
    backend = session(config or backend_config(context))
    job = backend.submit(request)
    _mirror(job, backend)
    backend.run_to_completion(timeout)
    _mirror(job, backend)
    if job.state != DONE:
        raise KMMError(_failure_text(job))
    return _apply(context, job, target)


def cancel() -> None:
    if _session is not None:
        _session.cancel()
        if _session.job is not None:
            _mirror(_session.job, _session)


def release() -> None:
    global _session
    if _session is not None:
        _session.release()
        job = _session.job
        _session = None
        if job is not None:
            _mirror(job, None)
    _reset_job_state("Backend released")


def shutdown() -> None:
    """On unregister: stop the timer and the worker."""
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    global _session
    if _session is not None:
        _session.release()
        _session = None
    _job_targets.clear()


# ---- internals --------------------------------------------------------------------------------------------------
def tick() -> float | None:
    """The timer function: pump the session, mirror the job, finish it. Returns the next interval or None (stop).
    Public so that a script without an event loop can drive a job the way the timer does."""
    backend = _session
    if backend is None or backend.job is None:
        return None
    job = backend.job
    try:
        backend.pump()
    except Exception as error:  # never let the timer die silently: report and end the job
        job.fail(f"internal error while talking to the backend: {error}")
    _mirror(job, backend)
    _redraw()
    if not job.finished:
        return TIMER_INTERVAL
    target = _job_targets.pop(id(job), None)
    if job.state == DONE and target is not None:
        try:
            imported = _apply(bpy.context, job, target)
        except Exception as error:
            job.fail(f"the motion could not be applied: {error}")
            _mirror(job, backend)
            _report("ERROR", job.error)
        else:
            _push_undo("KMM Regenerate Segment" if target.regeneration is not None else "KMM Generate")
            _report("INFO", f"KMM: {len(imported.takes)} take(s) on {imported.armature.name!r}")
            for warning in imported.warnings:
                _report("WARNING", warning)
    elif job.state == CANCELLED:
        _report("WARNING", "KMM: generation cancelled, nothing changed")
    else:
        _report("ERROR", f"KMM: {_failure_text(job)}")
    _redraw()
    return None


def _apply(context: bpy.types.Context, job: GenerationJob, target: _JobTarget) -> take_importer.ImportedTakes:
    scene = bpy.data.scenes.get(target.scene_name)
    if scene is None:
        raise KMMError(f"scene {target.scene_name!r} no longer exists")
    armature = None
    if target.armature_name is not None:
        armature = bpy.data.objects.get(target.armature_name)
        if armature is None:
            raise KMMError(f"armature {target.armature_name!r} no longer exists")
    with context.temp_override(scene=scene) if context.scene != scene else contextlib.nullcontext():
        if target.regeneration is not None:
            if len(job.paths) != 1:
                raise KMMError(f"the backend returned {len(job.paths)} motion files for one regenerated segment")
            take = segment_regenerator.apply_regeneration(bpy.context, target.regeneration, job.paths[0])
            imported = take_importer.ImportedTakes(armature=armature, created_armature=False, takes=[take])
        else:
            imported = take_importer.import_takes(context, job.paths, armature, target.options)
    if target.armature_name is None:
        scene.kmm.target_armature = imported.armature  # later generations go to the same character
    names = ", ".join(take.action.name for take in imported.takes)
    wm = bpy.context.window_manager
    if hasattr(wm, "kmm_job"):
        wm.kmm_job.last_takes = names
    return imported


def _failure_text(job: GenerationJob) -> str:
    return job.error + (f" ({job.advice})" if job.advice else "")


def _mirror(job: GenerationJob, backend: BackendSession | None) -> None:
    """Copy the job's state onto the window manager properties the panel draws."""
    wm = bpy.context.window_manager
    if wm is None or not hasattr(wm, "kmm_job"):
        return
    state = wm.kmm_job
    state.running = not job.finished
    state.progress = job.fraction
    state.status = job.message if not job.finished or job.state != DONE else "Done"
    if job.state == DONE:
        state.status = "Done" + (f" - {backend.status_text()}" if backend else "")
    state.error = job.error if job.state != DONE else ""
    state.advice = job.advice if job.state != DONE else ""
    state.detail = last_line(job.trace) if job.state == FAILED else ""


def _reset_job_state(status: str) -> None:
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "kmm_job"):
        wm.kmm_job.running = False
        wm.kmm_job.progress = 0.0
        wm.kmm_job.status = status


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _report(level: str, message: str) -> None:
    """Show a message in Blender's status bar / Info log even from a timer (no operator of our own is running)."""
    print(f"{level}: {message}")
    wm = bpy.context.window_manager
    windows = list(getattr(wm, "windows", []))
    if not windows:
        return
    try:
        with bpy.context.temp_override(window=windows[0]):
            bpy.ops.kmm.report(level=level, message=message)  # type: ignore[attr-defined]  # our operator, registered at run time
    except (RuntimeError, AttributeError):
        pass


def _push_undo(message: str) -> None:
    wm = bpy.context.window_manager
    windows = list(getattr(wm, "windows", []))
    try:
        if windows:
            with bpy.context.temp_override(window=windows[0]):
                bpy.ops.ed.undo_push(message=message)
        else:
            bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass
