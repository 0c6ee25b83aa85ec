# SPDX-License-Identifier: GPL-3.0-or-later
"""The compiled CPU kernels (selective scan, causal conv + SiLU) against float64 references, their hand-written
backward passes (gradcheck in float64), the Mamba block on both paths, the memory bound and the fallback rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kmm_core.model import compiled_selective_scan as compiled
from kmm_core.model import selective_scan as scan_module
from kmm_core.model.mamba import BidirectionalMamba, MambaBlock
from kmm_core.model.selective_scan import (
    choose_selective_scan,
    selective_scan_compiled,
    selective_scan_numba,
    selective_scan_pure,
    selective_scan_reference,
)
from tests.test_selective_scan import make_scan_inputs

if compiled.kernel() is None:  # the CI machine and the development machines have g++
    pytest.fail(f"the compiled scan must build on this machine: {compiled.kernel_status()}", pytrace=False)


@pytest.mark.parametrize(
    ("batch", "channels", "length", "state"),
    [(3, 8, 37, 16), (2, 21, 40, 5), (1, 35, 1, 16), (2, 48, 16, 4), (1, 17, 33, 1)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_scan_matches_float64_reference(batch, channels, length, state, dtype):
    """Channel counts that do and do not fill the 16-lane blocks, lengths around the 16-step checkpoint chunks."""
    inputs = make_scan_inputs(batch, channels, length, state, dtype=dtype, seed=length)
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = selective_scan_compiled(**inputs, delta_softplus=True)
    assert actual.dtype == dtype and actual.shape == (batch, channels, length)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(actual, expected.to(dtype), rtol=tolerance, atol=tolerance)


def test_compiled_scan_without_optional_terms_matches_reference():
    inputs = make_scan_inputs(batch=2, channels=20, length=30, state=3)
    core = {name: inputs[name] for name in ("u", "A", "B", "C")}
    delta = F.softplus(inputs["delta"])
    torch.testing.assert_close(selective_scan_compiled(delta=delta, **core),
                               selective_scan_reference(delta=delta, **core), rtol=1e-5, atol=1e-5)


def test_compiled_scan_long_sequence_stays_finite_and_exact():
    inputs = make_scan_inputs(batch=1, channels=20, length=1500, state=16)
    inputs["delta"] = inputs["delta"] + 3.0  # decays down to exp(-100): below float32's range, clamped to ~0
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = selective_scan_compiled(**inputs, delta_softplus=True)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optional_terms", [True, False])
def test_gradcheck_of_compiled_backward(optional_terms):
    """Float64 gradcheck over every input; 37 steps cross two checkpoint chunks, 19 channels a partial lane block."""
    inputs = make_scan_inputs(batch=2, channels=19, length=37, state=3, dtype=torch.float64, seed=1)
    if not optional_terms:
        inputs = {name: inputs[name] for name in ("u", "delta", "A", "B", "C")}
        inputs["delta"] = F.softplus(inputs["delta"])
    names = list(inputs)
    tensors = tuple(inputs[name].clone().requires_grad_(True) for name in names)

    def function(*args):
        return selective_scan_compiled(**dict(zip(names, args, strict=True)), delta_softplus=optional_terms)

    assert torch.autograd.gradcheck(function, tensors, eps=1e-6, atol=1e-6)


def test_compiled_gradients_match_sequential_reference_in_float64():
    """Gradients of the compiled scan against autograd through the plain float64 loop, at training-like sizes."""
    inputs = make_scan_inputs(batch=3, channels=40, length=51, state=16, dtype=torch.float64, seed=2)
    weights = torch.randn(3, 40, 51, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = {}
    for label, function in (("compiled", selective_scan_compiled), ("reference", selective_scan_reference)):
        leaves = {name: value.clone().requires_grad_(True) for name, value in inputs.items()}
        (function(**leaves, delta_softplus=True) * weights).sum().backward()
        grads[label] = {name: leaf.grad for name, leaf in leaves.items()}
    for name in inputs:
        torch.testing.assert_close(grads["compiled"][name], grads["reference"][name], rtol=1e-10, atol=1e-10,
                                   msg=name)


def test_causal_conv_silu_matches_conv1d_and_its_gradients():
    torch.manual_seed(4)
    conv = torch.nn.Conv1d(21, 21, 4, groups=21, padding=3).double()
    wide = torch.randn(2, 13, 42, dtype=torch.float64, requires_grad=True)  # x is the first half, as in the block
    x = wide[..., :21]
    expected = F.silu(conv(x.transpose(1, 2))[..., :13]).transpose(1, 2)
    actual = compiled.causal_conv_silu(x, conv.weight[:, 0, :], conv.bias)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    weight = conv.weight[:, 0, :].detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, w, b: compiled.causal_conv_silu(a[..., :21], w, b),
                                    (wide, weight, bias), eps=1e-6, atol=1e-6)


def _block_pair(monkeypatch):
    """Output and gradients of one MambaBlock on the compiled path and on the pure-PyTorch path."""
    torch.manual_seed(5)
    block = MambaBlock(24)
    with torch.no_grad():  # move A and D off their initial values so that every term matters
        block.A_log.add_(0.3 * torch.randn_like(block.A_log))
        block.D.add_(0.5 * torch.randn_like(block.D))
    x = torch.randn(3, 29, 24, generator=torch.Generator().manual_seed(6))
    results = {}
    for label in ("compiled", "pure"):
        monkeypatch.setenv(scan_module.SCAN_VARIABLE, label)
        block.zero_grad()
        leaf = x.clone().requires_grad_(True)
        out = block(leaf)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[label] = (out.detach(), leaf.grad, {n: p.grad.clone() for n, p in block.named_parameters()})
    return results


def test_mamba_block_is_the_same_on_both_paths(monkeypatch):
    results = _block_pair(monkeypatch)
    out_c, grad_c, params_c = results["compiled"]
    out_p, grad_p, params_p = results["pure"]
    torch.testing.assert_close(out_c, out_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_c, grad_p, rtol=1e-4, atol=1e-6)
    for name in params_p:
        torch.testing.assert_close(params_c[name], params_p[name], rtol=1e-4, atol=1e-5, msg=name)


def test_bidirectional_padding_rule_holds_on_compiled_path():
    """Valid outputs of a padded batch equal those of the unpadded clip (the backbone's padding contract)."""
    torch.manual_seed(7)
    backbone = BidirectionalMamba(32, n_layers=2).eval()
    x = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(8))
    valid = torch.arange(20)[None] < torch.tensor([[20], [13]])
    with torch.no_grad():
        padded = backbone(x, valid)
        alone = backbone(x[1:, :13])
    torch.testing.assert_close(padded[1, :13], alone[0], rtol=1e-5, atol=1e-6)


