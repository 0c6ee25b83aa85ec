# SPDX-License-Identifier: GPL-3.0-or-later
"""Both fused CPU loops (the compiled C++ loop, numba's loops) against float64 references: the scan, the causal
conv + SiLU, their hand-written backward passes (gradcheck in float64), the Mamba block on each path, the padding
rule and the memory bound. What only one loop has is tested in test_compiled_selective_scan.py and
test_numba_selective_scan.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kmm_core.common.errors import InputTensorError
from kmm_core.model import compiled_selective_scan as compiled
from kmm_core.model import numba_selective_scan as numba_scan
from kmm_core.model import selective_scan as scan_module
from kmm_core.model.mamba import BidirectionalMamba, MambaBlock
from kmm_core.model.selective_scan import selective_scan_compiled, selective_scan_numba, selective_scan_reference
from tests.test_selective_scan import make_scan_inputs

if compiled.kernel() is None:  # the CI machine and the development machines have g++
    pytest.fail(f"the compiled scan must build on this machine: {compiled.kernel_status()}", pytrace=False)
if numba_scan.kernels() is None:  # numba is a dependency of the project: it must import
    pytest.fail(f"numba's scan must load: {numba_scan.kernels_status()}", pytrace=False)

# Each loop's module (its time-major fused_selective_scan and causal_conv_silu) and its (B, D, L) scan.
LOOPS = {"compiled": (compiled, selective_scan_compiled), "numba": (numba_scan, selective_scan_numba)}
NUMBA_LANES = numba_scan.kernels().LANES
COMPILED_LANES = compiled.kernel().kmm_scan_lanes()
# Channel counts that do and do not fill each loop's lane blocks, lengths around the checkpoint chunks.
SHAPES = [(3, 8, 37, 16), (2, 21, 40, 5), (1, 35, 1, 16)]
SHAPES_OF = {"compiled": [*SHAPES, (2, 3 * COMPILED_LANES, 16, 4), (1, COMPILED_LANES + 1, 33, 1)],
             "numba": [*SHAPES, (2, 2 * NUMBA_LANES, 16, 4), (1, NUMBA_LANES + 3, 33, 1)]}


@pytest.mark.parametrize(("loop", "batch", "channels", "length", "state"),
                         [(loop, *shape) for loop, shapes in SHAPES_OF.items() for shape in shapes])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scan_matches_float64_reference(loop, batch, channels, length, state, dtype):
    scan = LOOPS[loop][1]
    inputs = make_scan_inputs(batch, channels, length, state, dtype=dtype, seed=length)
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = scan(**inputs, delta_softplus=True)
    assert actual.dtype == dtype and actual.shape == (batch, channels, length)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(actual, expected.to(dtype), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("loop", LOOPS)
def test_scan_without_optional_terms_matches_reference(loop):
    scan = LOOPS[loop][1]
    inputs = make_scan_inputs(batch=2, channels=20, length=30, state=3)
    core = {name: inputs[name] for name in ("u", "A", "B", "C")}
    delta = F.softplus(inputs["delta"])
    torch.testing.assert_close(scan(delta=delta, **core), selective_scan_reference(delta=delta, **core),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loop", LOOPS)
def test_long_sequence_stays_finite_and_exact(loop):
    scan = LOOPS[loop][1]
    inputs = make_scan_inputs(batch=1, channels=20, length=1500, state=16)
    inputs["delta"] = inputs["delta"] + 3.0  # decays down to exp(-100): below float32's range, clamped to ~0
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    actual = scan(**inputs, delta_softplus=True)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("optional_terms", [True, False])
def test_gradcheck_of_the_backward(loop, optional_terms):
    scan = LOOPS[loop][1]
    """Float64 gradcheck over every input; 37 steps cross the checkpoint chunks, 19 channels a partial lane block."""
    inputs = make_scan_inputs(batch=2, channels=19, length=37, state=3, dtype=torch.float64, seed=1)
    if not optional_terms:
        inputs = {name: inputs[name] for name in ("u", "delta", "A", "B", "C")}
        inputs["delta"] = F.softplus(inputs["delta"])
    names = list(inputs)
    tensors = tuple(inputs[name].clone().requires_grad_(True) for name in names)

    def function(*args):
        return scan(**dict(zip(names, args, strict=True)), delta_softplus=optional_terms)

    assert torch.autograd.gradcheck(function, tensors, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(("loop", "threads"), [("compiled", None), ("numba", 1), ("numba", 3)])
def test_gradients_match_sequential_reference_in_float64(loop, threads):
    """Gradients against autograd through the plain float64 loop at training-like sizes; ``threads`` (if given)
    for the scan under test only: numba's work on one thread and split over three (channel groups summed)."""
    scan = LOOPS[loop][1]
    channels = 40 if loop == "compiled" else 2 * NUMBA_LANES + 8
    inputs = make_scan_inputs(batch=3, channels=channels, length=51, state=16, dtype=torch.float64, seed=2)
    weights = torch.randn(3, channels, 51, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = {}
    previous = torch.get_num_threads()
    try:
        for label, function in (("scan", scan), ("reference", selective_scan_reference)):
            torch.set_num_threads(threads if label == "scan" and threads is not None else previous)
            leaves = {name: value.clone().requires_grad_(True) for name, value in inputs.items()}
            (function(**leaves, delta_softplus=True) * weights).sum().backward()
            grads[label] = {name: leaf.grad for name, leaf in leaves.items()}
    finally:
        torch.set_num_threads(previous)
    for name in inputs:
        torch.testing.assert_close(grads["scan"][name], grads["reference"][name], rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("loop", LOOPS)
def test_causal_conv_silu_matches_conv1d_and_its_gradients(loop):
    loops = LOOPS[loop][0]
    """The loop's conv + SiLU against Conv1d on a strided view (x is the first half, as in the block), and gradcheck."""
    torch.manual_seed(4)
    conv = torch.nn.Conv1d(21, 21, 4, groups=21, padding=3).double()
    wide = torch.randn(2, 13, 42, dtype=torch.float64, requires_grad=True)
    x = wide[..., :21]
    expected = F.silu(conv(x.transpose(1, 2))[..., :13]).transpose(1, 2)
    actual = loops.causal_conv_silu(x, conv.weight[:, 0, :], conv.bias)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    weight = conv.weight[:, 0, :].detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, w, b: loops.causal_conv_silu(a[..., :21], w, b),
                                    (wide, weight, bias), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", LOOPS)
def test_mamba_block_is_the_same_on_the_loop_and_pure_paths(monkeypatch, path):
    """One MambaBlock's output and gradients on ``path`` (a KMM_SELECTIVE_SCAN value) equal the pure scan's."""
    torch.manual_seed(5)
    block = MambaBlock(24)
    with torch.no_grad():  # move A and D off their initial values so that every term matters
        block.A_log.add_(0.3 * torch.randn_like(block.A_log))
        block.D.add_(0.5 * torch.randn_like(block.D))
    x = torch.randn(3, 29, 24, generator=torch.Generator().manual_seed(6))
    results = {}
    for label in (path, "pure"):
        monkeypatch.setenv(scan_module.SCAN_VARIABLE, label)
        block.zero_grad()
        leaf = x.clone().requires_grad_(True)
        out = block(leaf)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[label] = (out.detach(), leaf.grad, {n: p.grad.clone() for n, p in block.named_parameters()})
    (out_f, grad_f, params_f), (out_p, grad_p, params_p) = results[path], results["pure"]
    torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_f, grad_p, rtol=1e-4, atol=1e-6)
    for name in params_p:
        torch.testing.assert_close(params_f[name], params_p[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("loop", LOOPS)
def test_bidirectional_padding_rule_holds_on_the_loop(monkeypatch, loop):
    """Valid outputs of a padded batch equal those of the unpadded clip (the backbone's padding contract)."""
    monkeypatch.setenv(scan_module.SCAN_VARIABLE, loop)
    torch.manual_seed(7)
    backbone = BidirectionalMamba(32, n_layers=2).eval()
    x = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(8))
    valid = torch.arange(20)[None] < torch.tensor([[20], [13]])
    with torch.no_grad():
        padded = backbone(x, valid)
        alone = backbone(x[1:, :13])
    torch.testing.assert_close(padded[1, :13], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loop", LOOPS)
def test_lengths_stop_the_loops_at_the_padding_and_change_no_valid_number(loop):
    """With each sample's valid length the scan and the convolution stop there: padded steps come out zero (outputs
    and input gradients), and the valid steps' outputs and every gradient equal those of the whole-length loops bit
    for bit (the loss reads valid steps only, as training's does)."""
    loops = LOOPS[loop][0]
    generator = torch.Generator().manual_seed(12)
    batch, length, channels, state = 3, 37, 40, 16
    lengths = torch.tensor([37, 20, 5])
    valid = (torch.arange(length)[None] < lengths[:, None])[..., None]
    tensors = {"u": torch.randn(batch, length, channels, generator=generator),
               "delta": torch.randn(batch, length, channels, generator=generator) - 2,
               "A": -torch.rand(channels, state, generator=generator) * 3,
               "B": torch.randn(batch, length, state, generator=generator),
               "C": torch.randn(batch, length, state, generator=generator),
               "D": torch.randn(channels, generator=generator), "z": torch.randn(batch, length, channels, generator=generator),
               "weight": torch.randn(channels, 4, generator=generator), "bias": torch.randn(channels, generator=generator)}
    weights = torch.randn(batch, length, channels, generator=generator) * valid  # a loss of valid steps only

    def run(step_lengths):
        leaves = {name: t.clone().requires_grad_(True) for name, t in tensors.items()}
        x = loops.causal_conv_silu(leaves["u"], leaves["weight"], leaves["bias"], step_lengths)
        y = loops.fused_selective_scan(x, leaves["delta"], leaves["A"], leaves["B"], leaves["C"], D=leaves["D"],
                                       z=leaves["z"], delta_softplus=True, lengths=step_lengths)
        (y * weights).sum().backward()
        return x.detach(), y.detach(), {name: leaf.grad for name, leaf in leaves.items()}

    (x_all, y_all, grads_all), (x_cut, y_cut, grads_cut) = run(None), run(lengths)
    assert torch.equal(x_cut * valid, x_all * valid) and torch.equal(y_cut * valid, y_all * valid)
    assert not x_cut.masked_select(~valid).any() and not y_cut.masked_select(~valid).any()
    for name in tensors:
        assert torch.equal(grads_cut[name], grads_all[name]), name
    for name in ("u", "delta", "z"):
        assert not grads_cut[name].masked_select(~valid).any(), name
    with torch.no_grad():  # the forward-only path (generation) stops there too
        y_forward = loops.fused_selective_scan(x_all, tensors["delta"], tensors["A"], tensors["B"], tensors["C"],
                                               D=tensors["D"], z=tensors["z"], delta_softplus=True, lengths=lengths)
    assert torch.equal(y_forward, y_cut)
    with pytest.raises(InputTensorError, match="lengths"):
        loops.fused_selective_scan(x_all, tensors["delta"], tensors["A"], tensors["B"], tensors["C"],
                                   lengths=torch.tensor([37, 38, 0]))


@pytest.mark.parametrize("loop", LOOPS)
def test_a_padded_training_step_skips_the_padding_with_the_same_numbers(monkeypatch, loop):
    """The bidirectional backbone tells its blocks the valid lengths: in training each block runs its products on the
    valid tokens only and its loops stop at the padding, whose outputs are zero; the valid outputs and every parameter
    gradient equal those of the blocks run over the whole padded batch (within float rounding: a weight's gradient
    sums fewer rows). In evaluation the products run over the whole batch: bit for bit the same valid outputs."""
    monkeypatch.setenv(scan_module.SCAN_VARIABLE, loop)
    torch.manual_seed(13)
    backbone = BidirectionalMamba(32, n_layers=2)
    x = torch.randn(3, 23, 32, generator=torch.Generator().manual_seed(14))
    lengths = torch.tensor([23, 11, 4])
    valid = torch.arange(23)[None] < lengths[:, None]
    target = torch.randn(3, 23, 32, generator=torch.Generator().manual_seed(15))
    block_outputs = []
    backbone.layers[0].forward_mamba.register_forward_hook(lambda module, inputs, out: block_outputs.append(out))

    def step():
        backbone.zero_grad()
        out = backbone(x, valid)
        ((out - target)[valid] ** 2).sum().backward()
        return out.detach(), {name: p.grad.clone() for name, p in backbone.named_parameters()}

    out_cut, grads_cut = step()
    assert not block_outputs[-1].detach()[~valid].any()  # a block's padded outputs: zero
    with pytest.raises(InputTensorError, match=r"lengths: expected an integer tensor of shape \(3,\)"):
        backbone.layers[0].forward_mamba(x, torch.tensor([23, 11, 4, 2]))  # a length too many: named, not an IndexError
    with torch.no_grad():
        backbone.eval()
        evaluated = backbone(x, valid)
        backbone.train()
    whole_length = MambaBlock._forward_fused
    monkeypatch.setattr(MambaBlock, "_forward_fused", lambda self, hidden, loops, lengths: whole_length(
        self, hidden, loops, None))
    out_all, grads_all = step()
    assert block_outputs[-1].detach()[~valid].abs().sum() > 0  # over the padding: the padded outputs are not zero
    torch.testing.assert_close(out_cut, out_all, rtol=1e-5, atol=1e-6)
    assert torch.equal(evaluated, out_all)  # evaluation: the whole batch through the products, lengths in the loops
    for name in grads_all:
        torch.testing.assert_close(grads_cut[name], grads_all[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("loop", LOOPS)
def test_saved_state_stays_far_below_batch_length_channels_states(loop):
    """At 4,096 tokens the backward keeps one state per checkpoint chunk (8 steps for numba, 16 for the C++ loop),
    never the (B, L, D, N) tensor of all states."""
    loops = LOOPS[loop][0]
    batch, length, channels, state = 1, 4096, 64, 16
    generator = torch.Generator().manual_seed(9)
    u = torch.randn(batch, length, channels, generator=generator, requires_grad=True)
    delta = torch.rand(batch, length, channels, generator=generator) * 0.1
    A = -torch.arange(1.0, state + 1).repeat(channels, 1)
    B = torch.randn(batch, length, state, generator=generator)
    C = torch.randn(batch, length, state, generator=generator)
    y = loops.fused_selective_scan(u, delta, A, B, C, z=torch.randn(batch, length, channels, generator=generator))
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    assert max(t.numel() for t in saved) * 8 <= batch * length * channels * state
    assert sum(t.numel() for t in saved) * 2 <= batch * length * channels * state
    y.sum().backward()
    assert torch.isfinite(u.grad).all()


@pytest.mark.parametrize("loop", LOOPS)
def test_the_loops_own_softplus_is_pytorchs_within_float32_rounding(loop):
    """The loops take delta's softplus themselves: one step of a one-state scan with u = B = C = 1 and no history
    returns softplus(delta) itself, which must match float64's within a few float32 rounding steps from -80 to 80
    (exactly x above PyTorch's threshold of 20), and PyTorch's float32 softplus; its gradient is sigmoid(delta)."""
    scan = LOOPS[loop][1]
    x = torch.cat([torch.linspace(-80, 80, 4001), torch.tensor([0.0, -1e-8, 1e-8, 19.99, 20.0, 20.01])])
    delta = x.reshape(1, -1, 1)
    ones = torch.ones(1, 1, 1)
    with torch.no_grad():
        y = scan(torch.ones_like(delta), delta, -torch.ones(x.numel(), 1), ones, ones, delta_softplus=True).flatten()
    exact = F.softplus(x.double())
    relative = ((y.double() - exact).abs() / exact).max().item()
    assert relative < 4e-7, relative
    torch.testing.assert_close(y, F.softplus(x), rtol=4e-7, atol=0)
    assert torch.equal(y[x > 20], x[x > 20])
    # The training path (a gradient wanted) gives the same values, and the softplus' slope as delta's gradient.
    leaf = delta.clone().requires_grad_()
    trained = scan(torch.ones_like(delta), leaf, -torch.ones(x.numel(), 1), ones, ones, delta_softplus=True)
    torch.testing.assert_close(trained.detach().flatten(), y, rtol=4e-7, atol=0)
    trained.sum().backward()
    torch.testing.assert_close(leaf.grad.flatten(), torch.sigmoid(x), rtol=4e-7, atol=1e-30)
