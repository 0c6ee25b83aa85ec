# SPDX-License-Identifier: GPL-3.0-or-later
"""How quickly a real worker answers `hello` and `cancel` while it works on a request with many key poses.

    python benchmarks/bench_worker_responsiveness.py [--counts 500 1000 2000] [--baseline DIR]
        [--out benchmarks/results/worker_responsiveness.md]

For each count n, a fresh worker (`python -m kmm_core.worker --device cpu`) answers a first `hello` (torch imported)
and loads the shipped model; then one line carries a `generate` of a 100 s timeline with n key poses (the canonical
T-pose at frames 0..n-1, 200 decoding steps), and right after it a `hello` is sent: the table gives the seconds until
its `ready` came back.  Then a `cancel` of the generate is sent: the seconds until the generate's `cancelled` error,
and what it was doing (its message).  Wall-clock seconds on a shared machine: what a user waits.

``--baseline DIR`` (another checkout, e.g. ``git archive cea47ee | tar -x -C DIR``) runs the same with that
checkout's worker (there the whole request, constraints included, was checked on the thread that reads stdin, and
`hello` waited behind the running request).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from tests.motion_test_data import standing_pose  # noqa: E402

WAIT_SECONDS = 600.0
"""For the first hello and the model's load."""
ANSWER_CAP_SECONDS = 90.0
"""How long the hello and the cancel are waited for (the table says "> 90" when no answer came in time)."""


class Worker:
    def __init__(self, code_root: Path):
        env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "kmm_core.worker", "--device", "cpu"], cwd=code_root,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env=env)
        self.events: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.answers: dict[str, tuple[float, dict]] = {}  # terminal events by id, kept until asked for
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.put((time.monotonic(), json.loads(line)))

    def send(self, message: dict) -> float:
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.process.stdin.flush()
        return time.monotonic()

    def wait(self, request_id: str, limit: float = WAIT_SECONDS) -> tuple[float, dict] | None:
        """(when, the terminal event) of `request_id`, or None when none came within `limit` seconds."""
        deadline = time.monotonic() + limit
        while request_id not in self.answers and time.monotonic() < deadline:
            try:
                when, event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event["type"] in ("ready", "result", "error") and event.get("id") is not None:
                self.answers.setdefault(event["id"], (when, event))
        return self.answers.get(request_id)

    def close(self) -> None:
        try:
            self.send({"type": "shutdown"})
            self.process.stdin.close()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def measure(code_root: Path, count: int, out: Path) -> dict:
    worker = Worker(code_root)
    try:
        worker.send({"type": "hello", "id": "warm", "client_version": "bench"})
        assert worker.wait("warm") is not None, "the worker did not start"
        worker.send({"type": "load", "id": "load", "device": "cpu"})
        loaded = worker.wait("load")
        assert loaded is not None and loaded[1]["type"] == "result", loaded
        pose = standing_pose()
        timeline = {"fps": 20, "segments": [{"prompt": "a person stands still", "seconds": 100.0}],
                    "constraints": [{"type": "pose", "frame": frame, "positions": pose} for frame in range(count)]}
        line_bytes = len(json.dumps(timeline, separators=(",", ":")))
        worker.send({"type": "generate", "id": "heavy", "timeline": timeline, "output_dir": str(out), "seed": 0,
                     "steps": 200})
        hello_sent = worker.send({"type": "hello", "id": "during", "client_version": "bench"})
        hello = worker.wait("during", ANSWER_CAP_SECONDS)
        ended_before_cancel = "heavy" in worker.answers
        cancel_sent = worker.send({"type": "cancel", "id": "heavy"})
        answer = worker.wait("heavy", ANSWER_CAP_SECONDS)
        late = f"> {ANSWER_CAP_SECONDS:g}"
        return {"count": count, "bytes": line_bytes,
                "hello": late if hello is None else f"{hello[0] - hello_sent:.2f}",
                "cancel": late if answer is None else "(ended before)" if ended_before_cancel else
                f"{answer[0] - cancel_sent:.2f}",
                "answer": "none yet" if answer is None else
                f"{answer[1].get('kind', answer[1]['type'])}: {answer[1].get('message', '')}"}
    finally:
        worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--baseline", type=Path, help="another checkout's folder, timed the same way")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "worker_responsiveness.md")
    args = parser.parse_args(argv)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"kmm-bench-worker-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip() or "?"
    lines = ["# The worker's answers to hello and cancel while it works on many key poses", "",
             f"`python benchmarks/bench_worker_responsiveness.py {' '.join(argv or sys.argv[1:])}` at {commit}, "
             f"{platform.machine()}, {os.cpu_count()} CPUs (shared), the shipped model on the CPU, wall-clock "
             "seconds (one run each).  hello = from sending a `hello` right after the request to its `ready`; "
             "cancel = from sending `cancel` (after that `ready`, or after the hello's wait ran out) to the "
             f"request's answer; each waited for at most {ANSWER_CAP_SECONDS:g} s.", ""]
    rows = [("this checkout", REPO_ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    lines += ["| code | key poses | request line (bytes) | hello (s) | cancel (s) | the request's answer |",
              "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, root in rows:
        for count in args.counts:
            result = measure(root, count, scratch)
            lines.append(f"| {name} | {count:,} | {result['bytes']:,} | {result['hello']} | {result['cancel']} "
                         f"| {result['answer'][:80]} |")
            print(lines[-1], flush=True)
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
