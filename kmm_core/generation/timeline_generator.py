# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a validated Timeline into ONE continuous motion with a trained model bundle.

The model works in tokens of 4 frames at 20 fps.  A timeline is generated as a single token sequence, so the root
trajectory (integrated from the decoded root velocities) is continuous across prompts.  Two ways to handle the
boundaries between prompts, chosen by ``GenerationOptions.transitions``:

* ``"per_token"``: one decode of the whole sequence; every token is conditioned on the text of the segment that
  contains it (``token_condition_from_segments``), so the bidirectional generator sees both neighbours.
* ``"inpaint"`` (MMM-style): decode every segment on its own text, then re-mask ``transition_tokens`` tokens on
  each side of every boundary and decode the whole sequence again with everything else fixed.

``benchmarks/bench_generation.py`` measures the boundary jerk of both; the default is the one that measured lower.

Sequences longer than ``max_window_tokens`` are decoded in overlapping windows: each window after the first keeps
its first ``window_overlap_tokens`` tokens fixed from the previous window, so it continues that motion.

The output is cropped to the exact frame count at the timeline's fps (generated at 20 fps, resampled with
``MotionResult.resample``).  Variation ``v`` uses seed ``seed + v``: a seed reproduces every variation exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..foot_contact import channels_at_fps, foot_locked_motion
from ..humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_decoded_features
from ..humanml3d.features import FOOT_CONTACTS, features_to_joints, joints_to_features
from ..humanml3d.preprocess import preprocess_joints
from ..model.configs import DecodingConfig
from ..model.decoding import DecodingCancelled, decode_tokens
from ..model.masked_generator import token_condition_from_segments
from ..model.motion_tokenizer import FRAMES_PER_TOKEN, num_tokens_for_frames
from ..motion_result import MotionResult
from . import loops, paths
from .timeline import DEFAULT_TRANSITIONS, MODEL_FPS, TRANSITION_MODES, Timeline

"""The mode with the lower boundary jerk in benchmarks/bench_generation.py: with the tiny bundle, 6 prompts x 3 s,
4 seeds, mean jerk within 0.5 s of a boundary was 24.4 m/s^3 for per_token and 28.9 for inpaint (which also takes
about 3x as long: every segment is decoded, then the whole sequence again)."""

ProgressCallback = Callable[[int, int, str], None]
"""on_progress(step, total, message): called after every decoding step."""
CancelCheck = Callable[[], bool]
"""should_cancel(): True stops generation at the next decoding step (GenerationCancelled)."""


class GenerationCancelled(DecodingCancelled):
    """should_cancel() asked to stop; no result was produced."""


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode.  None takes the bundle's default (its DecodingConfig)."""

    steps: int | None = None
    guidance: float | None = None
    temperature: float | None = None
    transitions: str = DEFAULT_TRANSITIONS
    transition_tokens: int = 4  # inpaint: tokens re-decoded on each side of a boundary (2 gave 50% more jerk)
    max_window_tokens: int = 1024
    window_overlap_tokens: int = 64
    foot_lock: bool = True  # hold feet on their contacts (kmm_core/foot_contact.py); False keeps the raw decode
    smoothing: float = DECODED_SMOOTHING_SIGMA  # Gaussian (frames) on decoded features, see feature_smoothing.py

    def __post_init__(self) -> None:
        if self.transitions not in TRANSITION_MODES:
            raise ConfigError(f"transitions: must be one of {', '.join(TRANSITION_MODES)}, got {self.transitions!r}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps: must be >= 1, got {self.steps}")
        if self.guidance is not None and not 0 <= self.guidance <= 100:
            raise ConfigError(f"guidance: must be between 0 and 100, got {self.guidance}")
        if not 0 <= self.smoothing <= 4:
            raise ConfigError(f"smoothing: must be between 0 and 4 frames, got {self.smoothing}")
        if self.transition_tokens < 1:
            raise ConfigError(f"transition_tokens: must be >= 1, got {self.transition_tokens}")
        if self.max_window_tokens < 8:
            raise ConfigError(f"max_window_tokens: must be >= 8, got {self.max_window_tokens}")
        if not 0 < self.window_overlap_tokens < self.max_window_tokens // 2:
            raise ConfigError(f"window_overlap_tokens: must be in 1..{self.max_window_tokens // 2 - 1}, got "
                              f"{self.window_overlap_tokens}")

    def decoding_config(self, bundle) -> DecodingConfig:
        base = bundle_decoding_config(bundle)
        changes = {}
        if self.steps is not None:
            changes["steps"] = self.steps
        if self.guidance is not None:
            changes["guidance_scale"] = float(self.guidance)
        if self.temperature is not None:
            changes["temperature"] = float(self.temperature)
        return replace(base, **changes)


# ---- the bundle seen from here ---------------------------------------------------------------------------------------
def bundle_decoding_config(bundle) -> DecodingConfig:
    """The decoding settings stored with the bundle, else the library defaults."""
    config = getattr(bundle, "config", None)
    decoding = getattr(config, "decoding", None)
    if decoding is None and isinstance(config, dict):
        decoding = config.get("decoding")
    if isinstance(decoding, DecodingConfig):
        return decoding
    if isinstance(decoding, dict):
        return DecodingConfig(**decoding)
    return DecodingConfig()


