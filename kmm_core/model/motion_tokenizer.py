# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion tokenizer: a 1D-convolutional VQ-VAE over normalised HumanML3D features (B, T, 263).

The encoder halves time twice (stride-2 convolutions), so one token covers 4 frames; residual blocks with
growing dilation widen the receptive field without more downsampling.  The latent is quantised by the
residual VQ; the decoder mirrors the encoder with nearest-neighbour upsampling.

Lengths not divisible by 4: the input is padded at the end up to the next multiple of 4 by repeating each
clip's last valid frame (holding the final pose is a plausible continuation, unlike zeros), so a clip of T
frames gives ceil(T/4) tokens.  ``forward`` crops the reconstruction back to T frames; ``decode`` returns
4 x tokens frames unless ``num_frames`` asks for fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.errors import InputTensorError
from ..motion.model_timing import FRAMES_PER_TOKEN
from .configs import TokenizerConfig
from .residual_quantizer import ResidualVectorQuantizer


def num_tokens_for_frames(num_frames: int) -> int:
    """Tokens that cover ``num_frames`` frames (the last token may cover padding)."""
    return math.ceil(num_frames / FRAMES_PER_TOKEN)


def token_valid_from_lengths(lengths: Tensor, num_tokens: int) -> Tensor:
    """(B, num_tokens) bool: token i is valid when it covers at least one real frame."""
    token_lengths = torch.div(lengths + FRAMES_PER_TOKEN - 1, FRAMES_PER_TOKEN, rounding_mode="floor")
    return torch.arange(num_tokens, device=lengths.device).unsqueeze(0) < token_lengths.unsqueeze(1)


@dataclass
class TokenizerOutput:
    reconstruction: Tensor  # (B, T, F) cropped to the input length
    codes: Tensor  # (B, ceil(T/4), Q); -1 for padding tokens and dropped quantizer layers
    token_valid: Tensor  # (B, ceil(T/4)) bool
    losses: dict[str, Tensor]  # "reconstruction", "velocity", "commitment", "total"
    perplexity: Tensor  # (Q,)
    dead_codes: Tensor  # (Q,)


