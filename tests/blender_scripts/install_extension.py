# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: install the built extension zip the way a user does, enable it, then disable and uninstall it,
comparing what is registered before and after.  Usage: install_extension.py <zip>"""

from __future__ import annotations

import sys

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

zip_path = sys.argv[1]
MODULE = "bl_ext.user_default.kmm_motion"


result: dict = {"before": _harness.registration_snapshot()}
result["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True))
result["enabled"] = MODULE in bpy.context.preferences.addons
installed = _harness.registration_snapshot()
result["installed"] = installed
prefs = bpy.context.preferences.addons[MODULE].preferences
result["preferences"] = [prefs.bl_rna.identifier, prefs.device, prefs.python_path]
result["installed_files"] = sorted(p.name for p in (user_dir / "extensions" / "user_default" / "kmm_motion").iterdir())
scene = bpy.context.scene
result["ops_segment_add"] = sorted(bpy.ops.kmm.segment_add())
result["segments"] = [[s.prompt, s.start, s.end] for s in scene.kmm.segments]

# The backend check with a Python that cannot run `kmm doctor`: a reported error, never an exception.
prefs.python_path = sys.executable
try:
    result["check_backend"] = sorted(bpy.ops.kmm.check_backend())
except RuntimeError as error:  # module-mode bpy raises on ERROR reports
    result["check_backend"] = f"error: {error}"

bpy.ops.preferences.addon_disable(module=MODULE)
result["disabled"] = MODULE not in bpy.context.preferences.addons
result["after_disable"] = _harness.registration_snapshot()
repo_index = [repo.module for repo in bpy.context.preferences.extensions.repos].index("user_default")
bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="kmm_motion")
result["files_after_uninstall"] = (user_dir / "extensions" / "user_default" / "kmm_motion").exists()
_harness.emit(result)
