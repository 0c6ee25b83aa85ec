# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check, in whichever Blender runs it: install the built extension zip the way a user does, then Generate a
two-row timeline with the real worker (another Python with torch, as the user's backend) and a tiny trained bundle,
then Regenerate Segment 2 of that take, both through the installed add-on's own job runner.
Usage: zip_generate_regenerate.py <zip> <backend python> <bundle folder>"""

from __future__ import annotations

import importlib
import sys

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

zip_path, backend_python, bundle = sys.argv[1:4]
MODULE = "bl_ext.user_default.kmm_motion"
result: dict = {"blender_version": list(bpy.app.version)}
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
result["enabled"] = MODULE in bpy.context.preferences.addons
runner = importlib.import_module(f"{MODULE}.kmm_blender.jobs.runner")
session = importlib.import_module(f"{MODULE}.kmm_blender.backend.session")
segment_table = importlib.import_module(f"{MODULE}.kmm_blender.timeline.segment_table")
properties = importlib.import_module(f"{MODULE}.kmm_blender.timeline.properties")
result["module_file"] = runner.__file__

context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
settings = scene.kmm
settings.random_seed, settings.seed = False, 4
properties.set_rows(settings, [segment_table.Row("walk forward", 1, 48), segment_table.Row("turn left", 49, 96)])
config = session.BackendConfig(python=backend_python, device="cpu", checkpoint=bundle)
generated = runner.run_generation_blocking(context, timeout=280, config=config)
take = generated.takes[0]
result["generated"] = [take.action.name, take.frame_start, take.frame_end, generated.armature.name]
settings.active_segment_index = 1
regenerated = runner.run_regeneration_blocking(context, timeout=280, config=config, prompt="turn right")
new = regenerated.takes[0].action
result["regenerated"] = [new.name, generated.armature.animation_data.action == new,
                         sorted(m.name for m in new.pose_markers)]
runner.release()
_harness.emit(result)
