# SPDX-License-Identifier: GPL-3.0-or-later
"""How the work of reading motion input grows with its size: linearly, and refusals come before the work.

    python benchmarks/bench_input_scaling.py [--joints 1250 2500 5000 10000] [--depths 125 250 500 1000]
        [--frames 2000 4000 8000 16000] [--repeats 3] [--baseline DIR [--baseline-joints 1250 2500 5000]]
        [--out benchmarks/results/input_scaling.md]

Every input is a real file written into a temporary folder, read by the real code (CPU time of this process, NumPy on
one thread, best of ``--repeats``):

* ``fan``: a root with n - 1 children, each with an End Site (2 frames): ``read_bvh`` (the duplicate-name check once
  searched a list: 10,000 joints took 7.8 s), ``world_positions``, ``bvh_target_skeleton`` (it once listed each
  joint's children by scanning every joint);
* ``chain``: n joints each the child of the one before (the recursive reader ended in RecursionError near 1,000; the
  limit is MAX_BVH_DEPTH = 1,000): the same three steps;
* ``retarget``: ``kmm retarget``'s whole work (``retarget_to_bvh``: read, preset map, target skeleton, retarget, write)
  from a 2-second MotionResult onto the 22-joint KMM skeleton plus n - 22 extra joints under the pelvis (once 22.8 s
  for 10,000 joints before its answer);
* ``frames``: ``read_bvh`` + ``world_positions`` of a 22-joint clip of n frames;
* refusals: a 100,000-joint fan and a 10,000-deep chain (refused at the limit's line), a MotionResult whose joints
  entry is a zlib bomb (a few hundred kB declaring 400 MiB: refused before inflating; peak traced memory given) and
  one holding a 10-million-character prompt.

The tables give seconds and microseconds per unit (joint, frame): a flat column is linear growth.  ``--baseline DIR``
(another checkout, e.g. ``git archive cea47ee | tar -x -C DIR``) times that checkout's ``read_bvh`` of the fans at
``--baseline-joints`` in a child process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads: CPU time
    os.environ.setdefault(_variable, "1")                                        # then counts one thread's work

import numpy as np  # noqa: E402
from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

SIX = "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
THREE = "CHANNELS 3 Zrotation Xrotation Yrotation"


def fan_text(joints: int, frames: int = 2) -> str:
    lines = ["HIERARCHY", "ROOT j0", "{", "OFFSET 0 0 0", SIX]
    for i in range(1, joints):
        lines += [f"JOINT j{i}", "{", f"OFFSET {i % 7} 1 0", THREE, "End Site", "{", "OFFSET 0 1 0", "}", "}"]
    lines += ["}", "MOTION", f"Frames: {frames}", "Frame Time: 0.05"]
    return "\n".join(lines + [" ".join(["0.5"] * (3 + 3 * joints))] * frames) + "\n"


def chain_text(depth: int, frames: int = 2) -> str:
    lines = ["HIERARCHY", "ROOT j0", "{", "OFFSET 0 0 0", SIX]
    for i in range(1, depth):
        lines += [f"JOINT j{i}", "{", "OFFSET 0 10 0", THREE]
    lines += ["End Site", "{", "OFFSET 0 10 0", "}"] + ["}"] * depth
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.05"]
    return "\n".join(lines + [" ".join(["0.5"] * (3 + 3 * depth))] * frames) + "\n"


def best_cpu(work, repeats: int) -> float:
    """Best CPU seconds of `repeats` calls of `work()` (an exception counts as the end of the work: a refusal)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        try:
            work()
        except Exception:  # noqa: BLE001 - a refusal is the measured outcome
            pass
        best = min(best, time.process_time() - started)
    return best


def refusal(work) -> str:
    try:
        work()
    except Exception as error:  # noqa: BLE001
        return str(error).split(": ", 1)[-1][:90]
    return "(accepted)"


def kmm_files(folder: Path) -> tuple[Path, Path, str]:
    """A 2-second MotionResult (40 frames at 20 fps) and the 22-joint BVH of the same motion; the BVH's text."""
    from kmm_core.bvh.writer import write_bvh
    from kmm_core.motion.kinematics import forward_kinematics
    from kmm_core.motion.motion_result import MotionResult
    from kmm_core.motion.skeleton import tpose_offsets
    from tests.motion_test_data import small_turns

    translation, rotations = small_turns(40)
    write_bvh(folder / "kmm.bvh", translation, rotations, tpose_offsets(), fps=20.0)
    MotionResult.from_joints(forward_kinematics(translation, rotations, tpose_offsets()), 20.0).save(folder / "src.npz")
    return folder / "src.npz", folder / "kmm.bvh", (folder / "kmm.bvh").read_text()


