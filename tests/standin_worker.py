# SPDX-License-Identifier: GPL-3.0-or-later
"""The one stand-in worker of the tests: it speaks the real protocol (kmm_core.worker.protocol) as a real subprocess
without loading a model.  WorkerClient / BackendSession start it with worker_args=[this file].

Behaviour: the environment variable KMM_STANDIN_MODE when set (the Blender tests), else the first prompt of each
`generate` request's timeline (the protocol tests):
  "fail_load" `load` answers model_missing (as does a checkpoint path that does not exist);
  "crash"     after two progress steps write an out-of-memory traceback to stderr and exit with code 3;
  "junk"      print a non-protocol line to stdout, then answer normally;
  "oom"       answer with an out_of_memory error;
  "huge"      answer with a line longer than the protocol allows;
  "slow"      report 100 progress steps 50 ms apart, stopping on cancel or shutdown;
  other       write real MotionResult files: the HumanML3D fixture clip's joints (STANDIN_JOINTS, default
              humanml3d-fixture/new_joints/012314.npy of the shared data) cycled to the timeline's length, variation
              v shifted v metres along x, completed by MotionResult.from_joints.
Environment: STANDIN_PROTOCOL_VERSION (announce another version), STANDIN_IGNORE_SHUTDOWN=1 (act hung: ignore
shutdown and the end of stdin, so the client has to kill it).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kmm_core import __version__
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.common.errors import KMMError
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.variation_likeness import alike_variations
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.motion.motion_result import MotionResult
from kmm_core.worker.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Error,
    Progress,
    ProtocolError,
    Ready,
    Result,
    decode,
    encode,
)
from kmm_core.worker.server import result_names

_output_lock = threading.Lock()
_cancelled: set[str] = set()
_shutdown_requested = threading.Event()
_IGNORE_SHUTDOWN = os.environ.get("STANDIN_IGNORE_SHUTDOWN") == "1"
MODE = os.environ.get("KMM_STANDIN_MODE", "")
SHARED_DATA = Path(os.environ.get("KMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JOINTS = Path(os.environ.get("STANDIN_JOINTS", SHARED_DATA / "humanml3d-fixture" / "new_joints" / "012314.npy"))



def _model_exists(checkpoint: str) -> bool:
    """Names ("default", "open", a bundle name) resolve as in the real worker; paths must exist."""
    try:
        return resolve_model(checkpoint).exists()
    except KMMError:
        return False

def emit_line(line: str) -> None:
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def emit(message: object) -> None:
    emit_line(encode(message))


def read_requests(requests: queue.Queue) -> None:
    """stdin reader: cancel and shutdown act at once (a request may be running); the rest queue up in order."""
    for line in sys.stdin:
        try:
            message = decode(line, REQUEST_TYPES)
        except ProtocolError as exc:
            emit(Error(kind="bad_request", message=str(exc), id=exc.message_id))
            continue
        if message["type"] == "cancel":
            _cancelled.add(message["id"])
        elif message["type"] == "shutdown":
            if not _IGNORE_SHUTDOWN:
                _shutdown_requested.set()
                requests.put(message)
        else:
            requests.put(message)
    if not _IGNORE_SHUTDOWN:
        _shutdown_requested.set()
        requests.put({"type": "shutdown"})


def generate(message: dict) -> None:
    request_id = message["id"]
    timeline = Timeline.from_dict(message["timeline"])
    behaviour = MODE or timeline.prompts[0]
    if behaviour == "oom":
        emit(Error(id=request_id, kind="out_of_memory", message="CUDA out of memory (stand-in)",
                   advice="Generate fewer variations or shorter timelines."))
        return
    if behaviour == "huge":
        emit_line(f'{{"type":"result","id":"{request_id}","paths":["{"x" * (MAX_LINE_BYTES + 10)}"]}}')
        return
    if behaviour == "junk":
        emit_line("this line is not JSON")
    steps = 100 if behaviour == "slow" else (message["steps"] or 4)
    for step in range(1, steps + 1):
        if request_id in _cancelled or _shutdown_requested.is_set():
            emit(Error(id=request_id, kind="cancelled", message=f"cancelled at step {step}"))
            return
        if behaviour == "slow":
            time.sleep(0.05)
        emit(Progress(id=request_id, step=step, total=steps, message="decoding"))
        if behaviour == "crash" and step == min(2, steps):
            sys.stderr.write("Traceback (most recent call last):\n  File \"standin_worker.py\"\n"
                             "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (the stand-in worker "
                             "crashed on purpose)\n")
            sys.stderr.flush()
            os._exit(3)
    sample = np.load(JOINTS)
    frames = timeline.segment_ranges(MODEL_FPS)[-1][1]
    paths, takes = [], []
    names = result_names(Path(message["output_dir"]), message["variations"])  # named like the real worker's
    for variation, name in enumerate(names):
        # Each variation the same motion a metre to the side: alike, as the real worker reports in info.alike.
        joints = sample[np.arange(frames) % len(sample)] + np.array([variation, 0.0, 0.0], dtype=np.float32)
        result = MotionResult.from_joints(joints, MODEL_FPS, timeline=timeline)
        paths.append(str(result.save(name)))
        takes.append(joints)
    emit(Result(id=request_id, paths=paths,
                info={"frames": frames, "alike": [item.to_dict() for item in alike_variations(takes)]}))


def main() -> int:
    requests: queue.Queue = queue.Queue()
    threading.Thread(target=read_requests, args=(requests,), daemon=True).start()
    while True:
        message = requests.get()
        kind = message["type"]
        if kind == "shutdown":
            return 0
        if kind == "hello":
            emit(Ready(id=message["id"], protocol_version=int(os.environ.get("STANDIN_PROTOCOL_VERSION",
                                                                              PROTOCOL_VERSION)),
                       package_version=__version__, device="cpu", torch_version="", cuda_available=False,
                       python_version=sys.version.split()[0]))
        elif kind == "load":
            checkpoint = message["checkpoint"]
            if MODE == "fail_load":
                emit(Error(id=message["id"], kind="model_missing", message=f"checkpoint {checkpoint} not found",
                           advice="Download a checkpoint or train one (training/README.md)."))
            elif checkpoint is not None and not _model_exists(checkpoint):
                emit(Error(id=message["id"], kind="model_missing", message=f"{checkpoint}: file not found",
                           advice="Download the checkpoint or choose another in the add-on preferences."))
            else:
                emit(Result(id=message["id"], info={"checkpoint": checkpoint, "device": "cpu"}))
        elif kind == "generate":
            generate(message)
        else:
            emit(Error(id=message["id"], kind="bad_request", message=f"the stand-in worker cannot {kind}"))


if __name__ == "__main__":
    sys.exit(main())
