# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the prompt warnings with the REAL worker and the shipped model:

    prompt_warnings.py <model bundle folder>

Checks, then generates, a three-row timeline (a known prompt, "a person juggles three balls" far from every training
caption, and "a person kicks", whose action word the model rarely performs: a weak word of its word_checks.json)
through the blocking paths, and reports what the rows hold after the check (before anything is generated) and after
the generation, what the panel draws for them (a recording layout stands in for Blender's UI, which has no window in
bpy module mode), and what `kmm.use_suggestion` does on both warned rows.
"""

from __future__ import annotations

import sys

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.timeline import prompt_warnings  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_blender.timeline.segment_table import Row  # noqa: E402
from kmm_motion.kmm_blender.ui import panel, prompt_suggestions  # noqa: E402

bundle = sys.argv[1]
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
settings = scene.kmm
result: dict = {}


class RecordingLayout:
    """Records what a draw function puts on the screen: labels (text, icon) and operator buttons."""

    def __init__(self, log: list):
        self.log = log
        self.alert = False
        self.ui_units_x = 0

    def __getattr__(self, name):
        def record(*args, **kwargs):
            if name == "label":
                self.log.append(("label", kwargs.get("text", ""), kwargs.get("icon", "NONE"), self.alert))
                return None
            if name == "operator":
                properties = type("Properties", (), {})()
                self.log.append(("operator", args[0], kwargs.get("text", ""), properties))
                return properties
            if name in ("row", "column", "box", "split"):
                return RecordingLayout(self.log)
            return None
        return record


def draw_row(index: int) -> list:
    log: list = []
    panel.KMM_UL_segments.draw_item(None, context, RecordingLayout(log), settings, settings.segments[index], "NONE",
                                    settings, "active_segment_index", index)
    return [entry[:3] for entry in log if entry[0] == "label"]


def draw_warnings() -> list:
    log: list = []
    prompt_suggestions.draw_warnings(RecordingLayout(log), settings, panel._wrapped)
    return [[entry[0], entry[1], entry[2], dict(vars(entry[3])) if entry[0] == "operator" else entry[3]]
            for entry in log]


set_rows(settings, [Row("a person walks forward", 1, 36), Row("a person juggles three balls", 37, 72),
                    Row("a person kicks", 73, 108)])
real_worker = backend_session.BackendConfig(python=sys.executable, device="cpu", checkpoint=bundle)


def rows() -> list[dict]:
    return [{"prompt": s.prompt, "warning": s.vocabulary_warning, "warned_prompt": s.warned_prompt,
             "suggestions": prompt_warnings.suggestions_of(s), "read_with": prompt_warnings.read_with_of(s)}
            for s in settings.segments]


# Before generating: Check Prompts puts the same warnings and readings on the rows, and makes no take.
actions_before = len(bpy.data.actions)
result["checked"] = job_runner.run_prompt_check_blocking(context, timeout=280, config=real_worker)
result["rows_checked"] = rows()
result["panel_checked"] = draw_warnings()
result["actions_made_by_check"] = len(bpy.data.actions) - actions_before
imported = job_runner.run_generation_blocking(context, timeout=280, config=real_worker)
result["reported"] = list(imported.warnings)
result["rows"] = rows()
result["row_icons"] = [draw_row(index) for index in range(3)]
result["panel"] = draw_warnings()

# Taking a suggestion puts it into the row; the warning no longer applies to the new prompt.
suggestion = prompt_warnings.suggestions_of(settings.segments[1])[0]
result["use_suggestion"] = sorted(bpy.ops.kmm.use_suggestion(index=1, suggestion=suggestion))
result["prompt_after"] = settings.segments[1].prompt
result["warning_after"] = prompt_warnings.active_warning(settings.segments[1])
result["panel_after"] = draw_warnings()

# The weak word's row: its first suggestion is the strong word's prompt; taking it clears the last warning.
kick_suggestion = prompt_warnings.suggestions_of(settings.segments[2])[0]
result["use_kick_suggestion"] = sorted(bpy.ops.kmm.use_suggestion(index=2, suggestion=kick_suggestion))
result["kick_prompt_after"] = settings.segments[2].prompt
result["panel_after_both"] = draw_warnings()
try:
    result["bad_index"] = sorted(bpy.ops.kmm.use_suggestion(index=7, suggestion="a person walks"))
except RuntimeError as error:   # bpy.ops raises the operator's ERROR report in module mode
    result["bad_index"] = str(error)

# A row the check cannot send is named before the backend is asked.
settings.segments[0].prompt = "   "
try:
    job_runner.run_prompt_check_blocking(context, timeout=60, config=real_worker)
except Exception as error:  # KMMError
    result["empty_row"] = str(error)

job_runner.release()
package.unregister()
_harness.emit(result)