def prompt_embeddings(bundle, prompts: Sequence[str]) -> Tensor:
    """(S, cond_dim) condition vectors of `prompts` on the generator's device (one text-encoder call, deduplicated)."""
    unique = list(dict.fromkeys(prompts))
    conditioner = bundle.text_conditioner
    encoded = conditioner.encode(unique) if hasattr(conditioner, "encode") else conditioner(unique)
    sentence = encoded.sentence if hasattr(encoded, "sentence") else (
        encoded[0] if isinstance(encoded, tuple) else encoded)
    index = torch.tensor([unique.index(p) for p in prompts])
    return sentence.detach()[index.to(sentence.device)].to(_device(bundle)).float()


def _device(bundle) -> torch.device:
    return next(bundle.generator.parameters()).device


def codes_to_features(bundle, codes: Tensor, num_frames: int) -> np.ndarray:
    """(T, 263) denormalised HumanML3D features at 20 fps from codes (L, Q) (or (1, L, Q)), cropped to `num_frames`."""
    codes = codes if codes.dim() == 3 else codes.unsqueeze(0)
    with torch.no_grad():
        features = bundle.tokenizer.decode(codes.to(_device(bundle)), num_frames=num_frames)[0]
    return bundle.normalizer.denormalize(features.float().cpu().numpy().astype(np.float64))


def codes_to_joints(bundle, codes: Tensor, num_frames: int) -> np.ndarray:
    """(T, 22, 3) joints at 20 fps from codes (L, Q) (or (1, L, Q)), cropped to `num_frames`."""
    return features_to_joints(codes_to_features(bundle, codes, num_frames))


def joints_to_codes(bundle, joints: np.ndarray) -> Tensor:
    """(L, Q) codes of joints (T, 22, 3) at 20 fps, L = ceil(T / 4): token i covers frames 4i..4i+3.

    The joints are canonicalised first (the tokenizer was trained on canonical clips); the features of T + 1
    frames (the last held) give one feature frame per pose frame.
    """
    joints = np.asarray(joints, dtype=np.float64)
    padded = np.concatenate([joints, joints[-1:]], axis=0)
    features = joints_to_features(preprocess_joints(padded))
    normalised = torch.from_numpy(bundle.normalizer.normalize(features).astype(np.float32)).unsqueeze(0)
    with torch.no_grad():
        return bundle.tokenizer.encode(normalised.to(_device(bundle)))[0].cpu()


# ---- progress ---------------------------------------------------------------------------------------------------------
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

    def on_step(self, _step: int, _total: int) -> bool:
        self.advance(1)
        return True


def steps_per_decode(bundle, config: DecodingConfig) -> int:
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


def decode_windowed(bundle, num_frames: int, cond_per_token: Tensor, fixed: Tensor | None, config: DecodingConfig,
                    rng: torch.Generator, options: GenerationOptions, counter: StepCounter) -> Tensor:
    """(L, Q) codes for `num_frames` frames, per-token conditions (L, E), fixed codes (L, Q) with -1 = generate.

    Windows overlap by `window_overlap_tokens`; the overlap is fixed from the window before, so every window
    continues the motion decoded so far.  Windows with nothing to generate are skipped (their steps still count).
    """
    generator = bundle.generator
    num_tokens = num_tokens_for_frames(num_frames)
    layers = generator.config.num_quantizers
    codes = torch.full((num_tokens, layers), -1, dtype=torch.int64) if fixed is None else fixed.clone().long().cpu()
    per_decode = steps_per_decode(bundle, config)
    for start in window_starts(num_tokens, options):
        end = min(num_tokens, start + options.max_window_tokens)
        window = codes[start:end]
        if bool((window >= 0).all()):
            counter.advance(per_decode)
            continue
        frames = min(num_frames, end * FRAMES_PER_TOKEN) - start * FRAMES_PER_TOKEN
        counter.check_cancel()
        result = decode_tokens(generator, frames, cond_per_token=cond_per_token[start:end].unsqueeze(0),
                               fixed_codes=window.unsqueeze(0).to(_device(bundle)), config=config, rng=rng,
                               on_step=counter.on_step)
        codes[start:end] = result.codes[0].cpu()
    return codes


# ---- timeline generation ----------------------------------------------------------------------------------------------
def model_frames(timeline: Timeline) -> int:
    """Frames to generate at 20 fps: enough that resampling to the timeline's fps yields its every frame."""
    return max(1, math.ceil(timeline.total_frames * MODEL_FPS / timeline.fps - 1e-9))


def token_boundaries(spans: Sequence[tuple[int, int]], num_tokens: int) -> list[int]:
    """Token index where each segment starts (rounded from its first frame), plus num_tokens; >= 1 token each."""
    bounds = [0]
    for index, (start, _end) in enumerate(spans[1:], start=1):
        lowest, highest = bounds[-1] + 1, num_tokens - (len(spans) - index)
        bounds.append(min(max(round(start / FRAMES_PER_TOKEN), lowest), highest))
    bounds.append(num_tokens)
    return bounds


