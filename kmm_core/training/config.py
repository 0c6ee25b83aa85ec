# SPDX-License-Identifier: GPL-3.0-or-later
"""TOML configuration files -> nested dataclasses, with errors that name the file and the dotted key.

The mechanism is generic: :func:`load_config` maps TOML tables onto *any* dataclass schema, recursively, so model
configs defined elsewhere (``kmm_core/model/configs.py``) plug in as fields of a schema. It rejects unknown keys
(with a "did you mean" suggestion), wrong types and missing required keys, and applies ``--set key=value``
overrides (values parsed as TOML, bare words taken as strings) before checking, so an override is checked exactly
like the file. Range checks live in each dataclass's ``__post_init__``: raise :class:`ConfigError` from there with a
message that starts with ``key '<name>'`` and the loader prefixes the file and table.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``pathlib.Path``, ``Literal[...]``,
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]``, nested dataclasses, ``Any``.

This module must not import torch: the CLI reads configs before deciding what to load.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..common.bounded_read import read_toml
from ..common.errors import ConfigError, InputFileError
from ..model.configs import (
    AlignerConfig,
    DecodingConfig,
    GeneratorConfig,
    TokenizerConfig,
    check_range,
    is_model_config,
)
from ..motion.model_timing import FRAMES_PER_TOKEN

SchemaT = TypeVar("SchemaT")

#: The training stages, in the order ``kmm-train`` runs them; each has a ``[train.<stage>]`` table.
STAGES = ("tokenizer", "aligner", "generator", "evaluator", "decoder")
#: The values of `[decoder] still_joints` (the joints each holds: ``stages.STILL_JOINTS``).
STILL_JOINT_CHOICES = ("pelvis", "pelvis_feet", "pelvis_standing_feet", "pelvis_standing_caption_feet")
#: The longest step of the stillness term, in frames (2 s at 20 fps; training windows are at least 40 frames).
MAX_STILL_SPAN = 40


def _require(condition: bool, key: str, message: str) -> None:
    """Raise the ConfigError shape the loader knows how to prefix with file and table."""
    if not condition:
        raise ConfigError(f"key '{key}' {message}")


@dataclasses.dataclass
class TrainStageConfig:
    """``[train.<stage>]``: how one stage is optimised. Steps count optimizer updates."""

    steps: int = 1000
    batch_size: int = 32  # per process; the global batch is batch_size x world size
    lr: float = 2e-4  # peak learning rate, reached at the end of warmup
    warmup: int = 100  # linear warmup steps, then cosine decay to lr * min_lr_ratio at `steps`
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # AdamW decay, applied to matrices/embeddings only (not biases or norm gains)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_every: int = 500  # 0 disables periodic validation
    checkpoint_every: int = 500  # 0 saves only at the end (and on Ctrl-C / SIGTERM)
    keep_checkpoints: int = 3  # how many of the newest checkpoints to keep
    log_every: int = 50
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision; used on CUDA only
    num_workers: int = 0  # DataLoader worker processes per training process
    # How clips are drawn: each action group (dataset/content of the prepared index) of n clips gets weight n**balance.
    # 1.0 = every clip equally often (plain shuffling); 0.5 = square-root balancing; 0.0 = every action equally often.
    balance: float = 1.0
    # Multipliers of chosen action groups' totals on top of balance ({"accad/travel" = 3.0}; a key is a group name
    # or a shell pattern such as "accad/*"): the clips a fine-tune is for drawn more often, the rest as balance says.
    # A key that matches no group stops the stage with the groups there are.  Empty = off.
    group_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    # Batches of similar length (0 = off): each run of length_buckets batches of an epoch's draws is sorted by window
    # length and cut into batches, which are then shuffled; the same items, far less padding (stages whose items
    # have a known length: the generator's token windows).
    length_buckets: int = 0
    # The generator's clips tokenized from this many frame offsets (1 = from frame 0 only): offset p encodes frames
    # p, p+1, ..., so the same motion gives up to FRAMES_PER_TOKEN different code sequences; each draw takes one.
    code_phases: int = 1
    # Weights to start from instead of a fresh initialisation (the aligner, evaluator and generator stages): a
    # ``.safetensors`` with its ``.json`` model config beside it (a run's or a bundle's), which must be this run's
    # config of the stage; fine-tunes a trained model on new data (training/README.md, "Fine-tuning on new data").
    init_weights: str = ""
    # With init_weights (the aligner and evaluator stages): weight of a term holding each caption's sentence embedding
    # where the given text head put it, mean(1 - cosine(new, given)) over the batch's captions.  A fine-tune then
    # moves only the captions the contrastive loss pulls hardest (the confused ones) and keeps the rest of the text
    # space the generator learned (training/README.md, "Fine-tuning on new data").  0 = off.
    anchor_weight: float = 0.0
    # With anchor_weight: captions containing any of these phrases (case-insensitive) are left out of the anchor
    # term, so that they alone move freely while the rest of the text space is held: the captions the fine-tune is
    # for (["gets up", "rises from lying"] for the reversed lie-downs; not "rises" alone, which squats' captions use).
    # Empty = every caption anchored.
    unanchored_phrases: list[str] = dataclasses.field(default_factory=list)
    # With init_weights (the generator stage): weight of a term holding the generator's predictions where the weights
    # it starts from put them, KL(starting model || model) on the same masked tokens, base and residual layers
    # (knowledge distillation from a frozen copy; one more forward pass per step): what the model did before is held
    # where the new clips do not pull it.  At 2 it held the default's actions, new ones not learned, and not its calm
    # head (training/runs/kmm-small-all-v12/COMMAND.md).  0 = off.
    distill_weight: float = 0.0
    # The aligner and evaluator stages: each batch holds every drawn sided clip (one whose mirror's captions differ
    # from its own: "... the left leg" / "... the right leg") beside its mirror, so the contrastive loss asks the text
    # side to tell the two sides apart (training/mirror_pairs.py; needs an even batch_size and a prepared folder's
    # index.csv).  Off by default.
    mirror_pairs: bool = False

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {list(self.betas)}")
        _require(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}")
        for key in ("eval_every", "checkpoint_every", "num_workers"):
            _require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        _require(self.keep_checkpoints >= 1, "keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")
        _require(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _require(0 <= self.balance <= 1, "balance", f"must be in [0, 1], got {self.balance}")
        for pattern, factor in self.group_weights.items():
            _require(math.isfinite(factor) and factor > 0, "group_weights",
                     f"[{pattern!r}] must be finite and > 0, got {factor}")
        _require(self.anchor_weight >= 0, "anchor_weight", f"must be >= 0 (0 = off), got {self.anchor_weight}")
        _require(self.distill_weight >= 0, "distill_weight", f"must be >= 0 (0 = off), got {self.distill_weight}")
        _require(all(phrase.strip() for phrase in self.unanchored_phrases), "unanchored_phrases",
                 f"must not hold an empty phrase (it would match every caption), got {self.unanchored_phrases}")
        _require(self.length_buckets >= 0, "length_buckets", f"must be >= 0 (0 = off), got {self.length_buckets}")
        _require(not self.mirror_pairs or (self.batch_size % 2 == 0 and not self.length_buckets), "mirror_pairs",
                 f"needs an even batch_size and length_buckets 0, got batch_size {self.batch_size}, length_buckets "
                 f"{self.length_buckets}")
        _require(1 <= self.code_phases <= FRAMES_PER_TOKEN, "code_phases",
                 f"must be 1..{FRAMES_PER_TOKEN} (frame offsets within one token), got {self.code_phases}")


@dataclasses.dataclass
class TrainConfig:
    """``[train]``: one ``[train.<stage>]`` table per stage."""

    tokenizer: TrainStageConfig = dataclasses.field(default_factory=TrainStageConfig)
    aligner: TrainStageConfig = dataclasses.field(default_factory=TrainStageConfig)
    generator: TrainStageConfig = dataclasses.field(default_factory=TrainStageConfig)
    evaluator: TrainStageConfig = dataclasses.field(default_factory=TrainStageConfig)
    decoder: TrainStageConfig = dataclasses.field(default_factory=TrainStageConfig)


@dataclasses.dataclass
class DecoderRefinementConfig:
    """``[decoder]``: the optional ``decoder`` stage, which retrains the tokenizer's decoder alone for smoothness.

    The encoder and codebooks stay frozen, so every clip keeps its codes and a generator trained on them stays valid.
    The loss is the tokenizer's reconstruction + velocity terms plus ``jerk_weight`` x the mean distance (cm) between
    the reconstructed and the real joints' third finite differences (per frame^3), on joint positions recovered from the
    denormalised features, plus ``root_weight`` x the pelvis term (``root_trajectory_distance``: the pelvis' velocity
    error in cm per frame plus a tenth of its path's error in cm, the path taken from the window's first frame), in
    absolute units so that a standing clip's jittering or drifting hips cost as much per frame as a run's (the
    reconstruction loss on normalised features barely sees them), plus ``still_weight`` x the stillness term
    (``still_joint_distance``: where the real pelvis (``still_joints = "pelvis_feet"``: or a real foot) stands still,
    the reconstructed one's horizontal step error in cm per frame; issue 39: a calm standing take came back with 3.8x
    its real drift).  ``still_joints = "pelvis_standing_feet"`` holds the feet only where the real pelvis stands still
    too (by the same speed rule): a standing body's planted feet, not a walk's, whose real steps the feet term would
    otherwise damp; ``"pelvis_standing_caption_feet"`` only there and in clips whose caption is a standing one
    (``evaluation.body_motion.kind_of``), so not a squat's or a walk's pause either.  ``still_span`` (frames) takes each
    step over that many frames instead of one: a slow wander costs ``still_span`` times more than a frame's jitter,
    which cancels over the step.  The hips' height, which the horizontal stillness term does not see (issue 39: a
    calm standing take's hips came back rising and falling 12x as much as real): ``bob_weight`` x the bob term
    (``pelvis_bob_distance``: where the real pelvis stands still, the error of its rise or fall over ``bob_span``
    frames, in cm) weighs a slow rise and fall by its whole height, and ``height_weight`` x the height term
    (``pelvis_height_distance``: the error of its mean height there, per window) keeps the bob term from settling the
    hips low (alone it held them 2-3 cm below the real height).  A wave's swing, which the positional terms average
    away when the codes do not pin its phase (issue 39: real waves came back with 0.18x their side-to-side energy):
    ``hand_weight`` x the hand term (``wrist_speed_distance``: the error of each wrist's speed relative to the neck,
    averaged over ``hand_span`` frames, in cm per frame), which costs a still hand that should swing whatever the
    phase.
    """

    jerk_weight: float = 0.0  # 0 turns the stage off (kmm-train all skips it)
    root_weight: float = 0.0  # the pelvis velocity + path term (0: off)
    still_weight: float = 0.0  # the stillness term where the real joints stand still (0: off)
    # which joints the stillness term holds: "pelvis", "pelvis_feet" (and the feet), "pelvis_standing_feet" (and
    # the feet while the real pelvis stands still) or "pelvis_standing_caption_feet" (and that in standing clips only)
    still_joints: str = "pelvis"
    still_span: int = 1  # frames per step of the stillness term (1: frame to frame; up to MAX_STILL_SPAN)
    height_weight: float = 0.0  # the pelvis' mean height per window where the real pelvis stands still (0: off)
    bob_weight: float = 0.0  # the pelvis' rise and fall over bob_span frames where the real pelvis stands still
    bob_span: int = 20  # frames per step of the bob term (up to MAX_STILL_SPAN)
    hand_weight: float = 0.0  # each wrist's speed relative to the neck, averaged over hand_span frames (0: off)
    hand_span: int = 5  # frames the wrist speed is averaged over (up to MAX_STILL_SPAN)

    def __post_init__(self) -> None:
        _require(self.jerk_weight >= 0, "jerk_weight", f"must be >= 0 (0 turns the stage off), got {self.jerk_weight}")
        _require(self.root_weight >= 0, "root_weight", f"must be >= 0, got {self.root_weight}")
        _require(self.still_weight >= 0, "still_weight", f"must be >= 0, got {self.still_weight}")
        _require(self.still_joints in STILL_JOINT_CHOICES, "still_joints",
                 f"must be one of {', '.join(map(repr, STILL_JOINT_CHOICES))}, got {self.still_joints!r}")
        _require(1 <= self.still_span <= MAX_STILL_SPAN, "still_span",
                 f"must be 1 to {MAX_STILL_SPAN} frames, got {self.still_span}")
        _require(self.height_weight >= 0, "height_weight", f"must be >= 0 (0: off), got {self.height_weight}")
        _require(self.bob_weight >= 0, "bob_weight", f"must be >= 0 (0: off), got {self.bob_weight}")
        _require(1 <= self.bob_span <= MAX_STILL_SPAN, "bob_span",
                 f"must be 1 to {MAX_STILL_SPAN} frames, got {self.bob_span}")
        _require(self.hand_weight >= 0, "hand_weight", f"must be >= 0 (0: off), got {self.hand_weight}")
        _require(1 <= self.hand_span <= MAX_STILL_SPAN, "hand_span",
                 f"must be 1 to {MAX_STILL_SPAN} frames, got {self.hand_span}")


@dataclasses.dataclass
class DataConfig:
    """``[data]``: where the prepared training data is and which clips it keeps."""

    root: str = "data/prepared"  # folder written by `kmm-train prepare`; relative paths are relative to the cwd
    min_frames: int = 40  # HumanML3D keeps clips of 40..196 frames at 20 fps
    max_frames: int = 196

    def __post_init__(self) -> None:
        _require(self.min_frames >= 1, "min_frames", f"must be >= 1, got {self.min_frames}")
        _require(
            self.max_frames >= self.min_frames,
            "max_frames",
            f"must be >= min_frames ({self.min_frames}), got {self.max_frames}",
        )


@dataclasses.dataclass
class ProjectConfig:
    """A whole ``kmm-train`` TOML file: data, one table per model, and ``[train.<stage>]`` tables.

    ``[evaluator]`` is the evaluation encoders' own AlignerConfig (same architecture as the aligner, separate weights).
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    aligner: AlignerConfig = dataclasses.field(default_factory=AlignerConfig)
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    evaluator: AlignerConfig = dataclasses.field(default_factory=AlignerConfig)
    decoder: DecoderRefinementConfig = dataclasses.field(default_factory=DecoderRefinementConfig)
    # The sampling settings the bundle ships (bundle.json "decoding"), chosen on the val split: `kmm-train bundle`
    # writes them from the run's config.json.
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, schema: type[SchemaT], overrides: Iterable[str] = ()) -> SchemaT:
    """Read the TOML file at ``path`` into an instance of the dataclass ``schema``.

    ``overrides`` are ``"dotted.key=value"`` strings (``kmm-train --set``), applied on top of the file.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"{path}: config file not found")
    try:
        table = read_toml(path, "config file")
    except InputFileError as error:
        raise ConfigError(f"{path}: {error.reason.replace('config file is not valid TOML', 'invalid TOML')}") from None
    return config_from_dict(schema, table, source=str(path), overrides=overrides)


def config_from_dict(
    schema: type[SchemaT], table: Mapping[str, Any], source: str = "<config>", overrides: Iterable[str] = ()
) -> SchemaT:
    """Build ``schema`` from an already parsed mapping (a TOML table, or a ``config.json`` read back)."""
    if not _is_dataclass_type(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    table = _deep_copy_tables(table)
    override_origins: dict[str, str] = {}
    for assignment in overrides:
        dotted_key, value = _parse_override(assignment, schema)
        _assign(table, dotted_key, value)
        override_origins[dotted_key] = f"--set {assignment}"
    return _build_dataclass(schema, table, _Location(source, (), override_origins))


def config_to_dict(config: Any) -> Any:
    """A dataclass (or nested value) as plain JSON/TOML-compatible data: tuples become lists, paths strings; a field
    set to None is left out (TOML has no null: loading gives it its default, None, back)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: config_to_dict(getattr(config, field.name)) for field in dataclasses.fields(config)
                if getattr(config, field.name) is not None}
    if isinstance(config, Mapping):
        return {str(key): config_to_dict(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(value) for value in config]
    if isinstance(config, Path):
        return str(config)
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Overrides


def _parse_override(assignment: str, schema: type) -> tuple[str, Any]:
    """``"train.tokenizer.steps=10"`` -> (``"train.tokenizer.steps"``, 10), checking the key against the schema."""
    dotted_key, separator, raw_value = assignment.partition("=")
    dotted_key = dotted_key.strip()
    if not separator or not dotted_key:
        raise ConfigError(f"--set {assignment}: expected key=value, e.g. --set train.tokenizer.steps=100")
    current: Any = schema
    parts = dotted_key.split(".")
    for depth, part in enumerate(parts):
        table = "[" + ".".join(parts[:depth]) + "] " if depth else ""
        if typing.get_origin(current) is dict or current is Any:  # free-form table: any key, checked on conversion
            break
        if not _is_dataclass_type(current):
            raise ConfigError(f"--set {assignment}: {table}is a value, not a table; it has no key '{part}'")
        hints = _field_types(current)
        if part not in hints:
            raise ConfigError(f"--set {assignment}: {table}unknown key '{part}'{_suggestion(part, hints)}")
        current = _strip_optional(hints[part])
    return dotted_key, _parse_value(raw_value.strip())


def _parse_value(text: str) -> Any:
    """Parse a command-line value as TOML (``10``, ``1e-4``, ``true``, ``[1, 2]``, ``"x"``); bare words stay strings."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _assign(table: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    for part in parents:
        child = table.get(part)
        if not isinstance(child, dict):
            child = table[part] = {}
        table = child
    table[leaf] = value


def _deep_copy_tables(table: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy_tables(value) if isinstance(value, Mapping) else value for key, value in table.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Conversion


@dataclasses.dataclass(frozen=True)
class _Location:
    """Where a value came from, for error messages: the file, the table path, and which keys --set replaced."""

    source: str
    table: tuple[str, ...]
    override_origins: Mapping[str, str]

    def child(self, name: str) -> _Location:
        return _Location(self.source, (*self.table, name), self.override_origins)

    def error(self, message: str, key: str | None = None) -> ConfigError:
        dotted = ".".join((*self.table, key) if key else self.table)
        source = self.override_origins.get(dotted, self.source)
        table = f"[{'.'.join(self.table)}] " if self.table else ""
        error = ConfigError(f"{source}: {table}{message}")
        error.key = dotted  # type: ignore[attr-defined]
        return error


def _build_dataclass(schema: type[SchemaT], table: Any, where: _Location) -> SchemaT:
    if not isinstance(table, Mapping):
        raise where.error(f"must be a table, got {_describe(table)}")
    hints = _field_types(schema)
    for key in table:
        if key not in hints:
            raise where.error(f"unknown key '{key}'{_suggestion(key, hints)}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(schema):
        if not field.init:
            continue
        if field.name in table:
            values[field.name] = _convert(table[field.name], hints[field.name], where, field.name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise where.error(f"missing required key '{field.name}'")
    try:
        built = schema(**values)
    except ConfigError as error:  # a __post_init__ range check: add file and table
        raise where.error(str(error)) from None
    if is_model_config(schema):  # and the ranges the bundle loader enforces: no run trains a model it would refuse
        for name, value in values.items():
            try:
                check_range(name, value, name)
            except ConfigError as error:
                raise where.error(f"key '{name}' {str(error).split(': ', 1)[1]} (the model bundle loader refuses "
                                  "anything else)", name) from None
    return built


def _convert(value: Any, annotation: Any, where: _Location, key: str) -> Any:
    """Check ``value`` against ``annotation`` and convert it (lists to tuples, ints to floats, tables to dataclasses)."""
    if annotation is Any:
        return value
    if _is_dataclass_type(annotation):
        if not isinstance(value, Mapping):
            raise where.error(f"key '{key}' must be a table, got {_describe(value)}", key)
        return _build_dataclass(annotation, value, where.child(key))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        for option in options:
            try:
                return _convert(value, option, where, key)
            except ConfigError:
                continue
        raise where.error(f"key '{key}' must be {_type_name(annotation)}, got {_describe(value)}", key)
    if origin is Literal:
        if any(type(value) is type(arg) and value == arg for arg in args):  # type check keeps True apart from 1
            return value
        choices = ", ".join(repr(arg) for arg in args)
        raise where.error(f"key '{key}' must be one of {choices}, got {_describe(value)}", key)
    if origin is tuple:
        if not isinstance(value, list):
            raise where.error(f"key '{key}' must be {_type_name(annotation)}, got {_describe(value)}", key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], where, f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise where.error(f"key '{key}' must have {len(args)} items, got {len(value)}", key)
        return tuple(
            _convert(item, arg, where, f"{key}[{i}]") for i, (item, arg) in enumerate(zip(value, args, strict=True))
        )
    if origin is list:
        if not isinstance(value, list):
            raise where.error(f"key '{key}' must be {_type_name(annotation)}, got {_describe(value)}", key)
        item_type = args[0] if args else Any
        return [_convert(item, item_type, where, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise where.error(f"key '{key}' must be a table, got {_describe(value)}", key)
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, value_type, where, f"{key}.{k}") for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML writes inf and nan: no weight, rate or size of a run is either
                raise where.error(f"key '{key}' must be a finite number, got {value}", key)
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is Path:
        if isinstance(value, str):
            return Path(value)
    else:
        raise TypeError(f"config field '{key}' has an unsupported type annotation {annotation!r}")
    raise where.error(f"key '{key}' must be {_type_name(annotation)}, got {_describe(value)}", key)


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def _is_dataclass_type(value: Any) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)


_FIELD_TYPE_CACHE: dict[type, dict[str, Any]] = {}


def _field_types(schema: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's init fields (``from __future__ import annotations`` makes them strings)."""
    if schema not in _FIELD_TYPE_CACHE:
        hints = typing.get_type_hints(schema)
        _FIELD_TYPE_CACHE[schema] = {f.name: hints[f.name] for f in dataclasses.fields(schema) if f.init}
    return _FIELD_TYPE_CACHE[schema]


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def _suggestion(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(sorted(known))})"


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", Path: "a path string"}


def _type_name(annotation: Any) -> str:
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_type_name(args[0]).split(' ', 1)[1]}s"
        return f"an array of {len(args)} items"
    if origin is list:
        return "an array"
    if _is_dataclass_type(annotation):
        return "a table"
    return repr(annotation)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"
