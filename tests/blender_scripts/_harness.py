# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared set-up of the Blender test scripts (each runs in its own process: bpy imports once per process).

`start()` isolates Blender's user folders in a temporary directory (so tests never touch ~/.config/blender), makes
the repository importable as the extension package `kmm_motion` (exactly how Blender imports the installed
extension: the repository root is the package), and imports bpy.  `registration_snapshot()` lists what the add-on
has registered; `emit()` prints the JSON result line the pytest side parses.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "KMM_TEST_RESULT "
PACKAGE_NAME = "kmm_motion"


def start() -> Path:
    """Isolate Blender's user resources and import bpy; returns the temporary user folder, removed when the script
    ends (a backend installed there is 1.5 GB: left behind, a few runs of the suite filled the disk)."""
    user_dir = scratch_folder("kmm_blender_user_")
    os.environ["BLENDER_USER_RESOURCES"] = str(user_dir)
    import bpy  # noqa: F401  (imported here, after the environment is set)

    return user_dir


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder for a script's own files, removed when the script ends (takes and renders left in
    /tmp add up over the suite's runs)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def import_extension_package(user_dir: Path):
    """Import the repository as package `kmm_motion` (a symlink in a temp folder put on sys.path)."""
    packages = user_dir / "source_packages"
    packages.mkdir(exist_ok=True)
    link = packages / PACKAGE_NAME
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(packages))
    import importlib

    return importlib.import_module(PACKAGE_NAME)


def registration_snapshot() -> dict:
    """What the add-on has registered right now (KMM types, Scene/WindowManager properties, kmm operators), to
    compare before and after register/unregister or install/uninstall."""
    import bpy

    return {
        "types": sorted(name for name in dir(bpy.types) if "KMM" in name.upper()),
        "scene_props": sorted(bpy.types.Scene.bl_rna.properties.keys()),
        "wm_props": sorted(bpy.types.WindowManager.bl_rna.properties.keys()),
        "ops": sorted(dir(bpy.ops.kmm)),
        "has_scene_kmm": hasattr(bpy.types.Scene, "kmm"),
    }


def emit(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)
