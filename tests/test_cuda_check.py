# SPDX-License-Identifier: GPL-3.0-or-later
"""The prepared CUDA check (benchmarks/cuda_check.py) runs here as its dry run: every step that does not need CUDA
(the real worker, the agreement with the CPU, a training step) measures something and none fails, so the first GPU
machine lent runs a script already proven; the GPU-only step says it was not run."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO_ROOT


def test_the_cuda_check_dry_run_measures_every_step_without_failing(tmp_path, prepared_dataset):
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.cuda_check import main

    out = tmp_path / "cuda_check.md"
    assert main(["--device", "cpu", "--budget", "400", "--prepared", str(prepared_dataset), "--phrasings", "2",
                 "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report and "not run: the budget" not in report, report
    for heading in ("0. the machine", "1a. the worker", "1b. agreement with the CPU", "1c. the worker with the pure",
                    "2. a training step", "3. the scan kernels", "4. where a warm", "5. training every stage",
                    "7. the everyday phrasings"):
        assert heading in report
    assert "README timeline, cold:" in report and "1-minute timeline, warm:" in report
    assert "largest difference 0.000 mm, more than 1 mm never" in report  # the CPU agrees with itself
    assert "generator step, batch 32 x 50: cpu, fp32" in report and "scan kernels: not run (no CUDA)" in report
    assert "all 50 tokens equal" in report and "without the foot clean-up the joints differ by at most 0.000 mm" in report
    assert "2 phrasings, 5 s each, seed 0: the same tokens on cpu and the CPU for 2 of 2" in report
    assert "verdicts that differ: 0" in report and "largest 0.000 mm" in report
    for precision in ("fp32", "bf16"):  # kmm-train all on the tiny config, then its bundle generating
        assert f"{precision}: kmm-train all: ok" in report and f"{precision}: kmm generate with its bundle: ok" in report


def test_an_unknown_step_is_refused_naming_the_steps(tmp_path, capsys):
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.cuda_check import main

    out = tmp_path / "cuda_check.md"
    with pytest.raises(SystemExit) as stopped:
        main(["--device", "cpu", "--only", "1b", "8", "--out", str(out)])
    assert stopped.value.code == 2 and not out.exists()
    assert "--only 8: no such step (the steps: 0, 1a, 2, 3, 1b, 1c, 4, 5, 6, 7)" in capsys.readouterr().err
