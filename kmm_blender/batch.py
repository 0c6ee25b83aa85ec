# SPDX-License-Identifier: GPL-3.0-or-later
"""Headless generation: timeline in, takes (and optionally renders and a saved .blend) out.

    blender -b scene.blend --python kmm_blender/batch.py -- --timeline t.json [--render out/] [--save out.blend]
    blender -b takes.blend --python kmm_blender/batch.py -- --regenerate-segment 2 [--prompt "..."] --save out.blend
    blender -b rig.blend --python kmm_blender/batch.py -- --timeline t.json --armature Armature \
        [--bone-map map.json] --export take.fbx      (any humanoid rig; .fbx, .glb/.gltf or .bvh)

Timers never fire in background Blender, so this runs the generation synchronously (the same session and take
writing as the panel).  `--regenerate-segment N` instead remakes segment N of the armature's active take as a new
take (the panel's Regenerate Segment).  Exit status: 0 on success, 1 on any failure (the reason is printed to
stderr), 2 on bad arguments.  Without --timeline the scene's own KMM timeline table is used.  The folders of
--save, --export and --render are created when missing and proven writable before anything is generated (and
removed again, while empty, when the run fails).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import bpy


def _addon_package():
    """The add-on's root package: our own when imported as part of it, else loaded from the folder holding this
    file (run as a script with --python), reusing the installed extension when that is the same folder."""
    if __package__:
        return importlib.import_module(__package__.rpartition(".")[0])
    root = Path(__file__).resolve().parents[1]
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == root / "__init__.py":
            return module
    spec = importlib.util.spec_from_file_location("kmm_motion_batch", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the add-on package from {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="blender -b scene.blend --python kmm_blender/batch.py --",
                                     description="Generate KMM motion for a timeline without the UI.")
    parser.add_argument("--blend", help="open this .blend first (for the bpy module, which has no `-b file`)")
    parser.add_argument("--timeline", help="timeline file (.json/.toml); default: the scene's KMM table")
    parser.add_argument("--armature", help="target armature object, any humanoid rig (default: the scene's "
                                           "setting, else a new KMM armature)")
    parser.add_argument("--bone-map", metavar="MAP.json", help="bone map for --armature (stored on it; default: "
                                                               "its stored map, else a preset or an automatic map)")
    parser.add_argument("--export", metavar="FILE", help="also export the take with Blender's exporter for the "
                                                         "suffix: .fbx, .glb/.gltf or .bvh")
    parser.add_argument("--python", help="backend Python (default: the add-on preferences)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the add-on preferences")
    parser.add_argument("--checkpoint", help="model: default, open, a shipped bundle's name or a bundle folder "
                                             "(default: the add-on preferences' Model)")
    parser.add_argument("--regenerate-segment", type=int, metavar="N",
                        help="instead of generating, regenerate segment N, counted from 1 as the panel's table shows "
                             "(`kmm edit --segment` and the worker protocol count from 0), of the armature's active "
                             "KMM take as a new take; every key outside the segment is kept")
    parser.add_argument("--prompt", help="with --regenerate-segment: the segment's new prompt (default: keep it)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--variations", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--root-motion", choices=("WORLD", "IN_PLACE"))
    parser.add_argument("--fps-mode", choices=("RESAMPLE", "FRAME_PER_FRAME"))
    parser.add_argument("--nla", action="store_true", help="push each take to an NLA strip")
    parser.add_argument("--no-foot-lock", dest="foot_lock", action="store_false", default=None,
                        help="keep the raw decoded motion (default: the scene's Lock Feet setting, on)")
    parser.add_argument("--render", metavar="DIR", help="render the take's frames into DIR")
    parser.add_argument("--render-step", type=int, default=1, help="render every Nth frame (previews)")
    parser.add_argument("--save", metavar="BLEND", help="save the result as this .blend file")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before giving up (default 3600)")
    parser.add_argument("--worker-script", help=argparse.SUPPRESS)  # run another worker entry point (tests)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    try:
        args = parse_arguments(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0) and 2
    if args.regenerate_segment is not None and (args.timeline or args.regenerate_segment < 1):
        print("KMM batch: --regenerate-segment N needs N >= 1 and edits the take in the scene (no --timeline)",
              file=sys.stderr)
        return 2
    if args.prompt is not None and args.regenerate_segment is None:
        print("KMM batch: --prompt only goes with --regenerate-segment", file=sys.stderr)
        return 2
    if args.blend:
        try:
            bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
        except RuntimeError as error:
            print(f"KMM batch failed: cannot open {args.blend}: {error}", file=sys.stderr)
            return 1
    package = _addon_package()
    if not hasattr(bpy.types.Scene, "kmm"):
        package.register()
    job_runner = importlib.import_module(".kmm_blender.jobs.runner", package.__name__)
    segment_table = importlib.import_module(".kmm_blender.timeline.segment_table", package.__name__)
    properties = importlib.import_module(".kmm_blender.timeline.properties", package.__name__)
    errors = importlib.import_module(".kmm_core.common.errors", package.__name__)
    backend_session = importlib.import_module(".kmm_blender.backend.session", package.__name__)
    job_controller = importlib.import_module(".kmm_blender.jobs.controller", package.__name__)

    context = bpy.context
    scene = context.scene
    settings = scene.kmm
    motion_folder: str | None = None
    made_folders: list[Path] = []  # output folders the check created: removed again if the run fails
    try:
        made_folders = check_outputs(args, package)  # a read-only or unusable output fails now, not after generating
        if args.timeline:
            rows, constraints = segment_table.import_timeline(args.timeline, properties.scene_fps(scene),
                                                              scene.frame_start)
            properties.set_rows(settings, rows)
            settings.constraint_poses = json.dumps(constraints) if constraints else ""  # the file's constraints
        if args.armature:
            obj = bpy.data.objects.get(args.armature)
            if obj is None or obj.type != "ARMATURE":
                raise errors.KMMError(f"--armature: no armature object named {args.armature!r} in the scene")
            settings.target_armature = obj
        if args.bone_map:
            if not args.armature:
                raise errors.KMMError("--bone-map needs --armature")
            rig_retarget = importlib.import_module(".kmm_blender.rigs.retarget", package.__name__)
            bone_map_module = importlib.import_module(".kmm_core.retarget.bone_map", package.__name__)
            bone_map = bone_map_module.load_bone_map(args.bone_map)
            bone_map.check(settings.target_armature.data.bones.keys(), settings.target_armature.name)
            rig_retarget.store_bone_map(settings.target_armature, bone_map)
        for name in ("seed", "variations", "guidance", "steps", "root_motion", "fps_mode", "foot_lock"):
            value = getattr(args, name)
            if value is not None:
                setattr(settings, name, value)
        if args.seed is not None:
            settings.random_seed = False
        settings.push_to_nla = settings.push_to_nla or args.nla

        config = job_runner.backend_config(context)
        config = backend_session.BackendConfig(
            python=args.python or config.python, device=args.device or config.device,
            checkpoint=args.checkpoint or config.checkpoint,
            worker_args=(args.worker_script,) if args.worker_script else config.worker_args)
        job_controller.controller().session_for(config).on_progress = ProgressPrinter()  # the session the run uses
        # The motion files go to a folder of this run, removed at its end: each take carries its file's bytes
        # (takes/provenance.py), so the saved .blend can still regenerate a segment.
        motion_folder = tempfile.mkdtemp(prefix="kmm_batch_")
        if args.regenerate_segment is not None:
            imported = job_runner.run_regeneration_blocking(context, timeout=args.timeout, config=config,
                                                            segment=args.regenerate_segment - 1, prompt=args.prompt,
                                                            output_dir=motion_folder)
        else:
            imported = job_runner.run_generation_blocking(context, timeout=args.timeout, config=config,
                                                          output_dir=motion_folder)
        takes = imported.takes
        print(f"KMM: {len(takes)} take(s) on {imported.armature.name!r}: "
              + ", ".join(f"{take.action.name} [{take.frame_start:g}-{take.frame_end:g}]" for take in takes))
        for warning in imported.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)

        if args.export:
            take_export = importlib.import_module(".kmm_blender.takes.export", package.__name__)
            exported = take_export.export_take(context, imported.armature, args.export, int(takes[0].frame_start),
                                               int(takes[0].frame_end))
            print(f"KMM: exported {exported}")
        if args.render:
            _render(scene, args.render, int(takes[0].frame_start), int(takes[0].frame_end), args.render_step)  # type: ignore[arg-type]  # stubs: Context.scene is optional; Blender sets it here
        if args.save:
            bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save).resolve()))
            print(f"KMM: saved {args.save}")
    except (errors.KMMError, OSError, RuntimeError) as error:
        _remove_empty(made_folders)
        print(f"KMM batch failed: {error}", file=sys.stderr)
        return 1
    finally:
        job_runner.release()
        if motion_folder is not None:
            shutil.rmtree(motion_folder, ignore_errors=True)
    return 0


def check_outputs(args: argparse.Namespace, package) -> list[Path]:
    """Prove before any generation that every output can be written: the folders of --save and --export and the
    --render folder are created when missing and must accept a new file; --save must not name a folder.  Raises a
    one-line KMMError naming the option and the folder.  Returns the folders it created, deepest first, so that a
    failed run can remove them and leave nothing behind."""
    atomic_write = importlib.import_module(".kmm_core.common.atomic_write", package.__name__)
    errors = importlib.import_module(".kmm_core.common.errors", package.__name__)
    folders = []
    if args.export:
        folders.append(("--export", Path(args.export).resolve().parent))
    if args.save:
        save = Path(args.save).resolve()
        if save.is_dir():
            raise errors.KMMError(f"--save {save}: is a folder; name the .blend file to write")
        folders.append(("--save", save.parent))
    if args.render:
        folders.append(("--render", Path(args.render).resolve()))
    missing = {ancestor for _, folder in folders for ancestor in (folder, *folder.parents) if not ancestor.exists()}
    try:
        if args.export:
            importlib.import_module(".kmm_blender.takes.export", package.__name__).check_export_path(args.export)
        for option, folder in folders:
            try:
                atomic_write.check_output_folder(folder)
            except errors.KMMError as error:
                raise errors.KMMError(f"{option}: {error}") from None
    except BaseException:
        _remove_empty(_made(missing))
        raise
    return _made(missing)


def _made(missing: set[Path]) -> list[Path]:
    """The folders of `missing` that exist now, deepest first."""
    return sorted((folder for folder in missing if folder.is_dir()), key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run created, deepest first, each only while it is still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


class ProgressPrinter:
    """Prints `KMM: [ 40%] Step 4 of 10` whenever the job's message changes or it advanced 5% (a long batch is never
    silent for long; no flood either)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.last: tuple[str, float] | None = None

    def __call__(self, job) -> None:
        fraction = job.fraction
        if self.last is not None and job.message == self.last[0] and fraction < self.last[1] + 0.05:
            return
        self.last = (job.message, fraction)
        print(f"KMM: [{fraction * 100:3.0f}%] {job.message}", file=self.stream, flush=True)


def _render(scene: bpy.types.Scene, folder: str, first: int, last: int, step: int) -> None:
    """Render the take's frames as images into `folder` (the scene's render settings otherwise apply)."""
    output = Path(folder).resolve()
    output.mkdir(parents=True, exist_ok=True)
    scene.frame_start, scene.frame_end, scene.frame_step = first, last, max(step, 1)
    scene.render.filepath = str(output) + "/frame_"
    bpy.ops.render.render(animation=True)
    print(f"KMM: rendered frames {first}-{last} (step {max(step, 1)}) into {output}")


if __name__ == "__main__":
    sys.exit(main())
