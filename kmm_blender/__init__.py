# SPDX-License-Identifier: GPL-3.0-or-later
"""KMM Motion: the Blender side of KMM (panel, timeline, backend session, keyframes).

Kept thin on purpose: each job lives in its own module and this file only registers them in order.  The submodules
are imported inside register() so that tools which merely import this package (the build script,
`python -m kmm_blender.build_extension`) do not need Blender.
"""

from __future__ import annotations

import importlib

# Registration order matters: property groups before the properties that point at them, the job controller before
# the operators that use it, operators before the panels that draw their buttons.
_MODULE_NAMES = ("timeline.properties", "ui.preferences", "jobs.controller", "ui.backend_buttons", "ui.operators",
                 "ui.prompt_suggestions", "ui.panel", "ui.bone_map_panel",
                 "ui.constraints_panel")
_registered_modules: list = []


def _modules() -> list:
    return [importlib.import_module(f".{name}", __package__) for name in _MODULE_NAMES]


def register() -> None:
    try:
        for module in _modules():
            module.register()
            _registered_modules.append(module)
    except BaseException:
        unregister()  # leave nothing half-registered behind
        raise


def unregister() -> None:
    while _registered_modules:
        _registered_modules.pop().unregister()
