# SPDX-License-Identifier: GPL-3.0-or-later
"""Mamba-1 block and the bidirectional Mamba stack that is the KMM generator's backbone.

Parameter names follow mamba_ssm's ``Mamba`` (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), which are also
those of transformers' ``MambaMixer``: one state_dict serves the pure-PyTorch path on CPU and the fused CUDA kernel.

Padding. ``BidirectionalMamba`` takes right-padded sequences (valid tokens first, then padding). The forward
direction is causal, so padding at the end never reaches a valid token. For the backward direction each sequence's
*valid part* is reversed in place (token i <-> token len-1-i, padding stays at the end), so the backward scan also
sees valid tokens first and padding last: valid outputs are exactly those of the unpadded clip in both directions,
whatever the padding holds. Zeroing padded inputs instead would not be enough: the conv bias and D skip make padded
positions non-zero after the convolution, and that state would flow into the reversed valid tokens.

On the fused CPU loops each block is also told the valid lengths, and its convolution and scan stop there: padding
(about half the tokens of a random training batch) costs them nothing and comes out zero. Valid outputs, and every
gradient (the padded outputs never reach a valid token, so their gradients are exactly zero), are the same bit for
bit as when the loops run over the padding too. In training the block's products (in_proj, x_proj, dt_proj,
out_proj) also run on the valid tokens only (gathered, then scattered back with zeros on the padding): the same
numbers within float rounding (a weight's gradient sums the valid rows only, grouped otherwise by the matrix product),
at about half the work of a random batch. Evaluation and generation run the products over the whole batch, as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import ConfigError, InputTensorError
from .fused_scan_autograd import checked_lengths, row_lengths
from .selective_scan import fused_cpu_loops, selective_scan


class MambaBlock(nn.Module):
    """Mamba-1 mixer (causal): in_proj -> conv1d + SiLU -> selective scan gated by SiLU(z) -> out_proj.

    Input and output (batch, length, d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if value < 1:
                raise ConfigError(f"MambaBlock: {name} must be >= 1, got {value}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        # Depthwise conv; padding d_conv-1 on both sides, the tail is cut in forward() to make it causal.
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        # Mamba excludes the SSM parameters from weight decay; the training code reads this flag.
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._init_dt_proj(dt_min, dt_max, dt_init_floor, dt_scale)

    @torch.no_grad()
    def _init_dt_proj(self, dt_min: float, dt_max: float, dt_init_floor: float, dt_scale: float) -> None:
        """Mamba's initialisation: softplus(dt_proj.bias) is log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,): each sequence's valid tokens (right padding after them), or None; checked on every path
        (`checked_lengths`).  The fused CPU loops skip the padding; the other paths run over it, and its outputs are
        zero on every path."""
        batch, length = hidden.shape[:2]
        if lengths is not None:
            lengths = checked_lengths(lengths, batch, length)
        loops = fused_cpu_loops(hidden, self.d_state)
        if loops is not None:
            return self._forward_fused(hidden, loops, lengths)
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = torch.split(self.x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # bias is added inside the scan, as mamba_ssm does
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            D=self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        out = self.out_proj(y.transpose(1, 2))
        if lengths is not None:  # the padding's outputs zero, as the fused loops leave them
            valid = torch.arange(length, device=out.device) < lengths.to(out.device)[:, None]
            out = out * valid[..., None].to(out.dtype)
        return out

    def _forward_fused(self, hidden: torch.Tensor, loops, lengths: torch.Tensor | None) -> torch.Tensor:
        """The same block on fused CPU loops (``selective_scan.fused_cpu_loops``), time-major throughout (no
        transposes, no (B, D, L) copies); the convolution and the scan stop at each sequence's length."""
        causal_conv_silu, fused_selective_scan = loops.causal_conv_silu, loops.fused_selective_scan
        # x and z as two products with the halves of in_proj's weight: each is its own tensor, so the backward pass
        # does not build a zero-filled (B, L, 2 d_inner) gradient for each half of one sliced output.
        x_weight, z_weight = self.in_proj.weight[: self.d_inner], self.in_proj.weight[self.d_inner :]
        x_bias, z_bias = (None, None) if self.in_proj.bias is None else self.in_proj.bias.split(self.d_inner)
        batch, length, _ = hidden.shape
        if lengths is not None:  # checked before the rows are worked out from it: a clear error, not an IndexError
            lengths = row_lengths(lengths, hidden)
        rows = valid_rows(lengths, batch, length) if self.training else None
        tokens = hidden if rows is None else gather_rows(hidden, rows)
        x, z = F.linear(tokens, x_weight, x_bias), F.linear(tokens, z_weight, z_bias)
        if rows is not None:
            x, z = scatter_rows(x, rows, batch, length), scatter_rows(z, rows, batch, length)
        conv_bias = self.conv1d.bias if self.conv1d.bias is not None else hidden.new_zeros(self.d_inner)
        x = causal_conv_silu(x, self.conv1d.weight[:, 0, :], conv_bias, lengths)
        projected = self.x_proj(x if rows is None else gather_rows(x, rows))
        dt, B, C = torch.split(projected, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # dt_proj with its bias in one product (addmm): the same sum as mamba_ssm's bias added in the scan, one
        # (B, L, d_inner) pass less forward and backward.
        delta = self.dt_proj(dt)
        if rows is not None:
            delta, B, C = (scatter_rows(t, rows, batch, length) for t in (delta, B, C))
        y = fused_selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.to(hidden.dtype)),
            B,
            C,
            D=self.D.to(hidden.dtype),
            z=z,
            delta_softplus=True,
            lengths=lengths,
        )
        if rows is None:
            return self.out_proj(y)
        return scatter_rows(self.out_proj(gather_rows(y, rows)), rows, batch, length)


def valid_rows(lengths: torch.Tensor | None, batch: int, length: int) -> torch.Tensor | None:
    """Row numbers (b * length + t) of the valid tokens of a right-padded (batch, length) batch, or None when no
    sequence is padded (``lengths`` None or all ``length``)."""
    if lengths is None or bool((lengths == length).all()):
        return None
    return torch.nonzero((torch.arange(length, device=lengths.device) < lengths[:, None]).reshape(-1)).squeeze(1)


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(tokens, X): the rows ``rows`` of (B, L, X) ``x`` (its valid tokens, ``valid_rows``)."""
    return x.reshape(-1, x.shape[-1]).index_select(0, rows)


def scatter_rows(packed: torch.Tensor, rows: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """The inverse of ``gather_rows``: (batch, length, X) with ``packed`` at ``rows`` and zeros elsewhere."""
    full = packed.new_zeros(batch * length, packed.shape[-1])
    full.index_copy_(0, rows, packed)  # in place: no copy of the zeros (its backward reads the rows of the gradient)
    return full.view(batch, length, packed.shape[-1])


def _check_valid(valid: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Validate the padding mask: (B, L) bool, each row = valid tokens first, then padding."""
    if valid is None:
        return None
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(x.shape[:2]):
        raise InputTensorError(
            f"BidirectionalMamba: valid must be a bool tensor of shape {tuple(x.shape[:2])}, "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )
    lengths = valid.sum(dim=1)
    prefix = torch.arange(valid.shape[1], device=valid.device) < lengths[:, None]
    if not torch.equal(prefix, valid):
        bad_rows = (prefix != valid).any(dim=1).nonzero().flatten().tolist()
        raise InputTensorError(
            f"BidirectionalMamba: valid must be right-padded (True then False) in every row; rows {bad_rows} are not"
        )
    return lengths


def reverse_valid_part(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse the first lengths[b] tokens of each sequence (dim 1), leave the padding in place. Its own inverse."""
    batch, length = x.shape[:2]
    if lengths is None or bool((lengths == length).all()):
        return x.flip(1)
    positions = torch.arange(length, device=x.device)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    # Whole rows through index_select: several times faster on CPU than gather with an expanded (B, L, D) index.
    rows = (index + torch.arange(batch, device=x.device)[:, None] * length).reshape(-1)
    return x.reshape(batch * length, *x.shape[2:]).index_select(0, rows).view_as(x)


class BidirectionalMambaLayer(nn.Module):
    """Pre-norm residual layer: x + dropout(forward_mamba(norm x) + reverse(backward_mamba(reverse(norm x))))."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.forward_mamba = MambaBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        self.backward_mamba = MambaBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        normed = self.norm(x)
        # The reversed valid part still comes first, so both directions stop at the same lengths.
        forward_out = self.forward_mamba(normed, lengths)
        backward_out = reverse_valid_part(self.backward_mamba(reverse_valid_part(normed, lengths), lengths), lengths)
        return x + self.dropout(forward_out + backward_out)


class BidirectionalMamba(nn.Module):
    """Stack of bidirectional Mamba layers with a final RMSNorm.

    forward(x: (B, L, d_model), valid: (B, L) bool right-padding mask or None) -> (B, L, d_model); padded positions
    of the result are zero and never influence valid ones.
    """

    def __init__(
        self, d_model: int, n_layers: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dropout: float = 0.0
    ):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"BidirectionalMamba: n_layers must be >= 1, got {n_layers}")
        self.d_model = d_model
        self.layers = nn.ModuleList(
            BidirectionalMambaLayer(d_model, d_state=d_state, d_conv=d_conv, expand=expand, dropout=dropout)
            for _ in range(n_layers)
        )
        self.final_norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise InputTensorError(
                f"BidirectionalMamba: x must be (batch, length, {self.d_model}), got {tuple(x.shape)}"
            )
        lengths = _check_valid(valid, x)
        for layer in self.layers:
            x = layer(x, lengths)
        x = self.final_norm(x)
        if valid is not None:
            x = x * valid.unsqueeze(-1).to(x.dtype)
        return x