def with_extra_joints(kmm_text: str, extra: int) -> str:
    """The KMM skeleton's BVH with `extra` more joints (each with an End Site) under the pelvis."""
    head, motion = kmm_text.split("MOTION\n")
    lines = head.splitlines()
    at = next(i for i, line in enumerate(lines) if "CHANNELS" in line) + 1
    added = []
    for i in range(extra):
        added += [f"JOINT extra{i}", "{", "OFFSET 0.01 0 0", THREE, "End Site", "{", "OFFSET 0 0.01 0", "}", "}"]
    rows = motion.splitlines()
    body = [row + " 0" * (3 * extra) for row in rows[2:]]
    return "\n".join(lines[:at] + added + lines[at:] + ["MOTION", rows[0], rows[1], *body]) + "\n"


def bomb_result(source: Path, path: Path, inflated: int) -> None:
    from kmm_core.motion.motion_result import MotionResult

    arrays = MotionResult.load(source).to_arrays()
    frames = inflated // (22 * 3 * 4)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            if key == "joints":
                with archive.open("joints.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array_header_1_0(entry, {"descr": "<f4", "fortran_order": False,
                                                                 "shape": (frames, 22, 3)})
                    for _ in range(frames * 22 * 3 * 4 // 2**20):
                        entry.write(bytes(2**20))
                continue
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())


