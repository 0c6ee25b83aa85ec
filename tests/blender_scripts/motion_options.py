# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of the Lock Feet, Loop and Path options: scene settings (Lock Feet on, Loop off by default) drawn
in the Settings sub-panel and carried by the generate request the add-on sends to the worker.

    motion_options.py
"""

from __future__ import annotations

import dataclasses

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.ui import panel  # noqa: E402
from kmm_motion.kmm_core.worker.protocol import decode, encode  # noqa: E402


def sent(request) -> dict:
    """The request (a protocol Generate message) as the worker receives it: encoded, then decoded and validated."""
    return decode(encode(dataclasses.replace(request, id="g")))


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

    def column(self, **_kwargs):
        return self

    def label(self, **_kwargs):
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
    requests[str(value)] = sent(request)["foot_lock"]
result["requests"] = requests
settings.foot_lock = True
settings.loop = True
request, _target = job_runner.build_request(scene)
result["loop_request"] = sent(request)["timeline"].get("loop")
bpy.ops.kmm.segment_add()
settings.segments[-1].prompt = "wave"
try:
    job_runner.build_request(scene)
    result["loop_two_rows"] = "accepted"
except Exception as error:  # noqa: BLE001  (the add-on's KMMError, reported to the user)
    result["loop_two_rows"] = str(error)
settings.loop = False
while len(settings.segments) > 1:
    settings.active_segment_index = len(settings.segments) - 1
    bpy.ops.kmm.segment_remove()
# A curve path (Blender x, y -> HumanML3D x, -y) and an empty with child empties as waypoints.
curve_data = bpy.data.curves.new("walk_path", type="CURVE")
spline = curve_data.splines.new("POLY")
spline.points.add(2)
for point, co in zip(spline.points, ((0, 0, 0, 1), (0, -2, 0, 1), (1, -3, 0, 1)), strict=True):
    point.co = co
curve = bpy.data.objects.new("walk_path", curve_data)
scene.collection.objects.link(curve)
settings.path_object = curve
request, _target = job_runner.build_request(scene)
result["curve_path"] = sent(request)["timeline"]["path"]
start = bpy.data.objects.new("route", None)
scene.collection.objects.link(start)
for name, location in (("route.002", (2, 0, 0)), ("route.001", (1, 0, 0))):
    child = bpy.data.objects.new(name, None)
    scene.collection.objects.link(child)
    child.parent = start
    child.location = location
start.location = (0, 1, 0)
bpy.context.view_layer.update()
settings.path_object = start
request, _target = job_runner.build_request(scene)
result["empty_path"] = request.timeline["path"]
_harness.emit(result)
