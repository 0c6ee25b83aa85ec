# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the one-click backend, as a new user meets it: install the built extension zip, press Install
Backend (a real venv, real pip), Check Backend, generate; then a cancelled and a failing install must leave that
backend working (a second generation proves it); a path that is not a Python says so; Remove removes it.

Usage: backend_install.py <extension zip> <model bundle folder> <empty folder standing for an incomplete wheel folder>
[install-only]   (install-only: install, check, generate and remove, for a Blender whose Python differs: 5.1+)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

zip_path, bundle, empty_wheels = sys.argv[1:4]
INSTALL_ONLY = sys.argv[4:5] == ["install-only"]
MODULE = "bl_ext.user_default.kmm_motion"
result: dict = {"seconds": {}}
phase_started = time.monotonic()


def phase(name: str) -> None:
    """Seconds each part took (the pytest side prints them: CI time is watched)."""
    global phase_started
    now = time.monotonic()
    result["seconds"][name] = round(now - phase_started, 1)
    phase_started = now


def operator(call, *args, **kwargs) -> str:
    """Run an operator; its outcome or, as bpy (module) raises on ERROR reports, the error text."""
    try:
        return ",".join(sorted(call(*args, **kwargs)))
    except RuntimeError as error:
        return f"error: {error}"


bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
setup = sys.modules[MODULE + ".kmm_blender.ui.backend_buttons"]
location = sys.modules[MODULE + ".kmm_blender.backend.location"]
job_controller = sys.modules[MODULE + ".kmm_blender.jobs.controller"]
job_runner = sys.modules[MODULE + ".kmm_blender.jobs.runner"]
prefs = bpy.context.preferences.addons[MODULE].preferences
folder = location.backend_folder()
result["backend_folder"] = str(folder.root)
result["extension_dir"] = str(user_dir / "extensions" / "user_default" / "kmm_motion")


def check() -> dict:
    outcome = operator(bpy.ops.kmm.check_backend)
    report = job_controller.controller().check_report
    return {"outcome": outcome, "error": report.error,
            "items": {item.name: [item.ok, item.detail] for item in report.items}}


def generate(prompt: str) -> dict:
    scene = bpy.context.scene
    scene.kmm.segments.clear()
    row = scene.kmm.segments.add()
    row.prompt, row.start, row.end = prompt, 1, 48
    scene.kmm.seed = 3
    actions_before = set(bpy.data.actions.keys())
    outcome = operator(bpy.ops.kmm.generate)
    session = job_runner.current_session()
    return {"outcome": outcome, "new_actions": sorted(set(bpy.data.actions.keys()) - actions_before),
            "worker_python": session.config.python if session else "",
            "worker_info": {k: v for k, v in (session.worker_info if session else {}).items()
                            if k in ("python_version", "package_version")},
            "error": bpy.context.window_manager.kmm_job.error}


# ---- a new user: nothing installed --------------------------------------------------------------------------------
result["check_before"] = check()
result["generate_before"] = generate("walk forward")
phase("before install")

# ---- Install Backend (CPU; PyTorch from the one package index CI reaches: pip's own configuration) ----------------
prefs.torch_source = "INDEX"
prefs.model, prefs.checkpoint = "CUSTOM", bundle
prefs.device = "cpu"
start = time.monotonic()
result["install"] = operator(bpy.ops.kmm.install_backend)
result["install_seconds"] = time.monotonic() - start
phase("install")
install = setup.current_install()
result["install_state"] = [install.progress.state, install.progress.error, install.progress.fraction]
current = folder.current()
result["current"] = current
result["python_inside_backend"] = Path(current["python"]).absolute().is_relative_to(Path(folder.root).absolute())
result["check_installed"] = check()
result["generate_installed"] = generate("walk forward")
phase("check and generate")


def remove_and_emit() -> None:
    job_runner.release()
    result["remove"] = operator(bpy.ops.kmm.remove_backend, "EXEC_DEFAULT")
    result["after_remove"] = {"current": folder.current(), "envs_exist": folder.envs.exists(),
                              "logs_kept": len(list(folder.logs.glob("install-*.log")))}
    result["check_after_remove"] = check()
    job_runner.release()
    phase("remove")
    _harness.emit(result)


if INSTALL_ONLY:
    remove_and_emit()
    sys.exit(0)

# ---- Repair, cancelled while pip runs ---------------------------------------------------------------------------
pointer_before = (Path(folder.root) / "current.json").read_text()
envs_before = sorted(p.name for p in folder.envs.iterdir())
repair = setup.start_install(setup.install_options(prefs))
deadline = time.monotonic() + 300
while not repair.progress.message.startswith("Installing packages") and time.monotonic() < deadline \
        and not repair.finished:
    time.sleep(0.05)
result["cancel_started_in"] = str(repair.env_dir)
result["cancel_operator"] = operator(bpy.ops.kmm.cancel_backend_install)
repair.wait(120)
result["cancel"] = {"state": repair.progress.state, "message": repair.progress.message,
                    "new_folder_left": repair.env_dir.exists(),
                    "pointer_same": (Path(folder.root) / "current.json").read_text() == pointer_before,
                    "envs_same": sorted(p.name for p in folder.envs.iterdir()) == envs_before}
phase("cancelled repair")

# ---- a failing install: offline, from a folder that lacks the wheels --------------------------------------------
prefs.install_variant = "offline"
prefs.wheel_folder = empty_wheels
result["failing"] = operator(bpy.ops.kmm.install_backend)
failed = setup.current_install()
result["failing_state"] = [failed.progress.state, failed.progress.error]
result["failing_unchanged"] = {"pointer_same": (Path(folder.root) / "current.json").read_text() == pointer_before,
                               "envs_same": sorted(p.name for p in folder.envs.iterdir()) == envs_before}
phase("failing install")
result["view_log"] = operator(bpy.ops.kmm.open_install_log)
log_text = bpy.data.texts[setup.LOG_TEXT].as_string()
result["log_has_pip_error"] = "No matching distribution found" in log_text and "--no-index" in log_text
prefs.install_variant = "cpu"

# ---- the previous backend still works: check and a second generation ---------------------------------------------
result["check_after_failures"] = check()
job_runner.release()
result["generate_after_failures"] = generate("turn left")
phase("check and generate again")

# ---- a Backend Python that is not a Python --------------------------------------------------------------------------
prefs.python_path = "/usr/bin/false"
result["check_false"] = check()
job_runner.release()
result["generate_false"] = generate("jump")
prefs.python_path = ""
phase("not a Python")

# ---- Remove ------------------------------------------------------------------------------------------------------
remove_and_emit()
