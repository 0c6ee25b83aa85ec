# SPDX-License-Identifier: GPL-3.0-or-later
"""The preferences' Install Backend / Repair / Remove / Cancel / View Log buttons, over backend/installer.py.

Where the backend lives and which Python runs the worker: backend/location.py.  The running (or last) install
belongs to the add-on's `JobController` (jobs/controller.py).  Interactive Blender: the install runs on the
installer's own thread and the controller's timer mirrors its progress into the preferences and reports its end;
background Blender (`blender -b`, no timers) waits for it.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty

from ..backend import installer as backend_installer
from ..backend.installer import BackendInstall, InstallOptions
from ..backend.location import backend_folder
from ..jobs import runner as job_runner
from ..jobs.controller import controller
from ..settings import get_preferences

LOG_TEXT = "KMM backend install log"


def current_install() -> BackendInstall | None:
    """The running (or last) install of this Blender session."""
    return controller().install


def install_options(prefs) -> InstallOptions:
    python = bpy.path.abspath(prefs.install_python) if prefs.install_python else _blender_python()
    return InstallOptions(python=python, variant=prefs.install_variant,
                          wheel_folder=bpy.path.abspath(prefs.wheel_folder) if prefs.wheel_folder else "",
                          torch_index=None if prefs.torch_source == "AUTO" else "")


def _blender_python() -> str:
    import sys

    return sys.executable


def start_install(options: InstallOptions) -> BackendInstall:
    running = current_install()
    if running is not None and not running.finished:
        raise backend_installer.InstallError("an install is already running: wait for it or cancel it")
    install = BackendInstall(backend_folder(), options)
    controller().follow_install(install)
    return install


class KMM_OT_install_backend(bpy.types.Operator):
    """Create the backend environment in the extension's user folder and install PyTorch and the other packages
    the model needs (a fresh folder: the working backend stays until the new one passes its check)"""

    bl_idname = "kmm.install_backend"
    bl_label = "Install Backend"

    repair: BoolProperty(name="Repair", default=False, options={"SKIP_SAVE"},
                         description="Reinstall with the choices of the current backend")

    @classmethod
    def poll(cls, context):
        install = current_install()
        return install is None or install.finished

    def execute(self, context):
        prefs = get_preferences(context)
        options = install_options(prefs)
        if self.repair:
            current = backend_folder().current()
            if current is None:
                self.report({"ERROR"}, "No backend to repair: press Install Backend")
                return {"CANCELLED"}
            options = InstallOptions(python=str(current.get("base_python") or options.python),
                                     variant=str(current.get("variant", options.variant)),
                                     wheel_folder=options.wheel_folder, torch_index=options.torch_index)
        try:
            install = start_install(options)
        except backend_installer.InstallError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if bpy.app.background:
            install.wait()
            level, text = install.outcome()
            self.report({level}, text)  # type: ignore[arg-type]  # one of INFO / WARNING / ERROR
            return {"FINISHED"} if install.progress.state == backend_installer.DONE else {"CANCELLED"}
        return {"FINISHED"}  # the controller's timer follows it


class KMM_OT_cancel_backend_install(bpy.types.Operator):
    """Stop the running install; the new folder is deleted and the previous backend stays as it was"""

    bl_idname = "kmm.cancel_backend_install"
    bl_label = "Cancel Install"

    def execute(self, context):
        install = current_install()
        if install is None or install.finished:
            return {"CANCELLED"}
        install.cancel()
        return {"FINISHED"}


class KMM_OT_remove_backend(bpy.types.Operator):
    """Delete the installed backend environment (your own Backend Python, if set, is not touched)"""

    bl_idname = "kmm.remove_backend"
    bl_label = "Remove Backend"

    @classmethod
    def poll(cls, context):
        install = current_install()
        return install is None or install.finished

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        job_runner.release()  # the worker may be running from that environment
        backend_folder().remove()
        self.report({"INFO"}, "KMM backend removed")
        return {"FINISHED"}


class KMM_OT_open_install_log(bpy.types.Operator):
    """Show the newest install log (the full pip output) in a Text Editor datablock"""

    bl_idname = "kmm.open_install_log"
    bl_label = "View Install Log"

    def execute(self, context):
        install = current_install()
        path = install.log_path if install is not None else backend_folder().latest_log()
        if path is None or not Path(path).is_file():
            self.report({"WARNING"}, "No install log yet")
            return {"CANCELLED"}
        text = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
        text.from_string(Path(path).read_text(encoding="utf-8", errors="replace"))
        if not bpy.app.background:
            _show_text(context, text)
        self.report({"INFO"}, f"Install log {path} is in the text {LOG_TEXT!r}")
        return {"FINISHED"}


def _show_text(context, text) -> None:
    """Open a new window with a Text Editor showing `text` (the preferences window has none)."""
    try:
        bpy.ops.wm.window_new()
        area = context.window_manager.windows[-1].screen.areas[0]
        area.type = "TEXT_EDITOR"
        area.spaces.active.text = text
    except (RuntimeError, IndexError, AttributeError):
        pass  # the text datablock is there either way


def draw_install_box(layout, prefs) -> None:
    """The preferences' backend box: where the backend is, the install choices and buttons, progress."""
    box = layout.box()
    box.label(text="Backend (PyTorch and the model's packages)", icon="SCRIPT")
    install = current_install()
    folder = backend_folder()
    current = folder.current()
    if prefs.python_path:
        box.label(text=f"Using your own Backend Python: {prefs.python_path}", icon="INFO")
    elif current is not None:
        box.label(text=f"Installed: {current.get('variant', '?').upper()}, Python {current.get('python_version', '?')}"
                       f", {current.get('installed', '')}", icon="CHECKMARK")
    else:
        box.label(text="Not installed: press Install Backend (needs internet or a folder of wheels)", icon="ERROR")
    column = box.column()
    column.prop(prefs, "install_variant", expand=True)
    if prefs.install_variant == backend_installer.OFFLINE:
        column.prop(prefs, "wheel_folder")
    else:
        column.prop(prefs, "torch_source")
    column.prop(prefs, "install_python")
    if install is not None and not install.finished:
        box.progress(factor=install.progress.fraction, type="BAR", text=install.progress.message)
        for line in list(install.tail)[-3:]:
            box.label(text=line[:120], icon="BLANK1")
        box.operator("kmm.cancel_backend_install", icon="CANCEL")
    else:
        row = box.row(align=True)
        row.operator("kmm.install_backend", icon="IMPORT")
        repair = row.row(align=True)
        repair.enabled = current is not None
        repair.operator("kmm.install_backend", text="Repair", icon="TOOL_SETTINGS").repair = True
        repair.operator("kmm.remove_backend", text="Remove", icon="TRASH")
        if install is not None:
            level, text = install.outcome()
            box.label(text=text[:160], icon={"INFO": "CHECKMARK", "WARNING": "ERROR"}.get(level, "CANCEL"))
    box.operator("kmm.open_install_log", icon="TEXT")
    box.label(text=f"Folder: {folder.root}", icon="FILE_FOLDER")


classes = (KMM_OT_install_backend, KMM_OT_cancel_backend_install, KMM_OT_remove_backend, KMM_OT_open_install_log)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
