# SPDX-License-Identifier: GPL-3.0-or-later
"""The KMM training stages (four, then the optional decoder), each wired onto the generic :class:`~.trainer.Trainer`.

One run folder holds every stage, so later stages find what earlier ones produced::

    RUN/config.json                 the resolved ProjectConfig of the last stage run
    RUN/Mean.npy, RUN/Std.npy       the dataset statistics the models were trained with
    RUN/dataset.json                a short summary of the training data (for the bundle)
    RUN/<stage>/                    Trainer folder: log.jsonl, checkpoints/step_XXXXXXXX/
    RUN/<stage>.safetensors + .json the stage's final float32 weights and model config
    RUN/cache/                      tokenizer codes and text conditions of the generator stage

Stages: ``tokenizer`` (VQ-VAE reconstruction), ``aligner`` (contrastive text/motion, conditions the generator),
``evaluator`` (the evaluation package's own contrastive text and motion encoders: the aligner architecture with its
own ``[evaluator]`` config section and weights, trained on the train split only, so metrics never reuse the
generator's conditioning model), and ``generator`` (masked token prediction on codes pre-encoded once by the frozen
tokenizer, conditioned on the frozen aligner's or raw MiniLM sentence embeddings), then the optional ``decoder``
(the tokenizer's decoder retrained alone with a joint-jerk term, encoder and codebooks frozen so the codes the
generator learned stay the same; writes RUN/decoder.safetensors, a whole tokenizer that the bundle ships in place of
RUN/tokenizer.safetensors; off unless ``[decoder] jerk_weight`` > 0).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..bundle.weight_checksums import file_sha256
from ..common.atomic_write import atomic_path, write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import ConfigError, InputFileError, KMMError
from ..data.motion_dataset import (
    FRAMES_PER_TOKEN,
    EmptySplitError,
    MotionBatch,
    MotionClips,
    TokenBatch,
    TokenClips,
    collate_motion,
    collate_tokens,
)
from ..evaluation.body_motion import kind_of
from ..humanml3d.features_torch import features_to_joints_torch
from ..humanml3d.normalizer import Normalizer
from ..model.configs import AlignerConfig, GeneratorConfig, TokenizerConfig
from ..model.masked_generator import MaskedGenerator
from ..model.motion_tokenizer import MotionTokenizer
from ..model.text_encoder import MINILM_DIM, MiniLMTextEncoder
from ..model.text_motion_aligner import TextMotionAligner, text_condition
from ..model.weights import load_weights
from ..motion.skeleton import JOINT_INDEX
from .balanced_sampling import action_groups, group_shares, groups_matching, sampling_weights
from .batches import ShuffledBatches
from .checkpoint import FINE_TUNED_FROM, TRAINED_ON_ALIGNER, export_weights
from .config import STAGES, ProjectConfig, TrainStageConfig, config_to_dict, load_config
from .distributed import DistributedContext, barrier, init_distributed
from .mirror_pairs import mirror_partners
from .trainer import Trainer, TrainResult, seed_everything

#: Order ``kmm-train all`` runs the stages in (the evaluator is independent of the others).
STAGE_ORDER = ("tokenizer", "aligner", "evaluator", "generator", "decoder")
VALIDATION_CLIPS = 64  # validation uses at most this many clips: it must stay cheap next to training
CACHE_DIR = "cache"


class StageError(KMMError, RuntimeError):
    """A stage cannot run: a previous stage's output is missing or does not fit this config."""


@dataclass
class StageResult:
    stage: str
    train: TrainResult
    weights: Path | None  # RUN/<stage>.safetensors, None when the run was stopped early


# ---------------------------------------------------------------------------------------------------------------------
# Config helpers


def load_project_config(path: str | Path, overrides: Iterable[str] = ()) -> ProjectConfig:
    """The TOML file at ``path`` (plus ``--set`` overrides), checked, with the cross-section rules applied."""
    return load_config(path, ProjectConfig, overrides)


def evaluator_config(config: ProjectConfig) -> AlignerConfig:
    """``[evaluator]``: an AlignerConfig of its own (same architecture as the aligner, separate weights)."""
    return config.evaluator


