# SPDX-License-Identifier: GPL-3.0-or-later
"""Export an armature's take through Blender's own exporters (FBX, glTF, BVH), for pipelines outside Blender.

The exporter follows the file suffix: .fbx (io_scene_fbx, armature only, the take baked), .glb/.gltf (io_scene_gltf2,
the active action), .bvh (io_anim_bvh, the take's frame range).  Only the armature is selected while exporting; the
selection and active object are restored afterwards.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ...kmm_core.common.atomic_write import check_output_folder
from ...kmm_core.common.errors import KMMError

SUFFIXES = (".fbx", ".glb", ".gltf", ".bvh")


def check_export_path(path: str | Path) -> Path:
    """The export file, checked before any work (the batch calls this before generating): a known suffix, not a
    folder, and a folder (created when missing) in which a file can be written.  One-line KMMError otherwise."""
    path = Path(path).resolve()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KMMError(f"--export {path.name}: the file type follows the suffix, one of {', '.join(SUFFIXES)}")
    if path.is_dir():
        raise KMMError(f"--export {path}: is a folder; name the file to write")
    try:
        check_output_folder(path.parent)
    except KMMError as error:
        raise KMMError(f"--export: {error}") from None
    return path


def export_take(context: bpy.types.Context, armature: bpy.types.Object, path: str | Path, frame_start: int,
                frame_end: int) -> Path:
    path = check_export_path(path)
    suffix = path.suffix.lower()
    view_layer = context.view_layer
    selected = [obj for obj in view_layer.objects if obj.select_get()]
    active = view_layer.objects.active
    scene = context.scene
    frame_range = (scene.frame_start, scene.frame_end)
    try:
        for obj in selected:
            obj.select_set(False)
        armature.select_set(True)
        view_layer.objects.active = armature
        scene.frame_start, scene.frame_end = int(frame_start), int(frame_end)
        if suffix == ".fbx":
            bpy.ops.export_scene.fbx(filepath=str(path), use_selection=True, object_types={"ARMATURE"},
                                     bake_anim=True, add_leaf_bones=False)
        elif suffix in (".glb", ".gltf"):
            bpy.ops.export_scene.gltf(filepath=str(path), use_selection=True,
                                      export_format="GLB" if suffix == ".glb" else "GLTF_SEPARATE")
        else:
            bpy.ops.export_anim.bvh(filepath=str(path), frame_start=int(frame_start), frame_end=int(frame_end))
    except RuntimeError as error:  # Blender has printed the exporter's traceback already: give its last line only
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise KMMError(f"exporting {path.name} failed: {lines[-1] if lines else 'the exporter failed'}") from None
    finally:
        scene.frame_start, scene.frame_end = frame_range
        armature.select_set(False)
        for obj in selected:
            obj.select_set(True)
        view_layer.objects.active = active
    if not path.is_file():
        raise KMMError(f"the exporter wrote no {path.name}")
    return path
