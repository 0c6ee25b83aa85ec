# SPDX-License-Identifier: GPL-3.0-or-later
"""The preferences' "Check" button: run `kmm doctor --json` with the backend Python and read its verdict.

The check runs in a child process (importing torch takes seconds) that the UI polls, so Blender stays responsive.
It runs the same way the worker will: the add-on's bundled kmm_core first on PYTHONPATH, in the user's Python.
Anything that prevents a verdict (no such Python, no torch, an older kmm without `doctor`, garbage output) becomes a
failed item with the reason instead of an exception.  No bpy here.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from ...kmm_core.worker.client import exit_advice, worker_environment
from .installer import InstallError, probe_python

DOCTOR_ARGS = ("-m", "kmm_core.cli", "doctor", "--json")
NO_BACKEND = ("no backend is installed: press Install Backend above (or set Own Backend Python to a Python "
              "environment of your own)")


@dataclass
class DoctorItem:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class DoctorReport:
    items: list[DoctorItem] = field(default_factory=list)
    error: str = ""  # set when the check itself could not run

    @property
    def ok(self) -> bool:
        return not self.error and all(item.ok for item in self.items)


def parse_doctor_output(text: str) -> DoctorReport:
    """Read `kmm doctor --json` output: {"items"|"checks": [{"name", "ok", "detail"|"message"}]} or {name: bool|{...}}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return DoctorReport(error=f"`kmm doctor --json` did not print JSON ({error.msg})")
    entries = data.get("items", data.get("checks", data)) if isinstance(data, dict) else data
    items: list[DoctorItem] = []
    if isinstance(entries, dict):
        entries = [{"name": key, **(value if isinstance(value, dict) else {"ok": value})}
                   for key, value in entries.items()]
    if not isinstance(entries, list):
        return DoctorReport(error="`kmm doctor --json` printed JSON of an unexpected shape")
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        ok = entry.get("ok", entry.get("status") in ("ok", "OK", True))
        detail = entry.get("detail", entry.get("message", entry.get("version", "")))
        items.append(DoctorItem(str(entry["name"]), bool(ok), "" if detail is None else str(detail)))
    if not items:
        return DoctorReport(error="`kmm doctor --json` reported no checks")
    return DoctorReport(items=items)


class DoctorCheck:
    """A running check; poll() returns None until the report is ready."""

    def __init__(self, python: str, timeout: float = 180.0):
        self.python = python
        self.timeout = timeout
        self.report: DoctorReport | None = None
        self._process: subprocess.Popen | None = None
        if not python:
            self.report = DoctorReport(error=NO_BACKEND)
            return
        try:
            self._process = subprocess.Popen([python, *DOCTOR_ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             env=worker_environment(), text=True, encoding="utf-8", errors="replace")
        except OSError as error:
            self.report = DoctorReport(error=f"cannot run {python!r}: {error.strerror or error}")

    def poll(self) -> DoctorReport | None:
        if self.report is None and self._process is not None and self._process.poll() is not None:
            self.report = self._finish()
        return self.report

    def wait(self) -> DoctorReport:
        if self.report is None and self._process is not None:
            try:
                self._process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                self.report = DoctorReport(error=f"`kmm doctor` took longer than {self.timeout:g} s")
                return self.report
            self.report = self._finish()
        assert self.report is not None
        return self.report

    def _finish(self) -> DoctorReport:
        assert self._process is not None
        stdout, stderr = self._process.communicate()
        code = self._process.returncode
        report = parse_doctor_output(stdout) if stdout.strip() else None
        if report is not None and not report.error:
            return report  # doctor exits non-zero when an item fails; the items say which
        tail = "\n".join(stderr.strip().splitlines()[-3:])
        if report is None:
            try:  # a path that is not a Python at all says so, in words (not "see the last lines" with none)
                probe_python(self.python)
            except InstallError as error:
                return DoctorReport(error=str(error))
        if "No module named kmm_core.cli" in stderr or "No module named 'kmm_core.cli'" in stderr:
            reason = "this kmm-motion has no `kmm` command line yet (kmm_core/cli.py missing)"
        elif "invalid choice: 'doctor'" in stderr:
            reason = "this kmm-motion's `kmm` has no `doctor` command: update it"
        elif report is not None:
            reason = report.error
        else:
            reason = f"`kmm doctor --json` failed (exit code {code}). {exit_advice(code, stderr)}"
        return DoctorReport(error=reason + (f"\n{tail}" if tail else ""))
