# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker process (`python -m kmm_core.worker`): serves the JSON-lines protocol of docs/worker_protocol.md.

Four threads:

* the **reader** reads stdin all the time, so `cancel` and `shutdown` act on a running request: it decodes every
  line (a malformed or oversized line gets a `bad_request` error and the worker keeps serving; an unexpected
  exception while handling a line becomes an `internal` error for that line's id - the reader never dies), queues
  the requests, records cancellations, and treats the end of stdin like `shutdown`.  It does only quick checks
  (`decode(..., deep=False)`): a timeline's full check (thousands of constraints can take seconds) runs in the job
  thread, so the reader never stops listening;
* the **hello** thread answers `hello` at once, even while a long request runs on the main thread;
* the **watchdog** notices a dead parent (our parent pid changed, or the pid given by `--parent-pid` is gone) and
  shuts down, exiting hard if the running request does not stop in time;
* the **main** thread handles the other requests one at a time, in order.  The model bundle stays loaded between
  requests.

Protocol lines go to the real stdout only; `sys.stdout` and file descriptor 1 are pointed at stderr so a library
that prints cannot corrupt the stream.  Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..common.atomic_write import OutputPathError, OutputWriteError, check_output_folder
from ..common.devices import DeviceUnavailableError, check_device_available, resolve_device
from ..common.errors import EnvironmentSettingError, KMMError
from ..common.progress import GenerationCancelled
from .protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    TERMINAL_EVENTS,
    ProtocolError,
    clip_text,
    decode,
    encode,
    head_id,
    readable_id,
    summarise_warnings,
)

LOG = logging.getLogger("kmm.worker")
PARENT_CHECK_SECONDS = 1.0
EXIT_GRACE_SECONDS = 10.0
"""After the parent died, how long the running request may take to notice the cancellation before a hard exit."""
DEVICE_ADVICE = ("Choose the CPU or Auto device (Auto uses CUDA only where it works), or install the backend's CUDA "
                 "build (Install Backend's CUDA choice) on a machine with an NVIDIA GPU.")
OOM_ADVICE = "Generate fewer variations at once, shorten the timeline, or choose the CPU device."
MODEL_ADVICE = ("Train a model with `kmm-train all --config training/configs/small.toml --out runs/small` and point "
                "the checkpoint setting to runs/small/bundle, or install a package that ships kmm-small.")
DAMAGED_MODEL_ADVICE = ("The model files are damaged or do not belong together: reinstall the package that shipped "
                        "the model, or rebuild the bundle with `kmm-train bundle`; `kmm doctor` checks them.")
BACKEND_ADVICE = ("The worker's Python environment lacks a package: run `kmm doctor` with that Python and install "
                  "what it reports missing (the add-on preferences show the install command).")
WRITE_ADVICE = "Free some disk space or choose another output folder; files written earlier are unchanged."
BUG_ADVICE = "This is a bug; please report it with the trace."
ENVIRONMENT_ADVICE = ("An environment variable of the backend's process is set wrong, not the request: unset it or "
                      "give it one of the values named (for Blender: in the environment Blender was started from), "
                      "then restart the backend.  `kmm doctor` checks the same environment.")
TIMELINE_CHECK_POLL_SECONDS = 0.05
"""How often the job thread looks for a cancel while a timeline is being checked."""
HELLO_JOIN_SECONDS = 30.0
"""At exit, how long the main thread waits for the hello thread (importing torch for a first hello) to finish."""


class RequestFailed(Exception):
    """Ends a request with an `error` event of `kind`."""

    def __init__(self, kind: str, message: str, advice: str = "", trace: str = ""):
        super().__init__(message)
        self.kind, self.message, self.advice, self.trace = kind, message, advice, trace


