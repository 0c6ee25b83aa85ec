# SPDX-License-Identifier: GPL-3.0-or-later
"""Start the worker process and talk to it (see protocol.py and docs/worker_protocol.md).

The client never blocks its caller unless asked to: a background thread reads the worker's stdout into a queue that
`poll()` drains (Blender's timer calls it), and `wait_for()` blocks for headless use.  Another thread keeps the last
lines of stderr so that a failure can be shown with its cause.  When the worker dies, every request still waiting gets
an `error` event carrying the end of stderr: a crashed worker is always reported, never a silent hang.
Torch-free: the Blender add-on uses this module.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..common.errors import KMMError
from .protocol import (
    ANSWERED_REQUESTS,
    EVENT_TYPES,
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    TERMINAL_EVENTS,
    ProtocolError,
    clip_text,
    decode,
    encode,
    to_dict,
)

DEFAULT_WORKER_ARGS = ("-m", "kmm_core.worker")
# The folder that contains kmm_core: on PYTHONPATH, the worker imports this very copy of the package (inside Blender
# that is the copy bundled with the add-on), whatever else the worker's Python has installed.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
# Variables that configure *Blender's* embedded interpreter and would break a different Python.
_INTERPRETER_VARIABLES = ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE")
_ANSWER_HEAD = re.compile(r'^\{"type":"(ready|result|error)","id":"([^"\\]{1,128})"')


class WorkerError(KMMError, RuntimeError):
    """The worker could not be started, died, or does not speak our protocol. `stderr_tail` holds its last lines."""

    def __init__(self, message: str, stderr_tail: str = "", advice: str = ""):
        self.stderr_tail = stderr_tail
        self.advice = advice
        text = message + (f"\n{advice}" if advice else "")
        if stderr_tail:
            text += f"\nLast lines the worker wrote to stderr:\n{stderr_tail}"
        super().__init__(text)


class WorkerTimeout(WorkerError, TimeoutError):
    """Waiting for the worker took longer than allowed."""


def worker_environment(extra_env: Mapping[str, str] | None = None,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: ours (or `base`) minus interpreter settings, plus `extra_env`, with the folder that
    holds kmm_core first on PYTHONPATH, unbuffered UTF-8 output."""
    env = dict(os.environ if base is None else base)
    for name in _INTERPRETER_VARIABLES:
        env.pop(name, None)
    env.update(extra_env or {})
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PACKAGE_PARENT) + (os.pathsep + existing if existing else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def exit_advice(returncode: int | None, stderr_tail: str) -> str:
    """What a user can do about a worker that stopped, judged from its exit code and last stderr lines."""
    if "No module named 'torch'" in stderr_tail:
        return "PyTorch is not installed in the worker's Python environment: install the package there (see README)."
    if "No module named" in stderr_tail:
        return "A module is missing in the worker's Python environment: install the backend's requirements there (the add-on's Repair button does)."
    if returncode is not None and returncode in (-9, 137):
        return "The worker was killed (SIGKILL), which usually means the system ran out of memory."
    if returncode is not None and returncode < 0:
        return f"The worker was killed by signal {-returncode}."
    return "See the worker's last lines below; if the problem persists, report it with them."


class WorkerClient:
    """A running worker process. Starts it on construction; use `handshake()` before other requests.

    `worker_args` replaces `-m kmm_core.worker` (tests run a small stand-in worker script this way).
    """

    def __init__(self, python_executable: str | os.PathLike, extra_env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None, *, worker_args: Sequence[str] = DEFAULT_WORKER_ARGS,
                 stderr_lines: int = 200):
        self.python_executable = str(python_executable)
        self.info: dict[str, Any] | None = None  # the `ready` event, after handshake()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._backlog: collections.deque[dict[str, Any]] = collections.deque()  # set aside by wait_for()
        self._pending: dict[str, str] = {}  # request id -> request type, until its terminal event arrives
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._ids = itertools.count(1)
        self._shutting_down = False
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        command = [self.python_executable, *worker_args]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=None if cwd is None else str(cwd), env=worker_environment(extra_env), text=True,
                encoding="utf-8", errors="replace", bufsize=1, creationflags=creationflags)
        except OSError as exc:
            raise WorkerError(f"cannot start the worker with {self.python_executable!r}: {exc.strerror or exc}",
                              advice="Check the Python executable set in the add-on preferences.") from None
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="kmm-worker-stderr", daemon=True)
        self._stdout_thread = threading.Thread(target=self._read_stdout, name="kmm-worker-stdout", daemon=True)
        self._stderr_thread.start()
        self._stdout_thread.start()

    # ---- state -----------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def is_alive(self) -> bool:
        return self._process.poll() is None

    def stderr_tail(self, lines: int | None = None) -> str:
        """The last lines the worker wrote to stderr (all kept lines by default)."""
        kept = list(self._stderr)
        return "\n".join(kept if lines is None else kept[-lines:])

    def pending(self) -> list[str]:
        """Ids of requests still waiting for their terminal event."""
        with self._lock:
            return list(self._pending)

    # ---- requests --------------------------------------------------------------------------------------------
    def send(self, request: object) -> str | None:
        """Send a request (a protocol dataclass or dict); returns its id (chosen here when empty or absent).
        Raises ProtocolError for an invalid request and WorkerError when the worker is gone."""
        data = to_dict(request)
        kind = data.get("type")
        if kind in ANSWERED_REQUESTS and not data.get("id"):
            data["id"] = f"{kind}-{next(self._ids)}"
        line = encode(data)
        request_id = data.get("id")
        answered = kind in ANSWERED_REQUESTS
        with self._lock:
            if answered:
                if request_id in self._pending:
                    raise ProtocolError("a request with this id is still running", message_type=kind, field="id",
                                        message_id=request_id)
                self._pending[request_id] = kind
        try:
            self._write(line)
        except WorkerError:
            with self._lock:
                self._pending.pop(request_id, None)
            raise
        return request_id

    def _write(self, line: str) -> None:
        if not self.is_alive() or self._process.stdin is None or self._process.stdin.closed:
            raise self._gone_error(f"the worker is not running (exit code {self.returncode})")
        try:
            with self._write_lock:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise self._gone_error(f"cannot send to the worker: {exc}") from None

    def _gone_error(self, message: str) -> WorkerError:
        """The error for a worker that has gone away, once its last stderr lines are in."""
        try:
            self._process.wait(2.0)
            self._stderr_thread.join(2.0)
        except subprocess.TimeoutExpired:
            pass
        tail = self.stderr_tail(40)
        return WorkerError(message, tail, exit_advice(self._process.poll(), tail))

    def handshake(self, timeout: float = 120.0) -> dict[str, Any]:
        """Say hello and check that the worker speaks our protocol version. Returns (and keeps in `info`) the ready
        event.  Importing torch makes the first start slow, hence the generous default."""
        request_id = self.send({"type": "hello", "client_version": __version__, "protocol_version": PROTOCOL_VERSION})
        answer = self.wait_for(request_id, timeout)
        if answer["type"] == "error":
            raise WorkerError(f"the worker did not start: {answer['message']}", answer.get("trace", ""),
                              answer.get("advice", ""))
        if answer["protocol_version"] != PROTOCOL_VERSION:
            raise WorkerError(
                f"the worker speaks protocol version {answer['protocol_version']} (package "
                f"{answer['package_version']}) but this client speaks {PROTOCOL_VERSION} (package {__version__})",
                advice="Install the same version of kmm-motion in the worker's environment as the add-on's.")
        self.info = answer
        return answer

    def cancel(self, request_id: str) -> None:
        """Ask the worker to stop a request; its terminal event will be an error of kind "cancelled"."""
        self.send({"type": "cancel", "id": request_id})

    # ---- events ----------------------------------------------------------------------------------------------
    def poll(self) -> list[dict[str, Any]]:
        """Every event received so far, oldest first, without blocking."""
        events = []
        with self._lock:
            while self._backlog:
                events.append(self._backlog.popleft())
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait_for(self, request_id: str, timeout: float | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Block until the terminal event (ready, result or error) of `request_id` arrives and return it.
        Its progress and log events go to `on_event`; events of other requests stay for the next `poll()`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            # Look among events already set aside, and make sure the id is one we are waiting for.
            while True:
                try:
                    self._backlog.append(self._events.get_nowait())
                except queue.Empty:
                    break
            answer = self._take_from_backlog(request_id, on_event)
            if answer is None and request_id not in self._pending:
                raise WorkerError(f"no request with id {request_id!r} is waiting for an answer")
        if answer is not None:
            return answer
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WorkerTimeout(f"no answer from the worker to request {request_id!r} within {timeout:g} s",
                                    self.stderr_tail(40))
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.get("id") != request_id:
                with self._lock:
                    self._backlog.append(event)
            elif event["type"] in TERMINAL_EVENTS:
                return event
            elif on_event is not None:
                on_event(event)

    def _take_from_backlog(self, request_id: str, on_event: Callable | None) -> dict[str, Any] | None:
        kept: collections.deque[dict[str, Any]] = collections.deque()
        answer = None
        while self._backlog:
            event = self._backlog.popleft()
            if answer is not None or event.get("id") != request_id:
                kept.append(event)
            elif event["type"] in TERMINAL_EVENTS:
                answer = event
            elif on_event is not None:
                on_event(event)
        self._backlog = kept
        return answer

    # ---- stopping --------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> int:
        """Ask the worker to exit; kill it if it has not within `timeout` seconds. Returns its exit code."""
        self._shutting_down = True
        if self.is_alive():
            try:
                self._write(encode({"type": "shutdown"}))
            except WorkerError:
                pass
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(2.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stdout_thread.join(5.0)
        return self._process.returncode

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ---- background threads ----------------------------------------------------------------------------------
    def _deliver(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["type"] in TERMINAL_EVENTS and event.get("id") in self._pending:
                del self._pending[event["id"]]
            self._events.put(event)

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line.rstrip("\r\n"))

    def _read_stdout(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        try:
            while True:
                line = stream.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
                    self._reject_long_line(line, stream)
                elif line.strip():
                    self._handle_line(line)
        finally:
            self._report_end()

    def _handle_line(self, line: str) -> None:
        try:
            event = decode(line, EVENT_TYPES)
        except ProtocolError as exc:
            with self._lock:
                answers_pending = exc.message_id in self._pending
            if answers_pending and _ANSWER_HEAD.match(line):
                # A malformed answer would otherwise leave its request waiting forever.
                self._deliver({"type": "error", "id": exc.message_id, "kind": "internal",
                               "message": f"the worker sent a malformed answer: {exc}",
                               "advice": "This is a bug in the worker; please report it.", "trace": line[:2000]})
            else:
                # Libraries sometimes print to stdout; keep such lines visible without treating them as fatal.
                self._deliver({"type": "log", "id": None, "level": "warning",
                               "message": f"the worker wrote a line that is not a protocol event ({exc}): "
                                          f"{line.rstrip()[:500]}"})
            return
        self._deliver(event)

    def _reject_long_line(self, head: str, stream: Any) -> None:
        while True:  # skip the rest of the line without holding it in memory
            chunk = stream.readline(MAX_LINE_BYTES)
            if not chunk or chunk.endswith("\n"):
                break
        match = _ANSWER_HEAD.match(head)
        with self._lock:
            request_id = match.group(2) if match and match.group(2) in self._pending else None
        self._deliver({"type": "error", "id": request_id, "kind": "internal",
                       "message": f"the worker sent a line longer than {MAX_LINE_BYTES} bytes; it was dropped",
                       "advice": "This is a bug in the worker; please report it.", "trace": head[:2000]})

    def _report_end(self) -> None:
        """stdout closed: the worker is exiting. Answer every waiting request so nobody waits forever."""
        try:
            returncode = self._process.wait(10.0)
        except subprocess.TimeoutExpired:  # stdout closed but the process lives on: it cannot answer any more
            self._process.kill()
            returncode = self._process.wait()
        self._stderr_thread.join(5.0)
        tail = clip_text(self.stderr_tail())
        with self._lock:
            waiting = list(self._pending)
        if self._shutting_down:
            for request_id in waiting:
                self._deliver({"type": "error", "id": request_id, "kind": "cancelled",
                               "message": "the worker was shut down before this request finished",
                               "advice": "", "trace": ""})
        else:  # even a clean exit nobody asked for must be reported: the add-on would otherwise wait on a dead worker
            message = f"the worker stopped unexpectedly (exit code {returncode})"
            advice = exit_advice(returncode, tail)
            for request_id in waiting or [None]:
                self._deliver({"type": "error", "id": request_id, "kind": "internal", "message": message,
                               "advice": advice, "trace": tail})


def default_python() -> str:
    """The Python running this code: right for the CLI, wrong inside Blender (use the add-on's setting there)."""
    return sys.executable
