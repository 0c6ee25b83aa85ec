# SPDX-License-Identifier: GPL-3.0-or-later
"""Residual vector quantisation with EMA codebooks, dead-code reset and quantizer dropout.

Layer q quantises what layers 0..q-1 left over, so the base layer carries the coarse motion and later layers
refine it (MoMask).  Codebooks are *not* learnt by gradient descent: each one tracks an exponential moving
average of the encoder outputs assigned to its codes, which is stabler than a codebook loss.  Codes nobody
picked for ``dead_code_steps`` training steps are re-seeded with random encoder outputs of the current batch,
so the codebook keeps being used.  Quantizer dropout (train with a random number of layers) makes every
prefix of layers a valid, coarser reconstruction.

All codebook state lives in buffers, so ``state_dict`` round-trips through safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..common.errors import InputTensorError
from .configs import QuantizerConfig


@dataclass
class QuantizerOutput:
    """Result of one quantisation pass."""

    quantized: Tensor  # (B, L, D) sum of the used layers' codes, straight-through to the input
    codes: Tensor  # (B, L, Q) int64; -1 for layers that were dropped and for padding positions
    commitment_loss: Tensor  # scalar: mean squared distance of x to sg(quantized) on valid positions
    perplexity: Tensor  # (Q,) exp(entropy) of each layer's code usage in this batch (0 for unused layers)
    dead_codes: Tensor  # (Q,) codes re-seeded in this step (always 0 outside training)
    num_layers: int  # layers used in this pass


class ResidualVectorQuantizer(nn.Module):
    """``num_quantizers`` EMA codebooks of ``codebook_size`` x ``code_dim`` applied to successive residuals."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        q, k, d = config.num_quantizers, config.codebook_size, config.code_dim
        self.register_buffer("codebooks", torch.randn(q, k, d) * 0.02)
        self.register_buffer("ema_cluster_size", torch.ones(q, k))
        self.register_buffer("ema_embed_sum", self.codebooks.clone())
        self.register_buffer("steps_unused", torch.zeros(q, k, dtype=torch.int64))
        # Each codebook is initialised from the first batch of residuals it sees (data-dependent init).
        self.register_buffer("initialised", torch.zeros(q, dtype=torch.bool))

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, valid: Tensor | None = None, num_layers: int | None = None) -> QuantizerOutput:
        """Quantise ``x`` (B, L, D); ``valid`` (B, L) excludes padding from codebook updates and losses.

        In training mode the codebooks are updated (EMA + dead-code reset) and, with probability
        ``quantizer_dropout``, only a random number of layers is used unless ``num_layers`` is given.

        Float32 throughout, also under autocast (mixed-precision training): the codebooks and their EMA are float32,
        and half-precision distances would pick other codes.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._quantize(x.float(), valid, num_layers)

    def _quantize(self, x: Tensor, valid: Tensor | None, num_layers: int | None) -> QuantizerOutput:
        self._check_input(x, valid)
        if valid is None:
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        n_layers = self._layers_for_pass(num_layers)
        flat_valid = valid.reshape(-1)
        residual = x.detach().reshape(-1, x.shape[-1])
        quantized_sum = torch.zeros_like(residual)
        codes = torch.full((x.shape[0] * x.shape[1], self.num_quantizers), -1, dtype=torch.int64, device=x.device)
        perplexity = torch.zeros(self.num_quantizers, device=x.device)
        dead = torch.zeros(self.num_quantizers, dtype=torch.int64, device=x.device)
        for layer in range(n_layers):
            if self.training:
                self._maybe_initialise(layer, residual[flat_valid])
            layer_codes = self._nearest(residual, layer)
            chosen = self.codebooks[layer][layer_codes]
            counts = torch.bincount(layer_codes[flat_valid], minlength=self.codebook_size).float()
            perplexity[layer] = _perplexity(counts)
            if self.training:
                dead[layer] = self._ema_update(layer, residual[flat_valid], layer_codes[flat_valid], counts)
            codes[:, layer] = layer_codes
            quantized_sum = quantized_sum + chosen
            residual = residual - chosen
        codes[~flat_valid] = -1
        quantized = quantized_sum.view_as(x)
        # Commitment: pull the encoder output towards the (fixed) sum of its codes, on valid positions only.
        # The residuals above were computed from a detached copy, so this is where x gets its gradient.
        commitment = _masked_mean((x - quantized.detach()).pow(2).mean(dim=-1).reshape(-1), flat_valid)
        straight_through = x + (quantized - x).detach()
        return QuantizerOutput(
            quantized=straight_through,
            codes=codes.view(x.shape[0], x.shape[1], self.num_quantizers),
            commitment_loss=commitment,
            perplexity=perplexity,
            dead_codes=dead,
            num_layers=n_layers,
        )

    # ------------------------------------------------------------------ codes <-> vectors

    @torch.no_grad()
    def encode_codes(self, x: Tensor, num_layers: int | None = None) -> Tensor:
        """Codes (B, L, Q) of ``x`` (B, L, D) without touching the codebooks; unused layers are -1."""
        self._check_input(x, None)
        n_layers = self.num_quantizers if num_layers is None else self._check_layers(num_layers)
        residual = x.reshape(-1, x.shape[-1])
        codes = torch.full((residual.shape[0], self.num_quantizers), -1, dtype=torch.int64, device=x.device)
        for layer in range(n_layers):
            layer_codes = self._nearest(residual, layer)
            codes[:, layer] = layer_codes
            residual = residual - self.codebooks[layer][layer_codes]
        return codes.view(x.shape[0], x.shape[1], self.num_quantizers)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Sum of the code vectors (B, L, D) of ``codes`` (B, L, q) with q <= Q; negative codes add nothing."""
        if codes.dim() != 3 or codes.shape[-1] > self.num_quantizers:
            raise InputTensorError(
                f"codes: expected shape (B, L, q) with q <= {self.num_quantizers}, got {tuple(codes.shape)}"
            )
        if codes.dtype not in (torch.int64, torch.int32):
            raise InputTensorError(f"codes: expected an integer tensor, got {codes.dtype}")
        if codes.numel() and int(codes.max()) >= self.codebook_size:
            raise InputTensorError(f"codes: value {int(codes.max())} is outside the codebook (size {self.codebook_size})")
        out = torch.zeros(*codes.shape[:2], self.config.code_dim, device=self.codebooks.device)
        for layer in range(codes.shape[-1]):
            layer_codes = codes[..., layer]
            used = layer_codes >= 0
            vectors = self.codebooks[layer][layer_codes.clamp(min=0)]
            out = out + vectors * used.unsqueeze(-1)
        return out

    def layer_embedding(self, layer: int, codes: Tensor) -> Tensor:
        """Code vectors of one layer (negative codes give zeros)."""
        vectors = self.codebooks[layer][codes.clamp(min=0)]
        return vectors * (codes >= 0).unsqueeze(-1)

    # ------------------------------------------------------------------ internals

    def _check_input(self, x: Tensor, valid: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.config.code_dim:
            raise InputTensorError(f"quantizer input: expected (B, L, {self.config.code_dim}), got {tuple(x.shape)}")
        if valid is not None and (valid.shape != x.shape[:2] or valid.dtype != torch.bool):
            raise InputTensorError(f"valid: expected a bool tensor of shape {tuple(x.shape[:2])}, got {tuple(valid.shape)}")

    def _check_layers(self, num_layers: int) -> int:
        if not 1 <= num_layers <= self.num_quantizers:
            raise InputTensorError(f"num_layers: {num_layers} is outside 1..{self.num_quantizers}")
        return num_layers

    def _layers_for_pass(self, num_layers: int | None) -> int:
        if num_layers is not None:
            return self._check_layers(num_layers)
        if self.training and self.num_quantizers > 1 and torch.rand(()) < self.config.quantizer_dropout:
            return int(torch.randint(1, self.num_quantizers + 1, ()))
        return self.num_quantizers

    def _nearest(self, vectors: Tensor, layer: int) -> Tensor:
        codebook = self.codebooks[layer]
        # ||v - c||^2 = |v|^2 - 2 v.c + |c|^2; |v|^2 does not change the argmin.
        distances = codebook.pow(2).sum(-1).unsqueeze(0) - 2.0 * vectors @ codebook.t()
        return distances.argmin(dim=-1)

    @torch.no_grad()
    def _maybe_initialise(self, layer: int, samples: Tensor) -> None:
        if bool(self.initialised[layer]) or samples.shape[0] == 0:
            return
        picks = _random_rows(samples, self.codebook_size)
        self.codebooks[layer].copy_(picks)
        self.ema_embed_sum[layer].copy_(picks)
        self.ema_cluster_size[layer].fill_(1.0)
        self.steps_unused[layer].zero_()
        self.initialised[layer] = True

    @torch.no_grad()
    def _ema_update(self, layer: int, samples: Tensor, sample_codes: Tensor, counts: Tensor) -> int:
        decay = self.config.ema_decay
        embed_sum = torch.zeros_like(self.ema_embed_sum[layer]).index_add_(0, sample_codes, samples)
        self.ema_cluster_size[layer].mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_embed_sum[layer].mul_(decay).add_(embed_sum, alpha=1 - decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        size = self.ema_cluster_size[layer]
        total = size.sum()
        eps = 1e-5
        smoothed = (size + eps) / (total + self.codebook_size * eps) * total
        self.codebooks[layer].copy_(self.ema_embed_sum[layer] / smoothed.unsqueeze(-1))
        used = counts > 0
        self.steps_unused[layer] = torch.where(used, torch.zeros_like(self.steps_unused[layer]),
                                               self.steps_unused[layer] + 1)
        dead = self.steps_unused[layer] >= self.config.dead_code_steps
        n_dead = int(dead.sum())
        if n_dead and samples.shape[0]:
            fresh = _random_rows(samples, n_dead)
            self.codebooks[layer][dead] = fresh
            self.ema_embed_sum[layer][dead] = fresh
            self.ema_cluster_size[layer][dead] = 1.0
            self.steps_unused[layer][dead] = 0
        return n_dead if samples.shape[0] else 0


def _random_rows(samples: Tensor, count: int) -> Tensor:
    """``count`` random rows of ``samples`` (with replacement when there are too few), slightly jittered."""
    if samples.shape[0] >= count:
        index = torch.randperm(samples.shape[0], device=samples.device)[:count]
    else:
        index = torch.randint(0, samples.shape[0], (count,), device=samples.device)
    rows = samples[index]
    # Jitter so duplicated rows do not produce identical (and thus forever tied) codes.
    return rows + 1e-3 * rows.std().clamp(min=1e-6) * torch.randn_like(rows)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _perplexity(counts: Tensor) -> Tensor:
    total = counts.sum()
    if total <= 0:
        return torch.zeros((), device=counts.device)
    probs = counts / total
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return entropy.exp()