class Worker:
    """The state shared by the threads: output stream, queued requests, cancellations, loaded model."""

    def __init__(self, output: TextIO, device: str = "auto", parent_pid: int | None = None):
        self.output = output
        self.default_device = device
        self.parent_pid = parent_pid
        self.initial_ppid = os.getppid()
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.hellos: queue.Queue[dict[str, Any]] = queue.Queue()  # answered by the hello thread, never queued behind
        self.cancelled: set[str] = set()
        self.pending: dict[str, int] = {}  # ids queued and not yet finished -> how many (a cancel names one of them)
        self.stopping = threading.Event()
        self.bundle = None
        self.bundle_key: tuple[str, str] | None = None
        self._output_lock = threading.Lock()
        self._state_lock = threading.Lock()

    # ---- output --------------------------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        try:
            try:
                line = encode(event)
            except ProtocolError as too_long:
                line = _shortest_fitting(event, too_long)
        except Exception as exc:  # noqa: BLE001 - an event that cannot be encoded must not kill the caller
            LOG.error("cannot encode a %s event: %s", event.get("type"), exc)
            if event.get("type") not in TERMINAL_EVENTS:
                return  # a progress or log line can be dropped; a request's answer cannot
            line = encode({"type": "error", "id": readable_id(event.get("id")), "kind": "internal",
                           "message": clip_text(f"the worker could not encode its answer: {exc}"),
                           "advice": BUG_ADVICE, "trace": ""})
        with self._output_lock:
            try:
                self.output.write(line + "\n")
                self.output.flush()
            except (BrokenPipeError, ValueError, OSError):  # the client is gone; the watchdog / EOF will stop us
                self.stopping.set()

    def error(self, request_id: str | None, kind: str, message: str, advice: str = "", trace: str = "") -> None:
        self.emit(self.error_event(request_id, kind, message, advice, trace))

    @staticmethod
    def error_event(request_id: str | None, kind: str, message: str, advice: str = "", trace: str = "") -> dict:
        return {"type": "error", "id": request_id, "kind": kind, "message": clip_text(message or kind),
                "advice": clip_text(advice), "trace": clip_text(trace)}

    def log(self, level: str, message: str, request_id: str | None = None) -> None:
        getattr(LOG, level)(message)
        self.emit({"type": "log", "id": request_id, "level": level, "message": clip_text(message)})

    # ---- cancellation --------------------------------------------------------------------------------------------
    def is_cancelled(self, request_id: str) -> bool:
        with self._state_lock:
            return self.stopping.is_set() or request_id in self.cancelled

    def stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            LOG.info("stopping: %s", reason)
        self.stopping.set()

    # ---- reader thread -------------------------------------------------------------------------------------------
    def read_requests(self, stream) -> None:
        try:
            while not self.stopping.is_set():
                line = stream.readline(MAX_LINE_BYTES + 2)
                if not line:
                    break
                try:
                    if len(line) == MAX_LINE_BYTES + 2 and not line.endswith(b"\n"):
                        self._skip_rest(stream, line)
                    elif line.strip():
                        self._accept(line)
                except Exception as exc:  # noqa: BLE001 - one bad line must never make the worker deaf
                    self._reader_failed(line, exc)
        except (OSError, ValueError) as exc:
            LOG.warning("stdin failed: %s", exc)
        self.stop("end of stdin")

    def _reader_failed(self, line: bytes, exc: Exception) -> None:
        """An unexpected exception while handling one line: answer that line's request (when its id can be read)
        with an `internal` error and keep reading."""
        LOG.error("handling a request line failed: %s: %s", type(exc).__name__, exc)
        self.error(_line_id(line), "internal", f"{type(exc).__name__}: {exc}", BUG_ADVICE,
                   "".join(traceback.format_exception(exc)))

    def _skip_rest(self, stream, head: bytes) -> None:
        tail = head
        while not tail.endswith(b"\n"):
            tail = stream.readline(MAX_LINE_BYTES)
            if not tail:
                break
        self.error(head_id(head), "bad_request", f"the line is longer than the limit of {MAX_LINE_BYTES} bytes",
                   advice="Send motion and other large data as files, not inline.")

    def _accept(self, line: bytes) -> None:
        try:
            message = decode(line, REQUEST_TYPES, deep=False)  # the timeline's full check: in the job thread
        except ProtocolError as exc:
            self.error(exc.message_id, "bad_request", str(exc), advice="Fix the request; see docs/worker_protocol.md.")
            return
        kind = message["type"]
        if kind == "cancel":
            with self._state_lock:
                # Only a queued or running request can be cancelled: a cancel of a finished or unknown id is not
                # remembered, or a later request reusing that id would be cancelled before it started.
                if message["id"] in self.pending:
                    self.cancelled.add(message["id"])
        elif kind == "shutdown":
            self.stop("shutdown requested")
        else:
            with self._state_lock:
                self.pending[message["id"]] = self.pending.get(message["id"], 0) + 1
            (self.hellos if kind == "hello" else self.requests).put(message)

    # ---- watchdog thread -----------------------------------------------------------------------------------------
    def parent_alive(self) -> bool:
        if os.getppid() != self.initial_ppid:
            return False
        if self.parent_pid is not None:
            try:
                os.kill(self.parent_pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    def watch_parent(self) -> None:
        while not self.stopping.wait(PARENT_CHECK_SECONDS):
            if not self.parent_alive():
                self.stop("the parent process died")
                break
        if self.parent_alive():
            return
        # The main thread stops at the next decoding step; if it is stuck elsewhere, do not outlive the parent.
        time.sleep(EXIT_GRACE_SECONDS)
        LOG.error("the running request did not stop within %g s after the parent died; exiting", EXIT_GRACE_SECONDS)
        os._exit(0)

    # ---- main loop -----------------------------------------------------------------------------------------------
    def serve(self) -> int:
        """Handle the queued requests on this (the main) thread and hellos on the hello thread until stopped;
        returns the exit code."""
        hello_thread = threading.Thread(target=self.serve_queue, args=(self.hellos,), name="kmm-hello", daemon=True)
        hello_thread.start()
        self.serve_queue(self.requests)
        hello_thread.join(HELLO_JOIN_SECONDS)
        LOG.info("worker exits")
        return 0

    def serve_queue(self, requests: queue.Queue[dict[str, Any]]) -> None:
        """Handle the requests of one queue in order until the worker stops; unfinished ones end with
        "cancelled"."""
        while True:
            try:
                request = requests.get(timeout=0.2)
            except queue.Empty:
                if self.stopping.is_set():
                    break
                continue
            if self.stopping.is_set():
                self._finished(request["id"])
                self.error(request["id"], "cancelled", "the worker was shut down before this request started")
                continue
            self.handle(request)
        while True:
            try:
                request = requests.get_nowait()
            except queue.Empty:
                break
            self._finished(request["id"])
            self.error(request["id"], "cancelled", "the worker was shut down before this request started")

    def handle(self, request: dict[str, Any]) -> None:
        request_id = request["id"]
        started = time.monotonic()
        try:
            if self.is_cancelled(request_id):
                raise RequestFailed("cancelled", "cancelled before it started")
            answer = HANDLERS[request["type"]](self, request)
            if request["type"] != "hello":
                answer.setdefault("info", {})["seconds"] = round(time.monotonic() - started, 3)
            event = {"id": request_id, **answer}
        except RequestFailed as failure:
            event = self.error_event(request_id, failure.kind, failure.message, failure.advice, failure.trace)
        except Exception as exc:  # noqa: BLE001 - every failure must answer the request
            try:
                kind, message, advice = classify(exc)
            except Exception:  # noqa: BLE001 - classifying must not lose the answer either
                kind, message, advice = "internal", f"{type(exc).__name__}: {exc}", BUG_ADVICE
            # a trace only where it helps a bug report: not for a cancel, a bad value or the environment
            event = self.error_event(request_id, kind, message, advice,
                                     traceback.format_exc() if kind == "internal" else "")
        finally:
            # Forgotten before the answer goes out: a client that has seen the answer and then cancels this id, or
            # sends a new request of this id, must not find the finished one still pending.
            self._finished(request_id)
        self.emit(event)

    def _finished(self, request_id: str) -> None:
        """`request_id` is no longer queued or running: forget it (and a cancellation of it, unless another
        request of that id is still queued)."""
        with self._state_lock:
            left = self.pending.get(request_id, 1) - 1
            if left > 0:
                self.pending[request_id] = left
            else:
                self.pending.pop(request_id, None)
                self.cancelled.discard(request_id)


def _line_id(line: bytes) -> str | None:
    """The id of a request line, when it can be read at all (for an error about that line)."""
    try:
        data = json.loads(line.decode("utf-8", "replace"))
        return readable_id(data.get("id")) if isinstance(data, dict) else None
    except (ValueError, RecursionError):
        return head_id(line)


def classify(exc: BaseException) -> tuple[str, str, str]:
    """(error kind, message, advice) for an exception raised while handling a request."""
    from ..bundle.model_bundle import ModelMissingError
    from ..bundle.weight_checksums import WeightFileError
    from ..common.errors import BundleError

    message = str(exc) or type(exc).__name__
    try:
        import torch
        oom_types: tuple[type, ...] = (torch.cuda.OutOfMemoryError, MemoryError)
    except ImportError:  # pragma: no cover - the worker cannot run without torch anyway
        oom_types = (MemoryError,)
    if isinstance(exc, oom_types) or "out of memory" in message.lower():
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the memory of the failed request back before the next one
        except ImportError:  # pragma: no cover
            pass
        return "out_of_memory", message, OOM_ADVICE
    if isinstance(exc, WeightFileError):
        return "model_missing", message, DAMAGED_MODEL_ADVICE
    if isinstance(exc, ModelMissingError | BundleError):
        return "model_missing", message, MODEL_ADVICE
    if isinstance(exc, OutputWriteError):
        return "write_failed", message, WRITE_ADVICE
    from ..model.text_encoder import TextEncoderUnavailable

    if isinstance(exc, ImportError | TextEncoderUnavailable):
        return "backend", message, BACKEND_ADVICE
    if isinstance(exc, GenerationCancelled):
        return "cancelled", message, ""
    if isinstance(exc, EnvironmentSettingError):
        return "backend", message, ENVIRONMENT_ADVICE
    if isinstance(exc, KMMError):
        return "bad_request", message, "Fix the request's values and try again."
    return "internal", f"{type(exc).__name__}: {message}", BUG_ADVICE


def _protocol_output() -> TextIO:
    """A private copy of stdout for protocol lines; fd 1 and sys.stdout then point at stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kmm_core.worker",
                                     description="KMM worker: JSON lines on stdin/stdout (docs/worker_protocol.md).")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process dies (default: when our parent changes)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        parser.error(f"--device: expected auto, cpu, cuda or cuda:N, got {args.device!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s kmm-worker %(levelname)s %(message)s")
    output = _protocol_output()
    worker = Worker(output, device=args.device, parent_pid=args.parent_pid)
    LOG.info("worker %s started (pid %d, Python %s)", __version__, os.getpid(), platform.python_version())
    threading.Thread(target=worker.read_requests, args=(sys.stdin.buffer,), name="kmm-reader", daemon=True).start()
    threading.Thread(target=worker.watch_parent, name="kmm-watchdog", daemon=True).start()
    code = worker.serve()
    try:
        output.flush()
    except (OSError, ValueError):  # the client closed our stdout: nobody is left to read what was not sent
        pass
    return code


def ready_event(worker: Worker) -> dict[str, Any]:
    """The answer to hello (imports torch)."""
    import torch

    return {"type": "ready", "protocol_version": PROTOCOL_VERSION, "package_version": __version__,
            "device": resolve_device(worker.default_device), "torch_version": torch.__version__.split("+")[0],
            "cuda_available": bool(torch.cuda.is_available()), "python_version": platform.python_version()}


def output_folder(path: str) -> Path:
    """The request's output folder, created, and proven writable before any model work."""
    try:
        return check_output_folder(Path(path))
    except (OutputWriteError, OutputPathError) as exc:
        raise RequestFailed("bad_request", f"output_dir: {exc}", "Choose a folder you can write to.") from None


# ---- request handlers: each returns the terminal event (without id) or raises ------------------------------------------
def handle_hello(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
    if request["protocol_version"] != PROTOCOL_VERSION:
        worker.log("warning", f"the client speaks protocol {request['protocol_version']}, this worker "
                              f"{PROTOCOL_VERSION}", request["id"])
    return ready_event(worker)


def ensure_bundle(worker: Worker, checkpoint: str | None, device: str | None, request_id: str):
    """The loaded bundle, loading it first when none is loaded or another checkpoint/device is asked for."""
    from ..bundle.model_bundle import ModelBundle, read_manifest
    from ..bundle.model_choice import resolve_model

    path = str(resolve_model(checkpoint).resolve())  # "default", "open", a bundle name or a folder
    wanted_device = resolve_device(device or worker.default_device)
    try:
        check_device_available(wanted_device)
    except DeviceUnavailableError as exc:
        raise RequestFailed("bad_request", str(exc), DEVICE_ADVICE) from None
    key = (path, wanted_device)
    if worker.bundle is not None and (checkpoint is None and device is None or worker.bundle_key == key):
        return worker.bundle
    worker.emit({"type": "progress", "id": request_id, "step": 0, "total": 1, "message": "loading the model"})
    started = time.monotonic()
    read_manifest(path)  # a missing bundle fails here, keeping the loaded model
    worker.bundle = None  # free the old model before loading another
    try:
        worker.bundle = ModelBundle.load(path, device=wanted_device)
    except KMMError as exc:  # every checkpoint problem is one kind, whichever file it is in
        kind, message, advice = classify(exc)
        if kind == "bad_request":  # weights that do not fit their model, non-finite values, ...
            raise RequestFailed("model_missing", message, DAMAGED_MODEL_ADVICE) from None
        raise
    worker.bundle_key = key
    parameters = sum(p.numel() for p in worker.bundle.generator.parameters())
    worker.log("info", f"loaded {Path(path).name} ({parameters / 1e6:.1f} M generator parameters) on "
                       f"{wanted_device} in {time.monotonic() - started:.1f} s", request_id)
    return worker.bundle


def handle_load(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
    from ..bundle.model_choice import model_summary

    bundle = ensure_bundle(worker, request["checkpoint"], request["device"], request["id"])
    return {"type": "result", "paths": [], "info": {"checkpoint": str(bundle.path), "device": str(bundle.device),
                                                    **model_summary(bundle.path, bundle.config)}}


def _options(request: dict[str, Any]):
    from ..generation.decoding_engine import GenerationOptions

    return GenerationOptions(steps=request["steps"], guidance=request["guidance"],
                             foot_lock=request.get("foot_lock", True))


def _progress(worker: Worker, request_id: str):
    def report(step: int, total: int, message: str) -> None:
        worker.emit({"type": "progress", "id": request_id, "step": step, "total": total, "message": message})
    return report


def result_names(folder: Path, count: int) -> list[Path]:
    """New, unused file names for a request's results, made by the worker (never from client text such as the
    request id, which could be "../x" or an absolute path, and repeat): kmm-<time>-<random>_<variation>.npz."""
    while True:
        stem = f"kmm-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}"
        paths = [folder / f"{stem}_{variation}.npz" for variation in range(count)]
        if not any(path.exists() for path in paths):
            return paths


def _save(results, folder: Path) -> list[str]:
    return [str(motion.save(path)) for motion, path in zip(results, result_names(folder, len(results)), strict=True)]


def checked_timeline(worker: Worker, request: dict[str, Any]):
    """The request's timeline, fully checked off the reader thread (which only saw that it is an object), so a
    timeline with thousands of constraints never stops the worker from reading `cancel` and answering `hello`.
    The check runs in a thread of its own while this one watches for a cancel: a cancelled request is answered at
    once, and the abandoned check only finishes in the background (its result unused)."""
    from ..generation.timeline import Timeline, TimelineError

    outcome: dict[str, Any] = {}

    def check() -> None:
        try:
            outcome["timeline"] = Timeline.from_dict(request["timeline"])
        except Exception as exc:  # noqa: BLE001 - handed to the job thread, which answers the request with it
            outcome["error"] = exc

    checker = threading.Thread(target=check, name="kmm-timeline-check", daemon=True)
    checker.start()
    while checker.is_alive():
        checker.join(TIMELINE_CHECK_POLL_SECONDS)
        if checker.is_alive() and worker.is_cancelled(request["id"]):
            raise RequestFailed("cancelled", "cancelled while its timeline was being checked")
    error = outcome.get("error")
    if isinstance(error, TimelineError):
        raise RequestFailed("bad_request", f"generate.timeline: {error}", "Fix the request; see docs/worker_protocol.md.")
    if error is not None:
        raise error
    return outcome["timeline"]


def handle_generate(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
    from ..generation.timeline_generator import generate_timeline
    from ..generation.variation_likeness import alike_variations

    request_id = request["id"]
    timeline = checked_timeline(worker, request)
    folder = output_folder(request["output_dir"])
    bundle = ensure_bundle(worker, None, None, request_id)
    results = generate_timeline(bundle, timeline, seed=request["seed"], variations=request["variations"],
                                options=_options(request), on_progress=_progress(worker, request_id),
                                should_cancel=lambda: worker.is_cancelled(request_id))
    prompts = list(enumerate(s.prompt for s in timeline.segments))
    alike = [item.to_dict() for item in alike_variations([motion.joints for motion in results])]
    return {"type": "result", "paths": _save(results, folder),
            "info": {"frames": timeline.total_frames, "fps": timeline.fps, "device": str(bundle.device),
                     "variations": len(results), "alike": alike, "conditions": _conditions(bundle, prompts)},
            "warnings": _prompt_warnings(worker, bundle, prompts, request_id)}


def _shortened(event: dict[str, Any]):
    """Ever shorter forms of an answer too long for one line (thousands of segments, long result paths): without
    ``info.conditions`` (their count kept as ``conditions_left_out``), then also with only the warnings' count."""
    info = event.get("info")
    if isinstance(info, dict) and info.get("conditions"):
        event = {**event, "info": {**info, "conditions": [], "conditions_left_out": len(info["conditions"])}}
        yield event
    if event.get("warnings"):
        yield {**event, "warnings": summarise_warnings(event["warnings"], keep=0)}


def _shortest_fitting(event: dict[str, Any], too_long: ProtocolError) -> str:
    """The first of ``_shortened(event)`` that fits one protocol line, encoded; else ``too_long`` raised again."""
    for shorter in _shortened(event):
        try:
            return encode(shorter)
        except ProtocolError:
            continue
    raise too_long


def _conditions(bundle, prompts: list[tuple[int | None, str]]) -> list[dict]:
    """``info.conditions`` (generation/prompt_conditions.py `conditions_info`)."""
    from ..generation.prompt_conditions import conditions_info

    return conditions_info(bundle, prompts)


def _prompt_warnings(worker: Worker, bundle, prompts: list[tuple[int | None, str]], request_id: str) -> list[dict]:
    """The result's warnings about unfamiliar prompts (generation/prompt_vocabulary.py), also logged."""
    from ..generation.prompt_vocabulary import prompt_warnings

    warnings = summarise_warnings(prompt_warnings(bundle, prompts))  # the answer must fit one protocol line
    for warning in warnings:
        worker.log("warning", warning["message"], request_id)
    return warnings


def _read_motion(path: str, field: str):
    from ..motion.motion_result import MotionResult, MotionResultError

    try:
        return MotionResult.load(path)
    except MotionResultError as exc:
        raise RequestFailed("bad_request", f"edit.{field}: {exc}", "Give the path of a MotionResult .npz file.") \
            from None


def handle_edit(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
    from ..generation import editing

    request_id = request["id"]
    source = _read_motion(request["source"], "source")
    target = _read_motion(request["target"], "target") if request["target"] else None
    folder = output_folder(request["output_dir"])
    bundle = ensure_bundle(worker, None, None, request_id)
    mode = request["mode"]
    results = editing.run_edit(bundle, mode, source, target=target, segment=request["segment"],
                               frame_range=tuple(request["frame_range"]) if request["frame_range"] else None,
                               prompt=request["prompt"], seconds=request["seconds"], seed=request["seed"],
                               variations=request["variations"], options=_options(request),
                               on_progress=_progress(worker, request_id),
                               should_cancel=lambda: worker.is_cancelled(request_id))
    checked = [(request["segment"], request["prompt"])] if request["prompt"] else []
    return {"type": "result", "paths": _save(results, folder),
            "info": {"mode": mode, "frames": results[0].num_frames, "fps": results[0].fps,
                     "device": str(bundle.device), "conditions": _conditions(bundle, checked)},
            "warnings": _prompt_warnings(worker, bundle, checked, request_id)}


def handle_check_prompts(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
    """Before generating: the warnings and the captions completing each prompt's condition that a generation of
    these prompts would answer with, each prompt named by its index (the segment it stands for)."""
    request_id = request["id"]
    bundle = ensure_bundle(worker, None, None, request_id)
    prompts = list(enumerate(request["prompts"]))
    return {"type": "result", "paths": [], "info": {"prompts": len(prompts), "conditions": _conditions(bundle, prompts)},
            "warnings": _prompt_warnings(worker, bundle, prompts, request_id)}


HANDLERS = {"hello": handle_hello, "load": handle_load, "generate": handle_generate, "edit": handle_edit,
            "check_prompts": handle_check_prompts}
