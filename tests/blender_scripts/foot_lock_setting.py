# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the Lock Feet and Loop options: scene settings (Lock Feet on, Loop off by default) drawn in the
Settings sub-panel and carried by the generate request the add-on sends to the worker.

    foot_lock_setting.py
"""

from __future__ import annotations

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender import job_runner, panel  # noqa: E402
from kmm_motion.kmm_core.worker.protocol import decode, encode  # noqa: E402


class RecordingLayout:
    """Stands in for a UILayout: records the names of the properties a panel draws."""

    def __init__(self, drawn: list):
        self.drawn = drawn
        self.use_property_split = self.use_property_decorate = False

    def prop(self, _data, name, **_kwargs):
        self.drawn.append(name)

    def row(self, **_kwargs):
        return self

    def operator(self, *_args, **_kwargs):
        return None

    def separator(self, **_kwargs):
        return None


scene = bpy.context.scene
settings = scene.kmm
result = {"default": settings.foot_lock,
          "name": settings.bl_rna.properties["foot_lock"].name}
drawn: list = []


class FakePanel:
    layout = RecordingLayout(drawn)


panel.KMM_PT_settings.draw(FakePanel(), bpy.context)
result["settings_panel_draws"] = drawn
bpy.ops.kmm.segment_add()
settings.segments[-1].prompt = "walk forward"
requests = {}
for value in (True, False):
    settings.foot_lock = value
    request, _target = job_runner.build_request(scene)
    requests[str(value)] = decode(encode({**request, "id": "g"}))["foot_lock"]
result["requests"] = requests
settings.foot_lock = True
settings.loop = True
request, _target = job_runner.build_request(scene)
result["loop_request"] = decode(encode({**request, "id": "g"}))["timeline"].get("loop")
bpy.ops.kmm.segment_add()
settings.segments[-1].prompt = "wave"
try:
    job_runner.build_request(scene)
    result["loop_two_rows"] = "accepted"
except Exception as error:  # noqa: BLE001  (the add-on's KMMError, reported to the user)
    result["loop_two_rows"] = str(error)
_harness.emit(result)