BASELINE_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from kmm_core.bvh.reader import read_bvh
for path in sys.argv[2:]:
    best = float("inf")
    for _ in range(int({repeats})):
        started = time.process_time()
        read_bvh(path)
        best = min(best, time.process_time() - started)
    print(path, best, flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joints", type=int, nargs="+", default=[1250, 2500, 5000, 10000])
    parser.add_argument("--depths", type=int, nargs="+", default=[125, 250, 500, 1000])
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose read_bvh is timed on the fans")
    parser.add_argument("--baseline-joints", type=int, nargs="+", default=[1250, 2500, 5000])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "input_scaling.md")
    args = parser.parse_args()

    from kmm_core.bvh.reader import read_bvh
    from kmm_core.common.limits import MAX_BVH_DEPTH, MAX_BVH_JOINTS, MAX_MOTION_RESULT_BYTES
    from kmm_core.motion.motion_result import MotionResult
    from kmm_core.retarget.command import retarget_to_bvh
    from kmm_core.retarget.target_skeleton import bvh_target_skeleton

    folder = Path(tempfile.mkdtemp(prefix="kmm_bench_input_"))
    source, kmm_bvh, kmm_text = kmm_files(folder)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = ["# Input scaling: BVH hierarchies, frames, kmm retarget, MotionResult refusals", "",
             f"`python benchmarks/bench_input_scaling.py --joints {' '.join(map(str, args.joints))} --depths "
             f"{' '.join(map(str, args.depths))} --frames {' '.join(map(str, args.frames))} --repeats {args.repeats}"
             + (f" --baseline DIR --baseline-joints {' '.join(map(str, args.baseline_joints))}" if args.baseline
                else "") + "`", "",
             f"Commit {commit}, Python {platform.python_version()}, NumPy {np.__version__}, {platform.machine()}; CPU "
             f"seconds of one thread, best of {args.repeats}.  Limits: MAX_BVH_JOINTS {MAX_BVH_JOINTS:,}, "
             f"MAX_BVH_DEPTH {MAX_BVH_DEPTH:,}, MAX_MOTION_RESULT_BYTES {MAX_MOTION_RESULT_BYTES // 2**20} MiB.", ""]

    for kind, sizes, make in (("fan", args.joints, fan_text), ("chain", args.depths, chain_text)):
        lines += [f"## {kind}: read, pose, target skeleton", "",
                  "| joints | read_bvh s | µs/joint | world_positions s | µs/joint | bvh_target_skeleton s | µs/joint |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size in sizes:
            path = folder / f"{kind}_{size}.bvh"
            path.write_text(make(size))
            motion = read_bvh(path)
            read = best_cpu(lambda p=path: read_bvh(p), args.repeats)
            pose = best_cpu(motion.world_positions, args.repeats)
            target = best_cpu(lambda m=motion: bvh_target_skeleton(m), args.repeats)
            lines.append(f"| {size:,} | {read:.3f} | {read / size * 1e6:.0f} | {pose:.3f} | {pose / size * 1e6:.0f} "
                         f"| {target:.3f} | {target / size * 1e6:.0f} |")
        lines.append("")

    lines += ["## kmm retarget onto a BVH with many joints (`retarget_to_bvh`, the whole command's work)", "",
              "| target joints | s | µs/joint |", "| ---: | ---: | ---: |"]
    for size in args.joints:
        target = folder / f"target_{size}.bvh"
        target.write_text(with_extra_joints(kmm_text, size - 22))
        seconds = best_cpu(lambda t=target: retarget_to_bvh(str(source), str(t), str(folder / "out.bvh")),
                           args.repeats)
        lines.append(f"| {size:,} | {seconds:.3f} | {seconds / size * 1e6:.0f} |")
    lines.append("")

    lines += ["## frames: a 22-joint clip (`read_bvh` + `world_positions`)", "",
              "| frames | s | µs/frame |", "| ---: | ---: | ---: |"]
    rows = kmm_text.split("MOTION\n")[1].splitlines()[2:]
    for size in args.frames:
        path = folder / f"frames_{size}.bvh"
        path.write_text(kmm_text.split("MOTION\n")[0] + f"MOTION\nFrames: {size}\nFrame Time: 0.05\n"
                        + "\n".join(rows[i % len(rows)] for i in range(size)) + "\n")
        seconds = best_cpu(lambda p=path: read_bvh(p).world_positions(), args.repeats)
        lines.append(f"| {size:,} | {seconds:.3f} | {seconds / size * 1e6:.1f} |")
    lines.append("")

    lines += ["## refusals: the time until the one-line error", "", "| input | s | peak traced MiB | error |",
              "| --- | ---: | ---: | --- |"]
    refused = [("fan of 100,000 joints", folder / "fan_100000.bvh", fan_text(100_000)),
               ("chain 10,000 deep", folder / "chain_10000.bvh", chain_text(10_000))]
    for label, path, text in refused:
        path.write_text(text)
        seconds = best_cpu(lambda p=path: read_bvh(p), args.repeats)
        lines.append(f"| {label} ({path.stat().st_size / 2**20:.1f} MiB) | {seconds:.3f} | | "
                     f"{refusal(lambda p=path: read_bvh(p))} |")
    bomb = folder / "bomb.npz"
    bomb_result(source, bomb, 400 * 2**20)
    prompt = folder / "prompt.npz"
    arrays = MotionResult.load(source).to_arrays()
    np.savez_compressed(prompt, **{**arrays, "segment_frames": np.array([[0, 40]]),
                                   "segment_prompts": np.array(["walk " * 2_000_000]),
                                   "timeline_json": np.array(json.dumps({"fps": 20, "segments": [
                                       {"prompt": "walk " * 2_000_000, "frames": 40}]}))})
    for label, path in ((f"zlib bomb, {bomb.stat().st_size // 1024} kB declaring 400 MiB", bomb),
                        (f"10-million-character prompt ({prompt.stat().st_size // 1024} kB)", prompt)):
        seconds = best_cpu(lambda p=path: MotionResult.load(p), args.repeats)
        tracemalloc.start()
        message = refusal(lambda p=path: MotionResult.load(p))
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        lines.append(f"| {label} | {seconds:.3f} | {peak:.1f} | {message} |")
    lines.append("")

    if args.baseline:
        paths = []
        for size in args.baseline_joints:
            path = folder / f"fan_{size}.bvh"
            if not path.exists():
                path.write_text(fan_text(size))
            paths.append(str(path))
        child = subprocess.run([sys.executable, "-c", BASELINE_CHILD.replace("{repeats}", str(args.repeats)),
                                str(args.baseline.resolve()), *paths], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(args.baseline.resolve())})
        lines += [f"## baseline `{args.baseline}`: its read_bvh of the fans", "",
                  "| joints | baseline s | µs/joint | this checkout s |", "| ---: | ---: | ---: | ---: |"]
        for size, row in zip(args.baseline_joints, child.stdout.strip().splitlines(), strict=True):
            seconds = float(row.split()[-1])
            ours = best_cpu(lambda p=folder / f"fan_{size}.bvh": read_bvh(p), args.repeats)
            lines.append(f"| {size:,} | {seconds:.3f} | {seconds / size * 1e6:.0f} | {ours:.3f} |")
        lines.append("")
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
