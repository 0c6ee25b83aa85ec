# SPDX-License-Identifier: GPL-3.0-or-later
"""Our Triton selective scan (kmm_core/model/triton_selective_scan.py), the CUDA path when mamba-ssm does not import.

This machine has no GPU, so the kernels run under Triton's interpreter (TRITON_INTERPRET=1, which runs the same
kernel code on CPU tensors, set before Triton is imported: in a subprocess) against the float64 reference loop:
forward and every gradient, with channels that do not fill a block, a state count that is not a power of two, one
step and many.  Without the interpreter a CPU tensor cannot run a Triton kernel, which is the fallback a broken
compiler or driver takes on a user's machine: the product's rule then picks the pure scan and says why.  The real
GPU's figures are in benchmarks/results/cuda_check_h200.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from kmm_core.model.selective_scan import SCAN_VARIABLE, cuda_scan_choice

INTERPRETED = r"""
import json
import torch
from kmm_core.model.selective_scan import cuda_scan_choice, selective_scan_reference, selective_scan_triton

report = {"choice": cuda_scan_choice("cpu")}
gaps = {}
for batch, channels, length, state, optional in ((2, 70, 37, 16, True), (1, 32, 1, 5, True), (3, 8, 12, 3, False)):
    generator = torch.Generator().manual_seed(channels)
    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)
    inputs = {"u": randn(batch, channels, length), "delta": randn(batch, channels, length) * 0.5,
              "A": -torch.rand(channels, state, generator=generator, dtype=torch.float64) * 2 - 0.1,
              "B": randn(batch, state, length), "C": randn(batch, state, length)}
    if optional:
        inputs.update(D=randn(channels), z=randn(batch, channels, length), delta_bias=randn(channels) * 0.3)
    else:
        inputs["delta"] = inputs["delta"].abs()
    weight = randn(batch, channels, length)
    grads = []
    for scan, dtype in ((selective_scan_triton, torch.float32), (selective_scan_reference, torch.float64)):
        leaves = {name: t.to(dtype).requires_grad_() for name, t in inputs.items()}
        y = scan(**leaves, delta_softplus=optional)
        (y.double() * weight).sum().backward()
        grads.append({"y": y.detach().double(), **{name: leaf.grad.double() for name, leaf in leaves.items()}})
    gaps[f"{batch}x{channels}x{length}, {state} states"] = {
        name: (grads[0][name] - grads[1][name]).abs().max().item() / max(1.0, grads[1][name].abs().max().item())
        for name in grads[1]}
report["gaps"] = gaps
half = torch.randn(2, 40, 9, dtype=torch.bfloat16)
out = selective_scan_triton(half, half.abs(), -torch.ones(40, 4), torch.randn(2, 4, 9), torch.randn(2, 4, 9))
report["bf16_dtype"] = str(out.dtype)
print(json.dumps(report))
"""


@pytest.mark.slow
def test_the_triton_kernels_match_the_float64_reference_forward_and_backward():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop(SCAN_VARIABLE, None)
    done = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["choice"][0] == "triton" and "agrees with the pure scan" in report["choice"][1], report["choice"]
    for case, gaps in report["gaps"].items():
        assert set(gaps) >= {"y", "u", "delta", "A", "B", "C"}, case
        for name, gap in gaps.items():
            assert gap < 2e-5, (case, name, gap)  # float32 against float64, relative to the largest value
    assert report["bf16_dtype"] == "torch.bfloat16"  # scanned in float32, given back in the input's dtype


def test_a_device_the_kernels_cannot_run_on_leaves_the_pure_scan_in_charge(monkeypatch):
    # Without the interpreter, Triton cannot launch a kernel on CPU tensors: the same failure a user's broken
    # compiler or driver gives.  The rule says why and takes the pure scan; generation never fails for it.
    if os.environ.get("TRITON_INTERPRET"):
        pytest.fail("TRITON_INTERPRET is set in the test process: this test needs it unset")
    monkeypatch.delenv(SCAN_VARIABLE, raising=False)
    name, why = cuda_scan_choice("cpu")
    assert name == "pure" and "does not run on cpu" in why, why  # (Triton is in the dev extras on Linux x86-64)
    # Generation (no gradient through the scan) keeps the pure scan without compiling anything.
    assert cuda_scan_choice("cpu", gradients=False)[0] == "pure"
    monkeypatch.setenv(SCAN_VARIABLE, "pure")
    assert cuda_scan_choice("cuda") == ("pure", f"{SCAN_VARIABLE}=pure")
