# SPDX-License-Identifier: GPL-3.0-or-later
"""Time reading an armature as a retargeting target in real Blender, on bone chains of growing depth; print Markdown.

What is timed, per depth N (one armature whose N bones hang one below the other, the deepest hierarchy a rig can
have): `armature_target_skeleton` (the rig's rest pose as a TargetSkeleton) and `describe_target` (what the Target
Rig panel's draw does once per redraw: the skeleton, the bone map detection, the map's check, and the refusal of a
chain that is no humanoid).  The time per bone stays flat when the work is linear in the bones.

``--baseline DIR`` also imports another checkout of the add-on (e.g. ``git archive <commit> | tar -x -C DIR``) as a
second package in the same process and times its `armature_target_skeleton` and its panel draw (`describe_bone_map`
plus `bone_map_for`, as its panel called them) on the depths up to ``--baseline-max`` bones.

Run: ``python benchmarks/bench_rig_reading.py [--depths 1000 2000 4000 8000 10000] [--baseline DIR]
[--baseline-max 2000] [--out benchmarks/results/rig_reading.md]``
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _import_addon(root: Path, package: str):
    """Import the checkout `root` as `package`, as Blender imports the installed extension (relative imports)."""
    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_packages_"))
    (packages / package).symlink_to(root, target_is_directory=True)
    sys.path.insert(0, str(packages))
    return importlib.import_module(package)


def _chain(bpy, depth: int):
    """An armature of `depth` bones, each the child of the one before, going up 1 cm per bone."""
    data = bpy.data.armatures.new(f"Chain{depth}")
    obj = bpy.data.objects.new(f"Chain{depth}", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    parent = None
    for index in range(depth):
        bone = data.edit_bones.new(f"b{index}")
        bone.head, bone.tail = (0.0, 0.0, 0.01 * index), (0.0, 0.0, 0.01 * (index + 1))
        if parent is not None:
            bone.parent, bone.use_connect = parent, True
        parent = bone
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def _best_of(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--baseline-max", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "rig_reading.md")
    args = parser.parse_args()
    import bpy

    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.report_file import save_report

    current = importlib.import_module(_import_addon(REPO_ROOT, "kmm_now").__name__ + ".kmm_blender.rigs.retarget")
    before = None
    if args.baseline:
        before = importlib.import_module(_import_addon(args.baseline.resolve(), "kmm_before").__name__
                                         + ".kmm_blender.rigs.retarget")
    lines = ["# Reading an armature as a target: time against hierarchy depth", "",
             f"Command: `python benchmarks/bench_rig_reading.py --depths {' '.join(map(str, args.depths))}"
             + (f" --baseline DIR --baseline-max {args.baseline_max}`" if before else "`")
             + f" (bpy {bpy.app.version_string}, best of {args.repeats}).  One chain of N bones, each the child of "
             "the one before.", "",
             "| bones N | skeleton (s) | per bone (us) | panel draw (s) | per bone (us) |"
             + (" before: skeleton (s) | before: panel draw (s) |" if before else ""),
             "| ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if before else "")]
    for depth in args.depths:
        obj = _chain(bpy, depth)
        skeleton = _best_of(lambda obj=obj: current.armature_target_skeleton(obj), args.repeats)
        panel = _best_of(lambda obj=obj: current.describe_target(obj), args.repeats)
        row = (f"| {depth} | {skeleton:.3f} | {skeleton / depth * 1e6:.1f} | {panel:.3f} | "
               f"{panel / depth * 1e6:.1f} |")
        if before:
            if depth <= args.baseline_max:
                def old_draw(obj=obj):
                    before.describe_bone_map(obj)
                    try:
                        before.bone_map_for(obj)
                    except Exception:  # noqa: BLE001 - the old panel drew the map only when there was one
                        pass

                row += (f" {_best_of(lambda obj=obj: before.armature_target_skeleton(obj), 1):.3f} |"
                        f" {_best_of(old_draw, 1):.3f} |")
            else:
                row += " - | - |"
        lines.append(row)
        bpy.data.objects.remove(obj, do_unlink=True)
    problem = current.describe_target(_chain(bpy, 50))[2]
    lines += ["", f"What the panel says about such a chain: {problem}"]
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