def check_generator_fits(config: ProjectConfig, tokenizer: TokenizerConfig, aligner: AlignerConfig | None) -> None:
    """The generator's vocabulary must be the tokenizer's, and its condition width the text condition's."""
    gen = config.generator
    quantizer = tokenizer.quantizer
    if gen.codebook_size != quantizer.codebook_size or gen.num_quantizers != quantizer.num_quantizers:
        raise ConfigError(
            f"[generator] codebook_size={gen.codebook_size}, num_quantizers={gen.num_quantizers} must equal the "
            f"tokenizer's quantizer.codebook_size={quantizer.codebook_size}, num_quantizers={quantizer.num_quantizers}"
        )
    width = aligner.embed_dim if gen.condition_source == "aligner" and aligner is not None else MINILM_DIM
    if gen.cond_dim != width:
        source = "aligner.embed_dim" if gen.condition_source == "aligner" else "MiniLM's width"
        raise ConfigError(
            f"[generator] cond_dim={gen.cond_dim} must equal {source} ({width}) for condition_source = "
            f"'{gen.condition_source}'"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Training modules: what the Trainer optimises (compute_loss) for each stage


class TokenizerTraining(nn.Module):
    """The VQ-VAE's reconstruction + velocity + commitment loss on a :class:`MotionBatch`."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.tokenizer = MotionTokenizer(config)
        self.config = config

    def compute_loss(self, batch: MotionBatch) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.tokenizer(batch.features, batch.valid)
        metrics = {name: float(value.detach()) for name, value in out.losses.items() if name != "total"}
        metrics["perplexity"] = float(out.perplexity[0])
        metrics["dead_codes"] = float(out.dead_codes.float().mean())
        return out.losses["total"], metrics


class DecoderRefinement(nn.Module):
    """The tokenizer's decoder trained alone: reconstruction + velocity + ``jerk_weight`` x joint-jerk distance.

    The encoder and the codebooks are frozen and kept in eval mode (no EMA update, no dead-code reset, no quantizer
    dropout), so every clip quantises to the codes it had and a generator trained on them stays valid.
    """

    def __init__(self, tokenizer: MotionTokenizer, normalizer: Normalizer, jerk_weight: float,
                 root_weight: float = 0.0, still_weight: float = 0.0, still_joints: str = "pelvis",
                 still_span: int = 1, height_weight: float = 0.0, bob_weight: float = 0.0, bob_span: int = 20,
                 hand_weight: float = 0.0, hand_span: int = 5):
        super().__init__()
        self.tokenizer = tokenizer
        self.config = tokenizer.config
        self.jerk_weight = jerk_weight
        self.root_weight = root_weight
        self.still_weight = still_weight
        self.still_joints = STILL_JOINTS[still_joints]
        self.still_span = still_span
        self.height_weight = height_weight
        self.bob_weight = bob_weight
        self.bob_span = bob_span
        self.hand_weight = hand_weight
        self.hand_span = hand_span
        self.normalizer = normalizer
        tokenizer.requires_grad_(False)
        tokenizer.decoder.requires_grad_(True)

    def train(self, mode: bool = True) -> DecoderRefinement:
        super().train(mode)
        self.tokenizer.encoder.eval()
        self.tokenizer.quantizer.eval()
        return self

    def compute_loss(self, batch: MotionBatch) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.tokenizer(batch.features, batch.valid)
        made, real = self.joints(out.reconstruction), self.joints(batch.features)
        jerk = joint_jerk_distance(made, real, batch.valid)
        losses = {"reconstruction": out.losses["reconstruction"], "velocity": out.losses["velocity"], "jerk": jerk}
        total = losses["reconstruction"] + self.config.velocity_weight * losses["velocity"] + self.jerk_weight * jerk
        if self.root_weight > 0:
            losses["root"] = root_trajectory_distance(made, real, batch.valid)
            total = total + self.root_weight * losses["root"]
        if self.still_weight > 0:
            standing = (torch.tensor([kind_of([caption]) == "standing" for caption in batch.captions])
                        if self.still_joints.standing_captions else None)
            losses["still"] = still_joint_distance(made, real, batch.valid, self.still_joints, self.still_span, standing)
            total = total + self.still_weight * losses["still"]
        if self.height_weight > 0:
            losses["height"] = pelvis_height_distance(made, real, batch.valid)
            total = total + self.height_weight * losses["height"]
        if self.bob_weight > 0:
            losses["bob"] = pelvis_bob_distance(made, real, batch.valid, self.bob_span)
            total = total + self.bob_weight * losses["bob"]
        if self.hand_weight > 0:
            losses["hand"] = wrist_speed_distance(made, real, batch.valid, self.hand_span)
            total = total + self.hand_weight * losses["hand"]
        return total, {name: float(value.detach()) for name, value in losses.items()}

    def joints(self, features: torch.Tensor) -> torch.Tensor:
        return features_to_joints_torch(self.normalizer.denormalize(features))


def root_trajectory_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The pelvis of ``joints`` against ``reference`` (B, T, J, 3): the mean distance (cm per frame) between their
    frame-to-frame steps plus a tenth of the mean distance (cm) between their paths from the window's first frame,
    over valid frames.  The first catches jitter, the second drift: a standing figure's hips the reconstruction
    loss on normalised features lets shake and slide."""
    pelvis, truth = joints[..., 0, :], reference[..., 0, :]
    steps = valid[:, 1:] & valid[:, :-1]
    step_error = (pelvis.diff(dim=1) - truth.diff(dim=1)).norm(dim=-1) * 100.0
    path_error = ((pelvis - pelvis[:, :1]) - (truth - truth[:, :1])).norm(dim=-1) * 100.0
    return _masked_mean(step_error, steps) + 0.1 * _masked_mean(path_error, valid)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (bool, the same shape) holds; 0 where it holds nowhere."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


class StillJoints(NamedTuple):
    """What one value of `[decoder] still_joints` holds still: ``joints`` wherever their real joint stands still,
    ``standing_joints`` only where the real pelvis stands still too (a foot planted under a standing body, not a
    walk's planted foot, whose real steps are sharp and must stay so), and with ``standing_captions`` only in clips
    whose caption is a standing one (``evaluation.body_motion.kind_of``: no walk, run or whole-body move, so not a
    squat's or a walk's pause either; the shipped standing decoder's recipe, a training-time choice of clips that
    generation never reads)."""

    joints: tuple[int, ...]
    standing_joints: tuple[int, ...] = ()
    standing_captions: bool = False


def _joint_indices(*names: str) -> tuple[int, ...]:
    return tuple(JOINT_INDEX[name] for name in names)


_FEET = ("left_ankle", "right_ankle", "left_foot", "right_foot")
# the joints each value of `[decoder] still_joints` holds still
STILL_JOINTS = {
    "pelvis": StillJoints(_joint_indices("pelvis")),
    "pelvis_feet": StillJoints(_joint_indices("pelvis", *_FEET)),
    "pelvis_standing_feet": StillJoints(_joint_indices("pelvis"), _joint_indices(*_FEET)),
    "pelvis_standing_caption_feet": StillJoints(_joint_indices("pelvis"), _joint_indices(*_FEET), True),
}
STILL_SPEED_CM = 0.5  # cm per frame (10 cm/s at 20 fps), averaged over STILL_FRAMES frames: slower is standing still
STILL_FRAMES = 5


def _still_steps(joints: torch.Tensor) -> torch.Tensor:
    """(B, T-1, J) bool: the steps of ``joints`` (B, T, J, 3) whose horizontal speed, averaged over ``STILL_FRAMES``
    frames, is under ``STILL_SPEED_CM``."""
    speed = joints[..., [0, 2]].diff(dim=1).norm(dim=-1) * 100.0  # (B, T-1, J) cm per frame
    pad = STILL_FRAMES // 2
    smoothed = torch.nn.functional.avg_pool1d(speed.transpose(1, 2), STILL_FRAMES, stride=1, padding=pad,
                                              count_include_pad=False).transpose(1, 2)
    return smoothed < STILL_SPEED_CM


def _pelvis_still_steps(reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: the steps between valid frames where the pelvis of ``reference`` (B, T, J, 3) stands still."""
    return _still_steps(reference[..., [JOINT_INDEX["pelvis"]], :])[..., 0] & valid[:, 1:] & valid[:, :-1]


def _still_over_span(still: torch.Tensor, span: int) -> torch.Tensor:
    """(B, T-span, J) bool from frame-to-frame ``still`` (B, T-1, J): the steps of ``span`` frames whose every
    frame-to-frame step is still."""
    moving = (~still).to(torch.float32).transpose(1, 2)
    return torch.nn.functional.max_pool1d(moving, span, stride=1).transpose(1, 2) == 0


def still_joint_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor,
                         which: StillJoints = STILL_JOINTS["pelvis"], span: int = 1,
                         standing_clips: torch.Tensor | None = None) -> torch.Tensor:
    """Mean horizontal step error (cm per step of ``span`` frames) of the joints ``which`` of ``joints`` against
    ``reference`` (B, T, J, 3), over the steps where the reference joint stands still on every frame (its
    horizontal speed, averaged over ``STILL_FRAMES`` frames, under ``STILL_SPEED_CM``), and for
    ``which.standing_joints`` where the reference pelvis stands still too: a calm standing body's hips and a planted
    foot must not wander, whatever the clip (or, for the standing joints, only while the body stands, and where
    ``standing_clips`` (B,) bool is given only in its true clips); moving joints are left to the other terms.  A
    ``span`` of several frames weighs a slow wander ``span`` times more than a
    frame's jitter (which cancels over the step), so the term holds the drift without damping the real jitter."""
    held = which.joints + which.standing_joints
    made = joints[..., held, :][..., [0, 2]]
    real = reference[..., held, :][..., [0, 2]]
    made, real = made[:, span:] - made[:, :-span], real[:, span:] - real[:, :-span]
    still = _still_steps(reference[..., held, :]) & (valid[:, 1:] & valid[:, :-1]).unsqueeze(-1)
    if which.standing_joints:  # (B, T-1, 1): the real pelvis stands still
        still[..., len(which.joints):] &= _still_steps(reference[..., [JOINT_INDEX["pelvis"]], :])
        if standing_clips is not None:
            still[..., len(which.joints):] &= standing_clips.to(still.device)[:, None, None]
    if span > 1:
        still = _still_over_span(still, span)
    return _masked_mean((made - real).norm(dim=-1) * 100.0, still)


def pelvis_height_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the windows of ``joints`` against ``reference`` (B, T, J, 3) of the error (cm) of the pelvis' mean
    height over the frames where the reference pelvis stands still (horizontally, by the stillness term's rule):
    a calm standing body's hips must stand at the real height on average, not settle low (a decoder held to a steady
    height by the bob term alone settled them 2-3 cm low).  The frame-by-frame height is the bob term's; a
    frame-by-frame height error as well plateaus at the few millimetres the codes do not carry, and trades the bob
    for it."""
    pelvis = JOINT_INDEX["pelvis"]
    still = _pelvis_still_steps(reference, valid).to(joints.dtype)
    error = (joints[:, 1:, pelvis, 1] - reference[:, 1:, pelvis, 1]) * 100.0  # (B, T-1)
    frames = still.sum(dim=1)
    held = frames > 0
    mean_error = (error * still).sum(dim=1)[held] / frames[held]
    return mean_error.abs().mean() if bool(held.any()) else joints.new_zeros(())


def pelvis_bob_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor,
                        span: int = 20) -> torch.Tensor:
    """Mean error (cm) of the pelvis' rise or fall over steps of ``span`` frames of ``joints`` against ``reference``
    (B, T, J, 3), over the steps where the reference pelvis stands still (horizontally, by the stillness term's rule)
    on every frame of the step: a slow bob (a centimetre over a second or two) costs its whole height there, where
    the per-frame height error weighs it no more than a constant offset."""
    pelvis = JOINT_INDEX["pelvis"]
    if joints.shape[1] <= span:  # no step of that many frames in these windows
        return joints.new_zeros(())
    made, real = joints[:, :, pelvis, 1], reference[:, :, pelvis, 1]
    made, real = made[:, span:] - made[:, :-span], real[:, span:] - real[:, :-span]
    still = _still_over_span(_pelvis_still_steps(reference, valid)[..., None], span)[..., 0]
    return _masked_mean((made - real).abs() * 100.0, still)


_WRISTS = _joint_indices("left_wrist", "right_wrist")


def wrist_speed_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor,
                         span: int = 5) -> torch.Tensor:
    """Mean error (cm per frame) of each wrist's speed relative to the neck, averaged over ``span`` frames, of
    ``joints`` against ``reference`` (B, T, J, 3), over the steps whose ``span`` frames are all valid.  The speed, not
    the path: a wave's swing whose phase the codes do not pin is averaged away by every positional term (the shipped
    decoder kept 0.18x of a real wave's side-to-side energy and gave the idle hand 3x its own), while this term costs
    a still hand that should swing, and a swinging hand that should be still, whatever the phase."""
    def speed(frames: torch.Tensor) -> torch.Tensor:
        hands = frames[..., _WRISTS, :] - frames[..., [JOINT_INDEX["neck"]], :]
        per_frame = hands.diff(dim=1).norm(dim=-1).transpose(1, 2) * 100.0  # (B, 2, T-1) cm per frame
        return torch.nn.functional.avg_pool1d(per_frame, span, stride=1)  # (B, 2, T-span)
    if joints.shape[1] <= span:
        return joints.new_zeros(())
    whole = _still_over_span((valid[:, 1:] & valid[:, :-1])[..., None], span).transpose(1, 2)  # (B, 1, T-span)
    error = (speed(joints) - speed(reference)).abs()
    return _masked_mean(error, whole.expand_as(error))


def joint_jerk_distance(joints: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean distance (cm) between the third finite differences of ``joints`` and ``reference`` (B, T, J, 3) over the
    windows of four valid frames."""
    windows = valid[:, 3:] & valid[:, :-3]
    distance = (joints.diff(n=3, dim=1) - reference.diff(n=3, dim=1)).norm(dim=-1).mean(-1) * 100.0
    return _masked_mean(distance, windows)


class ContrastiveTraining(nn.Module):
    """Symmetric InfoNCE of a :class:`TextMotionAligner` (aligner or evaluator) on a :class:`MotionBatch`.

    The frozen MiniLM encoder is held outside the state dict (its weights ship in their own package), and so is the
    frozen text head of :meth:`anchor_text` (a fine-tune's ``anchor_weight``).
    """

    def __init__(self, config: AlignerConfig, text_encoder: MiniLMTextEncoder):
        super().__init__()
        self.aligner = TextMotionAligner(config, text_encoder)
        self.config = config
        self.__dict__["text_encoder"] = text_encoder
        self.__dict__["anchor"] = None
        self.anchor_weight = 0.0
        self.unanchored_phrases: tuple[str, ...] = ()

    def anchor_text(self, weight: float, unanchored_phrases: Sequence[str] = ()) -> None:
        """Hold the captions' sentence embeddings near the current text head's (call after loading the given
        weights): the loss gains ``weight x mean(1 - cosine(text, anchored text))`` over the batch's captions that
        contain none of `unanchored_phrases` (case-insensitive), logged as ``anchor_drift``."""
        anchor = copy.deepcopy(self.aligner.text_head).requires_grad_(False).eval()
        self.__dict__["anchor"] = anchor
        self.anchor_weight = float(weight)
        self.unanchored_phrases = tuple(phrase.lower() for phrase in unanchored_phrases)

    def _anchored(self, captions: Sequence[str]) -> torch.Tensor:
        """1.0 for each caption the anchor holds, 0.0 for one naming an unanchored phrase."""
        return torch.tensor([0.0 if any(phrase in caption.lower() for phrase in self.unanchored_phrases) else 1.0
                             for caption in captions])

    def compute_loss(self, batch: MotionBatch) -> tuple[torch.Tensor, dict[str, float]]:
        minilm = self.text_encoder.encode(batch.captions).to(batch.features.device)
        out = self.aligner(minilm, batch.features, batch.valid)
        metrics = {"accuracy": float(out.accuracy), "temperature": float(out.temperature.detach())}
        if self.anchor is None:
            return out.loss, metrics
        with torch.no_grad():
            anchored = self.anchor.to(out.text.device)(minilm).sentence
        held = self._anchored(batch.captions).to(out.text.device)
        drift = ((1.0 - (out.text * anchored).sum(-1)) * held).sum() / held.sum().clamp(min=1.0)
        metrics["anchor_drift"] = float(drift.detach())
        return out.loss + self.anchor_weight * drift, metrics


class GeneratorTraining(nn.Module):
    """Masked-token loss of the :class:`MaskedGenerator` on a :class:`TokenBatch` of cached codes.

    The frozen tokenizer is held outside the state dict: only its codebooks are used, to give the key-frame
    masker each token's latent vector.
    """

    def __init__(self, config: GeneratorConfig, tokenizer: MotionTokenizer):
        super().__init__()
        self.generator = MaskedGenerator(config)
        self.config = config
        self.__dict__["tokenizer"] = tokenizer.eval().requires_grad_(False)
        self.__dict__["teacher"] = None
        self.distill_weight = 0.0

    def distill_from_start(self, weight: float) -> None:
        """Hold the generator near what it predicts now (call after loading a fine-tune's initial weights): the loss
        gains ``weight x KL(frozen copy || generator)`` on the same masked inputs, logged as ``distill``."""
        self.__dict__["teacher"] = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.distill_weight = float(weight)

    def compute_loss(self, batch: TokenBatch, generator: torch.Generator | None = None):
        embeddings = None
        if self.config.masker != "random":
            with torch.no_grad():
                embeddings = self.tokenizer.token_embeddings(batch.codes)
        teacher = self.teacher.to(batch.codes.device) if self.teacher is not None else None
        out = self.generator.training_loss(batch.codes, batch.token_valid, sentence=batch.condition,
                                           token_embeddings=embeddings, generator=generator, teacher=teacher)
        metrics = {"base_loss": out.base_loss.item(), "accuracy": out.accuracy.item()}
        if out.residual_loss is not None:
            metrics["residual_loss"] = out.residual_loss.item()
            metrics["residual_accuracy"] = out.residual_accuracy.item()
        if out.distill is None:
            return out.loss, metrics
        metrics["distill"] = out.distill.item()
        return out.loss + self.distill_weight * out.distill, metrics


# ---------------------------------------------------------------------------------------------------------------------
# Data


def _data_root(config: ProjectConfig) -> Path:
    root = Path(config.data.root)
    if not root.is_dir():
        raise InputFileError(root, "training data folder not found (set [data] root, or --set data.root=FOLDER; "
                                   "build one with `kmm-train prepare`)")
    return root


def motion_split(config: ProjectConfig, split: str, *, random_crop: bool = True) -> MotionClips:
    return MotionClips(_data_root(config), split, min_frames=config.data.min_frames,
                       max_frames=config.data.max_frames, random_crop=random_crop)


def validation_split(config: ProjectConfig, log: Callable[[str], None]) -> MotionClips | None:
    """The val split with fixed windows, or None (logged) when the folder has no usable val clips."""
    try:
        clips = motion_split(config, "val", random_crop=False)
    except (EmptySplitError, InputFileError) as error:
        log(f"no validation: {error}")
        return None
    return clips


def _validation_batches(clips: MotionClips, batch_size: int) -> list[MotionBatch]:
    count = min(len(clips), VALIDATION_CLIPS)
    items = [clips[i] for i in range(count)]
    return [collate_motion(items[i : i + batch_size]) for i in range(0, count, batch_size)]


def write_run_metadata(config: ProjectConfig, out_dir: Path, train_clips: MotionClips) -> None:
    """config.json, Mean/Std and dataset.json of the run folder (rewritten by every stage; identical data)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.json", json.dumps(config_to_dict(config), indent=2))
    train_clips.normalizer.save(out_dir)
    root = train_clips.folder.root
    summary: dict[str, Any] = {"root": str(root.resolve()), "train_clips": len(train_clips),
                               "train_captions": sum(len(c) for c in train_clips.captions)}
    report = root / "report.json"
    if report.is_file():
        try:
            data = read_json(report, "dataset report", allow_non_finite=True)
            summary["totals"] = data.get("totals")
            summary["sources"] = [source.get("kind") for source in data.get("sources", [])]
            summary["per_dataset"] = data.get("per_dataset", {})  # clips and minutes per source (model card)
        except (InputFileError, AttributeError):
            pass
    write_text_atomic(out_dir / "dataset.json", json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------------------------------
# Shared driver


def _run_trainer(stage: str, module: nn.Module, train_set, collate, config: ProjectConfig, out_dir: Path,
                 context: DistributedContext, resume: bool, validate, export: Callable[[], Path],
                 progress: bool, find_unused_parameters: bool = False) -> StageResult:
    stage_config: TrainStageConfig = getattr(config.train, stage)
    weights = None
    if stage_config.balance != 1.0 or stage_config.group_weights:
        groups = action_groups(_data_root(config), train_set.names)
        try:
            weights = sampling_weights(groups, stage_config.balance, stage_config.group_weights)
        except ValueError as error:
            raise StageError(f"[train.{stage}] {error}") from None
        if context.is_main:
            shares = group_shares(groups, weights)
            ranked = sorted(shares.items(), key=lambda item: -item[1])
            _print(f"{stage}: balanced sampling (balance = {stage_config.balance}) over {len(ranked)} action groups; "
                   f"largest share {ranked[0][0]} {ranked[0][1]:.1%}, smallest {ranked[-1][0]} {ranked[-1][1]:.2%}")
            for pattern in stage_config.group_weights:
                _print(f"{stage}: group_weights[{pattern!r}] = {stage_config.group_weights[pattern]}: "
                       + ", ".join(f"{group} {shares[group]:.2%}" for group in sorted(groups_matching(shares, pattern))))
    if stage_config.code_phases != 1 and stage != "generator":
        raise StageError(f"[train.{stage}] code_phases = {stage_config.code_phases}: only the generator stage trains on "
                         "tokenized clips; use 1 for this stage")
    lengths = None
    if stage_config.length_buckets:
        if not hasattr(train_set, "window_lengths"):
            raise StageError(f"[train.{stage}] length_buckets = {stage_config.length_buckets}: the {stage} stage's "
                             "items have no fixed length to group them by; use 0 (off) for this stage")
        lengths = train_set.window_lengths()
    partners = None
    if stage_config.mirror_pairs:  # a stage that cannot take it was refused before its data was read
        partners = mirror_partners(_data_root(config), train_set.names,
                                   [[caption.text for caption in captions] for captions in train_set.captions])
        if context.is_main:
            _print(f"{stage}: mirror pairs: {int((partners >= 0).sum())} of {len(partners)} clips are sided, each "
                   "drawn beside its mirror")
    batches = ShuffledBatches(train_set, stage_config.batch_size, seed=stage_config.seed, collate_fn=collate,
                              rank=context.rank, world_size=context.world_size, num_workers=stage_config.num_workers,
                              weights=weights, lengths=lengths, length_buckets=stage_config.length_buckets,
                              partners=partners)
    result = Trainer(module, batches, stage_config, out_dir / stage, validate=validate, resume=resume,
                     distributed=context, progress=progress, find_unused_parameters=find_unused_parameters,
                     checkpoint_config={"model": module.config, "train": stage_config}).run()
    weights = export() if context.is_main and result.stopped_by is None else None
    barrier(context)  # the next stage on another rank reads this export
    return StageResult(stage, result, weights)


def _check_fine_tuning(config: ProjectConfig, stage: str) -> None:
    """Refuse ``init_weights``, ``anchor_weight`` and the other stage-bound options (``distill_weight``,
    ``mirror_pairs``) where the stage cannot use them, before any data is read."""
    stage_config: TrainStageConfig = getattr(config.train, stage)
    if stage_config.init_weights and stage not in FINE_TUNED_STAGES:
        raise StageError(f"[train.{stage}] init_weights = {stage_config.init_weights!r}: only the "
                         f"{', '.join(FINE_TUNED_STAGES)} stages start from given weights (the tokenizer's codes are "
                         "what a generator learned); leave it empty for this stage")
    if stage_config.anchor_weight and not (stage_config.init_weights and stage in ("aligner", "evaluator")):
        raise StageError(f"[train.{stage}] anchor_weight = {stage_config.anchor_weight}: it holds a fine-tuned text "
                         "head near the one it started from, so only the aligner and evaluator stages take it, with "
                         "init_weights set; use 0 here")
    if stage_config.distill_weight and not (stage_config.init_weights and stage == "generator"):
        raise StageError(f"[train.{stage}] distill_weight = {stage_config.distill_weight}: it holds a fine-tuned "
                         "generator near the weights it starts from, so it needs the generator stage with "
                         "init_weights set; use 0 here")
    if stage_config.mirror_pairs and stage not in ("aligner", "evaluator"):
        raise StageError(f"[train.{stage}] mirror_pairs = true: it pairs captions with their mirrors for the "
                         "contrastive stages (aligner, evaluator); use false for this stage")
    if stage_config.unanchored_phrases and not stage_config.anchor_weight:
        raise StageError(f"[train.{stage}] unanchored_phrases = {stage_config.unanchored_phrases}: they free captions "
                         "from the anchor term, which is off here; set anchor_weight too, or leave them empty")


def _context(device: str | None) -> DistributedContext:
    return init_distributed(None if device in (None, "auto") else device)


def _print(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one voice
        print(f"[kmm-train] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Stages


def train_tokenizer(config: ProjectConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
                    progress: bool = True) -> StageResult:
    """Train the motion tokenizer (VQ-VAE); writes RUN/tokenizer.safetensors + .json."""
    _check_fine_tuning(config, "tokenizer")
    out_dir, context = Path(out_dir), _context(device)
    train_set = motion_split(config, "train")
    if context.is_main:
        write_run_metadata(config, out_dir, train_set)
    seed_everything(config.train.tokenizer.seed)
    module = TokenizerTraining(config.tokenizer)
    val = validation_split(config, _print) if context.is_main else None
    validate = None
    if val is not None:
        val_batches = _validation_batches(val, config.train.tokenizer.batch_size)
        normalizer = val.normalizer

        def validate(trained: nn.Module) -> dict[str, float]:
            return tokenizer_validation(trained.tokenizer, val_batches, normalizer, context.device)

    def export() -> Path:
        return export_weights(module.tokenizer, out_dir / "tokenizer.safetensors", torch.float32, config.tokenizer)

    return _run_trainer("tokenizer", module, train_set, collate_motion, config, out_dir, context, resume, validate,
                        export, progress)


def tokenizer_validation(tokenizer: MotionTokenizer, batches: list[MotionBatch], normalizer: Normalizer,
                         device: torch.device) -> dict[str, float]:
    """Reconstruction loss, MPJPE (millimetres, root-relative joints) and the reconstruction's mean jerk as a
    multiple of the real clips' (``jerk_ratio``: 1 is as smooth as the data) of the tokenizer on fixed val windows."""
    loss_sum, error_sum, frames = 0.0, 0.0, 0
    jerk_sums = torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        features, valid = batch.features.to(device), batch.valid.to(device)
        out = tokenizer(features, valid)
        loss_sum += float(out.losses["reconstruction"]) * len(batch.names)
        joints_true = features_to_joints_torch(normalizer.denormalize(features))
        joints_pred = features_to_joints_torch(normalizer.denormalize(out.reconstruction))
        windows = valid[:, 3:] & valid[:, :-3]
        for row, joints in enumerate((joints_pred, joints_true)):
            jerk_sums[row] += float(joints.diff(n=3, dim=1).norm(dim=-1).mean(-1)[windows].sum())
        joints_true = joints_true - joints_true[..., :1, :]
        joints_pred = joints_pred - joints_pred[..., :1, :]
        distance = (joints_true - joints_pred).norm(dim=-1).mean(-1)  # (B, T)
        error_sum += float(distance[valid].sum())
        frames += int(valid.sum())
    clips = sum(len(batch.names) for batch in batches)
    return {"reconstruction": loss_sum / clips, "mpjpe_mm": 1000.0 * error_sum / max(frames, 1),
            "jerk_ratio": float(jerk_sums[0] / jerk_sums[1].clamp(min=1e-12))}


def contrastive_validation(aligner: TextMotionAligner, batches: list[MotionBatch],
                           text_encoder: MiniLMTextEncoder, device: torch.device) -> dict[str, float]:
    """InfoNCE loss and text-to-motion top-1 accuracy within fixed val batches."""
    loss_sum, correct, count = 0.0, 0, 0
    for batch in batches:
        if len(batch.names) < 2:
            continue
        minilm = text_encoder.encode(batch.captions).to(device)
        out = aligner(minilm, batch.features.to(device), batch.valid.to(device))
        loss_sum += float(out.loss) * len(batch.names)
        correct += int(round(float(out.accuracy) * len(batch.names)))
        count += len(batch.names)
    return {"loss": loss_sum / max(count, 1), "top1": correct / max(count, 1)}


def _train_contrastive(stage: str, model_config: AlignerConfig, config: ProjectConfig, out_dir: Path, resume: bool,
                       device: str | None, progress: bool) -> StageResult:
    if model_config.motion_input != "features":
        raise ConfigError(f"[{stage}] motion_input = '{model_config.motion_input}': training supports 'features' only")
    _check_fine_tuning(config, stage)
    context = _context(device)
    train_set = motion_split(config, "train")
    if context.is_main:
        write_run_metadata(config, out_dir, train_set)
    text_encoder = MiniLMTextEncoder().to(context.device)
    stage_config: TrainStageConfig = getattr(config.train, stage)
    seed_everything(stage_config.seed)
    module = ContrastiveTraining(model_config, text_encoder)
    if stage_config.init_weights:
        load_initial_weights(module.aligner, Path(stage_config.init_weights), model_config, stage)
        if stage_config.anchor_weight:
            module.anchor_text(stage_config.anchor_weight, stage_config.unanchored_phrases)
    val = validation_split(config, _print) if context.is_main else None
    validate = None
    if val is not None:
        val_batches = _validation_batches(val, stage_config.batch_size)

        def validate(trained: nn.Module) -> dict[str, float]:
            return contrastive_validation(trained.aligner, val_batches, text_encoder, context.device)

    def export() -> Path:
        return export_weights(module.aligner, out_dir / f"{stage}.safetensors", torch.float32, model_config)

    # The text head's per-token output conditions the generator but is not part of the sentence-level loss.
    return _run_trainer(stage, module, train_set, collate_motion, config, out_dir, context, resume, validate,
                        export, progress, find_unused_parameters=True)


def train_aligner(config: ProjectConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
                  progress: bool = True) -> StageResult:
    """Train the text-motion aligner that conditions the generator; writes RUN/aligner.safetensors + .json."""
    return _train_contrastive("aligner", config.aligner, config, Path(out_dir), resume, device, progress)


def train_evaluator(config: ProjectConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
                    progress: bool = True) -> StageResult:
    """Train the evaluation encoders (``[evaluator]``, train split only); writes RUN/evaluator.safetensors + .json."""
    return _train_contrastive("evaluator", evaluator_config(config), config, Path(out_dir), resume, device, progress)


def load_stage_model(out_dir: Path, stage: str, device: torch.device) -> nn.Module:
    """A finished stage's model from RUN/<stage>.safetensors + .json, frozen, in eval mode."""
    weights = out_dir / f"{stage}.safetensors"
    if not weights.is_file():
        raise StageError(f"{weights}: not found; train the {stage} first (kmm-train {stage} --out {out_dir})")
    try:
        model_config = read_json(weights.with_suffix(".json"), "model config")
    except InputFileError:
        if not weights.with_suffix(".json").exists():
            raise InputFileError(weights.with_suffix(".json"), "model config not found") from None
        raise
    if stage in ("tokenizer", "decoder"):  # RUN/decoder.safetensors is a whole tokenizer with a refined decoder
        model: nn.Module = MotionTokenizer(TokenizerConfig.from_dict(model_config, "tokenizer"))
    elif stage in ("aligner", "evaluator"):
        model = TextMotionAligner(AlignerConfig.from_dict(model_config, stage))
    else:
        model = MaskedGenerator(GeneratorConfig.from_dict(model_config, stage))
    load_weights(model, weights)
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode_split(clips: MotionClips, tokenizer: MotionTokenizer, condition: Callable[[list[str]], torch.Tensor],
                 device: torch.device, batch_size: int = 64, phases: int = 1
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Codes (P, L_i, Q) of every whole clip (up to max_frames) and condition vectors (C_i, E) of its captions.

    Phase p encodes the clip from frame p (P = ``phases``); every phase keeps the length of the shortest one, so all
    of a clip's code sequences cover the same number of tokens."""
    max_frames = clips.max_frames // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    order = sorted(range(len(clips)), key=lambda i: clips.num_frames[i])  # similar lengths pad little
    codes: list[list[torch.Tensor]] = [[] for _ in range(len(clips))]
    for phase in range(phases):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            windows = [torch.from_numpy(clips.normalized_features(i)[phase:max_frames]) for i in chunk]
            batch = collate_motion([{"features": w, "caption": "", "name": ""} for w in windows])
            encoded = tokenizer.encode(batch.features.to(device), batch.valid.to(device)).cpu()
            for row, index in enumerate(chunk):
                tokens = math.ceil((min(clips.num_frames[index], max_frames) - (phases - 1)) / FRAMES_PER_TOKEN)
                codes[index].append(encoded[row, :tokens])
    texts = [caption.text for captions in clips.captions for caption in captions]
    vectors = torch.cat([condition(texts[i : i + 256]).float().cpu() for i in range(0, len(texts), 256)])
    conditions, position = [], 0
    for captions in clips.captions:
        conditions.append(vectors[position : position + len(captions)])
        position += len(captions)
    return [torch.stack(c) for c in codes], conditions


def cached_encoding(cache_file: Path, key: str, compute: Callable[[], tuple[list, list]], write: bool):
    """``compute()``'s codes (P, L, Q) and conditions, read from ``cache_file`` when it was written with the same
    ``key``."""
    if cache_file.is_file():
        try:
            tensors = load_file(str(cache_file))
            from safetensors import safe_open

            with safe_open(str(cache_file), "pt") as handle:
                stored_key = (handle.metadata() or {}).get("key")
            if stored_key == key:
                codes = [c.transpose(0, 1) for c in _split_rows(tensors["codes"], tensors["code_offsets"])]
                return codes, _split_rows(tensors["conditions"], tensors["condition_offsets"])
        except Exception:  # noqa: BLE001 - any unreadable cache (SafetensorError included) is simply recomputed
            pass
    codes, conditions = compute()
    if write:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as partial:  # renamed when complete: never read half-written
            by_token = [c.transpose(0, 1) for c in codes]  # (L, P, Q): the clips' rows concatenate along L
            save_file({"codes": torch.cat(by_token), "code_offsets": _offsets(by_token),
                       "conditions": torch.cat(conditions), "condition_offsets": _offsets(conditions)},
                      str(partial), metadata={"key": key})
    return codes, conditions


def _offsets(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([0] + [r.shape[0] for r in rows], dtype=torch.int64).cumsum(0)


def _split_rows(stacked: torch.Tensor, offsets: torch.Tensor) -> list[torch.Tensor]:
    return [stacked[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def train_generator(config: ProjectConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
                    progress: bool = True) -> StageResult:
    """Train the masked generator on codes of the frozen tokenizer; writes RUN/generator.safetensors + .json."""
    _check_fine_tuning(config, "generator")
    out_dir, context = Path(out_dir), _context(device)
    gen = config.generator
    tokenizer = load_stage_model(out_dir, "tokenizer", context.device)
    aligner = load_stage_model(out_dir, "aligner", context.device) if gen.condition_source == "aligner" else None
    check_generator_fits(config, tokenizer.config, aligner.config if aligner is not None else None)
    text_encoder = MiniLMTextEncoder().to(context.device)

    def condition(texts: list[str]) -> torch.Tensor:
        return text_condition(texts, gen.condition_source, text_encoder, aligner).sentence

    # The cached codes' key: the first 16 hex digits of each frozen model's SHA-256; the aligner's whole SHA-256 goes
    # into the generator's header (``TRAINED_ON_ALIGNER``), and so does a fine-tune's start's (``FINE_TUNED_FROM``).
    digests = file_sha256(out_dir / "tokenizer.safetensors")[:16]
    trained_on = {}
    if aligner is not None:
        trained_on[TRAINED_ON_ALIGNER] = file_sha256(out_dir / "aligner.safetensors")
        digests += "-" + trained_on[TRAINED_ON_ALIGNER][:16]
    train_clips = motion_split(config, "train")
    if context.is_main:
        write_run_metadata(config, out_dir, train_clips)
    min_tokens = max(1, config.data.min_frames // FRAMES_PER_TOKEN)
    max_tokens = config.data.max_frames // FRAMES_PER_TOKEN

    def encoded(clips: MotionClips, split: str) -> tuple[list, list]:
        phases = config.train.generator.code_phases if split == "train" else 1
        key = f"{digests}-{gen.condition_source}-{split}-{len(clips)}-{config.data.max_frames}-phases{phases}"
        return cached_encoding(out_dir / CACHE_DIR / f"generator_{split}.safetensors", key,
                               lambda: encode_split(clips, tokenizer, condition, context.device, phases=phases),
                               context.is_main)

    train_set = TokenClips(*encoded(train_clips, "train"), min_tokens=min_tokens, max_tokens=max_tokens,
                           names=train_clips.names)
    val = validation_split(config, _print) if context.is_main else None
    seed_everything(config.train.generator.seed)
    module = GeneratorTraining(gen, tokenizer)
    if config.train.generator.init_weights:
        load_initial_weights(module.generator, Path(config.train.generator.init_weights), gen, "generator")
        trained_on[FINE_TUNED_FROM] = file_sha256(Path(config.train.generator.init_weights))
        if config.train.generator.distill_weight:
            module.distill_from_start(config.train.generator.distill_weight)
    validate = None
    if val is not None:
        val_set = TokenClips(*encoded(val, "val"), min_tokens=min_tokens, max_tokens=max_tokens, random_crop=False)
        size = config.train.generator.batch_size
        count = min(len(val_set), VALIDATION_CLIPS)
        val_batches = [collate_tokens([val_set[i] for i in range(s, min(s + size, count))]) for s in range(0, count, size)]

        def validate(trained: nn.Module) -> dict[str, float]:
            rng = torch.Generator().manual_seed(0)  # the same masks at every validation
            totals: dict[str, float] = {}
            for batch in val_batches:
                moved = TokenBatch(*(t.to(context.device) for t in (batch.codes, batch.token_valid, batch.condition,
                                                                      batch.token_lengths)))
                loss, metrics = trained.compute_loss(moved, generator=rng)
                for name, value in {"loss": float(loss), **metrics}.items():
                    totals[name] = totals.get(name, 0.0) + value / len(val_batches)
            return totals

    def export() -> Path:
        return export_weights(module.generator, out_dir / "generator.safetensors", torch.float32, gen, trained_on)

    return _run_trainer("generator", module, train_set, collate_tokens, config, out_dir, context, resume, validate,
                        export, progress)


FINE_TUNED_STAGES = ("aligner", "evaluator", "generator")
"""The stages ``[train.<stage>] init_weights`` may start from trained weights (training/README.md, "Fine-tuning")."""


def load_initial_weights(model: nn.Module, weights: Path, config: AlignerConfig | GeneratorConfig, stage: str) -> None:
    """``[train.<stage>] init_weights``: the weights a fine-tune starts from, refused unless the ``.json`` beside them
    is this run's model config for the stage (a resumed run then continues from its own checkpoint instead)."""
    config_file = weights.with_suffix(".json")
    if not weights.is_file():
        raise StageError(f"[train.{stage}] init_weights: {weights} not found")
    if not config_file.is_file():
        raise StageError(f"[train.{stage}] init_weights: {config_file} (the model config beside the weights) "
                         "not found")
    theirs = type(config).from_dict(read_json(config_file, "model config"), stage)
    if theirs != config:
        differing = sorted(key for key, value in vars(config).items() if getattr(theirs, key, None) != value)
        raise StageError(f"[train.{stage}] init_weights: {config_file} is another {stage} than this run's "
                         f"[{stage}] config (differs in {', '.join(differing)})")
    load_weights(model, weights)


def train_decoder(config: ProjectConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
                  progress: bool = True) -> StageResult:
    """Retrain the finished tokenizer's decoder alone with the ``[decoder]`` jerk term (codes unchanged); writes
    RUN/decoder.safetensors + .json (a whole tokenizer: the bundle ships it in place of RUN/tokenizer)."""
    _check_fine_tuning(config, "decoder")
    out_dir, context = Path(out_dir), _context(device)
    if config.decoder.jerk_weight <= 0:
        raise StageError("the decoder stage is off: set [decoder] jerk_weight > 0 (e.g. --set decoder.jerk_weight=0.1)")
    tokenizer = load_stage_model(out_dir, "tokenizer", context.device)
    train_set = motion_split(config, "train")
    if context.is_main:
        write_run_metadata(config, out_dir, train_set)
    seed_everything(config.train.decoder.seed)
    module = DecoderRefinement(tokenizer, train_set.normalizer, config.decoder.jerk_weight, config.decoder.root_weight,
                               config.decoder.still_weight, config.decoder.still_joints, config.decoder.still_span,
                               config.decoder.height_weight, config.decoder.bob_weight, config.decoder.bob_span,
                               config.decoder.hand_weight, config.decoder.hand_span)
    val = validation_split(config, _print) if context.is_main else None
    validate = None
    if val is not None:
        val_batches = _validation_batches(val, config.train.decoder.batch_size)

        def validate(trained: nn.Module) -> dict[str, float]:
            return tokenizer_validation(trained.tokenizer, val_batches, val.normalizer, context.device)

    def export() -> Path:
        return export_weights(module.tokenizer, out_dir / "decoder.safetensors", torch.float32, tokenizer.config)

    return _run_trainer("decoder", module, train_set, collate_motion, config, out_dir, context, resume, validate,
                        export, progress)


STAGE_FUNCTIONS: Mapping[str, Callable[..., StageResult]] = {
    "tokenizer": train_tokenizer,
    "aligner": train_aligner,
    "evaluator": train_evaluator,
    "generator": train_generator,
    "decoder": train_decoder,
}
assert set(STAGE_FUNCTIONS) == set(STAGES)


def run_stages(config: ProjectConfig, out_dir: str | Path, stages: Iterable[str] = STAGE_ORDER, *,
               resume: bool = False, device: str | None = None, progress: bool = True) -> list[StageResult]:
    """Run ``stages`` in :data:`STAGE_ORDER`; stops at the first stage interrupted by a signal."""
    wanted = set(stages)
    unknown = wanted - set(STAGE_ORDER)
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGE_ORDER)}")
    # The data's statistics are read before any stage: a Std.npy of zeros (or NaN) fails here naming the file,
    # instead of training a model on features it cannot normalise.
    Normalizer.from_folder(_data_root(config))
    results = []
    for stage in STAGE_ORDER:
        if stage not in wanted:
            continue
        if stage == "decoder" and config.decoder.jerk_weight <= 0 and len(wanted) > 1:
            _print("stage decoder skipped: [decoder] jerk_weight is 0 (the decoder refinement is off)")
            continue
        _print(f"stage {stage}")
        result = STAGE_FUNCTIONS[stage](config, out_dir, resume=resume, device=device, progress=progress)
        results.append(result)
        if result.train.stopped_by is not None:
            break
    return results
