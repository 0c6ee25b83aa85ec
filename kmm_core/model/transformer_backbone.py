# SPDX-License-Identifier: GPL-3.0-or-later
"""Bidirectional transformer encoder with the same interface as ``mamba.BidirectionalMamba``.

It is the baseline the Mamba generator is measured against (MMM/MoMask use transformers), so it takes the
same ``forward(x (B, L, D), valid (B, L) | None) -> (B, L, D)``.  Unlike Mamba, attention has no notion of
order, so this backbone adds fixed sinusoidal positions itself (no maximum length, no parameters).
With ``ff_mult=4`` a layer has ~12 d_model^2 weights, about one bidirectional Mamba layer (two directions of
~6 d_model^2 each with expand 2), so equal ``d_model``/``n_layers`` give comparable sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..common.errors import ConfigError, InputTensorError


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(length, dim) sine/cosine position codes (Vaswani et al.)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


class TransformerBackbone(nn.Module):
    """Pre-norm transformer encoder over (B, L, D); padding (``valid`` False) is never attended to."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int = 4, ff_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model: {d_model} is not divisible by n_heads ({n_heads})")
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=ff_mult * d_model, dropout=dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.d_model = d_model

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise InputTensorError(f"backbone input: expected (B, L, {self.d_model}), got {tuple(x.shape)}")
        x = x + sinusoidal_positions(x.shape[1], self.d_model, x.device).to(x.dtype)
        padding = None
        if valid is not None:
            # A row with no valid position would make attention NaN; let such rows attend everywhere
            # (their outputs are padding anyway).
            padding = ~valid & valid.any(dim=1, keepdim=True)
        return self.norm(self.layers(x, src_key_padding_mask=padding))
