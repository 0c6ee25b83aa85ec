# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's connection to the model: one worker process, driven without ever blocking Blender.

`BackendSession.pump()` drains the worker's events (kmm_core WorkerClient reads them on a background thread) and
advances a small state machine: start -> hello/ready -> load -> ready -> generate jobs.  Blender's timer calls
pump() a few times per second; headless runs (`blender -b`, where timers never fire) call `run_to_completion()`,
which loops over the very same pump().  No bpy here: the state machine is plain Python and testable anywhere.

Every way a job can end is explicit on the job (done, failed, cancelled) with a message and advice for the user,
including a worker that cannot start or dies mid-generation (the client turns that into an error event).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...kmm_core import __version__
from ...kmm_core.common.errors import KMMError
from ...kmm_core.worker.client import DEFAULT_WORKER_ARGS, WorkerClient, WorkerError
from ...kmm_core.worker.protocol import PROTOCOL_VERSION, CheckPrompts, Edit, Generate, Hello, Load, ProtocolError
from .installer import InstallError, probe_python

# Job states
WAITING = "waiting"  # accepted, the worker is still starting or loading
RUNNING = "running"  # sent to the worker
CANCELLING = "cancelling"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)

# Session states
STOPPED = "stopped"
STARTING = "starting"  # process started, waiting for `ready`
LOADING = "loading"  # waiting for the model to load
READY = "ready"
BROKEN = "broken"  # the worker failed; the next submit starts a new one


@dataclass(frozen=True)
class BackendConfig:
    """How to start the worker: the user's Python (with torch and kmm-motion) and the model to load."""

    python: str
    device: str = "auto"
    checkpoint: str | None = None
    worker_args: tuple[str, ...] = DEFAULT_WORKER_ARGS
    extra_env: tuple[tuple[str, str], ...] = ()


@dataclass
class GenerationJob:
    request: Generate | Edit | CheckPrompts
    state: str = WAITING
    request_id: str | None = None
    step: int = 0
    total: int = 0
    message: str = "Starting the backend"
    paths: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # prompts far from the training vocabulary
    error: str = ""
    advice: str = ""
    trace: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    def fail(self, message: str, advice: str = "", trace: str = "", state: str = FAILED) -> None:
        self.state, self.error, self.trace = state, message, trace
        self.advice = _specific_advice(trace) or advice
        self.message = "Cancelled" if state == CANCELLED else f"Failed: {message}"


