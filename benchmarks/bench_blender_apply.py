# SPDX-License-Identifier: GPL-3.0-or-later
"""Time writing long motions onto the KMM armature (keyframe_writer.write_take) in real Blender; print Markdown.

The motion is the HumanML3D fixture clip (inverse kinematics -> MotionResult fields), resampled from 20 to 30 fps and
looped, each loop continuing from where the previous one ended on the ground, to 1 and 10 minutes at 30 fps (1,800
and 18,000 frames; 91 F-curves: a quaternion per bone plus the pelvis location).  The scene runs at 30 fps, so the
writer does no resampling.  Every F-curve API the running Blender offers is timed.

Each Blender runs in its own process (bpy can be imported once per process): the Python running this script, plus
every interpreter given with --python or listed in KMM_EXTRA_BLENDER_PYTHONS (os.pathsep-separated), e.g. a venv
with `bpy==4.2.23`.

``--baseline DIR`` also imports another checkout of the add-on (e.g. ``git archive main | tar -x -C DIR``: the code
before a speed change) into the same Blender process, as a second package, and writes each take with both, in
alternating order, so before and after are timed side by side under the same load; the table gains the ratio of
their medians, and the keys both wrote are compared F-curve by F-curve (frames, values, interpolation, handles and
handle types): the number of float32 values that differ and the largest difference are printed.

Run: ``python benchmarks/bench_blender_apply.py [--minutes 1 10] [--repeats 3] [--python /work/venv-bpy42/bin/python]
[--baseline DIR]``
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

def _import_addon(root: Path = REPO_ROOT, package: str = "kmm_motion"):
    """Import the checkout `root` as `package`, as Blender imports the installed extension (relative imports); two
    checkouts under two names live side by side in one process."""
    import importlib

    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_packages_"))
    (packages / package).symlink_to(root, target_is_directory=True)
    sys.path.insert(0, str(packages))
    return importlib.import_module(package)


_KEY_FIELDS = (("co", 2, "float32"), ("handle_left", 2, "float32"), ("handle_right", 2, "float32"),
               ("interpolation", 1, "int32"), ("handle_left_type", 1, "int32"), ("handle_right_type", 1, "int32"))


def _written_keys(action) -> dict:
    """{(data path, index): {field: array}} of every F-curve of `action`, whichever API holds them."""
    import numpy as np

    fcurves = getattr(action, "fcurves", None)
    if fcurves is None or not len(fcurves):
        fcurves = [fcurve for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                   for fcurve in bag.fcurves]
    keys = {}
    for fcurve in fcurves:
        points = fcurve.keyframe_points
        fields = {}
        for field, width, dtype in _KEY_FIELDS:
            fields[field] = np.empty(width * len(points), dtype=dtype)
            points.foreach_get(field, fields[field])
        keys[(fcurve.data_path, fcurve.array_index)] = fields
    return keys


def compare_keys(after, before) -> dict:
    """How the keys of two actions differ: F-curves missing on either side, float32 values that differ, and the
    largest difference (values, handles, frames) and integer fields (interpolation, handle types) that differ."""
    import numpy as np

    new, old = _written_keys(after), _written_keys(before)
    differing_values, largest, differing_flags, compared = 0, 0.0, 0, 0
    for curve in set(new) & set(old):
        for field, _, dtype in _KEY_FIELDS:
            a, b = new[curve][field], old[curve][field]
            if a.shape != b.shape:
                differing_values += max(a.size, b.size)
                continue
            compared += a.size
            if dtype == "float32":
                differing_values += int(np.count_nonzero(a != b))
                largest = max(largest, float(np.abs(a.astype(np.float64) - b).max(initial=0.0)))
            else:
                differing_flags += int(np.count_nonzero(a != b))
    return {"fcurves": len(new), "missing": len(set(new) ^ set(old)), "compared": compared,
            "differing_values": differing_values, "largest_difference": largest, "differing_flags": differing_flags}


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


def worker(minutes: list[float], repeats: int, baseline: Path | None = None) -> dict:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="kmm_bench_user_")
    import bpy

    _import_addon()
    from kmm_motion.kmm_blender.rigs import armature_builder, take_keys
    from kmm_motion.kmm_blender.takes import keyframe_writer
    from kmm_motion.kmm_core.motion import kinematics, skeleton

    writers = {"this checkout": keyframe_writer}
    if baseline is not None:
        _import_addon(baseline, "kmm_motion_baseline")
        from kmm_motion_baseline.kmm_blender.takes import keyframe_writer as baseline_writer

        writers["baseline"] = baseline_writer

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(TARGET_FPS), 1.0
    armature = armature_builder.create_armature(bpy.context)
    probe = bpy.data.actions.new("probe")
    apis = [api for api, present in (("legacy", hasattr(probe, "fcurves") and bpy.app.version < (5, 0, 0)),
                                     ("datablock", hasattr(probe, "fcurve_ensure_for_datablock")),
                                     ("channelbag", keyframe_writer.available_api(probe) == "channelbag")) if present]
    default_api = keyframe_writer.available_api(probe)
    bpy.data.actions.remove(probe)

    rows, comparisons = [], []
    for length in minutes:
        frames = int(round(length * 60 * TARGET_FPS))
        motion = _looped_motion(kinematics, take_keys, skeleton, frames)
        for api in apis:
            seconds = {code: [] for code in writers}
            cpu_seconds = {code: [] for code in writers}
            for repeat in range(repeats):
                order = list(writers) if repeat % 2 == 0 else list(reversed(writers))  # interleaved, alternating
                kept = {}
                for code in order:
                    options = take_keys.WriteOptions(action_name=f"bench {api} {length} {repeat} {code}", api=api)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    take = writers[code].write_take(armature, motion, options, scene)
                    seconds[code].append(time.perf_counter() - started)
                    cpu_seconds[code].append(time.process_time() - cpu_started)
                    assert take.frame_end - take.frame_start + 1 == frames
                    kept[code] = take.action
                if repeat == 0 and len(kept) == 2:
                    comparisons.append({"minutes": length, "api": api,
                                        **compare_keys(kept["this checkout"], kept["baseline"])})
                for action in kept.values():
                    bpy.data.actions.remove(action)  # keep memory flat across repeats
            for code in writers:
                rows.append({"minutes": length, "frames": frames, "api": api, "default": api == default_api,
                             "code": code, "seconds": seconds[code], "cpu_seconds": cpu_seconds[code]})
    return {"blender": ".".join(map(str, bpy.app.version)), "numpy": __import__("numpy").__version__, "rows": rows,
            "comparisons": comparisons}


# ---------------------------------------------------------------------------------------------------------------
# Driver side: one subprocess per Blender, then the table

def _run_worker(python: str, minutes: list[float], repeats: int, baseline: Path | None) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", "--repeats", str(repeats),
               "--minutes", *map(str, minutes)] + (["--baseline", str(baseline)] if baseline else [])
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"{python} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python", action="append", default=[], help="another Python with a bpy wheel")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout of the add-on, timed beside this one in the same processes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / "kmm_blender" / "takes" / "keyframe_writer.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no kmm_blender/takes/keyframe_writer.py there")
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args.minutes, args.repeats, baseline)), flush=True)
        return

    extra = [p for p in os.environ.get("KMM_EXTRA_BLENDER_PYTHONS", "").split(os.pathsep) if p.strip()]
    pythons = list(dict.fromkeys([sys.executable, *args.python, *extra]))
    load = os.getloadavg()[0]
    print(f"Writing 30 fps motion onto the 22-bone KMM armature (91 F-curves), median of {args.repeats} runs"
          + (f", this checkout and the baseline `{args.baseline}` alternating in one process" if baseline else "")
          + f". Load average {load:.1f} on {os.cpu_count()} cores at the start"
          + (" (shared machine: wall times are upper bounds; CPU s = this process's CPU time)." if load > 1 else ".")
          + "\n")
    code_column = " code |" if baseline else ""
    print(f"| Blender | numpy | motion | frames | F-curve API |{code_column} write s (median) | min s | CPU s (median) "
          f"| keys / s |" + (" this / baseline (wall, CPU) |" if baseline else ""))
    print("| --- | --- | --- | ---: | --- |" + (" --- |" if baseline else "") + " ---: | ---: | ---: | ---: |"
          + (" ---: |" if baseline else ""))
    comparisons = []
    for python in pythons:
        report = _run_worker(python, args.minutes, args.repeats, baseline)
        medians = {(row["minutes"], row["api"], row["code"]): (_median(row["seconds"]), _median(row["cpu_seconds"]))
                   for row in report["rows"]}
        for row in report["rows"]:
            median, cpu = medians[(row["minutes"], row["api"], row["code"])]
            keys = row["frames"] * 91
            api = row["api"] + (" (default)" if row["default"] else "")
            line = (f"| {report['blender']} | {report['numpy']} | {row['minutes']:g} min | {row['frames']} | {api} |"
                    + (f" {row['code']} |" if baseline else "")
                    + f" {median:.3f} | {min(row['seconds']):.3f} | {cpu:.3f} | {keys / median:,.0f} |")
            if baseline:
                before = medians[(row["minutes"], row["api"], "baseline")]
                line += (f" {median / before[0]:.2f}, {cpu / before[1]:.2f} |" if row["code"] != "baseline" else " |")
            print(line, flush=True)
        comparisons += [{"blender": report["blender"], **c} for c in report["comparisons"]]
    if comparisons:
        print("\nKeys written by this checkout against the baseline's (first repeat of each row; frames, values and "
              "handles as float32, interpolation and handle types as integers):\n")
        print("| Blender | motion | F-curve API | F-curves | missing | numbers compared | float32 values differing | "
              "largest difference | interpolation / handle types differing |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in comparisons:
            print(f"| {c['blender']} | {c['minutes']:g} min | {c['api']} | {c['fcurves']} | {c['missing']} | "
                  f"{c['compared']:,} | {c['differing_values']} | {c['largest_difference']:.3g} | "
                  f"{c['differing_flags']} |")


if __name__ == "__main__":
    main()
