# SPDX-License-Identifier: GPL-3.0-or-later
"""How the work of checking and meeting constraints grows with their number: linearly, not with every pair.

    python benchmarks/bench_constraint_checks.py [--counts 1000 2000 4000 8000 10000] [--repeats 3]
        [--baseline DIR [--baseline-counts 250 500 1000]] [--out benchmarks/results/constraint_checks.md]

For each count n and each kind of input:

* ``one joint, one frame``: n agreeing targets on the right wrist, all at frame 10 (within 3 mm of each other), on
  a 30-second timeline: the issue's input (checking was quadratic: 1,000 took 7.3 s, 2,000 29 s);
* ``one joint, n frames``: n targets on the right wrist at n different frames of an n-frame timeline, each within
  3 mm of where the motion's wrist is plus 5 cm;
* ``poses``: n key poses given as joint positions at n different frames of an n-frame timeline (the motion's own
  poses, so they agree with nothing else).

it times (best of ``--repeats``, CPU time of the process, NumPy on one thread) ``check``: ``Timeline.from_dict`` of the timeline with
its constraints (reading every entry, the batched inverse kinematics of the poses, every refusal rule) and
``meet``: ``constraint_solver.meet_constraints`` on a real motion (the HumanML3D fixture clip 012314 repeated to
the timeline's length at 20 fps; foot contacts absent, so no re-planting).  The table gives seconds and
microseconds per constraint: a flat column is linear growth.  MAX_CONSTRAINTS (10,000) is the largest count a
timeline may carry.

``--baseline DIR`` (another checkout, e.g. ``git archive cea47ee | tar -x -C DIR``) times the same ``check`` of the
first kind with that checkout's code, in a child process, at ``--baseline-counts``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads: CPU time
    os.environ.setdefault(_variable, "1")                                        # then counts one thread's work

import numpy as np  # noqa: E402
from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

FIXTURE_CLIP = REPO_ROOT.parent / "shared" / "data" / "humanml3d-fixture" / "new_joints" / "012314.npy"
KINDS = ("one joint, one frame", "one joint, n frames", "poses")
WRIST = 21


def clip_joints(frames: int) -> np.ndarray:
    clip = np.load(os.environ.get("KMM_FIXTURE_CLIP", FIXTURE_CLIP)).astype(np.float64)
    return np.concatenate([clip] * (frames // len(clip) + 1))[:frames]


def timeline_value(kind: str, count: int) -> tuple[dict, int]:
    """The timeline (our JSON format) of `count` constraints of `kind`, and its length in frames."""
    rng = np.random.default_rng(count)
    if kind == KINDS[0]:
        frames = 600
        wrist = clip_joints(frames)[10, WRIST] + 0.05
        constraints = [{"type": "effector", "joint": "right_wrist", "frame": 10,
                        "position": (wrist + rng.uniform(-0.0015, 0.0015, 3)).tolist()} for _ in range(count)]
    else:
        frames = max(count, 100)
        joints = clip_joints(frames)
        if kind == KINDS[1]:
            constraints = [{"type": "effector", "joint": "right_wrist", "frame": frame,
                            "position": (joints[frame, WRIST] + 0.05 + rng.uniform(-0.0015, 0.0015, 3)).tolist()}
                           for frame in range(count)]
        else:
            constraints = [{"type": "pose", "frame": frame, "positions": joints[frame].tolist()}
                           for frame in range(count)]
    return {"fps": 20, "segments": [{"prompt": "a person waves", "frames": frames}], "constraints": constraints}, frames


def best_of(repeats: int, work) -> float:
    """The least CPU time of this process (seconds) over `repeats` runs of `work`: on a shared machine wall clock
    mostly measures the neighbours (NumPy runs on one thread here, see the top of `main`)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def measure_check(kind: str, count: int, repeats: int) -> float:
    from kmm_core.generation.timeline import Timeline

    value, _ = timeline_value(kind, count)
    return best_of(repeats, lambda: Timeline.from_dict(value))


def measure_meet(kind: str, count: int, repeats: int) -> float:
    from kmm_core.generation.constraint_solver import meet_constraints
    from kmm_core.generation.timeline import Timeline
    from kmm_core.motion.motion_result import MotionResult

    value, frames = timeline_value(kind, count)
    constraints = Timeline.from_dict(value).constraint_frames()
    motion = MotionResult.from_joints(clip_joints(frames), 20.0)
    return best_of(repeats, lambda: meet_constraints(motion, constraints))


def baseline_checks(directory: Path, counts: list[int], repeats: int) -> dict[int, float]:
    """`measure_check` of the first kind with the code of another checkout, in a child process."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]); "
            "import kmm_core.generation.timeline; "  # that checkout's code, before this script puts its own first
            "import bench_constraint_checks as b; assert kmm_core.__file__.startswith(sys.argv[1]); "
            "b.measure_check(b.KINDS[0], 10, 1); "  # warm: imports and first calls
            "print(json.dumps({n: b.measure_check(b.KINDS[0], n, int(sys.argv[3])) for n in map(int, sys.argv[4:])}))")
    result = subprocess.run([sys.executable, "-c", code, str(directory), str(Path(__file__).parent), str(repeats),
                             *map(str, counts)], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(directory)}, cwd=directory)
    return {int(n): seconds for n, seconds in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose checks are timed the same way")
    parser.add_argument("--baseline-counts", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "constraint_checks.md")
    args = parser.parse_args()
    if args.baseline_counts != parser.get_default("baseline_counts") and args.baseline is None:
        parser.error("--baseline-counts needs --baseline")
    rows = []
    for kind in KINDS:  # warm: imports and first calls
        measure_check(kind, 10, 1)
        measure_meet(kind, 10, 1)
    for kind in KINDS:
        for count in args.counts:
            check = measure_check(kind, count, args.repeats)
            meet = measure_meet(kind, count, args.repeats)
            rows.append((kind, count, check, meet))
            print(f"{kind}: {count}: check {check:.3f} s, meet {meet:.3f} s", file=sys.stderr, flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT).stdout.strip()
    lines = ["# Checking and meeting constraints: time against their number", "",
             f"`python benchmarks/bench_constraint_checks.py --counts {' '.join(map(str, args.counts))} --repeats "
             f"{args.repeats}{f' --baseline {args.baseline.name}' if args.baseline else ''}` at {commit or 'this checkout'}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs (shared), best of {args.repeats}, CPU seconds of one process (BLAS on one "
             "thread).  check = `Timeline.from_dict` "
             "(reading and every refusal rule); meet = `meet_constraints` on the real fixture clip repeated to the "
             "timeline's length.  Per-constraint columns that stay flat mean linear growth.", "",
             "| input | constraints | check (s) | check per constraint (µs) | meet (s) | meet per constraint (µs) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, count, check, meet in rows:
        lines.append(f"| {kind} | {count:,} | {check:.3f} | {check / count * 1e6:.0f} | {meet:.3f} | "
                     f"{meet / count * 1e6:.0f} |")
    if args.baseline is not None:
        before = baseline_checks(args.baseline, args.baseline_counts, 1)
        lines += ["", f"The same check of `{KINDS[0]}` with the code of `{args.baseline.name}` (one run each): "
                  "quadratic growth, each doubling about four times the time.", "",
                  "| constraints | check (s) | check per constraint (µs) |", "| ---: | ---: | ---: |"]
        lines += [f"| {count:,} | {seconds:.3f} | {seconds / count * 1e6:.0f} |" for count, seconds in before.items()]
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
