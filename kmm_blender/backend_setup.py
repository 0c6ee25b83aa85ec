# SPDX-License-Identifier: GPL-3.0-or-later
"""The preferences' Install Backend / Repair / Remove / Cancel / View Log buttons, over backend_installer.

The backend lives in the extension's user folder (`bpy.utils.extension_path_user(<add-on>, path="backend")`), so
it survives add-on updates and is removed with the user's data.  Interactive Blender: the install runs on the
installer's own thread and a timer mirrors its progress into the preferences; background Blender (`blender -b`,
no timers) waits for it.  Which Python then runs the worker: `worker_python()` (the user's own Backend Python if
set, else the installed backend).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty

from . import backend_installer
from .backend_installer import BackendFolder, BackendInstall, InstallOptions

TIMER_INTERVAL = 0.25
LOG_TEXT = "KMM backend install log"

# The running (or last) install of this session.
_install: dict[str, BackendInstall | None] = {"current": None}


def _addon_package() -> str:
    return __package__.rpartition(".")[0]


def backend_folder() -> BackendFolder:
    """The extension's user folder for the backend; a folder under Blender's user scripts when the add-on runs
    without being installed as an extension (a legacy add-on or a test importing the package)."""
    try:
        root = bpy.utils.extension_path_user(_addon_package(), path="backend", create=True)
    except (ValueError, RuntimeError, KeyError):
        root = str(Path(bpy.utils.user_resource("SCRIPTS", path="kmm_motion_backend", create=True)))
    return BackendFolder(root)


def installed_python() -> str:
    """The installed backend's Python, "" when none is installed."""
    return backend_folder().current_python()


def worker_python(prefs) -> str:
    """The Python that runs the worker and the check: the user's own Backend Python when set, else the installed
    backend, else "" (the callers then say: install the backend)."""
    if prefs.python_path:
        return bpy.path.abspath(prefs.python_path)
    return installed_python()


def current_install() -> BackendInstall | None:
    return _install["current"]


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
    _install["current"] = install
    return install


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _report_end(install: BackendInstall) -> tuple[str, str]:
    progress = install.progress
    if progress.state == backend_installer.DONE:
        text = "KMM backend installed" + (f" ({'; '.join(progress.warnings)})" if progress.warnings else "")
        return ("WARNING" if progress.warnings else "INFO"), text
    if progress.state == backend_installer.CANCELLED:
        return "WARNING", "KMM backend install cancelled: the previous backend is unchanged"
    return "ERROR", f"KMM backend install failed: {progress.error} (the previous backend is unchanged; log: " \
                    f"{install.log_path})"


def _timer() -> float | None:
    install = current_install()
    _redraw()
    if install is None or not install.finished:
        return TIMER_INTERVAL if install is not None else None
    level, text = _report_end(install)
    print(f"{level}: {text}")
    windows = list(getattr(bpy.context.window_manager, "windows", []))
    if windows:  # the status bar / Info log, from a timer: needs a window in the context
        try:
            with bpy.context.temp_override(window=windows[0]):
                bpy.ops.kmm.report(level=level, message=text)  # type: ignore[attr-defined]  # our operator
        except (RuntimeError, AttributeError):
            pass
    return None


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
        from .preferences import get_preferences

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
            level, text = _report_end(install)
            self.report({level}, text)  # type: ignore[arg-type]  # one of INFO / WARNING / ERROR
            return {"FINISHED"} if install.progress.state == backend_installer.DONE else {"CANCELLED"}
        if not bpy.app.timers.is_registered(_timer):
            bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL)
        return {"FINISHED"}


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
        from . import job_runner

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
            level, text = _report_end(install)
            box.label(text=text[:160], icon={"INFO": "CHECKMARK", "WARNING": "ERROR"}.get(level, "CANCEL"))
    box.operator("kmm.open_install_log", icon="TEXT")
    box.label(text=f"Folder: {folder.root}", icon="FILE_FOLDER")


classes = (KMM_OT_install_backend, KMM_OT_cancel_backend_install, KMM_OT_remove_backend, KMM_OT_open_install_log)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    install = current_install()
    if install is not None and not install.finished:
        install.cancel()
    _install["current"] = None
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)

