# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the backend lives and which Python runs the worker and the check.

The backend lives in the extension's user folder (`bpy.utils.extension_path_user(<add-on>, path="backend")`), so
it survives add-on updates and is removed with the user's data.  `worker_python()`: the user's own Backend Python if
set, else the installed backend.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..settings import extension_folder
from .installer import BackendFolder


def backend_folder() -> BackendFolder:
    """The extension's user folder for the backend; a folder under Blender's user scripts when the add-on runs
    without being installed as an extension (a legacy add-on or a test importing the package)."""
    root = extension_folder("backend")
    if root is None:
        root = Path(bpy.utils.user_resource("SCRIPTS", path="kmm_motion_backend", create=True))
    return BackendFolder(str(root))


def installed_python() -> str:
    """The installed backend's Python, "" when none is installed."""
    return backend_folder().current_python()


def worker_python(prefs) -> str:
    """The Python that runs the worker and the check: the user's own Backend Python when set, else the installed
    backend, else "" (the callers then say: install the backend)."""
    if prefs.python_path:
        return bpy.path.abspath(prefs.python_path)
    return installed_python()
