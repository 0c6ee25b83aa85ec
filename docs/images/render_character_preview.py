# SPDX-License-Identifier: GPL-3.0-or-later
"""Render the README's picture: a real character performing the example timeline, rendered by Blender itself.

    .venv/bin/python docs/images/render_character_preview.py [--out docs/images/character-timeline.gif]
    .venv/bin/python docs/images/render_character_preview.py --out docs/images/characters-strip.png \
        --characters cesium_man robot_expressive kaykit_mannequin --size 300 300

What it does, the way a user would do it headless: Blender (the `bpy` module of the dev environment) imports
Khronos' Cesium Man (CC-BY 4.0, `tests/data/characters/CesiumMan.gltf`; `--characters` picks others) with its own
glTF importer, adds a floor, then runs the add-on's batch script (`kmm_blender/batch.py`) on
`examples/timeline.json` with seed 0: the real worker and the current default model make the take, the add-on puts it
on the character with no bone map, and Blender's Workbench engine renders every `--step`-th frame
through a camera that follows the character's hips.  The frames become
a looping GIF (Pillow) whose comment names the model and the SHA-256 of its `bundle.json`: `tests/test_docs.py`
fails when the default model changes and the picture was not made again.  It takes a few minutes on a CPU.  With
`--out NAME.png` it writes a strip instead: one row per character, one column per `--frames` frame.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHARACTERS = REPO / "tests" / "data" / "characters"
CHARACTER_FILES = {"cesium_man": CHARACTERS / "CesiumMan.gltf", "robot_expressive": CHARACTERS / "RobotExpressive.glb",
                   "kaykit_mannequin": CHARACTERS / "kaykit_mannequin" / "manny_med_mod.gltf"}
TIMELINE = REPO / "examples" / "timeline.json"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "character-timeline.gif"))
    parser.add_argument("--characters", nargs="+", choices=sorted(CHARACTER_FILES), default=["cesium_man"],
                        help="one for a GIF; for a PNG strip, one row each")
    parser.add_argument("--frames", type=int, nargs="+", default=[45, 101, 270],
                        help="for a PNG strip (--out ending in .png): the timeline's frames, one column each")
    parser.add_argument("--checkpoint", default="default", help="model (default: the shipped default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=3, help="render every Nth frame of the 30 fps take")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 270), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--colors", type=int, default=64, help="GIF palette size (smaller file, fewer colours)")
    return parser.parse_args()


def load_batch_module():
    """kmm_blender/batch.py as a module: its main() is the headless generation a user runs."""
    spec = importlib.util.spec_from_file_location("kmm_render_batch", REPO / "kmm_blender" / "batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checker_material(bpy):
    """A light grey checker (a generated 2x2-tile image, nearest-pixel sampling), so the walk's travel is visible."""
    size = 2 * 8
    image = bpy.data.images.new("floor_checker", size, size)
    pixels = []
    for y in range(size):
        for x in range(size):
            shade = 0.9 if ((x // 8) + (y // 8)) % 2 else 0.72
            pixels += [shade, shade, shade, 1.0]
    image.pixels = pixels
    material = bpy.data.materials.new("floor")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    texture = nodes.new("ShaderNodeTexImage")
    texture.image, texture.interpolation = image, "Closest"
    links.new(texture.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return material


def mesh_heights(bpy, armature) -> list[float]:
    """World heights of the bounding-box corners of the character's meshes (skinned to the armature or parented to
    it), as evaluated now."""
    from mathutils import Vector

    depsgraph = bpy.context.evaluated_depsgraph_get()
    return [(mesh.matrix_world @ Vector(corner)).z for mesh in bpy.context.scene.objects if mesh.type == "MESH"
            and (mesh.parent == armature or any(m.type == "ARMATURE" and m.object == armature for m in mesh.modifiers))
            for corner in mesh.evaluated_get(depsgraph).bound_box]


def build_scene(bpy, character: Path, size: tuple[int, int]) -> str:
    """Character, floor and render settings; returns the armature's name."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    bpy.ops.import_scene.gltf(filepath=str(character))
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    for obj in bpy.data.objects:  # a downloaded file may come with its own animation playing
        if obj.animation_data:
            obj.animation_data.action = None

    floor_size, tile = 60.0, 1.0
    armature.data.pose_position = "REST"  # the floor goes where the character stands in its rest pose (the take's
    bpy.context.view_layer.update()       # feet stand there too), which is not always z = 0
    rest_floor = min(mesh_heights(bpy, armature))
    armature.data.pose_position = "POSE"
    bpy.ops.mesh.primitive_plane_add(size=floor_size, location=(0, 0, rest_floor))
    floor = bpy.context.active_object
    for loop in floor.data.uv_layers.active.data:  # Workbench reads the UVs as they are: one image per 2 tiles
        loop.uv = loop.uv * (floor_size / (2 * tile))
    floor.data.materials.append(checker_material(bpy))

    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "TEXTURE"
    shading.show_shadows, shading.show_cavity = True, True
    shading.shadow_intensity = 0.3
    if scene.world:
        scene.world.color = (0.85, 0.87, 0.9)
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.render.image_settings.file_format = "PNG"
    return armature.name


def add_camera(bpy, package, armature, first: int, walk_end: int) -> None:
    """A camera that follows the hips across the floor (not up and down), looking at the character from the front
    and its left side as it starts to walk (so the raised left hand is seen)."""
    from mathutils import Vector

    retarget = importlib.import_module(".kmm_blender.rigs.retarget", package.__name__)
    hips = retarget.bone_map_for(armature).bones["pelvis"]
    scene = bpy.context.scene

    def hips_at(frame: int) -> Vector:
        scene.frame_set(frame)
        return armature.matrix_world @ armature.pose.bones[hips].head

    start, walked = hips_at(first), hips_at(walk_end)
    scene.frame_set(first)
    heights = mesh_heights(bpy, armature)
    height = max(heights) - min(heights)  # the character as drawn (its mesh), not its bones
    forward = Vector((walked.x - start.x, walked.y - start.y, 0.0)).normalized()
    left = Vector((-forward.y, forward.x, 0.0))
    follow = bpy.data.objects.new("camera_follow", None)
    follow.location.z = min(heights)  # on the floor; the constraint moves it across it
    scene.collection.objects.link(follow)
    constraint = follow.constraints.new("COPY_LOCATION")
    constraint.target, constraint.subtarget, constraint.use_z = armature, hips, False
    aim = bpy.data.objects.new("camera_aim", None)
    scene.collection.objects.link(aim)
    aim.parent, aim.location = follow, (0.0, 0.0, 0.5 * height)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.lens = 40
    scene.collection.objects.link(camera)
    camera.parent = follow
    camera.location = (forward * 0.7 + left * 0.7).normalized() * 2.4 * height + Vector((0.0, 0.0, 0.75 * height))
    track = camera.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = aim, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = camera


def render(bpy, folder: Path, first: int, last: int, step: int) -> list[Path]:
    scene = bpy.context.scene
    folder.mkdir(parents=True, exist_ok=True)
    scene.frame_start, scene.frame_end, scene.frame_step = first, last, step
    scene.render.filepath = str(folder) + "/frame_"
    bpy.ops.render.render(animation=True)
    return sorted(folder.glob("frame_*.png"))


def model_stamp(package, checkpoint: str) -> str:
    """What made the picture, stored as the GIF's comment: the model's name and the SHA-256 of its bundle.json (which
    lists every weight file's checksum), so a test can tell when the default model changed and the picture is old."""
    model_choice = importlib.import_module(".kmm_core.bundle.model_choice", package.__name__)
    bundle = model_choice.resolve_model(checkpoint)
    digest = hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()
    return f"model={bundle.name} bundle.json-sha256={digest} timeline=examples/timeline.json"


def frames_to_gif(frames: list[Path], out: Path, fps: float, colors: int, comment: str) -> None:
    from PIL import Image

    images = [Image.open(path).convert("RGB") for path in frames]
    palette = images[len(images) // 2].quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    quantized = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    out.parent.mkdir(parents=True, exist_ok=True)
    quantized[0].save(out, save_all=True, append_images=quantized[1:], duration=round(1000 / fps), loop=0,
                      optimize=True, disposal=1, comment=comment.encode())


def make_take(bpy, batch, package, character: str, args: argparse.Namespace):
    """The character in a fresh scene with the take on it and the camera following it; returns (armature, first
    frame, last frame), or the batch's failing exit status."""
    armature = bpy.data.objects[build_scene(bpy, CHARACTER_FILES[character], tuple(args.size))]
    status = batch.main(["--timeline", str(TIMELINE), "--armature", armature.name, "--python", sys.executable,
                         "--checkpoint", args.checkpoint, "--seed", str(args.seed)])
    if status != 0:
        return status
    first, last = (int(frame) for frame in armature.animation_data.action.frame_range)
    add_camera(bpy, package, armature, first, first + 59)  # the first segment: 2 s of "walks forward"
    return armature, first, last


def render_strip(bpy, folder: Path, first: int, frames: list[int]) -> list[Path]:
    """The timeline's frames (1 = the take's first) as still images."""
    scene = bpy.context.scene
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame in frames:
        scene.frame_set(first + frame - 1)
        scene.render.filepath = str(folder / f"frame_{frame:04d}.png")
        bpy.ops.render.render(write_still=True)
        paths.append(folder / f"frame_{frame:04d}.png")
    return paths


def strip_to_png(rows: list[list[Path]], out: Path, comment: str) -> None:
    from PIL import Image, PngImagePlugin

    images = [[Image.open(path).convert("RGB") for path in row] for row in rows]
    width, height = images[0][0].size
    sheet = Image.new("RGB", (width * len(images[0]), height * len(images)), "white")
    for r, row in enumerate(images):
        for c, image in enumerate(row):
            sheet.paste(image, (c * width, r * height))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", comment)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, pnginfo=info, optimize=True)


def main() -> int:
    args = parse_arguments()
    out = Path(args.out)
    if out.suffix.lower() == ".gif" and len(args.characters) != 1:
        print("a GIF shows one character: give one --characters, or write a .png strip", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kmm_preview_"))
    try:
        import bpy

        batch = load_batch_module()
        package = batch._addon_package()
        if not hasattr(bpy.types.Scene, "kmm"):
            package.register()
        stamp = model_stamp(package, args.checkpoint) + f" seed={args.seed}"
        rows = []
        for character in args.characters:
            made = make_take(bpy, batch, package, character, args)
            if isinstance(made, int):
                return made
            _armature, first, last = made
            if out.suffix.lower() == ".gif":
                frames = render(bpy, work / "frames", first, last, args.step)
                frames_to_gif(frames, out, fps=30 / args.step, colors=args.colors, comment=stamp)
                print(f"wrote {out}: {len(frames)} frames, {out.stat().st_size / 1e6:.2f} MB")
                return 0
            rows.append(render_strip(bpy, work / character, first, args.frames))
        strip_to_png(rows, out, stamp + " characters=" + ",".join(args.characters))
        print(f"wrote {out}: {len(rows)} x {len(args.frames)} frames, {out.stat().st_size / 1e6:.2f} MB")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
