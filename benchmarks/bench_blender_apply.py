# SPDX-License-Identifier: GPL-3.0-or-later
"""Time writing long motions onto the KMM armature (keyframe_writer.write_take) in real Blender; print Markdown.

The motion is the HumanML3D fixture clip (inverse kinematics -> MotionResult fields), resampled from 20 to 30 fps and
looped, each loop continuing from where the previous one ended on the ground, to 1 and 10 minutes at 30 fps (1,800
and 18,000 frames; 91 F-curves: a quaternion per bone plus the pelvis location).  The scene runs at 30 fps, so the
writer does no resampling.  Every F-curve API the running Blender offers is timed.

Each Blender runs in its own process (bpy can be imported once per process): the Python running this script, plus
every interpreter given with --python or listed in KMM_EXTRA_BLENDER_PYTHONS (os.pathsep-separated), e.g. a venv
with `bpy==4.2.23`.

Run: ``python benchmarks/bench_blender_apply.py [--minutes 1 10] [--repeats 3] [--python /work/venv-bpy42/bin/python]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("KMM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "humanml3d-fixture"
FIXTURE_CLIP = FIXTURE / "new_joints" / "012314.npy"
FIXTURE_FPS, TARGET_FPS = 20.0, 30.0
RESULT_PREFIX = "KMM_BENCH_RESULT "


# ---------------------------------------------------------------------------------------------------------------
# Worker side: runs inside one Blender (imports bpy)

def _import_addon():
    """Import the repository as package `kmm_motion`, as Blender imports the installed extension (relative imports)."""
    import importlib

    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_packages_"))
    (packages / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(packages))
    return importlib.import_module("kmm_motion")


def _looped_motion(kinematics, take_keys, skeleton, frames: int):
    """A `frames`-long 30 fps motion made of fixture loops; each loop starts where the last one stopped."""
    from types import SimpleNamespace

    import numpy as np

    joints = np.load(FIXTURE_CLIP).astype(np.float64)
    root, local = kinematics.inverse_kinematics(joints, skeleton.tpose_offsets())
    root, local = take_keys.resample_take(root, local, FIXTURE_FPS, TARGET_FPS)
    loops = -(-frames // len(local))
    travel = root[-1] - root[0]
    travel[1] = 0.0  # HumanML3D y is up: keep the height, carry on over the ground
    roots = np.concatenate([root + loop * travel for loop in range(loops)])[:frames]
    locals_ = np.concatenate([local] * loops)[:frames]
    return SimpleNamespace(fps=TARGET_FPS, root_translation=roots, local_rotations=locals_,
                           rest_offsets=skeleton.tpose_offsets(), segment_frames=np.array([[0, frames]]),
                           segment_prompts=["a person walks forward"])


def worker(minutes: list[float], repeats: int) -> dict:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="kmm_bench_user_")
    import bpy

    _import_addon()
    from kmm_motion.kmm_blender.rigs import armature_builder, take_keys
    from kmm_motion.kmm_blender.takes import keyframe_writer
    from kmm_motion.kmm_core.motion import kinematics, skeleton

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(TARGET_FPS), 1.0
    armature = armature_builder.create_armature(bpy.context)
    probe = bpy.data.actions.new("probe")
    apis = [api for api, present in (("legacy", hasattr(probe, "fcurves") and bpy.app.version < (5, 0, 0)),
                                     ("datablock", hasattr(probe, "fcurve_ensure_for_datablock")),
                                     ("channelbag", keyframe_writer.available_api(probe) == "channelbag")) if present]
    default_api = keyframe_writer.available_api(probe)
    bpy.data.actions.remove(probe)

    rows = []
    for length in minutes:
        frames = int(round(length * 60 * TARGET_FPS))
        motion = _looped_motion(kinematics, take_keys, skeleton, frames)
        for api in apis:
            seconds, cpu_seconds = [], []
            for repeat in range(repeats):
                options = take_keys.WriteOptions(action_name=f"bench {api} {length} {repeat}", api=api)
                started, cpu_started = time.perf_counter(), time.process_time()
                take = keyframe_writer.write_take(armature, motion, options, scene)
                seconds.append(time.perf_counter() - started)
                cpu_seconds.append(time.process_time() - cpu_started)
                assert take.frame_end - take.frame_start + 1 == frames
                bpy.data.actions.remove(take.action)  # keep memory flat across repeats
            rows.append({"minutes": length, "frames": frames, "api": api, "default": api == default_api,
                         "seconds": seconds, "cpu_seconds": cpu_seconds})
    return {"blender": ".".join(map(str, bpy.app.version)), "numpy": __import__("numpy").__version__, "rows": rows}


# ---------------------------------------------------------------------------------------------------------------
# Driver side: one subprocess per Blender, then the table

def _run_worker(python: str, minutes: list[float], repeats: int) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", "--repeats", str(repeats),
               "--minutes", *map(str, minutes)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"{python} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python", action="append", default=[], help="another Python with a bpy wheel")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args.minutes, args.repeats)), flush=True)
        return

    extra = [p for p in os.environ.get("KMM_EXTRA_BLENDER_PYTHONS", "").split(os.pathsep) if p.strip()]
    pythons = list(dict.fromkeys([sys.executable, *args.python, *extra]))
    load = os.getloadavg()[0]
    print(f"Writing 30 fps motion onto the 22-bone KMM armature (91 F-curves), median of {args.repeats} runs. "
          f"Load average {load:.1f} on {os.cpu_count()} cores at the start"
          + (" (shared machine: wall times are upper bounds; CPU s = this process's CPU time)." if load > 1 else ".")
          + "\n")
    print("| Blender | numpy | motion | frames | F-curve API | write s (median) | min s | CPU s (median) | keys / s |")
    print("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for python in pythons:
        report = _run_worker(python, args.minutes, args.repeats)
        for row in report["rows"]:
            ordered = sorted(row["seconds"])
            median = ordered[len(ordered) // 2]
            keys = row["frames"] * 91
            api = row["api"] + (" (default)" if row["default"] else "")
            cpu = sorted(row["cpu_seconds"])[len(ordered) // 2]
            print(f"| {report['blender']} | {report['numpy']} | {row['minutes']:g} min | {row['frames']} | {api} | "
                  f"{median:.3f} | {ordered[0]:.3f} | {cpu:.3f} | {keys / median:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
