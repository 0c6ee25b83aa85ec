# SPDX-License-Identifier: GPL-3.0-or-later
"""The prepared CUDA check (benchmarks/cuda_check.py) runs here as its dry run: every step that does not need CUDA
(the real worker, the agreement with the CPU, a training step) measures something and none fails, so the first GPU
machine lent runs a script already proven; the GPU-only step says it was not run."""

from __future__ import annotations

import sys

from conftest import REPO_ROOT


def test_the_cuda_check_dry_run_measures_every_step_without_failing(tmp_path):
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.cuda_check import main

    out = tmp_path / "cuda_check.md"
    assert main(["--device", "cpu", "--budget", "400", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report and "not run: the budget" not in report, report
    for heading in ("1a. the worker", "1b. agreement with the CPU", "2. a training step", "3. the pure scan"):
        assert heading in report
    assert "README timeline, cold:" in report and "1-minute timeline, warm:" in report
    assert "largest difference 0.000 mm, more than 1 mm never" in report  # the CPU agrees with itself
    assert "generator step, batch 32 x 50, cpu, fp32:" in report and "fused scan: not run (no CUDA)" in report
