# SPDX-License-Identifier: GPL-3.0-or-later
"""Cold start: a fresh `kmm generate` of a 4-second prompt, and a fresh worker's first Generate, end to end.

- ``kmm generate``: ``python -m kmm_core.cli generate "a person raises the left hand" --seconds 4 -o OUT.bvh`` in a
  new process per run (imports, bundle and MiniLM load, generation, BVH write); wall time and the child's CPU time.
- load: a fresh process that imports torch and runs ``ModelBundle.load`` of the shipped bundle, nothing else (the
  start-up both of them pay); wall and CPU time.
- worker: a real ``python -m kmm_core.worker`` started per run (what the Blender add-on does on its first Generate):
  time from spawning it to the first Generate result of a 4-second prompt (handshake + Load + Generate).

The compiled scan's library is built once per machine before the runs (its build is not part of a cold start after
the first one ever; the build time is printed). Medians over ``--runs``; the load average is printed because on a
shared machine wall times are upper bounds and CPU times the better estimate of an idle machine's wall time.

``--baseline DIR`` adds, interleaved with the others, the same ``kmm generate`` run from another checkout of the
code (e.g. ``git archive COMMIT | tar -x -C DIR``: the code before a start-up change), so before and after are
measured side by side under the same load, with the ratio of their CPU times.

Run: ``python benchmarks/bench_cold_start.py [--runs 5] [--threads N] [--baseline DIR]
[--out benchmarks/results/cold_start.md]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
PROMPT = "a person raises the left hand"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_cli(folder: Path, root: Path = REPO_ROOT) -> tuple[float, float]:
    """One fresh `kmm generate` with the code (and shipped model) of the checkout `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", PROMPT, "--seconds", "4", "--seed", "0",
                    "-o", str(folder / "raise.bvh")], check=True, cwd=root, env=env, capture_output=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def cold_load(root: Path = REPO_ROOT) -> tuple[float, float]:
    """A fresh process that imports torch and loads the shipped bundle (``ModelBundle.load``), nothing else: the
    start-up part of both the CLI and the worker's Load."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "from kmm_core.bundle.model_bundle import ModelBundle; ModelBundle.load(device='cpu')"
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env, capture_output=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def cold_worker(folder: Path) -> dict[str, float]:
    from kmm_core.bundle.model_bundle import default_bundle_path
    from kmm_core.worker.client import WorkerClient
    from kmm_core.worker.protocol import Generate, Load

    timeline = {"fps": 30, "segments": [{"prompt": PROMPT, "seconds": 4.0}]}
    started = time.perf_counter()
    client = WorkerClient(sys.executable, worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    try:
        client.handshake(timeout=300)
        handshake = time.perf_counter()
        answer = client.wait_for(client.send(Load(checkpoint=str(default_bundle_path()), device="cpu")), timeout=300)
        assert answer["type"] == "result", answer
        loaded = time.perf_counter()
        answer = client.wait_for(client.send(Generate(timeline=timeline, output_dir=str(folder), seed=0)),
                                 timeout=300)
        assert answer["type"] == "result", answer
        done = time.perf_counter()
    finally:
        client.shutdown(30)
    return {"total": done - started, "handshake": handshake - started, "load": loaded - handshake,
            "generate": done - loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the CLI and worker processes (default: torch's choice)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. the code before a change) whose `kmm generate` runs alongside")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cold_start.md")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every process started below
    from kmm_core.model import compiled_selective_scan

    compiled_selective_scan.kernel.cache_clear()
    built = time.perf_counter()
    compiled_selective_scan.kernel()
    print(f"compiled scan: {compiled_selective_scan.kernel_status()} ({time.perf_counter() - built:.1f} s; "
          "a build happens once per machine)")
    load = os.getloadavg()
    cli_runs, worker_runs, baseline_runs, loads, baseline_loads = [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.runs):  # interleaved, so all see the same load
            if args.baseline is not None:
                baseline_runs.append(cold_cli(Path(folder), args.baseline.resolve()))
                baseline_loads.append(cold_load(args.baseline.resolve()))
            cli_runs.append(cold_cli(Path(folder)))
            loads.append(cold_load())
            worker_runs.append(cold_worker(Path(folder)))
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default thread count"
    lines = [f"{args.runs} runs each, interleaved; {threads} (the CLI's and the worker's).",
             f"Load average at the start: {load[0]:.1f} (1 min) on {os.cpu_count()} cores"
             + (" — shared machine: wall times are upper bounds." if load[0] > 1 else "."), "",
             "| what | median wall s | min wall s | median CPU s |", "| --- | ---: | ---: | ---: |",
             f"| `kmm generate` of a 4-s prompt, fresh process | {statistics.median(w for w, _ in cli_runs):.2f} "
             f"| {min(w for w, _ in cli_runs):.2f} | {statistics.median(c for _, c in cli_runs):.2f} |",
             f"| worker: spawn to first Generate result (4-s prompt) | "
             f"{statistics.median(r['total'] for r in worker_runs):.2f} | {min(r['total'] for r in worker_runs):.2f} "
             "| – |"]
    for part in ("handshake", "load", "generate"):
        lines.append(f"| worker: {part} | {statistics.median(r[part] for r in worker_runs):.2f} "
                     f"| {min(r[part] for r in worker_runs):.2f} | – |")

    def row(label: str, runs: list[tuple[float, float]]) -> str:
        return (f"| {label} | {statistics.median(w for w, _ in runs):.2f} | {min(w for w, _ in runs):.2f} "
                f"| {statistics.median(c for _, c in runs):.2f} |")

    lines.insert(lines.index("| --- | ---: | ---: | ---: |") + 2,
                 row("import torch + `ModelBundle.load` of the shipped bundle, fresh process", loads))
    if baseline_runs:
        header = lines.index("| --- | ---: | ---: | ---: |")
        lines[header + 1:header + 1] = [row(f"`kmm generate` of a 4-s prompt, fresh process, baseline "
                                            f"`{args.baseline}`", baseline_runs),
                                        row(f"import torch + `ModelBundle.load`, fresh process, baseline "
                                            f"`{args.baseline}`", baseline_loads)]
        for label, after, before in (("`kmm generate`", cli_runs, baseline_runs),
                                     ("import + `ModelBundle.load`", loads, baseline_loads)):
            after_cpu, before_cpu = (statistics.median(c for _, c in runs) for runs in (after, before))
            lines += ["", f"{label} CPU time, this checkout / baseline (medians): {after_cpu:.2f} / "
                          f"{before_cpu:.2f} s = {after_cpu / before_cpu:.2f}x."]
    load = os.getloadavg()
    lines += ["", f"Load average at the end: {load[0]:.1f} (1 min)."]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.write_text("# Cold start\n\n" f"Command: `{command}` (see the script's docstring).\n\n"
                        + "\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
