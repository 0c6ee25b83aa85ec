# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the time of writing 10 minutes of 30 fps keys goes, step by step, in real Blender; print Markdown.

Runs the writer's own pieces (take_keys -> TakeKeys, then per F-curve: fcurves.new, keyframe_points.add,
foreach_set("co"), foreach_set("interpolation"), the handle recalculation) on the motion of
`bench_blender_apply.py` and times each with perf_counter (cProfile cannot see inside bpy's C calls: their time lands
on the caller).  Each Blender call is timed in both forms the writer has had: interpolation from an int32 array
(which bpy cannot hand to the key's char field directly, so it walks the array item by item) or a uint8 one (copied
straight in), and `FCurve.update()` (sort, then handles) or `keyframe_points.handles_recalc()` (handles only: the keys
are written in frame order).

``--root DIR`` profiles another checkout's take_keys (e.g. ``git archive main | tar -x -C DIR``); the Blender calls are
the same in both.

Run: ``python benchmarks/profile_blender_apply.py [--minutes 10] [--repeats 5] [--root DIR]`` (with the Python of a
bpy venv).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_blender_apply as bench  # noqa: E402  (the benchmark's motion and add-on import)

_LINEAR = 1  # KeyFrame.interpolation 'LINEAR'


def profile(minutes: float, repeats: int, root: Path = bench.REPO_ROOT) -> tuple[str, dict[str, list[float]]]:
    import tempfile

    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="kmm_profile_user_")
    import bpy
    import numpy as np

    bench._import_addon(root)
    from kmm_motion.kmm_blender.rigs import armature_builder, take_keys
    from kmm_motion.kmm_blender.takes import keyframe_writer
    from kmm_motion.kmm_core.motion import kinematics, skeleton

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(bench.TARGET_FPS), 1.0
    armature = armature_builder.create_armature(bpy.context)
    frames = int(round(minutes * 60 * bench.TARGET_FPS))
    motion = bench._looped_motion(kinematics, take_keys, skeleton, frames)
    steps: dict[str, list[float]] = defaultdict(list)
    spent: dict[str, float] = defaultdict(float)  # this repeat's seconds per step

    def timed(step: str, call, *args):
        started = time.perf_counter()
        result = call(*args)
        spent[step] += time.perf_counter() - started
        return result

    for repeat in range(repeats):
        spent.clear()
        options = take_keys.WriteOptions(action_name=f"profile {repeat}")
        keys = timed("take_keys: the key values (numpy)", keyframe_writer.take_keys, armature, motion, options, scene)
        action = bpy.data.actions.new(options.action_name)
        factory = keyframe_writer._FCurveFactory(action, armature, keyframe_writer.available_api(action))
        count = len(keys.frames)
        co = np.empty(2 * count, dtype=np.float32)
        co[0::2] = keys.frames
        as_int32, as_uint8 = np.full(count, _LINEAR, np.int32), np.full(count, _LINEAR, np.uint8)
        channels = [(f'pose.bones["{name}"].rotation_quaternion', c, name, keys.quaternions[:, j, c])
                    for j, name in enumerate(keys.bone_names) for c in range(4)]
        channels += [(f'pose.bones["{keys.location_bone}"].location', a, keys.location_bone, keys.locations[:, a])
                     for a in range(3)]
        for number, (path, index, group, values) in enumerate(channels):
            fcurve = timed("fcurves.new", factory.new, path, index, group)
            points = fcurve.keyframe_points
            timed("keyframe_points.add(n)", points.add, count)
            timed("values into the float32 co buffer (numpy)", co.__setitem__, slice(1, None, 2), values)
            timed('foreach_set("co", float32)', points.foreach_set, "co", co)
            # Half the curves each way, so both forms are timed on the same run; totals scale them to all curves.
            if number % 2:
                timed('foreach_set("interpolation", int32) [x2]', points.foreach_set, "interpolation", as_int32)
                timed("FCurve.update() [x2]", fcurve.update)
            else:
                timed('foreach_set("interpolation", uint8) [x2]', points.foreach_set, "interpolation", as_uint8)
                timed("keyframe_points.handles_recalc() [x2]", points.handles_recalc)
        bpy.data.actions.remove(action)
        for step, seconds in spent.items():
            steps[step].append(seconds * (2 if step.endswith("[x2]") else 1))
    return ".".join(map(str, bpy.app.version)), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=bench.REPO_ROOT, help="the checkout whose take_keys is timed")
    args = parser.parse_args()
    blender, steps = profile(args.minutes, args.repeats, args.root.resolve())
    frames = int(round(args.minutes * 60 * bench.TARGET_FPS))
    print(f"`{args.root}`: Blender {blender}, {args.minutes:g} min at 30 fps ({frames} frames x 91 F-curves), median of "
          f"{args.repeats} runs; [x2]: timed on half the curves, doubled.\n")
    print("| step | seconds (median, all 91 F-curves) |")
    print("| --- | ---: |")
    for step, seconds in steps.items():
        print(f"| {step} | {statistics.median(seconds):.4f} |")


if __name__ == "__main__":
    main()
