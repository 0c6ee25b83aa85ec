# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's one owner of backend state: the worker session, the running job and where its result goes, the
last backend check and the running (or last) backend install.  One `JobController` is created at register() and released at unregister(); nothing about a
job lives in module globals.

Interactive Blender: a job returns at once from `start()`; one persistent timer (`tick`) pumps the session a few
times per second, mirrors the job onto `WindowManager.kmm_job` (drawn by the panel) and, when the job is done,
writes the takes and pushes one undo step.  The same timer polls a running backend check and follows a backend
install (ui/backend_buttons.py) to its end, redrawing the preferences and reporting how it ended.  Background Blender
(`blender -b`, where timers never fire): `run_blocking()` runs the same steps synchronously.  Either way a failed or
cancelled job changes nothing in the scene and its reason is shown in the panel and reported.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import bpy

from ...kmm_core.common.errors import KMMError
from ...kmm_core.generation import variation_likeness
from ...kmm_core.worker.protocol import CheckPrompts, Edit, Generate
from ..backend import doctor
from ..backend import installer as backend_installer
from ..backend.session import CANCELLED, DONE, FAILED, BackendConfig, BackendSession, GenerationJob, last_line
from ..rigs import take_keys
from ..takes import importer as take_importer
from ..takes import segment_regenerator
from ..timeline import prompt_warnings
from . import refresh as ui_refresh

TIMER_INTERVAL = 0.2  # seconds between pumps while a job or a check runs


@dataclass
class JobTarget:
    """Where a job's result goes, captured when it starts (the UI may change meanwhile)."""

    scene_name: str
    armature_name: str | None
    options: take_keys.WriteOptions
    regeneration: segment_regenerator.RegenerationPlan | None = None  # set for "regenerate segment" jobs
    body_model_path: str = ""  # SMPL model file for the body mesh of a new take ("" for none)


