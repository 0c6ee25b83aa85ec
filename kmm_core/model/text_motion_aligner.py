# SPDX-License-Identifier: GPL-3.0-or-later
"""Text-motion aligner (KMM §3.3): contrastive text and motion embeddings whose text side conditions the generator.

A frozen sentence embedding blurs direction words ("raise the left hand" vs "... right hand" are ~0.97 cosine
in MiniLM), so the text head is a small trainable transformer over MiniLM's *token* embeddings, trained jointly
with a motion encoder by a symmetric InfoNCE loss  L = λ (CE(sim) + CE(simᵀ)),  sim_ij = t_i·m_j / τ  with a
learnable temperature τ and λ = 0.5 as in the paper.  If the motions of "left" and "right" differ, the text
embeddings must too.

The MiniLM encoder is used but *not owned*: it is kept outside this module's ``state_dict`` (its weights ship in
their own package), so aligner checkpoints stay small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.errors import ConfigError, InputTensorError
from ..motion.model_timing import FRAMES_PER_TOKEN
from .configs import CONDITION_SOURCES, AlignerConfig
from .motion_tokenizer import token_valid_from_lengths
from .text_encoder import MiniLMTextEncoder, TextEmbeddings
from .transformer_backbone import TransformerBackbone

MAX_LOGIT_SCALE = 100.0  # τ >= 0.01: keeps the softmax from saturating (CLIP's clamp)


@dataclass
class AlignerOutput:
    loss: Tensor  # scalar InfoNCE
    text: Tensor  # (B, E) unit text embeddings
    motion: Tensor  # (B, E) unit motion embeddings
    logits: Tensor  # (B, B) text-to-motion similarities / τ
    temperature: Tensor  # scalar τ
    accuracy: Tensor  # fraction of texts whose own motion is the most similar


class _MotionEncoder(nn.Module):
    """(B, T, input) -> (B, embed_dim): 4x temporal downsampling for raw features, transformer, masked mean."""

    def __init__(self, config: AlignerConfig):
        super().__init__()
        hidden = config.hidden_dim
        self.downsample = config.motion_input == "features"
        self.input = nn.Linear(config.motion_input_dim, hidden)
        if self.downsample:
            self.convs = nn.Sequential(
                nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),
                nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),
            )
        self.backbone = (TransformerBackbone(hidden, config.motion_layers, config.heads, dropout=config.dropout)
                         if config.motion_layers else nn.LayerNorm(hidden))
        self.output = nn.Linear(hidden, config.embed_dim)
        self.input_dim = config.motion_input_dim

    def forward(self, motion: Tensor, valid: Tensor | None) -> Tensor:
        if motion.dim() != 3 or motion.shape[-1] != self.input_dim:
            raise InputTensorError(f"motion: expected (B, T, {self.input_dim}), got {tuple(motion.shape)}")
        if valid is None:
            valid = torch.ones(motion.shape[:2], dtype=torch.bool, device=motion.device)
        x = self.input(motion * valid.unsqueeze(-1))
        if self.downsample:
            steps = math.ceil(x.shape[1] / FRAMES_PER_TOKEN) * FRAMES_PER_TOKEN
            x = F.pad(x, (0, 0, 0, steps - x.shape[1]))
            x = self.convs(x.transpose(1, 2)).transpose(1, 2)
            valid = token_valid_from_lengths(valid.sum(1), x.shape[1])
        x = self.backbone(x, valid) if isinstance(self.backbone, TransformerBackbone) else self.backbone(x)
        return self.output(_masked_mean(x, valid))


class _TextHead(nn.Module):
    """MiniLM token embeddings (B, N, 384) -> per-token (B, N, E) and sentence (B, E) embeddings."""

    def __init__(self, config: AlignerConfig):
        super().__init__()
        hidden = config.hidden_dim
        self.input = nn.Linear(config.text_dim, hidden)
        self.backbone = (TransformerBackbone(hidden, config.text_layers, config.heads, dropout=config.dropout)
                         if config.text_layers else nn.LayerNorm(hidden))
        self.tokens_out = nn.Linear(hidden, config.embed_dim)
        self.sentence_out = nn.Linear(hidden, config.embed_dim)
        self.text_dim = config.text_dim

    def forward(self, minilm: TextEmbeddings) -> TextEmbeddings:
        if minilm.tokens.shape[-1] != self.text_dim:
            raise InputTensorError(f"text tokens: expected width {self.text_dim}, got {minilm.tokens.shape[-1]}")
        valid = minilm.token_valid
        x = self.input(minilm.tokens)
        x = self.backbone(x, valid) if isinstance(self.backbone, TransformerBackbone) else self.backbone(x)
        sentence = F.normalize(self.sentence_out(_masked_mean(x, valid)), dim=-1)
        tokens = self.tokens_out(x) * valid.unsqueeze(-1)
        return TextEmbeddings(sentence=sentence, tokens=tokens, token_valid=valid)


class TextMotionAligner(nn.Module):
    """Contrastive text/motion encoders; ``encode_text`` gives the generator's condition."""

    def __init__(self, config: AlignerConfig, text_encoder: MiniLMTextEncoder | None = None):
        super().__init__()
        self.config = config
        self.text_head = _TextHead(config)
        self.motion_encoder = _MotionEncoder(config)
        # log(1/τ), learnable (CLIP parameterisation: the scale stays positive).
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature_init)))
        self.__dict__["_text_encoder"] = text_encoder  # deliberately not a registered sub-module

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def text_encoder(self) -> MiniLMTextEncoder:
        encoder = self.__dict__.get("_text_encoder")
        if encoder is None:
            raise ConfigError("text_encoder: this aligner has no MiniLM encoder attached (attach_text_encoder)")
        return encoder

    def attach_text_encoder(self, text_encoder: MiniLMTextEncoder) -> None:
        self.__dict__["_text_encoder"] = text_encoder

    @property
    def temperature(self) -> Tensor:
        return 1.0 / self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def encode_text(self, texts: list[str]) -> TextEmbeddings:
        """Aligned sentence (B, E) and per-token (B, N, E) embeddings of ``texts``."""
        minilm = self.text_encoder.encode(texts)
        return self.text_head(minilm.to(self.logit_scale.device))

    def encode_minilm(self, minilm: TextEmbeddings) -> TextEmbeddings:
        """Same as :meth:`encode_text` from precomputed MiniLM embeddings."""
        return self.text_head(minilm)

    def encode_motion(self, features: Tensor, valid: Tensor | None = None) -> Tensor:
        """Unit motion embeddings (B, E) of normalised features (or tokenizer latents, per config)."""
        return F.normalize(self.motion_encoder(features, valid), dim=-1)

    def forward(self, minilm: TextEmbeddings, features: Tensor, valid: Tensor | None = None) -> AlignerOutput:
        """InfoNCE over a batch of matching (text, motion) pairs; the i-th text belongs to the i-th motion."""
        if minilm.sentence.shape[0] != features.shape[0]:
            raise InputTensorError(f"batch: {minilm.sentence.shape[0]} texts but {features.shape[0]} motions")
        text = self.encode_minilm(minilm).sentence
        motion = self.encode_motion(features, valid)
        loss, logits = self.contrastive_loss(text, motion)
        accuracy = (logits.argmax(dim=1) == torch.arange(len(text), device=text.device)).float().mean()
        return AlignerOutput(loss=loss, text=text, motion=motion, logits=logits, temperature=self.temperature,
                             accuracy=accuracy)

    def contrastive_loss(self, text: Tensor, motion: Tensor) -> tuple[Tensor, Tensor]:
        """λ (CE(sim) + CE(simᵀ)) with sim = text · motionᵀ / τ; returns (loss, sim)."""
        logits = (text @ motion.t()) / self.temperature
        target = torch.arange(len(text), device=text.device)
        loss = self.config.loss_weight * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        return loss, logits


def text_condition(texts: list[str], source: str, text_encoder: MiniLMTextEncoder,
                   aligner: TextMotionAligner | None = None) -> TextEmbeddings:
    """The generator's text condition: aligned embeddings (``"aligner"``) or raw frozen MiniLM (``"minilm"``, ablation).

    No gradients flow: the aligner is trained first and stays frozen while the generator trains (call
    ``aligner.encode_text`` directly to fine-tune it jointly).  Widths: ``AlignerConfig.embed_dim`` or 384, which
    is what ``GeneratorConfig.cond_dim`` must be set to.
    """
    if source not in CONDITION_SOURCES:
        raise ConfigError(f"condition_source: {source!r} is not one of {', '.join(CONDITION_SOURCES)}")
    if source == "minilm":
        return text_encoder.encode(texts)
    if aligner is None:
        raise ConfigError("condition_source: 'aligner' needs a trained TextMotionAligner")
    with torch.no_grad():
        return aligner.text_head(text_encoder.encode(texts).to(aligner.logit_scale.device))


def _masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    weights = valid.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
