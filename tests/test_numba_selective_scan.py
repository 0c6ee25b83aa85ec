# SPDX-License-Identifier: GPL-3.0-or-later
"""The scan a machine without any C++ compiler gets: numba's loops (what both fused CPU loops must do, numba's work
split over threads included, is in test_fused_cpu_scans.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmm_core.model import numba_selective_scan as numba_scan

if numba_scan.kernels() is None:  # numba is a dependency of the project: it must import
    pytest.fail(f"numba's scan must load: {numba_scan.kernels_status()}", pytrace=False)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_machine_without_a_compiler_gets_numbas_scan(tmp_path):
    """A fresh process whose PATH holds no C++ compiler (and no CXX) picks numba's loops, `kmm doctor` says so, and
    the scan it runs matches the reference."""
    bin_dir = tmp_path / "bin"  # PATH holds only this empty folder: no c++, g++ or clang++ to find
    bin_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("CXX", "KMM_SELECTIVE_SCAN")}
    env |= {"PATH": str(bin_dir), "KMM_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    script = (
        "import json, torch\n"
        "from kmm_core.model import selective_scan as s\n"
        "from kmm_core.cli import doctor_checks\n"
        "from tests.test_selective_scan import make_scan_inputs\n"
        "inputs = make_scan_inputs(2, 40, 20, 16)\n"
        "gap = (s.selective_scan(**inputs, delta_softplus=True)\n"
        "       - s.selective_scan_reference(**inputs, delta_softplus=True)).abs().max().item()\n"
        "scan = [c for c in doctor_checks(None) if c['name'] == 'cpu_scan'][0]\n"
        "print(json.dumps({'choice': s.cpu_scan_choice(), 'gap': gap, 'doctor': scan['detail']}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["choice"][0] == "numba"
    assert "no C++ compiler" in report["choice"][1]
    assert report["doctor"].startswith("numba")
    assert report["gap"] < 1e-5
