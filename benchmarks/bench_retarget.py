# SPDX-License-Identifier: GPL-3.0-or-later
"""Time retargeting + keying 1 and 10 minutes of motion at 30 fps onto the rig Rigify generates (real bpy).

The motion is a MotionResult (default: 6 s generated once with the shipped model kmm-small, `kmm generate ... --seed
3`) looped to the length, each loop continuing from where the previous one ended; the scene runs at 30 fps.  Timed
separately, in one Blender process: the NumPy retargeting alone (`rig_retarget.retarget_onto`: rest alignment,
transfer, leg IK), and the whole `keyframe_writer.write_take` (reading the rig, retargeting, writing the F-curves of
every driven bone plus the rest keys above them).  Writes benchmarks/results/retarget_rigify.md.

Run: ``python benchmarks/bench_retarget.py [--motion take.npz] [--minutes 1 10] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "KMM_BENCH_RESULT "


def _worker(motion_path: str, minutes: list[float], repeats: int) -> None:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="kmm_bench_user_")
    import importlib

    import bpy
    import numpy as np

    addon_utils = importlib.import_module("addon_utils")  # Blender's module, importable only after bpy

    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_pkg_"))
    (packages / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(packages))
    importlib.import_module("kmm_motion").register()
    keyframe_writer = importlib.import_module("kmm_motion.kmm_blender.takes.keyframe_writer")
    take_keys = importlib.import_module("kmm_motion.kmm_blender.rigs.take_keys")
    rig_retarget = importlib.import_module("kmm_motion.kmm_blender.rigs.retarget")
    motion_result = importlib.import_module("kmm_motion.kmm_core.motion.motion_result")

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    rig = bpy.context.view_layer.objects.active
    base = motion_result.MotionResult.load(motion_path)
    rows = []
    for length in minutes:
        frames = int(round(length * 60 * base.fps))
        loops = frames // len(base.joints) + 1
        travel = base.root_translation[-1] - base.root_translation[0]
        travel[1] = 0.0
        shifts = np.repeat(np.arange(loops), len(base.joints))[:frames, None] * travel
        root = np.tile(base.root_translation, (loops, 1))[:frames] + shifts
        motion = motion_result.MotionResult(
            fps=base.fps, joints=(np.tile(base.joints, (loops, 1, 1))[:frames] + shifts[:, None]).astype(np.float32),
            root_translation=root.astype(np.float32),
            local_rotations=np.tile(base.local_rotations, (loops, 1, 1))[:frames],
            rest_offsets=base.rest_offsets, segment_frames=np.array([[0, frames]]), segment_prompts=("loop",))
        retarget_times, keying_times = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            rig_retarget.retarget_onto(rig, rig_retarget.source_for(motion, False, 30.0))
            retarget_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            take = keyframe_writer.write_take(rig, motion, take_keys.WriteOptions(), scene)
            keying_times.append(time.perf_counter() - started)
        keyed = len(keyframe_writer.take_keys(rig, motion, take_keys.WriteOptions(), scene).bone_names)
        rows.append({"minutes": length, "scene_frames": int(take.frame_end - take.frame_start + 1),
                     "keyed_bones": keyed, "retarget_s": min(retarget_times), "retarget_and_keying_s": min(keying_times)})
    print(RESULT_PREFIX + json.dumps({"bpy": bpy.app.version_string, "rows": rows}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motion", help="MotionResult .npz (default: generate 6 s with the shipped model)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], json.loads(args.worker[1]), int(args.worker[2]))
        return 0
    motion = args.motion
    if motion is None:
        motion = str(Path(tempfile.mkdtemp()) / "take.npz")
        subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate",
                        "a person walks forward and then waves with the right hand", "--seconds", "6", "--seed", "3",
                        "-o", motion, "--quiet"], check=True, cwd=REPO_ROOT,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"})
    done = subprocess.run([sys.executable, __file__, "--worker", motion, json.dumps(args.minutes), str(args.repeats)],
                          capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return 1
    data = json.loads(lines[-1][len(RESULT_PREFIX):])
    command = "python benchmarks/bench_retarget.py " + " ".join(sys.argv[1:])
    text = [f"# Retargeting + keying onto the Rigify generated rig (bpy {data['bpy']})", "",
            f"Command: `{command.strip()}`  ", f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, shared with "
            "other jobs while measured (best of the repeats).", "",
            "| minutes | scene frames (30 fps) | keyed bones | retarget only (s) | retarget + keying (s) |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for row in data["rows"]:
        text.append(f"| {row['minutes']:g} | {row['scene_frames']} | {row['keyed_bones']} | {row['retarget_s']:.2f} "
                    f"| {row['retarget_and_keying_s']:.2f} |")
    out = REPO_ROOT / "benchmarks" / "results" / "retarget_rigify.md"
    out.write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