def test_saved_state_stays_far_below_batch_length_channels_states():
    """At 4,096 tokens the backward keeps one state per 16 steps, never the (B, L, D, N) tensor of all states."""
    batch, length, channels, state = 1, 4096, 64, 16
    generator = torch.Generator().manual_seed(9)
    u = torch.randn(batch, length, channels, generator=generator, requires_grad=True)
    delta = torch.rand(batch, length, channels, generator=generator) * 0.1
    A = -torch.arange(1.0, state + 1).repeat(channels, 1)
    B = torch.randn(batch, length, state, generator=generator)
    C = torch.randn(batch, length, state, generator=generator)
    y = compiled.fused_selective_scan(u, delta, A, B, C, z=torch.randn(batch, length, channels, generator=generator))
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    assert max(t.numel() for t in saved) * 8 <= batch * length * channels * state
    assert sum(t.numel() for t in saved) * 2 <= batch * length * channels * state
    y.sum().backward()
    assert torch.isfinite(u.grad).all()


def test_fallback_when_no_compiler_or_turned_off(monkeypatch, tmp_path):
    """Without a compiler (or a working build) the rule takes numba's loops; KMM_SELECTIVE_SCAN=pure the pure scan."""
    monkeypatch.delenv(scan_module.SCAN_VARIABLE, raising=False)
    u = torch.zeros(1, 2, 3)
    assert choose_selective_scan(u) is selective_scan_compiled  # this machine has a compiler
    try:
        monkeypatch.setenv(scan_module.SCAN_VARIABLE, "pure")
        assert choose_selective_scan(u) is selective_scan_pure
        assert scan_module.cpu_scan_choice() == ("pure", "KMM_SELECTIVE_SCAN=pure")

        monkeypatch.delenv(scan_module.SCAN_VARIABLE)
        monkeypatch.setenv("KMM_CACHE_DIR", str(tmp_path))  # nothing cached here: a build is needed
        monkeypatch.setattr(compiled, "_compiler", lambda: None)
        compiled.kernel.cache_clear()
        assert choose_selective_scan(u) is selective_scan_numba
        assert "no C++ compiler" in compiled.kernel_status()

        monkeypatch.setenv(scan_module.SCAN_VARIABLE, "compiled")  # asked for, not there: the pure scan, saying why
        name, why = scan_module.cpu_scan_choice()
        assert name == "pure" and "compiled: no C++ compiler" in why

        monkeypatch.setattr(compiled, "_compiler", lambda: "/bin/false")  # a "compiler" whose build fails
        compiled.kernel.cache_clear()
        assert compiled.kernel() is None and compiled.kernel_status().startswith("build failed")
        assert not list(tmp_path.rglob("*.so"))  # no half-written library left behind
    finally:
        monkeypatch.undo()
        compiled.kernel.cache_clear()
    assert compiled.kernel() is not None