class BackendSession:
    """One worker for the Blender session; one generation job at a time."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self.state = STOPPED
        self.client: WorkerClient | None = None
        self.job: GenerationJob | None = None
        self.worker_info: dict[str, Any] = {}
        self.model_info: dict[str, Any] = {}  # the load result's info: checkpoint, name, licence, commercial_use
        self.log: list[str] = []
        self.error = ""
        self._hello_id: str | None = None
        self._load_id: str | None = None
        # Called with the job whenever run_to_completion() sees it change (the batch script prints progress lines).
        self.on_progress: Callable[[GenerationJob], None] | None = None

    # ---- requests from the UI ------------------------------------------------------------------------------------
    def submit(self, request: Generate | Edit | CheckPrompts) -> GenerationJob:
        """Queue a `Generate`, `Edit` or `CheckPrompts` request; starts the worker when needed. Never blocks on the
        model."""
        if not isinstance(request, Generate | Edit | CheckPrompts):
            raise KMMError(f"a job is a protocol Generate, Edit or CheckPrompts message, not {type(request).__name__}")
        if self.job is not None and not self.job.finished:
            raise KMMError("a generation is already running: wait for it or cancel it")
        job = GenerationJob(request=request)
        self.job = job
        if self.state in (STOPPED, BROKEN) or self.client is None or not self.client.is_alive():
            self._start()
        if self.state == READY:
            self._send_job()
        return job

    def cancel(self) -> None:
        job = self.job
        if job is None or job.finished:
            return
        if job.state == WAITING:
            job.fail("cancelled before the model was ready", state=CANCELLED)
            return
        job.state, job.message = CANCELLING, "Cancelling"
        try:
            assert self.client is not None and job.request_id is not None
            self.client.cancel(job.request_id)
        except (WorkerError, ProtocolError, AssertionError) as error:
            job.fail(f"could not cancel: {error}")

    def release(self) -> None:
        """Stop the worker (frees its memory, GPU included). A running job ends as cancelled."""
        client, self.client = self.client, None
        if client is not None:
            client.shutdown(timeout=10.0)  # events still queued in it are dropped with it
        if self.job is not None and not self.job.finished:
            self.job.fail("the backend was released", state=CANCELLED)
        self.state, self._hello_id, self._load_id = STOPPED, None, None

    # ---- event handling ---------------------------------------------------------------------------------------
    def pump(self) -> bool:
        """Handle every event received so far; returns whether anything changed (the UI then redraws)."""
        if self.client is None:
            return False
        return self._drain(self.client)

    def run_to_completion(self, timeout: float | None = None, interval: float = 0.05) -> GenerationJob:
        """Block until the current job finishes (headless use). A timeout cancels the job and fails it."""
        job = self.job
        if job is None:
            raise KMMError("no generation job to wait for")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.finished:
            if not self.pump():
                time.sleep(interval)
            elif self.on_progress is not None:
                self.on_progress(job)
            if deadline is not None and time.monotonic() > deadline and not job.finished:
                self.release()
                job.fail(f"no result within {timeout:g} s", advice="Try fewer frames, fewer steps or a GPU.")
        return job

    def status_text(self) -> str:
        return {STOPPED: "Backend stopped", STARTING: "Starting backend", LOADING: "Loading model",
                READY: "Backend ready" + (f" ({self.worker_info.get('device')})" if self.worker_info else ""),
                BROKEN: f"Backend failed: {self.error}"}[self.state]

    # ---- internals ----------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.client is not None:
            self.client.shutdown(timeout=2.0)
            self.client = None
        self.error = ""
        try:
            if not self.config.python:
                raise WorkerError("no backend is installed",
                                  advice="Press Install Backend in the add-on preferences (Edit > Preferences > "
                                         "Add-ons > KMM Motion), or set Own Backend Python there.")
            self.client = WorkerClient(self.config.python, dict(self.config.extra_env),
                                       worker_args=self.config.worker_args)
            self._hello_id = self.client.send(Hello(client_version=__version__, protocol_version=PROTOCOL_VERSION))
        except (WorkerError, ProtocolError) as error:
            if not self._broken_by_not_a_python(getattr(error, "stderr_tail", "")):
                self._break(str(error).splitlines()[0], getattr(error, "advice", ""),
                            getattr(error, "stderr_tail", ""))
            return
        self.state = STARTING
        if self.job is not None:
            self.job.message = "Starting the backend"

    def _send_job(self) -> None:
        job = self.job
        assert job is not None and self.client is not None
        try:
            job.request_id = self.client.send(job.request)
        except ProtocolError as error:
            job.fail(f"invalid request: {error}")
            return
        except WorkerError as error:
            self._break(str(error).splitlines()[0], error.advice, error.stderr_tail)
            return
        job.state, job.message = RUNNING, "Generating"

    def _break(self, message: str, advice: str = "", trace: str = "") -> None:
        self.state, self.error = BROKEN, message
        if self.job is not None and not self.job.finished:
            self.job.fail(message, advice, trace)

    def _broken_by_not_a_python(self, stderr_tail: str) -> bool:
        """A worker that died without a word may not be a Python at all: if so, break saying that, in words."""
        if stderr_tail.strip() or not self.config.python:
            return False
        try:
            probe_python(self.config.python, timeout=20.0)
        except InstallError as error:
            self._break(str(error), "Set Own Backend Python in the add-on preferences to a Python executable, or "
                                    "clear it to use the backend made by Install Backend.")
            return True
        return False

    def _drain(self, client: WorkerClient) -> bool:
        events = client.poll()
        for event in events:
            self._handle(event)
        return bool(events)

    def _handle(self, event: dict[str, Any]) -> None:
        kind, event_id = event["type"], event.get("id")
        if kind == "log":
            self.log.append(f"[{event['level']}] {event['message']}")
            del self.log[:-200]
            return
        job = self.job
        if event_id is not None and event_id == self._hello_id:
            self._on_hello(event)
        elif event_id is not None and event_id == self._load_id:
            self._on_load(event)
        elif job is not None and event_id is not None and event_id == job.request_id:
            self._on_job_event(job, event)
        elif kind == "error" and event_id is None:  # the worker died or broke the protocol outside any request
            self._break(event["message"], event.get("advice", ""), event.get("trace", ""))

    def _on_hello(self, event: dict[str, Any]) -> None:
        if event["type"] == "error":
            if self._broken_by_not_a_python(event.get("trace", "")):
                return
            self._break(f"the worker refused to start: {event['message']}", event.get("advice", ""),
                        event.get("trace", ""))
            return
        if event["protocol_version"] != PROTOCOL_VERSION:
            self._break(f"the worker speaks protocol {event['protocol_version']} (kmm-motion "
                        f"{event['package_version']}), the add-on speaks {PROTOCOL_VERSION} ({__version__})",
                        "The worker must run the kmm_core bundled with the add-on: leave Own Backend Python's "
                        "environment without a kmm_core of its own, or reinstall the add-on.")
            return
        self.worker_info = event
        assert self.client is not None
        try:
            self._load_id = self.client.send(Load(checkpoint=self.config.checkpoint or None, device=self.config.device))
        except (WorkerError, ProtocolError) as error:
            self._break(str(error).splitlines()[0], getattr(error, "advice", ""))
            return
        self.state = LOADING
        if self.job is not None and self.job.state == WAITING:
            self.job.message = "Loading the model"

    def _on_load(self, event: dict[str, Any]) -> None:
        if event["type"] == "error":
            self._break(f"the model could not be loaded: {event['message']}", event.get("advice", ""),
                        event.get("trace", ""))
            return
        self.model_info = dict(event.get("info") or {})
        self.state = READY
        if self.job is not None and self.job.state == WAITING:
            self._send_job()

    def _on_job_event(self, job: GenerationJob, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "progress":
            job.step, job.total = event["step"], event["total"]
            job.message = event["message"] or f"Step {job.step} of {job.total}"
        elif kind == "result":
            job.paths, job.info = list(event["paths"]), dict(event["info"])
            job.warnings = list(event.get("warnings", []))
            job.state, job.message = DONE, "Done"
            job.step = job.total = max(job.total, 1)
        elif kind == "error":
            state = CANCELLED if event["kind"] == "cancelled" else FAILED
            job.fail(event["message"], event.get("advice", ""), event.get("trace", ""), state=state)
            if self.client is not None and not self.client.is_alive():
                self.state, self.error = BROKEN, event["message"]


def _specific_advice(trace: str) -> str:
    """Advice for failures users hit most, recognised from the worker's last lines."""
    lowered = trace.lower()
    if "out of memory" in lowered:
        return ("The GPU ran out of memory: generate fewer variations or a shorter timeline, close other GPU "
                "programs, or set Device to CPU in the add-on preferences.")
    if "no module named 'torch'" in lowered:
        return "PyTorch is missing in the backend Python: press Repair (or Install Backend) in the add-on preferences."
    return ""


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""

