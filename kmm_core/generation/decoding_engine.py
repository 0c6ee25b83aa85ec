# SPDX-License-Identifier: GPL-3.0-or-later
"""The decoding engine shared by timeline generation, editing and evaluation: decoding options, step counting with
progress and cancellation across several decodes, and windowed decoding of long token sequences.

Sequences longer than ``max_window_tokens`` are decoded in overlapping windows: each window after the first keeps
its first ``window_overlap_tokens`` tokens fixed from the previous window, so it continues that motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..common.errors import ConfigError
from ..common.limits import (
    MAX_LOCOMOTION_GUIDANCE_FACTOR,
    MAX_LOCOMOTION_PERIOD_BONUS,
    MAX_STANDING_ROOT_SIGMA,
    MAX_STEADY_WALK_CANDIDATES,
    MAX_UNLIKELY_GUIDANCE_FACTOR,
)
from ..common.progress import CancelCheck, GenerationCancelled, ProgressCallback
from ..humanml3d.feature_smoothing import (
    DECODED_SMOOTHING_SIGMA,
    SpansAndKinds,
    locomotion_token_weights,
    span_token_means,
)
from ..model.configs import DecodingConfig
from ..model.decoding import decode_tokens
from ..model.motion_tokenizer import num_tokens_for_frames
from ..motion.model_timing import FRAMES_PER_TOKEN
from .prompt_kinds import spans_and_kinds
from .prompt_vocabulary import guidance_boosts
from .timeline import DEFAULT_TRANSITIONS, TRANSITION_MODES
from .walk_candidates import stride_score, window_spans

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle.model_bundle import ModelBundle


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode.  None takes the bundle's default (its DecodingConfig)."""

    steps: int | None = None
    guidance: float | None = None
    temperature: float | None = None
    transitions: str = DEFAULT_TRANSITIONS
    transition_tokens: int = 4  # inpaint: tokens re-decoded on each side of a boundary (2 gave 50% more jerk)
    inpaint_context_tokens: int = 16  # inpaint: fixed tokens each side of a re-decoded region that its window sees
    max_window_tokens: int = 1024
    window_overlap_tokens: int = 64
    foot_lock: bool = True  # hold feet on their contacts (kmm_core/motion/foot_contact.py); False keeps the raw decode
    smoothing: float = DECODED_SMOOTHING_SIGMA  # Gaussian (frames) on decoded features, see feature_smoothing.py
    # A second Gaussian (frames) on the root channels of standing prompts' frames, half as long on the torso chain
    # (calm standing without a shaking pelvis or head; feature_smoothing.smooth_standing_root); 0 turns it off,
    # None takes the bundle's (its decoding.standing_root_sigma, chosen against its decoder).
    standing_root_sigma: float | None = None
    # The guidance of walk and run prompts' tokens as a share of the guidance (DecodingConfig's
    # locomotion_guidance_factor; 1 guides them like every other prompt); None takes the bundle's.
    walk_guidance_factor: float | None = None
    # The pull of a walk or run token toward the code one gait cycle away, on the base layer, the residual layers and
    # the steady walks' extra base pull alike (DecodingConfig's locomotion_period_bonus,
    # locomotion_residual_period_bonus and steady_walk_period_bonus; 0 turns all three off); None takes the bundle's.
    walk_cycle_bonus: float | None = None
    # Candidate decodes of each straight walk or run, the most regular step kept (DecodingConfig's
    # steady_walk_candidates; 1 draws one); None takes the bundle's.
    walk_candidates: int | None = None
    # The guidance of prompts the model rarely performs at the usual guidance, as a multiple of it (DecodingConfig's
    # unlikely_guidance_factor; 1 guides them like every other prompt); None takes the bundle's.
    unlikely_guidance_factor: float | None = None
    # A timeline's constraints: also keep their encoded tokens and decode the tokens around them again.  Off: on the
    # shipped model it met the constraints no better and made the motion around them jerkier (81% vs 97% of motions
    # within 1.3x their own jerk; benchmarks/results/constraints.md).
    constraint_tokens: bool = False

    def __post_init__(self) -> None:
        if self.transitions not in TRANSITION_MODES:
            raise ConfigError(f"transitions: must be one of {', '.join(TRANSITION_MODES)}, got {self.transitions!r}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps: must be >= 1, got {self.steps}")
        if self.guidance is not None and not 0 <= self.guidance <= 100:
            raise ConfigError(f"guidance: must be between 0 and 100, got {self.guidance}")
        if not 0 <= self.smoothing <= 4:
            raise ConfigError(f"smoothing: must be between 0 and 4 frames, got {self.smoothing}")
        sigma = self.standing_root_sigma
        if sigma is not None and not 0 <= sigma <= MAX_STANDING_ROOT_SIGMA:
            raise ConfigError(f"standing_root_sigma: must be between 0 and {MAX_STANDING_ROOT_SIGMA:g} frames, "
                              f"got {sigma}")
        factor = self.walk_guidance_factor
        if factor is not None and not 0 <= factor <= MAX_LOCOMOTION_GUIDANCE_FACTOR:
            raise ConfigError(f"walk_guidance_factor: must be between 0 and {MAX_LOCOMOTION_GUIDANCE_FACTOR:g}, "
                              f"got {factor}")
        raised = self.unlikely_guidance_factor
        if raised is not None and not 1 <= raised <= MAX_UNLIKELY_GUIDANCE_FACTOR:
            raise ConfigError(f"unlikely_guidance_factor: must be between 1 and {MAX_UNLIKELY_GUIDANCE_FACTOR:g}, "
                              f"got {raised}")
        bonus = self.walk_cycle_bonus
        if bonus is not None and not 0 <= bonus <= MAX_LOCOMOTION_PERIOD_BONUS:
            raise ConfigError(f"walk_cycle_bonus: must be between 0 and {MAX_LOCOMOTION_PERIOD_BONUS:g}, got {bonus}")
        count = self.walk_candidates
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or not 1 <= count <= MAX_STEADY_WALK_CANDIDATES):
            raise ConfigError(f"walk_candidates: must be a whole number from 1 to {MAX_STEADY_WALK_CANDIDATES}, "
                              f"got {count!r}")
        if self.transition_tokens < 1:
            raise ConfigError(f"transition_tokens: must be >= 1, got {self.transition_tokens}")
        if self.inpaint_context_tokens < 1:
            raise ConfigError(f"inpaint_context_tokens: must be >= 1, got {self.inpaint_context_tokens}")
        if self.max_window_tokens < 8:
            raise ConfigError(f"max_window_tokens: must be >= 8, got {self.max_window_tokens}")
        if not 0 < self.window_overlap_tokens < self.max_window_tokens // 2:
            raise ConfigError(f"window_overlap_tokens: must be in 1..{self.max_window_tokens // 2 - 1}, got "
                              f"{self.window_overlap_tokens}")

    def decoding_config(self, bundle: ModelBundle) -> DecodingConfig:
        """The bundle's decoding settings with these options' overrides."""
        changes = {}
        if self.steps is not None:
            changes["steps"] = self.steps
        if self.guidance is not None:
            changes["guidance_scale"] = float(self.guidance)
        if self.temperature is not None:
            changes["temperature"] = float(self.temperature)
        if self.standing_root_sigma is not None:
            changes["standing_root_sigma"] = float(self.standing_root_sigma)
        if self.walk_guidance_factor is not None:
            changes["locomotion_guidance_factor"] = float(self.walk_guidance_factor)
        if self.unlikely_guidance_factor is not None:
            changes["unlikely_guidance_factor"] = float(self.unlikely_guidance_factor)
        if self.walk_cycle_bonus is not None:
            changes["locomotion_period_bonus"] = float(self.walk_cycle_bonus)
            changes["locomotion_residual_period_bonus"] = float(self.walk_cycle_bonus)
            changes["steady_walk_period_bonus"] = float(self.walk_cycle_bonus)
        if self.walk_candidates is not None:
            changes["steady_walk_candidates"] = self.walk_candidates
        return replace(bundle.decoding, **changes)


