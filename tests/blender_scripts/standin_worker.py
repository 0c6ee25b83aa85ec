# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for `python -m kmm_core.worker` until the real (torch) server exists: it speaks the real protocol
(kmm_core.worker.protocol) and answers `generate` with real motion, the HumanML3D fixture clip cut to the
timeline's length, written as real MotionResult files.

Behaviour switches (environment): KMM_STANDIN_MODE = "ok" (default) | "fail_load" | "crash" (exit mid-generation
with an out-of-memory message on stderr) | "slow" (long enough to be cancelled).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_motion  # noqa: E402

from kmm_core import __version__  # noqa: E402  (PYTHONPATH set by the client)
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.motion_result import MotionResult  # noqa: E402
from kmm_core.worker import protocol  # noqa: E402

MODE = os.environ.get("KMM_STANDIN_MODE", "ok")
requests: queue.Queue = queue.Queue()


def send(message: dict) -> None:
    sys.stdout.write(protocol.encode(message) + "\n")
    sys.stdout.flush()


def read_stdin() -> None:
    for line in sys.stdin:
        if line.strip():
            requests.put(protocol.decode(line, protocol.REQUEST_TYPES))
    requests.put({"type": "shutdown"})


def generate(request: dict) -> None:
    timeline = Timeline.from_dict(request["timeline"])
    ranges = timeline.segment_ranges(20.0)
    total = ranges[-1][1]
    steps = 40 if MODE == "slow" else 4
    for step in range(1, steps + 1):
        try:
            pending = requests.get(timeout=0.05 if MODE == "slow" else 0.001)
        except queue.Empty:
            pending = None
        if pending is not None and pending["type"] in ("cancel", "shutdown"):
            send({"type": "error", "id": request["id"], "kind": "cancelled", "message": "cancelled by the user"})
            if pending["type"] == "shutdown":
                sys.exit(0)
            return
        send({"type": "progress", "id": request["id"], "step": step, "total": steps, "message": f"step {step}"})
        if MODE == "crash" and step == 2:
            sys.stderr.write("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
            sys.stderr.flush()
            os._exit(3)
    source = fixture_motion.load_fixture_motion(frames=total)
    if len(source.local_rotations) < total:
        send({"type": "error", "id": request["id"], "kind": "bad_request",
              "message": f"the stand-in holds only {len(source.local_rotations)} frames"})
        return
    paths = []
    for variation in range(request["variations"]):
        motion = MotionResult(fps=20.0, joints=source.joints, root_translation=source.root_translation,
                              local_rotations=source.local_rotations, rest_offsets=source.rest_offsets,
                              segment_frames=ranges, segment_prompts=timeline.prompts,
                              timeline_json=timeline.to_json())
        paths.append(str(motion.save(Path(request["output_dir"]) / f"motion_{variation}.npz")))
    send({"type": "result", "id": request["id"], "paths": paths, "info": {"seed": request["seed"]}})


def main() -> None:
    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        request = requests.get()
        kind = request["type"]
        if kind == "shutdown":
            return
        if kind == "hello":
            send({"type": "ready", "id": request["id"], "protocol_version": protocol.PROTOCOL_VERSION,
                  "package_version": __version__, "device": "cpu", "torch_version": "", "cuda_available": False})
        elif kind == "load":
            if MODE == "fail_load":
                send({"type": "error", "id": request["id"], "kind": "model_missing",
                      "message": f"checkpoint {request['checkpoint']} not found",
                      "advice": "Download a checkpoint or train one (docs/training.md)."})
            else:
                send({"type": "result", "id": request["id"], "paths": [], "info": {}})
        elif kind == "generate":
            generate(request)


if __name__ == "__main__":
    main()
