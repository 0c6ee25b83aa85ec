# SPDX-License-Identifier: GPL-3.0-or-later
"""Masked motion-token generator (KMM): a bidirectional backbone predicts masked base-layer codes from text.

Input sequence = [text prefix token] + [motion tokens], as in the paper (the text embedding is concatenated
with the token sequence).  Each motion token is the embedding of its base-layer code (or of [MASK]) *plus* a
projection of its own condition vector, so a timeline can give every span its own prompt (``cond_per_token``);
without one, every token gets the sample's sentence embedding.  With probability ``cond_drop_prob`` a training
sample's conditions are replaced by a learned null condition, which classifier-free guidance needs at decoding.

Training masks the tokens a key-frame masker picks (density-peak scores over the tokenizer's latent vectors)
instead of random ones, so the model must predict the informative frames (``masker`` config switch).

The optional :class:`ResidualPredictor` (MoMask's residual transformer) predicts residual layer q from the sum
of the embeddings of layers < q plus a layer-index embedding, so all quantizer layers can be decoded; without
it, only base-layer codes are generated (the tokenizer was trained with quantizer dropout to decode those).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.errors import ConfigError, InputTensorError
from ..motion.model_timing import FRAMES_PER_TOKEN
from .configs import GeneratorConfig
from .transformer_backbone import TransformerBackbone


@dataclass
class GeneratorLoss:
    loss: Tensor  # base_loss (+ residual_loss)
    base_loss: Tensor  # cross-entropy on the masked base-layer positions
    accuracy: Tensor  # fraction of masked positions predicted exactly
    mask: Tensor  # (B, L) positions that were masked
    residual_loss: Tensor | None = None
    residual_accuracy: Tensor | None = None
    distill: Tensor | None = None  # with a teacher: KL(teacher || model) on the same positions, base + residual


def distillation_kl(logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean over positions (rows) of KL(teacher || model) between the two (N, K) logits' softmax distributions."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(teacher_logits.float(), -1), log_target=True,
                    reduction="batchmean")


def build_backbone(config: GeneratorConfig, n_layers: int) -> nn.Module:
    """BidirectionalMamba or the equal-size transformer, both ``forward(x (B, L, D), valid) -> (B, L, D)``."""
    if config.backbone == "mamba":
        from .mamba import BidirectionalMamba

        return BidirectionalMamba(config.d_model, n_layers, d_state=config.d_state, d_conv=config.d_conv,
                                  expand=config.expand, dropout=config.dropout)
    return TransformerBackbone(config.d_model, n_layers, n_heads=config.n_heads, ff_mult=config.ff_mult,
                               dropout=config.dropout)


def build_masker(name: str):
    """The training masker named by ``GeneratorConfig.masker``."""
    from .keyframe_masker import KeyFrameMasker, RandomMasker

    if name == "random":
        return RandomMasker()
    if name in ("keyframe_gaussian", "keyframe_knn"):
        return KeyFrameMasker(method=name.removeprefix("keyframe_"))
    raise ConfigError(f"masker: {name!r} is not one of keyframe_gaussian, keyframe_knn, random")


class _ConditionEmbedder(nn.Module):
    """Turns (sentence, per-token) condition vectors into a prefix token and per-token offsets of width d_model."""

    def __init__(self, cond_dim: int, d_model: int):
        super().__init__()
        self.cond_dim = cond_dim
        self.null = nn.Parameter(torch.randn(cond_dim) * 0.02)
        self.prefix = nn.Linear(cond_dim, d_model)
        self.per_token = nn.Linear(cond_dim, d_model)

    def forward(self, token_valid: Tensor, sentence: Tensor | None, cond_per_token: Tensor | None,
                drop: Tensor | None) -> tuple[Tensor, Tensor]:
        batch, length = token_valid.shape
        if sentence is None and cond_per_token is None:
            raise InputTensorError("condition: give a sentence embedding, cond_per_token, or both")
        if sentence is not None and sentence.shape != (batch, self.cond_dim):
            raise InputTensorError(f"sentence: expected ({batch}, {self.cond_dim}), got {tuple(sentence.shape)}")
        if cond_per_token is not None and cond_per_token.shape != (batch, length, self.cond_dim):
            raise InputTensorError(
                f"cond_per_token: expected ({batch}, {length}, {self.cond_dim}), got {tuple(cond_per_token.shape)}"
            )
        if cond_per_token is None:
            cond_per_token = sentence.unsqueeze(1).expand(batch, length, self.cond_dim)
        if sentence is None:
            # A timeline's prefix summarises all its prompts.
            weights = token_valid.unsqueeze(-1).to(cond_per_token.dtype)
            sentence = (cond_per_token * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if drop is not None:
            keep = (~drop).to(sentence.dtype)
            sentence = sentence * keep[:, None] + self.null * (1 - keep[:, None])
            cond_per_token = cond_per_token * keep[:, None, None] + self.null * (1 - keep[:, None, None])
        return self.prefix(sentence).unsqueeze(1), self.per_token(cond_per_token)


class ResidualPredictor(nn.Module):
    """Predicts residual layer q (1..Q-1) codes from the codes of layers < q (MoMask's residual transformer)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        if config.num_quantizers < 2:
            raise ConfigError("use_residual_predictor: needs num_quantizers >= 2")
        q, k, d = config.num_quantizers, config.codebook_size, config.d_model
        self.num_quantizers = q
        self.codebook_size = k
        # Input embeddings of layers 0..Q-2 (their sum, up to layer q-1, is the input for layer q).
        self.code_embeddings = nn.Parameter(torch.randn(q - 1, k, d) * 0.02)
        self.layer_embedding = nn.Embedding(q - 1, d)  # index q-1: "predict layer q"
        self.condition = _ConditionEmbedder(config.cond_dim, d)
        self.backbone = build_backbone(config, config.residual_n_layers)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, k))

    def forward(self, lower_codes: Tensor, layer: Tensor | int, token_valid: Tensor, sentence: Tensor | None = None,
                cond_per_token: Tensor | None = None, drop_condition: Tensor | None = None, *,
                condition: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Logits (B, L, K) of layer ``layer`` (int or (B,) tensor, 1..Q-1) given codes (B, L, >= layer).

        ``condition``: ``self.condition(token_valid, sentence, cond_per_token, drop_condition)`` computed before (a
        decode calls the model with the same conditions at every step), in place of those three arguments."""
        batch, length = token_valid.shape
        layer = torch.as_tensor(layer, device=token_valid.device)
        if layer.dim() == 0:
            layer = layer.expand(batch)
        if int(layer.min()) < 1 or int(layer.max()) > self.num_quantizers - 1:
            raise InputTensorError(f"layer: must be in 1..{self.num_quantizers - 1}")
        if lower_codes.dim() != 3 or lower_codes.shape[:2] != (batch, length) or lower_codes.shape[-1] < int(layer.max()):
            raise InputTensorError(f"lower_codes: expected (B, L, >= {int(layer.max())}), got {tuple(lower_codes.shape)}")
        x = torch.zeros(batch, length, self.code_embeddings.shape[-1], device=token_valid.device)
        for j in range(int(layer.max())):
            used = (j < layer)[:, None, None] & (lower_codes[..., j] >= 0).unsqueeze(-1)
            x = x + self.code_embeddings[j][lower_codes[..., j].clamp(min=0)] * used
        layer_vector = self.layer_embedding(layer - 1).unsqueeze(1)
        prefix, per_token = (self.condition(token_valid, sentence, cond_per_token, drop_condition) if condition is None
                             else condition)
        sequence = torch.cat([prefix + layer_vector, x + per_token + layer_vector], dim=1)
        valid = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=token_valid.device), token_valid], dim=1)
        return self.head(self.backbone(sequence, valid)[:, 1:])

    def training_loss(self, codes: Tensor, token_valid: Tensor, sentence: Tensor | None,
                      cond_per_token: Tensor | None, drop_condition: Tensor | None,
                      generator: torch.Generator | None = None,
                      teacher: ResidualPredictor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """CE of a random residual layer per sample, on all valid positions; returns (loss, accuracy, distill):
        with a `teacher`, distill is :func:`distillation_kl` of its logits for the same inputs (else None)."""
        batch = codes.shape[0]
        layer = torch.randint(1, self.num_quantizers, (batch,), generator=generator).to(codes.device)
        logits = self(codes, layer, token_valid, sentence, cond_per_token, drop_condition)
        target = codes.gather(2, layer[:, None, None].expand(-1, codes.shape[1], 1)).squeeze(-1)
        chosen = token_valid & (target >= 0)
        loss = F.cross_entropy(logits[chosen], target[chosen])
        accuracy = (logits[chosen].argmax(-1) == target[chosen]).float().mean()
        distill = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(codes, layer, token_valid, sentence, cond_per_token, drop_condition)
            distill = distillation_kl(logits[chosen], teacher_logits[chosen])
        return loss, accuracy, distill


class MaskedGenerator(nn.Module):
    """Masked base-layer token prediction conditioned on text; logits over the codebook."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        k, d = config.codebook_size, config.d_model
        self.token_embedding = nn.Embedding(k + 1, d)  # index k is [MASK]
        self.condition = _ConditionEmbedder(config.cond_dim, d)
        self.backbone = build_backbone(config, config.n_layers)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, k))
        self.residual = ResidualPredictor(config) if config.use_residual_predictor and config.num_quantizers > 1 else None
        self.__dict__["_masker"] = None  # built on first use: not a module, has no weights

    @property
    def mask_id(self) -> int:
        return self.config.codebook_size

    @property
    def masker(self):
        if self.__dict__["_masker"] is None:
            self.__dict__["_masker"] = build_masker(self.config.masker)
        return self.__dict__["_masker"]

    def forward(self, codes: Tensor, token_valid: Tensor, sentence: Tensor | None = None,
                cond_per_token: Tensor | None = None, drop_condition: Tensor | None = None, *,
                condition: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Logits (B, L, K) for base-layer ``codes`` (B, L) in 0..K (K = [MASK]; negative = padding).

        ``condition``: as in :meth:`ResidualPredictor.forward`, the embedded conditions computed before."""
        if codes.dim() != 2 or token_valid.shape != codes.shape or token_valid.dtype != torch.bool:
            raise InputTensorError(f"codes/token_valid: expected (B, L) int and (B, L) bool, got {tuple(codes.shape)}, "
                              f"{tuple(token_valid.shape)} {token_valid.dtype}")
        if codes.numel() and int(codes.max()) > self.mask_id:
            raise InputTensorError(f"codes: value {int(codes.max())} exceeds the [MASK] id {self.mask_id}")
        batch = codes.shape[0]
        prefix, per_token = (self.condition(token_valid, sentence, cond_per_token, drop_condition) if condition is None
                             else condition)
        tokens = self.token_embedding(codes.clamp(min=0)) + per_token
        sequence = torch.cat([prefix, tokens], dim=1)
        valid = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=codes.device), token_valid], dim=1)
        return self.head(self.backbone(sequence, valid)[:, 1:])

    def training_loss(self, codes: Tensor, token_valid: Tensor, sentence: Tensor | None = None,
                      cond_per_token: Tensor | None = None, token_embeddings: Tensor | None = None,
                      generator: torch.Generator | None = None,
                      teacher: MaskedGenerator | None = None) -> GeneratorLoss:
        """Mask, predict, cross-entropy on the masked positions (plus the residual predictor's loss).

        ``teacher``: a frozen generator (in eval mode) given the same masked inputs and dropped conditions; the result's
        ``distill`` is its :func:`distillation_kl` from this model on the masked positions plus the residual
        predictor's on its positions (a fine-tune's ``distill_weight``: what the model did before is held).

        ``codes``: (B, L) base codes or (B, L, Q) all layers (needed for the residual loss); padding may be -1.
        ``token_embeddings``: the tokenizer's latent vectors (``tokenizer.token_embeddings(codes)``), which the
        key-frame masker scores; not needed by the random masker.
        """
        from .keyframe_masker import sample_mask_ratio

        all_layers = codes if codes.dim() == 3 else None
        base = codes[..., 0] if codes.dim() == 3 else codes
        if token_embeddings is None:
            if self.config.masker != "random":
                raise ConfigError(f"token_embeddings: the {self.config.masker} masker needs the tokenizer's "
                                  "token embeddings (tokenizer.token_embeddings(codes))")
            token_embeddings = torch.zeros(*base.shape, 1, device=base.device)
        batch = base.shape[0]
        ratio = sample_mask_ratio(batch, schedule=self.config.mask_schedule, generator=generator).to(base.device)
        mask = self.masker(token_embeddings.detach(), token_valid, ratio, generator=generator) & token_valid
        inputs = base.clamp(min=0).masked_fill(mask, self.mask_id)
        if self.config.random_replace_prob > 0:
            replace = mask & (_uniform(base.shape, generator, base.device) < self.config.random_replace_prob)
            random_codes = torch.randint(0, self.config.codebook_size, base.shape, generator=generator).to(base.device)
            inputs = torch.where(replace, random_codes, inputs)
        drop = None
        if self.training and self.config.cond_drop_prob > 0:
            drop = _uniform((batch,), generator, base.device) < self.config.cond_drop_prob
        logits = self(inputs, token_valid, sentence, cond_per_token, drop)
        base_loss = F.cross_entropy(logits[mask], base[mask])
        accuracy = (logits[mask].argmax(-1) == base[mask]).float().mean()
        result = GeneratorLoss(loss=base_loss, base_loss=base_loss, accuracy=accuracy, mask=mask)
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(inputs, token_valid, sentence, cond_per_token, drop)
            result.distill = distillation_kl(logits[mask], teacher_logits[mask])
        if self.residual is not None and all_layers is not None and all_layers.shape[-1] > 1:
            residual_loss, residual_accuracy, residual_distill = self.residual.training_loss(
                all_layers, token_valid, sentence, cond_per_token, drop, generator,
                teacher=teacher.residual if teacher is not None else None)
            result.loss = base_loss + residual_loss
            result.residual_loss = residual_loss
            result.residual_accuracy = residual_accuracy
            if residual_distill is not None:
                result.distill = result.distill + residual_distill
        return result


class GuidedModel:
    """Classifier-free guidance, uncond + s (cond - uncond), of one model over one decode: the batch doubled
    (conditional half, null-condition half) and its conditions embedded once, then one pass per call.

    Rows of that batch whose inputs are all equal (codes, validity, embedded conditions) are run once and their
    logits shared: a decode's first step, every free token masked, gives every null-condition row of one length
    the same input, and segments of one prompt and length the same conditional one.  (Row results of the model do
    not depend on the other rows of its batch: on this project's CPU builds bit for bit, checked by the timeline
    tokens of ``benchmarks/bench_timeline_speed.py --baseline``.)

    ``model`` is a :class:`MaskedGenerator` (call with codes) or :class:`ResidualPredictor` (codes, layer).
    """

    def __init__(self, model: nn.Module, guidance_scale: float | Tensor, *, sentence: Tensor | None,
                 cond_per_token: Tensor | None, token_valid: Tensor):
        self.model = model
        self.batch = token_valid.shape[0]
        # A (B, L) tensor gives each token its own scale (``decode_tokens``: walk and run prompts' tokens).
        if torch.is_tensor(guidance_scale):
            if guidance_scale.shape != token_valid.shape:
                raise ValueError(f"guidance_scale: a per-token scale must be {tuple(token_valid.shape)}, "
                                 f"got {tuple(guidance_scale.shape)}")
            guidance_scale = guidance_scale.to(token_valid.device).unsqueeze(-1)
        self.guidance_scale = guidance_scale
        self.guided = torch.is_tensor(guidance_scale) or guidance_scale != 1.0
        drop = None
        if self.guided:
            drop = torch.cat([torch.zeros(self.batch, dtype=torch.bool),
                              torch.ones(self.batch, dtype=torch.bool)]).to(token_valid.device)
            token_valid = torch.cat([token_valid, token_valid])
            sentence = None if sentence is None else torch.cat([sentence, sentence])
            cond_per_token = None if cond_per_token is None else torch.cat([cond_per_token, cond_per_token])
        self.token_valid = token_valid
        self.condition = model.condition(token_valid, sentence, cond_per_token, drop)
        # Rows with the same validity and conditions, bit for bit, share a group (None: no two do).
        rows = token_valid.shape[0]
        key = torch.cat([token_valid.int(), *(part.reshape(rows, -1).contiguous().view(torch.int32)
                                              for part in self.condition)], dim=1)
        groups = torch.unique(key, dim=0, return_inverse=True)[1]
        self.condition_group = groups if int(groups.max()) + 1 < rows else None

    def __call__(self, *args) -> Tensor:
        if self.guided:
            args = tuple(torch.cat([a, a]) if torch.is_tensor(a) and a.dim() > 0 else a for a in args)
        logits = self._distinct_rows_once(args)
        if not self.guided:
            return logits
        conditional, unconditional = logits[:self.batch], logits[self.batch:]
        return unconditional + self.guidance_scale * (conditional - unconditional)

    def _distinct_rows_once(self, args: tuple) -> Tensor:
        """The model's logits for the doubled batch `args`, every distinct row run once."""
        rows = self.token_valid.shape[0]
        if self.condition_group is not None:
            key = torch.cat([self.condition_group[:, None], *(a.reshape(rows, -1).long() for a in args
                                                              if torch.is_tensor(a) and a.dim() > 0)], dim=1)
            inverse = torch.unique(key, dim=0, return_inverse=True)[1]
            distinct = int(inverse.max()) + 1
            if distinct < rows:
                # The first row of each distinct input, in batch order, and which of them each row is.
                first = torch.full((distinct,), rows, device=key.device).scatter_reduce(
                    0, inverse, torch.arange(rows, device=key.device), "amin")
                order = first.argsort()
                position = torch.empty_like(order)
                position[order] = torch.arange(distinct, device=key.device)
                keep = first[order]
                picked = [a[keep] if torch.is_tensor(a) and a.dim() > 0 else a for a in args]
                logits = self.model(*picked, self.token_valid[keep],
                                    condition=tuple(part[keep] for part in self.condition))
                return logits[position[inverse]]
        return self.model(*args, self.token_valid, condition=self.condition)


def guided_logits(model: nn.Module, guidance_scale: float | Tensor, *args, sentence: Tensor | None,
                  cond_per_token: Tensor | None, token_valid: Tensor) -> Tensor:
    """Classifier-free guidance of one call (see :class:`GuidedModel`, which a decode keeps for all its steps)."""
    return GuidedModel(model, guidance_scale, sentence=sentence, cond_per_token=cond_per_token,
                       token_valid=token_valid)(*args)


def token_condition_from_segments(segment_embeddings: Tensor, frame_spans: Sequence[tuple[int, int]],
                                  num_tokens: int) -> Tensor:
    """Per-token conditions (num_tokens, E) from S segment embeddings (S, E) and their [start, end) frame spans.

    A token takes the segment that contains its centre frame; tokens in gaps between segments (transitions)
    blend the neighbouring segments linearly by position; tokens before the first / after the last segment take
    that segment's embedding.  Spans must be sorted and must not overlap.
    """
    if segment_embeddings.dim() != 2 or segment_embeddings.shape[0] != len(frame_spans) or not frame_spans:
        raise InputTensorError(f"segments: {len(frame_spans)} spans but embeddings of shape {tuple(segment_embeddings.shape)}")
    previous_end = 0
    for index, (start, end) in enumerate(frame_spans):
        if not 0 <= start < end:
            raise InputTensorError(f"segment {index}: span [{start}, {end}) is empty or negative")
        if start < previous_end:
            raise InputTensorError(f"segment {index}: span [{start}, {end}) overlaps or precedes segment {index - 1}")
        previous_end = end
    centres = torch.arange(num_tokens, dtype=torch.float32) * FRAMES_PER_TOKEN + (FRAMES_PER_TOKEN - 1) / 2
    starts = torch.tensor([s for s, _ in frame_spans], dtype=torch.float32)
    ends = torch.tensor([e for _, e in frame_spans], dtype=torch.float32)
    embeddings = segment_embeddings.cpu()
    inside = (starts <= centres[:, None]) & (centres[:, None] < ends)  # (num_tokens, S); one True at most per row
    after = (ends <= centres[:, None]).sum(dim=1)  # segments entirely before each token
    last = len(frame_spans) - 1
    # The containing segment; outside every one, the first before it starts, the last after it ends.
    index = torch.where(inside.any(dim=1), inside.int().argmax(dim=1), after.clamp(max=last))
    out = embeddings[index]
    gap = ~inside.any(dim=1) & (after > 0) & (after <= last)
    if bool(gap.any()):  # a token between two segments blends them linearly by position
        before = after[gap]
        gap_start, gap_end = ends[before - 1], starts[before]
        weight = ((centres[gap] - gap_start) / (gap_end - gap_start)).double()
        # As the Python-float weight of one token at a time was: 1 - w in float64, rounded once to the dtype.
        out[gap] = ((1 - weight).to(out.dtype)[:, None] * embeddings[before - 1]
                    + weight.to(out.dtype)[:, None] * embeddings[before])
    return out.to(segment_embeddings.device)


def _uniform(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(tuple(shape), generator=generator).to(device)
