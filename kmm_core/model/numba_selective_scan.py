# SPDX-License-Identifier: GPL-3.0-or-later
"""The Mamba block's fused CPU scan and causal convolution as autograd functions over numba's compiled loops.

Why: the pure-PyTorch scan writes (chunk, B, D, N) tensors for every elementwise step (decay, drive, states,
adjoints), about twenty passes over B*D*L*N floats per forward+backward, which made the bidirectional-Mamba generator
train 5-9x slower than the equal-size transformer on CPU. The loops of ``numba_scan_kernels`` keep each (batch,
channel) state in a small buffer while they walk over time: one pass forward, two backward (chunk recompute +
adjoint), and the only stored states are one checkpoint every ``CHUNK`` steps (B, D, L/8, N), so the long-sequence
memory bound holds. numba ships LLVM inside its wheels (Windows, macOS, Linux), so no system compiler is needed.

``kernels()`` imports that module (numba itself, about 0.3 s) on first use; the loops compile on their first call
(a few seconds, once per CPU: numba caches the machine code on disk). Work is split over ``torch.get_num_threads()``
threads by ranges of work items (the loops release the GIL). ``KMM_SELECTIVE_SCAN=pure`` turns this path off
(``selective_scan.cpu_scan_choice`` is the one rule that picks a CPU scan).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np
import torch

from .fused_scan_autograd import ConvGradients, ScanGradients, channel_groups, row_lengths, run_fused_scan

_status = {"reason": "not loaded yet"}


@functools.cache
def kernels() -> ModuleType | None:
    """The numba kernel module, or None when numba is missing or broken (``kernels_status()`` says why)."""
    try:
        from . import numba_scan_kernels
    except Exception as error:  # ImportError, or a broken llvmlite binary: the caller falls back to the pure scan
        _status["reason"] = f"numba is not usable ({type(error).__name__}: {error}); pip install numba"
        return None
    import numba

    _status["reason"] = f"numba {numba.__version__} for {_cpu_name()}"
    return numba_scan_kernels


def kernels_status() -> str:
    """Why ``kernels()`` returned what it did (for `kmm doctor` and error messages)."""
    return _status["reason"]


def warm_up() -> float:
    """Compile (or load from numba's cache) the loops generation runs: the float32 scan and convolution forwards, on
    tiny inputs. Seconds taken: a few the first time on a CPU, a fraction of one afterwards. ``kmm doctor`` (which the
    add-on's backend installer runs) calls it, so the first Generate does not wait for the compiler."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5, 3, generator=generator)
    with torch.no_grad():
        causal_conv_silu(x, torch.randn(3, 4, generator=generator), torch.zeros(3))
        fused_selective_scan(x, torch.rand(1, 5, 3, generator=generator), -torch.ones(3, 2), torch.randn(1, 5, 2),
                             torch.randn(1, 5, 2), D=torch.ones(3), z=x)
    return time.perf_counter() - start


def _cpu_name() -> str:
    """The CPU numba compiles for (NUMBA_CPU_NAME overrides the host's, e.g. ``haswell`` for AVX2 only)."""
    from numba.core import config

    if config.CPU_NAME:
        return f"{config.CPU_NAME} (NUMBA_CPU_NAME)"
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="kmm-scan")


def _run_items(function, args: tuple, items: int, threads: int) -> None:
    """``function(*args, first, stop)`` over items [0, items), split into up to ``threads`` contiguous ranges run
    side by side (this thread runs the first)."""
    parts = max(1, min(threads, items))
    if parts == 1:
        function(*args, 0, items)
        return
    bounds = [items * part // parts for part in range(parts + 1)]
    futures = [_pool().submit(function, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    function(*args, bounds[0], bounds[1])
    for future in futures:
        future.result()


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()


def _flat_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, int]:
    """``tensor`` (B, L, X) as the kernels read it: a flat array whose row (b, t) starts at (b L + t) * stride, read
    in place when the last dimension has unit stride and the rows a fixed stride; (the tensor kept, array, stride)."""
    batch, length, width = tensor.shape
    if length == 1:
        stride = tensor.stride(0) if batch > 1 else width
        regular = tensor.stride(2) == 1 or width <= 1
    else:
        stride = tensor.stride(1)
        regular = tensor.stride(2) == 1 and (batch == 1 or tensor.stride(0) == length * stride)
    if not regular or stride < width:
        tensor = tensor.contiguous()
        stride = width
    span = (batch * length - 1) * stride + width
    return tensor, _array(torch.as_strided(tensor, (span,), (1,))), stride


def _dummy(dtype: torch.dtype, dims: int) -> np.ndarray:
    """A stand-in for an absent optional array (the kernels read it only when its flag is set)."""
    return np.zeros((1,) * dims, dtype={torch.float32: np.float32, torch.float64: np.float64}[dtype])


class _ScanInputs:
    """The fused scan's inputs, time-major (B, L, D) like the Mamba block's, in the kernels' layout, with each sample's
    number of valid steps (``row_lengths``)."""

    def __init__(self, u, delta, A, B, C, D, z, lengths=None):
        self.u, self.delta, self.A = u.contiguous(), delta.contiguous(), A.contiguous()
        self.B, self.b_array, self.b_stride = _flat_rows(B)
        self.C, self.c_array, self.c_stride = _flat_rows(C)
        self.D = None if D is None else D.contiguous()
        if z is None:
            self.z, self.z_array, self.z_stride = None, _dummy(u.dtype, 1), 0
        else:
            self.z, self.z_array, self.z_stride = _flat_rows(z)
        self.lengths = row_lengths(lengths, u)

    def tensors(self) -> tuple:
        return self.u, self.delta, self.A, self.B, self.C, self.D, self.z, self.lengths

    def arrays(self) -> tuple:
        dtype = self.u.dtype
        return (_array(self.u).reshape(-1), _array(self.delta).reshape(-1), _array(self.A), self.b_array,
                self.c_array, _dummy(dtype, 1) if self.D is None else _array(self.D), self.z_array,
                _array(self.lengths))

    def sizes(self) -> tuple:
        batch, length, channels = self.u.shape
        return batch, length, channels, self.b_stride, self.c_stride, self.z_stride, self.D is not None, \
            self.z is not None


def _blocks(library: ModuleType, channels: int) -> int:
    return -(-channels // library.LANES)


def fused_scan_forward(library: ModuleType, inputs: _ScanInputs, for_backward: bool, softplus: bool = False):
    """y (B, L, D) and, for the backward, y before the gate and the state checkpoints; ``softplus``: the loops take
    softplus(delta) themselves (the forward-only path)."""
    batch, length, channels = inputs.u.shape
    y = torch.empty_like(inputs.u)
    y_pre = checkpoints = None
    dtype = inputs.u.dtype
    if for_backward:
        chunks = -(-length // library.CHUNK)
        y_pre = torch.empty_like(inputs.u) if inputs.z is not None else None
        checkpoints = inputs.u.new_empty(batch * _blocks(library, channels), chunks, inputs.A.shape[1], library.LANES)
    arguments = (*inputs.arrays(), _array(y).reshape(-1),
                 _dummy(dtype, 1) if y_pre is None else _array(y_pre).reshape(-1),
                 _dummy(dtype, 4) if checkpoints is None else _array(checkpoints), *inputs.sizes(), for_backward,
                 softplus)
    _run_items(library.scan_forward, arguments, batch * _blocks(library, channels), torch.get_num_threads())
    return y, y_pre, checkpoints


class FusedSelectiveScan(torch.autograd.Function):
    """y = (sum_n C_t h_t + D u_t) * silu(z_t), time-major, on the numba loops (delta positive, or taken through
    softplus by the loops when ``softplus``)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, softplus, lengths):
        inputs = _ScanInputs(u, delta, A, B, C, D, z, lengths)
        y, y_pre, checkpoints = fused_scan_forward(kernels(), inputs, True, softplus)
        ctx.softplus = softplus
        ctx.save_for_backward(*inputs.tensors(), y_pre, checkpoints)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        library = kernels()
        u, delta, A, B, C, D, z, lengths, y_pre, checkpoints = ctx.saved_tensors
        inputs = _ScanInputs(u, delta, A, B, C, D, z, lengths)  # saved tensors are already in the kernels' layout
        batch, _, channels = u.shape
        dtype = u.dtype
        threads = torch.get_num_threads()
        groups = channel_groups(_blocks(library, channels), batch, threads) if threads > 1 else 1
        grad_y = grad_y.to(dtype).contiguous()
        grads = ScanGradients(u, A.shape[1], groups, with_z=z is not None)
        arguments = (*inputs.arrays(),
                     _dummy(dtype, 1) if y_pre is None else _array(y_pre).reshape(-1), _array(checkpoints),
                     _array(grad_y).reshape(-1), _array(grads.u).reshape(-1), _array(grads.delta).reshape(-1),
                     _dummy(dtype, 1) if grads.z is None else _array(grads.z).reshape(-1), _array(grads.A_parts),
                     _array(grads.D_parts), _array(grads.B_parts), _array(grads.C_parts), *inputs.sizes(), groups,
                     ctx.softplus)
        _run_items(library.scan_backward, arguments, batch * groups, threads)
        return *grads.result(with_D=D is not None), None, None


def fused_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         lengths=None) -> torch.Tensor:
    """Time-major selective scan on the numba loops (``kernels()`` must not be None); arguments and layout as
    ``fused_scan_autograd.run_fused_scan`` says."""
    return run_fused_scan(
        FusedSelectiveScan,
        lambda tensors, softplus: fused_scan_forward(kernels(), _ScanInputs(*tensors), False, softplus)[0],
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, lengths)


class CausalConvSiLU(torch.autograd.Function):
    """silu(causal depthwise conv1d(x)) over time, time-major: x (B, L, D) (a view with unit channel stride is read
    in place), weight (D, K) as Conv1d's (D, 1, K) weight without its middle axis, bias (D,); ``lengths`` (B,) each
    sample's valid steps or None (all): padded steps come out zero."""

    @staticmethod
    def forward(ctx, x, weight, bias, lengths):
        x, x_array, stride = _flat_rows(x)
        weight_t = weight.t().contiguous()
        bias = bias.contiguous()
        lengths = row_lengths(lengths, x)
        batch, length, channels = x.shape
        out = x.new_empty(batch, length, channels)
        _run_items(kernels().conv_forward, (x_array, _array(weight_t), _array(bias), _array(lengths),
                                            _array(out).reshape(-1), length, channels, weight.shape[1], stride),
                   batch * length, torch.get_num_threads())
        ctx.save_for_backward(x, weight_t, bias, lengths)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight_t, bias, lengths = ctx.saved_tensors
        x, x_array, stride = _flat_rows(x)
        batch, length, channels = x.shape
        taps = weight_t.shape[0]
        grad_out = grad_out.to(x.dtype).contiguous()
        grads = ConvGradients(x, taps)
        _run_items(kernels().conv_backward, (x_array, _array(weight_t), _array(bias), _array(lengths),
                                             _array(grad_out).reshape(-1), _array(grads.x).reshape(-1),
                                             _array(grads.weight_parts), _array(grads.bias_parts), length, channels,
                                             taps, stride), batch, torch.get_num_threads())
        return *grads.result(), None


def causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                     lengths: torch.Tensor | None = None) -> torch.Tensor:
    """silu(causal depthwise conv(x)) on the numba loops (``kernels()`` must not be None); see CausalConvSiLU."""
    return CausalConvSiLU.apply(x, weight, bias, lengths)
