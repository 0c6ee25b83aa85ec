# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a Blender test script in a subprocess and return the JSON it emitted (pytest side, never imports bpy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
RESULT_PREFIX = "KMM_TEST_RESULT "


def run_blender_script(name: str, *args: str, timeout: float = 300.0) -> dict:
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise AssertionError(
            f"{name} failed (exit {completed.returncode})\n--- stdout ---\n{completed.stdout[-4000:]}"
            f"\n--- stderr ---\n{completed.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX):])