class _ResidualBlock(nn.Module):
    """x + conv1x1(relu(dilated conv3(relu(x)))): keeps length, widens the receptive field."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.dilated = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.pointwise = nn.Conv1d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pointwise(F.relu(self.dilated(F.relu(x))))


def _res_stack(width: int, blocks: int, growth: int, reverse: bool) -> nn.Sequential:
    dilations = [growth**i for i in range(blocks)]
    if reverse:
        dilations.reverse()
    return nn.Sequential(*[_ResidualBlock(width, d) for d in dilations])


class MotionTokenizer(nn.Module):
    """VQ-VAE: ``encode`` features -> codes (B, T/4, Q), ``decode`` codes -> features."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        width, code_dim = config.width, config.quantizer.code_dim
        stages = 2  # two stride-2 stages: 4 frames per token
        encoder: list[nn.Module] = [nn.Conv1d(config.feature_dim, width, 3, padding=1), nn.ReLU()]
        for _ in range(stages):
            encoder += [nn.Conv1d(width, width, 4, stride=2, padding=1),
                        _res_stack(width, config.res_blocks, config.dilation_growth, reverse=False)]
        encoder.append(nn.Conv1d(width, code_dim, 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.quantizer = ResidualVectorQuantizer(config.quantizer)
        decoder: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, padding=1), nn.ReLU()]
        for _ in range(stages):
            decoder += [_res_stack(width, config.res_blocks, config.dilation_growth, reverse=True),
                        nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv1d(width, width, 3, padding=1)]
        decoder += [nn.Conv1d(width, width, 3, padding=1), nn.ReLU(), nn.Conv1d(width, config.feature_dim, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    @property
    def num_quantizers(self) -> int:
        return self.config.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    # ------------------------------------------------------------------ training pass

    def forward(self, features: Tensor, valid: Tensor | None = None, num_layers: int | None = None) -> TokenizerOutput:
        """Reconstruct ``features`` (B, T, F) and compute the training losses on valid frames."""
        lengths = self._lengths(features, valid)
        latent, token_valid = self._encode_latent(features, lengths)
        quantized = self.quantizer(latent, token_valid, num_layers=num_layers)
        reconstruction = self._decode_latent(quantized.quantized)[:, : features.shape[1]]
        frame_valid = torch.arange(features.shape[1], device=features.device).unsqueeze(0) < lengths.unsqueeze(1)
        recon = _masked_mean(F.smooth_l1_loss(reconstruction, features, reduction="none").mean(-1), frame_valid)
        # Velocity: frame-to-frame differences must match too, or reconstructions jitter.
        pair_valid = frame_valid[:, 1:] & frame_valid[:, :-1]
        velocity = _masked_mean(
            F.smooth_l1_loss(reconstruction.diff(dim=1), features.diff(dim=1), reduction="none").mean(-1), pair_valid
        )
        total = recon + self.config.velocity_weight * velocity + self.config.commitment_weight * quantized.commitment_loss
        return TokenizerOutput(
            reconstruction=reconstruction,
            codes=quantized.codes,
            token_valid=token_valid,
            losses={"reconstruction": recon, "velocity": velocity, "commitment": quantized.commitment_loss,
                    "total": total},
            perplexity=quantized.perplexity,
            dead_codes=quantized.dead_codes,
        )

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def encode(self, features: Tensor, valid: Tensor | None = None, num_layers: int | None = None) -> Tensor:
        """Codes (B, ceil(T/4), Q) int64 of ``features`` (B, T, F); padding tokens are -1."""
        lengths = self._lengths(features, valid)
        latent, token_valid = self._encode_latent(features, lengths)
        codes = self.quantizer.encode_codes(latent, num_layers=num_layers)
        return codes.masked_fill(~token_valid.unsqueeze(-1), -1)

    def decode(self, codes: Tensor, num_frames: int | None = None) -> Tensor:
        """Features (B, 4L, F) from codes (B, L, q), q <= Q (fewer layers give a coarser motion).

        Negative codes contribute nothing (dropped layers / padding).  ``num_frames`` crops the result.
        Unlike ``encode`` this keeps autograd on (the decoder can be fine-tuned through it); wrap it in
        ``torch.no_grad()`` for plain inference.
        """
        features = self._decode_latent(self.quantizer.decode_codes(codes))
        if num_frames is not None:
            if not 1 <= num_frames <= features.shape[1]:
                raise InputTensorError(f"num_frames: {num_frames} is outside 1..{features.shape[1]} for {codes.shape[1]} tokens")
            features = features[:, :num_frames]
        return features

    def token_embeddings(self, codes: Tensor) -> Tensor:
        """Latent vectors (B, L, code_dim) of ``codes``: the sum of each layer's code vector (used by the masker)."""
        return self.quantizer.decode_codes(codes)

    # ------------------------------------------------------------------ internals

    def _lengths(self, features: Tensor, valid: Tensor | None) -> Tensor:
        if features.dim() != 3 or features.shape[-1] != self.config.feature_dim:
            raise InputTensorError(
                f"features: expected (B, T, {self.config.feature_dim}), got {tuple(features.shape)}"
            )
        if features.shape[1] < 1:
            raise InputTensorError("features: a clip needs at least one frame")
        if valid is None:
            return torch.full((features.shape[0],), features.shape[1], dtype=torch.int64, device=features.device)
        if valid.shape != features.shape[:2] or valid.dtype != torch.bool:
            raise InputTensorError(f"valid: expected a bool tensor of shape {tuple(features.shape[:2])}")
        lengths = valid.sum(dim=1)
        prefix = torch.arange(features.shape[1], device=valid.device).unsqueeze(0) < lengths.unsqueeze(1)
        if not torch.equal(prefix, valid):
            raise InputTensorError("valid: each row must be a run of True frames followed by padding")
        if int(lengths.min()) < 1:
            raise InputTensorError("valid: every clip needs at least one valid frame")
        return lengths

    def _encode_latent(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        num_tokens = num_tokens_for_frames(features.shape[1])
        padded_length = num_tokens * FRAMES_PER_TOKEN
        # Hold each clip's last valid frame over its padding (and up to the next multiple of 4).
        frame_index = torch.arange(padded_length, device=features.device).unsqueeze(0)
        frame_index = torch.minimum(frame_index, (lengths - 1).unsqueeze(1))
        padded = torch.gather(features, 1, frame_index.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        latent = self.encoder(padded.transpose(1, 2)).transpose(1, 2)
        return latent, token_valid_from_lengths(lengths, num_tokens)

    def _decode_latent(self, latent: Tensor) -> Tensor:
        return self.decoder(latent.transpose(1, 2)).transpose(1, 2)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)
