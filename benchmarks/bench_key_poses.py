# SPDX-License-Identifier: GPL-3.0-or-later
"""Time "Use My Keys as Constraints" on an action keyed on every frame, in real Blender (bpy); print Markdown.

    python benchmarks/bench_key_poses.py [--frames 30 120 480] [--out benchmarks/results/key_poses_speed.md]

Rigify's human metarig (its preset bone map), every pose bone keyed (rotation) on every frame 1..N with a pose that
changes from frame to frame (the arms and legs swinging), then `constraint_source.poses_from_keys` timed as the
operator runs it: keyed bones per frame read from the F-curves, each frame evaluated once (`frame_set`), all poses
fitted together (`rig_pose.fitted_canonical_poses`), for the partial keys (the default) and Whole Body.  For
comparison the fit one pose at a time (`fitted_canonical_pose` per frame, as the add-on did before: the rig's plan,
standing offset and up to 12 retargets per pose) on the same evaluated points, for the first 30 frames.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 120, 480])
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "key_poses_speed.md"))
    args = parser.parse_args(argv)
    import os

    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="kmm_bench_user_")
    import bpy  # noqa: I001  (bpy first: it makes Blender's own modules importable)
    import addon_utils
    import numpy as np
    from mathutils import Euler

    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_pkg_"))
    (packages / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(packages))
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import importlib

    package = importlib.import_module("kmm_motion")
    package.register()
    constraint_source = importlib.import_module("kmm_motion.kmm_blender.timeline.constraint_source")
    rig_retarget = importlib.import_module("kmm_motion.kmm_blender.rigs.retarget")
    rig_pose = importlib.import_module("kmm_motion.kmm_core.retarget.rig_pose")
    from report_file import save_report

    context = bpy.context
    scene = context.scene
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    rig = context.view_layer.objects.active
    rig.animation_data_create().action = bpy.data.actions.new("every_frame")
    last = max(args.frames)
    swinging = [bone for bone in rig.pose.bones if bone.name.split(".")[0] in
                ("upper_arm", "forearm", "thigh", "shin", "spine", "shoulder")]
    for bone in rig.pose.bones:
        bone.rotation_mode = "XYZ"
    for frame in range(1, last + 1):
        phase = 2 * np.pi * frame / 30.0
        for index, bone in enumerate(rig.pose.bones):
            angle = 0.4 * np.sin(phase + index) if bone in swinging else 0.0
            bone.rotation_euler = Euler((angle, 0.0, 0.0))
            bone.keyframe_insert("rotation_euler", frame=frame)
    target = rig_retarget.armature_target_skeleton(rig)
    bone_map = rig_retarget.bone_map_for(rig, target)
    rows = []
    for count in args.frames:
        timings = {}
        for whole_body in (False, True):
            start = time.perf_counter()
            poses = constraint_source.poses_from_keys(scene, rig, 1, count, whole_body=whole_body)
            timings[whole_body] = time.perf_counter() - start
            assert len(poses) == count
        rows.append((count, timings[False], timings[True]))
        print(rows[-1], flush=True)
    single = min(30, last)
    points = []
    for frame in range(1, single + 1):
        scene.frame_set(frame)
        points.append(rig_retarget.evaluated_joint_points(rig, bone_map))
    start = time.perf_counter()
    for frame_points in points:
        rig_pose.fitted_canonical_pose(frame_points, target, bone_map)
    one_at_a_time = (time.perf_counter() - start) / single
    lines = ["# Use My Keys as Constraints on an action keyed on every frame", "",
             f"`python {' '.join(sys.argv)}`", "",
             f"Blender {bpy.app.version_string} (bpy), Rigify's human metarig, every pose bone keyed on every frame.  "
             f"Cap: {constraint_source.MAX_KEY_POSES} keyed frames (more is refused before any is evaluated).", "",
             "| keyed frames | partial keys (default) | per frame | Whole Body | per frame |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {count} | {partial:.2f} s | {partial / count * 1000:.0f} ms | {whole:.2f} s | "
              f"{whole / count * 1000:.0f} ms |" for count, partial, whole in rows]
    lines += ["", f"Fitting one pose at a time (the rig's plan, standing offset and fixed-point retargets per pose, as "
              f"before): {one_at_a_time:.2f} s per pose (first {single} frames' evaluated points)."]
    save_report(Path(args.out), lines)


if __name__ == "__main__":
    main()
