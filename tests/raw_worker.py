# SPDX-License-Identifier: GPL-3.0-or-later
"""The real worker (`python -m kmm_core.worker`) as a subprocess spoken to in raw lines, for tests that send what
WorkerClient never would (broken JSON, absurd numbers, hostile ids) and count every event that comes back."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from kmm_core.worker.client import worker_environment
from kmm_core.worker.protocol import EVENT_TYPES, decode


class RawWorker:
    def __init__(self, args: Sequence[str] = ("-m", "kmm_core.worker", "--device", "cpu"), cwd=None,
                 env: dict[str, str] | None = None):
        self.process = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=worker_environment(env), cwd=cwd)
        self.events: queue.Queue[dict] = queue.Queue()
        self.received: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            # Every line the worker writes must be a valid protocol event.
            self.events.put(decode(line, EVENT_TYPES))

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def send_raw(self, line: bytes | str) -> None:
        data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()

    def send(self, message: dict) -> None:
        self.send_raw(json.dumps(message))

    def drain(self) -> list[dict]:
        while True:
            try:
                self.received.append(self.events.get_nowait())
            except queue.Empty:
                return self.received

    def terminal(self, request_id: str | None) -> list[dict]:
        return [e for e in self.drain() if e["type"] in ("ready", "result", "error") and e.get("id") == request_id]

    def wait_terminal(self, request_id: str | None, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.terminal(request_id)
            if found:
                return found[0]
            if self.process.poll() is not None and self.events.empty():
                break
            time.sleep(0.02)
        raise AssertionError(f"no answer for {request_id!r}; worker stderr:\n{''.join(self.stderr[-40:])}")

    def hello(self, request_id: str = "hello-check", timeout: float = 120.0) -> dict:
        self.send({"type": "hello", "id": request_id, "client_version": "test"})
        return self.wait_terminal(request_id, timeout)

    def close(self, timeout: float = 60.0) -> int:
        try:
            self.send({"type": "shutdown"})
            self.process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