class JobController:
    """The session, the running job with its target, and the last backend check (see the module docstring)."""

    def __init__(self) -> None:
        self.session: BackendSession | None = None
        self.target: JobTarget | None = None  # of the session's current job, until its result is applied
        self.check: doctor.DoctorCheck | None = None  # a running backend check
        self.check_report: doctor.DoctorReport | None = None  # the last finished one
        self.install: backend_installer.BackendInstall | None = None  # the running (or last) backend install
        self._install_followed = False  # the timer still has to report the install's end
        self.tick = self._tick  # one bound method, so the timer is registered (and found) once

    # ---- the worker session ------------------------------------------------------------------------------------
    def session_for(self, config: BackendConfig) -> BackendSession:
        """The session; a new one (the old worker released) when the configuration changed and no job runs."""
        old = self.session
        if old is not None and old.config != config and (old.job is None or old.job.finished):
            old.release()
            self.session = None
        if self.session is None:
            self.session = BackendSession(config)
        return self.session

    # ---- jobs --------------------------------------------------------------------------------------------------
    def start(self, request: Generate | Edit | CheckPrompts, target: JobTarget, config: BackendConfig) -> GenerationJob:
        """Submit a job and return at once; the timer follows it. Raises KMMError when one is already running."""
        backend = self.session_for(config)
        job = backend.submit(request)
        self.target = target
        mirror(job, backend)
        ui_refresh.ensure_timer(self.tick)
        return job

    def run_blocking(self, context: bpy.types.Context, request: Generate | Edit, target: JobTarget,
                     config: BackendConfig, timeout: float | None = None) -> take_importer.ImportedTakes:
        """Run a job to its end and apply it before returning; raises KMMError with the reason on failure."""
        return apply_result(context, self._run_to_end(request, config, timeout), target)

    def run_check_blocking(self, request: CheckPrompts, target: JobTarget, config: BackendConfig,
                           timeout: float | None = None) -> list[str]:
        """Run a prompt check to its end and put its answer on the rows; the warnings' messages."""
        return apply_check(self._run_to_end(request, config, timeout), target)

    def _run_to_end(self, request: Generate | Edit | CheckPrompts, config: BackendConfig,
                    timeout: float | None) -> GenerationJob:
        """Submit `request` and run it to its end (KMMError with the reason when it did not succeed)."""
        backend = self.session_for(config)
        job = backend.submit(request)
        self.target = None
        mirror(job, backend)
        backend.run_to_completion(timeout)
        mirror(job, backend)
        if job.state != DONE:
            raise KMMError(failure_text(job))
        return job

    def cancel(self) -> None:
        if self.session is not None:
            self.session.cancel()
            if self.session.job is not None:
                mirror(self.session.job, self.session)

    def release(self) -> None:
        """Stop the worker (its memory freed); a running job ends as cancelled and nothing is applied."""
        session, self.session, self.target = self.session, None, None
        if session is not None:
            session.release()
            if session.job is not None:
                mirror(session.job, None)
        _reset_job_state("Backend released")

    def shutdown(self) -> None:
        """On unregister: stop the timer, the worker, a running check and a running install (its new folder is
        discarded; the previous backend stays)."""
        ui_refresh.stop_timer(self.tick)
        if self.session is not None:
            self.session.release()
        if self.install is not None and not self.install.finished:
            self.install.cancel()
        self.session = self.target = None
        self.check = self.check_report = None
        self.install, self._install_followed = None, False

    # ---- the backend check -------------------------------------------------------------------------------------
    def start_check(self, python: str, blocking: bool) -> doctor.DoctorReport | None:
        """Run `kmm doctor` with `python`: to the end when `blocking` (returns the report), else polled by the
        timer (returns None; the preferences show the report when it arrives)."""
        self.check, self.check_report = doctor.DoctorCheck(python), None
        if blocking:
            report = self.check.wait()
            self.check, self.check_report = None, report
            return report
        ui_refresh.ensure_timer(self.tick, first_interval=TIMER_INTERVAL)
        return None

    # ---- the backend install ----------------------------------------------------------------------------------
    def follow_install(self, install: backend_installer.BackendInstall) -> None:
        """Keep `install` as the current one; the timer redraws the preferences while it runs and reports its end
        (background Blender, where timers never fire, waits for it instead)."""
        self.install, self._install_followed = install, True
        ui_refresh.ensure_timer(self.tick, first_interval=TIMER_INTERVAL)

    def _poll_install(self) -> bool:
        """One look at the followed install; returns whether it is still running."""
        install = self.install
        if install is None or not self._install_followed:
            return False
        ui_refresh.redraw("PREFERENCES")
        if not install.finished:
            return True
        self._install_followed = False
        report(*install.outcome())
        return False

    # ---- the timer ---------------------------------------------------------------------------------------------
    def _tick(self) -> float | None:
        """Follow the install, poll the check, pump the session and finish the job. The next interval, or None."""
        busy = self._poll_install()
        if self.check is not None:
            report = self.check.poll()
            if report is None:
                busy = True
            else:
                self.check, self.check_report = None, report
                ui_refresh.redraw(None)
        backend = self.session
        if backend is not None and backend.job is not None and self.target is not None:
            busy = self._follow(backend, backend.job) or busy
        return TIMER_INTERVAL if busy else None

    def _follow(self, backend: BackendSession, job: GenerationJob) -> bool:
        """One step of the running job; returns whether it is still running."""
        try:
            backend.pump()
        except Exception as error:  # never let the timer die silently: report and end the job
            job.fail(f"internal error while talking to the backend: {error}")
        mirror(job, backend)
        ui_refresh.redraw()
        if not job.finished:
            return True
        target, self.target = self.target, None
        if job.state == DONE and target is not None and isinstance(job.request, CheckPrompts):
            try:
                messages = apply_check(job, target)
            except Exception as error:
                job.fail(f"the prompt check could not be shown: {error}")
                mirror(job, backend)
                report("ERROR", job.error)
            else:
                report("INFO", f"KMM: {len(job.request.prompts)} prompt(s) checked, {len(messages)} warning(s)")
                for message in messages:
                    report("WARNING", message)
        elif job.state == DONE and target is not None:
            try:
                imported = apply_result(bpy.context, job, target)
            except Exception as error:
                job.fail(f"the motion could not be applied: {error}")
                mirror(job, backend)
                report("ERROR", job.error)
            else:
                push_undo("KMM Regenerate Segment" if target.regeneration is not None else "KMM Generate")
                report("INFO", f"KMM: {len(imported.takes)} take(s) on {imported.armature.name!r}")
                for warning in imported.warnings:
                    report("WARNING", warning)
        elif job.state == CANCELLED:
            report("WARNING", "KMM: cancelled, nothing changed")
        else:
            report("ERROR", f"KMM: {failure_text(job)}")
        ui_refresh.redraw()
        return False