def generate_codes(bundle, timeline: Timeline, seed: int, options: GenerationOptions, counter: StepCounter,
                   config: DecodingConfig) -> tuple[Tensor, int]:
    """Codes (L, Q) of one variation and the number of 20 fps frames they cover."""
    num_frames = model_frames(timeline)
    num_tokens = num_tokens_for_frames(num_frames)
    spans = timeline.segment_ranges(MODEL_FPS)
    embeddings = prompt_embeddings(bundle, timeline.prompts)
    condition = token_condition_from_segments(embeddings, spans, num_tokens)
    rng = torch.Generator()
    rng.manual_seed(int(seed))
    if options.transitions == "per_token" or len(spans) == 1:
        return decode_windowed(bundle, num_frames, condition, None, config, rng, options, counter), num_frames
    # MMM-style: each segment on its own, then inpaint the tokens around every boundary with both sides fixed.
    bounds = token_boundaries(spans, num_tokens)
    layers = bundle.generator.config.num_quantizers
    codes = torch.full((num_tokens, layers), -1, dtype=torch.int64)
    for index in range(len(spans)):
        start, end = bounds[index], bounds[index + 1]
        own = embeddings[index].expand(end - start, -1)
        codes[start:end] = decode_windowed(bundle, (end - start) * FRAMES_PER_TOKEN, own, None, config, rng,
                                           options, counter)
    width = options.transition_tokens
    for boundary in bounds[1:-1]:
        codes[max(0, boundary - width):min(num_tokens, boundary + width)] = -1
    return decode_windowed(bundle, num_frames, condition, codes, config, rng, options, counter), num_frames


def planned_steps(bundle, timeline: Timeline, options: GenerationOptions, config: DecodingConfig) -> int:
    """Decoding steps of one variation (for the progress total)."""
    per_decode = steps_per_decode(bundle, config)
    num_tokens = num_tokens_for_frames(model_frames(timeline))
    windows = len(window_starts(num_tokens, options))
    if options.transitions == "per_token" or len(timeline.segments) == 1:
        return windows * per_decode
    bounds = token_boundaries(timeline.segment_ranges(MODEL_FPS), num_tokens)
    segment_windows = sum(len(window_starts(b - a, options)) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return (segment_windows + windows) * per_decode


def result_from_model_joints(joints20: np.ndarray, timeline: Timeline) -> MotionResult:
    """A MotionResult at the timeline's fps with exactly its frames and segment ranges, from 20 fps joints."""
    ranges20 = np.asarray(timeline.segment_ranges(MODEL_FPS), dtype=np.int64)
    motion = MotionResult.from_joints(joints20, MODEL_FPS, segment_frames=ranges20, prompts=timeline.prompts)
    if timeline.fps != MODEL_FPS:
        motion = motion.resample(timeline.fps)
    frames = timeline.total_frames
    return MotionResult(fps=timeline.fps, joints=motion.joints[:frames],
                        root_translation=motion.root_translation[:frames],
                        local_rotations=motion.local_rotations[:frames], rest_offsets=motion.rest_offsets,
                        segment_frames=np.asarray(timeline.segment_ranges(), dtype=np.int64),
                        segment_prompts=timeline.prompts, timeline_json=timeline.to_json())


def generate_timeline(bundle, timeline: Timeline, *, seed: int | None = None, variations: int = 1,
                      options: GenerationOptions | None = None, on_progress: ProgressCallback | None = None,
                      should_cancel: CancelCheck | None = None) -> list[MotionResult]:
    """`variations` motions for `timeline`; variation v uses seed `seed + v` (a random seed when None).

    `on_progress(step, total, message)` is called after every decoding step over all variations;
    `should_cancel()` returning True raises GenerationCancelled at the next step.
    """
    options = options or GenerationOptions()
    if variations < 1:
        raise ConfigError(f"variations: must be >= 1, got {variations}")
    if seed is None:
        seed = int(torch.randint(0, 2**31, ()))
    config = options.decoding_config(bundle)
    source = loops.generation_timeline(timeline) if timeline.loop else timeline  # a loop is made a little longer
    counter = StepCounter(planned_steps(bundle, source, options, config) * variations, on_progress, should_cancel)
    counter.check_cancel()
    results = []
    for variation in range(variations):
        codes, num_frames = generate_codes(bundle, source, seed + variation, options, counter, config)
        features = smooth_decoded_features(codes_to_features(bundle, codes, num_frames), options.smoothing)
        motion = result_from_model_joints(features_to_joints(features), source)
        channels = channels_at_fps(features[:, FOOT_CONTACTS], MODEL_FPS, motion.num_frames, motion.fps)
        if timeline.loop:
            motion = loops.loop_motion(motion, timeline, channels, options.foot_lock)
        else:
            motion = paths.motion_on_paths(motion, timeline)  # unchanged without paths
            if options.foot_lock:
                motion = foot_locked_motion(motion, channels)
        results.append(motion)
    return results
