# SPDX-License-Identifier: GPL-3.0-or-later
"""numba's fused CPU loops (selective scan, causal conv + SiLU) against float64 references, their hand-written
backward passes (gradcheck in float64), the Mamba block on them, the memory bound, the work split over threads, and
the scan a machine without any C++ compiler gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kmm_core.model import numba_selective_scan as numba_scan
from kmm_core.model import selective_scan as scan_module
from kmm_core.model.mamba import BidirectionalMamba, MambaBlock
from kmm_core.model.selective_scan import selective_scan_numba, selective_scan_reference
from tests.test_selective_scan import make_scan_inputs

if numba_scan.kernels() is None:  # numba is a dependency of the project: it must import
    pytest.fail(f"numba's scan must load: {numba_scan.kernels_status()}", pytrace=False)

REPO_ROOT = Path(__file__).resolve().parents[1]
LANES = numba_scan.kernels().LANES


@pytest.mark.parametrize(
    ("batch", "channels", "length", "state"),
    [(3, 8, 37, 16), (2, 21, 40, 5), (1, 35, 1, 16), (2, 2 * LANES, 16, 4), (1, LANES + 3, 33, 1)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_scan_matches_float64_reference(batch, channels, length, state, dtype):
    """Channel counts that do and do not fill the lane blocks, lengths around the 8-step checkpoint chunks."""
    inputs = make_scan_inputs(batch, channels, length, state, dtype=dtype, seed=length)
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = selective_scan_numba(**inputs, delta_softplus=True)
    assert actual.dtype == dtype and actual.shape == (batch, channels, length)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(actual, expected.to(dtype), rtol=tolerance, atol=tolerance)


def test_numba_scan_without_optional_terms_matches_reference():
    inputs = make_scan_inputs(batch=2, channels=20, length=30, state=3)
    core = {name: inputs[name] for name in ("u", "A", "B", "C")}
    delta = F.softplus(inputs["delta"])
    torch.testing.assert_close(selective_scan_numba(delta=delta, **core),
                               selective_scan_reference(delta=delta, **core), rtol=1e-5, atol=1e-5)


def test_numba_scan_long_sequence_stays_finite_and_exact():
    inputs = make_scan_inputs(batch=1, channels=20, length=1500, state=16)
    inputs["delta"] = inputs["delta"] + 3.0  # decays down to exp(-100): below float32's range, clamped to ~0
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = selective_scan_numba(**inputs, delta_softplus=True)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optional_terms", [True, False])
def test_gradcheck_of_numba_backward(optional_terms):
    """Float64 gradcheck over every input; 37 steps cross four checkpoint chunks, 19 channels a partial lane block."""
    inputs = make_scan_inputs(batch=2, channels=19, length=37, state=3, dtype=torch.float64, seed=1)
    if not optional_terms:
        inputs = {name: inputs[name] for name in ("u", "delta", "A", "B", "C")}
        inputs["delta"] = F.softplus(inputs["delta"])
    names = list(inputs)
    tensors = tuple(inputs[name].clone().requires_grad_(True) for name in names)

    def function(*args):
        return selective_scan_numba(**dict(zip(names, args, strict=True)), delta_softplus=optional_terms)

    assert torch.autograd.gradcheck(function, tensors, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 3])
def test_numba_gradients_match_sequential_reference_in_float64(threads):
    """Gradients against autograd through the plain float64 loop, at training-like sizes, with the work on one
    thread and split over three (channel groups summed afterwards)."""
    inputs = make_scan_inputs(batch=3, channels=2 * LANES + 8, length=51, state=16, dtype=torch.float64, seed=2)
    weights = torch.randn(3, 2 * LANES + 8, 51, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = {}
    previous = torch.get_num_threads()
    try:
        for label, function in (("numba", selective_scan_numba), ("reference", selective_scan_reference)):
            torch.set_num_threads(threads if label == "numba" else previous)
            leaves = {name: value.clone().requires_grad_(True) for name, value in inputs.items()}
            (function(**leaves, delta_softplus=True) * weights).sum().backward()
            grads[label] = {name: leaf.grad for name, leaf in leaves.items()}
    finally:
        torch.set_num_threads(previous)
    for name in inputs:
        torch.testing.assert_close(grads["numba"][name], grads["reference"][name], rtol=1e-10, atol=1e-10,
                                   msg=name)


def test_causal_conv_silu_matches_conv1d_and_its_gradients():
    torch.manual_seed(4)
    conv = torch.nn.Conv1d(21, 21, 4, groups=21, padding=3).double()
    wide = torch.randn(2, 13, 42, dtype=torch.float64, requires_grad=True)  # x is the first half, as in the block
    x = wide[..., :21]
    expected = F.silu(conv(x.transpose(1, 2))[..., :13]).transpose(1, 2)
    actual = numba_scan.causal_conv_silu(x, conv.weight[:, 0, :], conv.bias)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    weight = conv.weight[:, 0, :].detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, w, b: numba_scan.causal_conv_silu(a[..., :21], w, b),
                                    (wide, weight, bias), eps=1e-6, atol=1e-6)


def test_mamba_block_is_the_same_on_numba_and_pure_paths(monkeypatch):
    torch.manual_seed(5)
    block = MambaBlock(24)
    with torch.no_grad():  # move A and D off their initial values so that every term matters
        block.A_log.add_(0.3 * torch.randn_like(block.A_log))
        block.D.add_(0.5 * torch.randn_like(block.D))
    x = torch.randn(3, 29, 24, generator=torch.Generator().manual_seed(6))
    results = {}
    for label in ("numba", "pure"):
        monkeypatch.setenv(scan_module.SCAN_VARIABLE, label)
        block.zero_grad()
        leaf = x.clone().requires_grad_(True)
        out = block(leaf)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[label] = (out.detach(), leaf.grad, {n: p.grad.clone() for n, p in block.named_parameters()})
    (out_n, grad_n, params_n), (out_p, grad_p, params_p) = results["numba"], results["pure"]
    torch.testing.assert_close(out_n, out_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_n, grad_p, rtol=1e-4, atol=1e-6)
    for name in params_p:
        torch.testing.assert_close(params_n[name], params_p[name], rtol=1e-4, atol=1e-5, msg=name)


def test_bidirectional_padding_rule_holds_on_numba_path(monkeypatch):
    """Valid outputs of a padded batch equal those of the unpadded clip (the backbone's padding contract)."""
    monkeypatch.setenv(scan_module.SCAN_VARIABLE, "numba")
    torch.manual_seed(7)
    backbone = BidirectionalMamba(32, n_layers=2).eval()
    x = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(8))
    valid = torch.arange(20)[None] < torch.tensor([[20], [13]])
    with torch.no_grad():
        padded = backbone(x, valid)
        alone = backbone(x[1:, :13])
    torch.testing.assert_close(padded[1, :13], alone[0], rtol=1e-5, atol=1e-6)


def test_saved_state_stays_far_below_batch_length_channels_states():
    """At 4,096 tokens the backward keeps one state per 8 steps, never the (B, L, D, N) tensor of all states."""
    batch, length, channels, state = 1, 4096, 64, 16
    generator = torch.Generator().manual_seed(9)
    u = torch.randn(batch, length, channels, generator=generator, requires_grad=True)
    delta = torch.rand(batch, length, channels, generator=generator) * 0.1
    A = -torch.arange(1.0, state + 1).repeat(channels, 1)
    B = torch.randn(batch, length, state, generator=generator)
    C = torch.randn(batch, length, state, generator=generator)
    y = numba_scan.fused_selective_scan(u, delta, A, B, C, z=torch.randn(batch, length, channels,
                                                                         generator=generator))
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    assert max(t.numel() for t in saved) * 8 <= batch * length * channels * state
    assert sum(t.numel() for t in saved) * 2 <= batch * length * channels * state
    y.sum().backward()
    assert torch.isfinite(u.grad).all()


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