class StepCounter:
    """Counts decoding steps across several decodes and forwards them; checks for cancellation at every step."""

    def __init__(self, total: int, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None,
                 message: str = "decoding"):
        self.total = max(1, total)
        self.done = 0
        self.message = message
        self._on_progress = on_progress
        self._should_cancel = should_cancel

    def check_cancel(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise GenerationCancelled(f"cancelled at step {self.done} of {self.total}")

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if self._on_progress is not None:
            self._on_progress(self.done, self.total, self.message)
        self.check_cancel()

    def on_step(self, _step: int, _total: int, _message: str) -> None:
        """A ProgressCallback for one decode: each of its steps is one step of the whole task."""
        self.advance(1)


def steps_per_decode(bundle: ModelBundle, config: DecodingConfig) -> int:
    """Steps one decode takes: the base layer's steps plus one per residual layer the predictor fills."""
    generator = bundle.generator
    return config.steps + (generator.config.num_quantizers - 1 if generator.residual is not None else 0)


def window_starts(num_tokens: int, options: GenerationOptions) -> list[int]:
    """First token of each decoding window (one window when the sequence fits)."""
    size, overlap = options.max_window_tokens, options.window_overlap_tokens
    if num_tokens <= size:
        return [0]
    starts = [0]
    while starts[-1] + size < num_tokens:
        starts.append(starts[-1] + size - overlap)
    return starts


def locomotion_tokens(num_tokens: int, kinds: SpansAndKinds, steady: bool = False) -> Tensor:
    """(L,) each token's walking share (20 fps spans with their prompts' kinds, ``prompt_kinds.spans_and_kinds``; a
    later span overrides an earlier one): how much of the bundle's ``decoding.locomotion_guidance_factor`` its
    guidance takes; with ``steady``, its share of walking on a steady heading (``decode_tokens``' ``steady_walk``)."""
    return torch.from_numpy(locomotion_token_weights(num_tokens, kinds, FRAMES_PER_TOKEN, steady)).float()


def unlikely_tokens(bundle: ModelBundle, num_tokens: int,
                    spans_and_prompts: Sequence[tuple[tuple[int, int], str]]) -> Tensor | None:
    """(L,) each token's share of the bundle's raised guidance (its prompt's ``guidance_boost``,
    ``prompt_vocabulary.guidance_boosts``), None when no prompt takes any."""
    boosts = guidance_boosts(bundle, [prompt for _, prompt in spans_and_prompts])
    if not any(boosts):
        return None
    values = [(span, boost) for (span, _), boost in zip(spans_and_prompts, boosts, strict=True)]
    return torch.from_numpy(span_token_means(num_tokens, values, FRAMES_PER_TOKEN)).float()


def decode_windowed(bundle: ModelBundle, num_frames: int, cond_per_token: Tensor, fixed: Tensor | None,
                    config: DecodingConfig, rng: torch.Generator, options: GenerationOptions,
                    counter: StepCounter,
                    spans_and_prompts: Sequence[tuple[tuple[int, int], str]] | None = None,
                    walk_candidates: bool = False) -> Tensor:
    """(L, Q) codes for `num_frames` frames, per-token conditions (L, E), fixed codes (L, Q) with -1 = generate;
    `spans_and_prompts` (20 fps frames) say which tokens belong to walks and runs (their prompts' walking share,
    ``prompt_kinds.py``), guided at the bundle's ``decoding.locomotion_guidance_factor`` (`locomotion_tokens`); None
    guides every token alike.  With `walk_candidates` (and `spans_and_prompts`), a window whose tokens to draw are
    mostly steady walk tokens takes
    ``config.steady_walk_candidates`` candidate decodes and keeps the one whose drawn frames step most regularly
    (`walk_candidates.stride_score`).

    Windows overlap by `window_overlap_tokens`; the overlap is fixed from the window before, so every window
    continues the motion decoded so far.  Windows with nothing to generate are skipped (their steps still count).
    """
    generator = bundle.generator
    num_tokens = num_tokens_for_frames(num_frames)
    layers = generator.config.num_quantizers
    codes = torch.full((num_tokens, layers), -1, dtype=torch.int64) if fixed is None else fixed.clone().long().cpu()
    per_decode = steps_per_decode(bundle, config)
    kinds = None if spans_and_prompts is None else spans_and_kinds(bundle, spans_and_prompts)
    locomotion, steady = (None, None) if kinds is None else \
        (locomotion_tokens(num_tokens, kinds), locomotion_tokens(num_tokens, kinds, True))
    unlikely = None if spans_and_prompts is None else unlikely_tokens(bundle, num_tokens, spans_and_prompts)
    for start in window_starts(num_tokens, options):
        end = min(num_tokens, start + options.max_window_tokens)
        window = codes[start:end]
        if bool((window >= 0).all()):
            counter.advance(per_decode)
            continue
        frames = min(num_frames, end * FRAMES_PER_TOKEN) - start * FRAMES_PER_TOKEN
        counter.check_cancel()
        score = None
        if walk_candidates and spans_and_prompts is not None:  # measured over the tokens this window draws
            free = (window[:, 0] < 0).nonzero().flatten()
            drawn = (int(free[0]) * FRAMES_PER_TOKEN, min(frames, (int(free[-1]) + 1) * FRAMES_PER_TOKEN)) \
                if free.numel() else (0, frames)  # only residual codes to draw: no candidates (candidate_rows)
            score = stride_score(bundle, [(frames, window_spans(spans_and_prompts, start, frames))], [drawn])
        result = decode_tokens(generator, frames, cond_per_token=cond_per_token[start:end].unsqueeze(0),
                               fixed_codes=window.unsqueeze(0).to(bundle.device), config=config, rng=rng,
                               locomotion=None if locomotion is None else locomotion[start:end].unsqueeze(0),
                               steady_walk=None if steady is None else steady[start:end].unsqueeze(0),
                               unlikely=None if unlikely is None else unlikely[start:end].unsqueeze(0),
                               candidate_score=score, on_progress=counter.on_step)
        codes[start:end] = result.codes[0].cpu()
    return codes
