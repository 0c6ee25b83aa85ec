# SPDX-License-Identifier: GPL-3.0-or-later
"""What the two fused CPU loops' autograd functions (``compiled_selective_scan``, ``numba_selective_scan``) share:
the scan's entry (bias, softplus, with or without autograd), the channel groups of its backward, and the gradient
buffers of the scan and the causal convolution with the sums that finish them.

The loops write per-sample (and per channel group) parts of the parameter gradients, so no two threads write the
same place; these sums over the parts are the only reductions done in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..common.errors import InputTensorError


def run_fused_scan(scan_function: type[torch.autograd.Function], forward_only: Callable, u, delta, A, B, C, D, z,
                   delta_bias, delta_softplus, lengths=None) -> torch.Tensor:
    """A fused loop's time-major selective scan: u, delta, z (B, L, D); A (D, N); B, C (B, L, N); D (D,); one dtype
    for all (float32 or float64); views whose last dimension is contiguous (slices of a wider linear output) are read
    in place. ``scan_function.apply(*tensors, softplus, lengths)`` when a gradient is wanted, else
    ``forward_only((*tensors, lengths), softplus)``; ``delta_bias`` and ``delta_softplus`` act as in mamba_ssm: the
    bias is a PyTorch add, the softplus the loops' own, forward and backward (within a few float32 rounding steps of
    PyTorch's; two (B, L, D) passes less each way and no call to PyTorch's log1p, which does not vectorise).
    ``lengths`` (B,): each sample's valid steps, the padding after them (``row_lengths``); None: all valid."""
    if delta_bias is not None:
        delta = delta + delta_bias
    tensors = (u, delta, A, B, C, D, z)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return scan_function.apply(*tensors, bool(delta_softplus), lengths)
    return forward_only((*tensors, lengths), bool(delta_softplus))


def row_lengths(lengths: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """Each sample's number of valid steps as the loops read them (contiguous int64 (B,)) for time-major ``rows``
    (B, L, X): valid steps first, padding after them, which the loops skip (zero outputs and zero gradients there: a
    causal loop never carries a padded step into a valid one). None: every step valid."""
    batch, length = rows.shape[:2]
    if lengths is None:
        return torch.full((batch,), length, dtype=torch.int64)
    return checked_lengths(lengths, batch, length).to(device="cpu").contiguous()


def checked_lengths(lengths: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """``lengths`` as int64 (B,) on its own device, refused (InputTensorError naming `lengths`) unless it is an
    integer tensor (not bool, float or complex) of shape (batch,) with every value within 0..length: the one check
    every path of a Mamba block makes (fused CPU loops, the pure scan, CUDA)."""
    if (not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (batch,) or lengths.dtype == torch.bool
            or lengths.dtype.is_floating_point or lengths.is_complex()):
        shown = f"{lengths.dtype} {tuple(lengths.shape)}" if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise InputTensorError(f"lengths: expected an integer tensor of shape ({batch},), got {shown}")
    lengths = lengths.to(dtype=torch.int64)
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > length):
        raise InputTensorError(f"lengths: every sample's valid steps must be within 0..{length}, got "
                               f"{lengths.tolist()}")
    return lengths


def channel_groups(blocks: int, batch: int, threads: int) -> int:
    """Channel groups per sample in the scan's backward: enough work items for every thread, at most one per block
    of channels; each group sums its own dB/dC part."""
    return max(1, min(blocks, -(-2 * threads // batch)))


class ScanGradients:
    """The scan's gradient buffers for time-major u (B, L, D) with ``state`` states: whole for u, delta and z, per
    sample for A and D, per sample and channel group for B and C (the loops fill them; ``result`` sums the parts)."""

    def __init__(self, u: torch.Tensor, state: int, groups: int, with_z: bool):
        batch, length, channels = u.shape
        self.u, self.delta = torch.empty_like(u), torch.empty_like(u)
        self.z = torch.empty_like(u) if with_z else None
        self.A_parts, self.D_parts = u.new_empty(batch, channels, state), u.new_empty(batch, channels)
        self.B_parts = u.new_empty(batch, groups, length, state)
        self.C_parts = u.new_empty(batch, groups, length, state)

    def result(self, with_D: bool) -> tuple:
        """The gradients of (u, delta, A, B, C, D, z) as the autograd function returns them."""
        grad_D = self.D_parts.sum(0) if with_D else None
        return self.u, self.delta, self.A_parts.sum(0), self.B_parts.sum(1), self.C_parts.sum(1), grad_D, self.z


class ConvGradients:
    """The causal convolution's gradient buffers for time-major x (B, L, D) and ``taps`` taps: whole for x, per
    sample for the weight and bias (``result`` sums the parts, the weight back as (D, K))."""

    def __init__(self, x: torch.Tensor, taps: int):
        batch, length, channels = x.shape
        self.x = x.new_empty(batch, length, channels)
        self.weight_parts = x.new_empty(batch, taps, channels)
        self.bias_parts = x.new_empty(batch, channels)

    def result(self) -> tuple:
        return self.x, self.weight_parts.sum(0).t(), self.bias_parts.sum(0)
