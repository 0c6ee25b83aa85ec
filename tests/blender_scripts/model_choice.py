# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the Model preference with the REAL worker:

    model_choice.py <checkpoints folder holding kmm-small and kmm-small-open>

The add-on is enabled as an add-on (so its preferences exist), the worker finds its models in the given folder
(KMM_CHECKPOINTS_DIR, inherited by the worker process).  For Open, then Custom Folder, one generation goes through
the preference -> `load.checkpoint` path, and the panel's model line (drawn into a recording layout: bpy module mode
has no window) names the loaded model and its licence.  Reports what each step showed.
"""

from __future__ import annotations

import os
import sys

import _harness

user_dir = _harness.start()
import addon_utils  # noqa: E402
import bpy  # noqa: E402

shelf = sys.argv[1]
os.environ["KMM_CHECKPOINTS_DIR"] = shelf
_harness.import_extension_package(user_dir)
addon_utils.enable(_harness.PACKAGE_NAME, default_set=True)
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_blender.timeline.segment_table import Row  # noqa: E402
from kmm_motion.kmm_blender.ui import panel, preferences  # noqa: E402

context = bpy.context
prefs = context.preferences.addons[_harness.PACKAGE_NAME].preferences
scene = context.scene
scene.render.fps, scene.render.fps_base = 20, 1.0
scene.kmm.steps = 2
result: dict = {"choices": [item.identifier for item in prefs.bl_rna.properties["model"].enum_items],
                "default_choice": prefs.model}


class RecordingLayout:
    """Records the labels a draw function makes (text, icon)."""

    def __init__(self, log: list):
        self.log = log

    def __getattr__(self, name):
        def record(*args, **kwargs):
            if name == "label":
                self.log.append([kwargs.get("text", ""), kwargs.get("icon", "NONE")])
            return RecordingLayout(self.log) if name in ("row", "column", "box") else None
        return record


def model_line() -> list:
    log: list = []
    panel.draw_model_line(RecordingLayout(log), context)
    return log


def generate_with_preferences() -> dict:
    """One generation whose model comes from the preferences (the backend's Python is this one)."""
    checkpoint = job_runner.backend_config(context).checkpoint
    config = backend_session.BackendConfig(python=sys.executable, device="cpu", checkpoint=checkpoint)
    takes = job_runner.run_generation_blocking(context, timeout=280, config=config)
    state = context.window_manager.kmm_job
    return {"checkpoint": checkpoint, "takes": len(takes.takes), "model": state.model,
            "model_licence": state.model_licence, "line": model_line()}


set_rows(scene.kmm, [Row("a person walks forward", 1, 30)])
result["line_before"] = model_line()
result["checkpoint_default"] = job_runner.backend_config(context).checkpoint
result["licence_lines"] = {choice: list(preferences.licence_lines(choice)) for choice in result["choices"]}

prefs.model = "OPEN"
result["open"] = generate_with_preferences()

prefs.model = "CUSTOM"
prefs.checkpoint = ""
try:
    job_runner.backend_config(context)
    result["custom_empty"] = "no error"
except Exception as error:  # noqa: BLE001 - the message is the finding
    result["custom_empty"] = f"{type(error).__name__}: {error}"
prefs.checkpoint = os.path.join(shelf, "kmm-small")
result["custom"] = generate_with_preferences()

job_runner.release()
result["line_after_release"] = model_line()
addon_utils.disable(_harness.PACKAGE_NAME, default_set=True)
_harness.emit(result)
