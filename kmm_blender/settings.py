# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's settings, read from one place at the bottom of the add-on: its package name (the preferences' key),
its preferences (or their defaults when the add-on runs without being enabled), the worker's model choice and the
extension's user folders.  Imports no other module of the add-on; the preferences' UI (ui/preferences.py) declares
the properties read here.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..kmm_core.common.errors import KMMError

# The add-on's module is the extension root package, one level above kmm_blender/.
ADDON_PACKAGE = __package__.rpartition(".")[0]
MODEL_NAMES = {"DEFAULT": "default", "OPEN": "open"}
"""The worker's `load.checkpoint` for each Model choice (kmm_core/bundle/model_choice.py resolves the names)."""


class _DefaultPreferences:
    """Used when the add-on runs without being enabled as an add-on (tests importing the package directly)."""

    python_path = ""
    install_variant = "cpu"
    wheel_folder = ""
    torch_source = "AUTO"
    install_python = ""
    device = "auto"
    model = "DEFAULT"
    checkpoint = ""
    smpl_model_path = ""


def get_preferences(context: bpy.types.Context | None = None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else _DefaultPreferences()


def model_checkpoint(prefs) -> str:
    """The worker's `load.checkpoint` for the preferences' Model: "default", "open" or the custom folder."""
    choice = getattr(prefs, "model", "DEFAULT")
    if choice != "CUSTOM":
        return MODEL_NAMES.get(choice, "default")
    folder = bpy.path.abspath(prefs.checkpoint) if prefs.checkpoint else ""
    if not folder:
        raise KMMError("Model is Custom Folder but no folder is set: choose the bundle folder (the one holding "
                       "bundle.json) in the add-on preferences, or pick Default or Open")
    return folder


def extension_folder(name: str) -> Path | None:
    """The extension's user folder `name` (created), or None when the add-on does not run as an installed
    extension (a legacy add-on or a test importing the package): the caller then picks its own fallback."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path=name, create=True))
    except (ValueError, RuntimeError, KeyError):
        return None