# ---- the one controller ------------------------------------------------------------------------------------------
_controller: JobController | None = None


def controller() -> JobController:
    """The add-on's controller (KMMError when the add-on is not registered)."""
    if _controller is None:
        raise KMMError("the KMM add-on is not registered")
    return _controller


def register() -> None:
    global _controller
    _controller = JobController()


def unregister() -> None:
    global _controller
    if _controller is not None:
        _controller.shutdown()
    _controller = None


# ---- applying a finished job and showing it ------------------------------------------------------------------------
def apply_result(context: bpy.types.Context, job: GenerationJob,
                 target: JobTarget) -> take_importer.ImportedTakes:
    """Write a finished job's motion files as takes where the job was aimed, all or nothing."""
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
            imported = take_importer.import_takes(context, job.paths, armature, target.options,
                                                  body_model_path=target.body_model_path,
                                                  seed=getattr(job.request, "seed", None))
    if target.armature_name is None:
        scene.kmm.target_armature = imported.armature  # later generations go to the same character
    imported.warnings.extend(prompt_warnings.store(
        scene.kmm, job.warnings, target.regeneration.segment if target.regeneration is not None else None,
        job.info.get("conditions", []) if isinstance(job.info.get("conditions"), list) else []))
    if target.regeneration is None:
        note = variation_likeness.alike_note(
            [item for item in map(variation_likeness.AlikeVariation.from_dict, job.info.get("alike") or [])
             if item is not None], [take.action.name for take in imported.takes])
        if note:
            imported.warnings.append(note)
    names = ", ".join(take.action.name for take in imported.takes)
    wm = bpy.context.window_manager
    if hasattr(wm, "kmm_job"):
        wm.kmm_job.last_takes = names
    return imported


def apply_check(job: GenerationJob, target: JobTarget) -> list[str]:
    """Put a finished prompt check's warnings and the captions completing each prompt's condition on the rows of
    the scene it was asked for (each prompt's index is its row), before anything is generated; the warnings'
    messages."""
    scene = bpy.data.scenes.get(target.scene_name)
    if scene is None:
        raise KMMError(f"scene {target.scene_name!r} no longer exists")
    conditions = job.info.get("conditions")
    return prompt_warnings.store(scene.kmm, job.warnings, None, conditions if isinstance(conditions, list) else [])


def failure_text(job: GenerationJob) -> str:
    return job.error + (f" ({job.advice})" if job.advice else "")


def mirror(job: GenerationJob, backend: BackendSession | None) -> None:
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
    if backend is None:  # released: no model is loaded
        state.model = state.model_licence = ""
    elif backend.model_info:  # the panel names the loaded model and its licence
        state.model = str(backend.model_info.get("name", ""))
        state.model_licence = str(backend.model_info.get("licence", ""))


def _reset_job_state(status: str) -> None:
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "kmm_job"):
        wm.kmm_job.running = False
        wm.kmm_job.progress = 0.0
        wm.kmm_job.status = status


def report(level: str, message: str) -> None:
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


def push_undo(message: str) -> None:
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
