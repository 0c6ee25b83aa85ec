# SPDX-License-Identifier: GPL-3.0-or-later
"""Prepare or inspect .blend files for the batch test.

    batch_scene.py make <file.blend>     a small scene (Workbench, 64x48, 24 fps) to generate into
    batch_scene.py make_metarig <file>   the same scene with Blender's Rigify human metarig ("metarig")
    batch_scene.py inspect <file.blend>  emit the armatures, actions and KMM table saved in a file
"""

from __future__ import annotations

import sys

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

command, path = sys.argv[1], sys.argv[2]
if command in ("make", "make_metarig"):
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.render.image_settings.file_format = "PNG"
    if command == "make_metarig":  # Blender's bundled Rigify human metarig as the target
        import addon_utils

        addon_utils.enable("rigify", default_set=True)
        bpy.ops.object.armature_human_metarig_add()
    bpy.ops.wm.save_as_mainfile(filepath=path)
    _harness.emit({"made": path})
else:
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    armatures = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    table = [[s.prompt, s.start, s.end] for s in scene.kmm.segments] if hasattr(scene, "kmm") else None
    _harness.emit({
        "armatures": [obj.name for obj in armatures],
        "active_actions": [obj.animation_data.action.name if obj.animation_data and obj.animation_data.action
                           else None for obj in armatures],
        "actions": [action.name for action in bpy.data.actions],
        "frame_range": [scene.frame_start, scene.frame_end],
        "table": table,
    })
