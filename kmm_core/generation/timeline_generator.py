# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a validated Timeline into ONE continuous motion with a trained model bundle.

The model works in tokens of 4 frames at 20 fps.  A timeline is generated as a single token sequence, so the root
trajectory (integrated from the decoded root velocities) is continuous across prompts.  Two ways to handle the
boundaries between prompts, chosen by ``GenerationOptions.transitions``:

* ``"per_token"``: one decode of the whole sequence; every token is conditioned on the text of the segment that
  contains it (``token_condition_from_segments``), so the bidirectional generator sees both neighbours.
* ``"inpaint"`` (MMM-style): decode every segment on its own text, then re-mask ``transition_tokens`` tokens on
  each side of every boundary and decode them again with everything else fixed; batched in
  ``transition_inpainting.py`` (all segments in one decode, all boundary windows with ``inpaint_context_tokens``
  fixed tokens each side in another).

The default, ``inpaint``, was chosen for prompt adherence: each segment follows its own prompt better (directional
accuracy of a 4-second middle segment 0.80 vs 0.70 on the val split) at a slightly higher boundary jerk and 2 to 2.5
times the decoding time (``benchmarks/results/transition_modes.md``; ``timeline.DEFAULT_TRANSITIONS``).

Decoding itself (options, windows for long sequences, progress and cancellation) is ``decoding_engine.py``.
The output is cropped to the exact frame count at the timeline's fps (generated at 20 fps, resampled with
``MotionResult.resample``).  Variation ``v`` uses seed ``seed + v``: a seed reproduces every variation exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..bundle.model_bundle import ModelBundle
from ..common.errors import ConfigError
from ..common.progress import CancelCheck, ProgressCallback
from ..humanml3d.feature_smoothing import (
    LEG_JOINTS,
    smooth_decoded_features,
    smooth_standing_root,
)
from ..humanml3d.features import FOOT_CONTACTS, features_to_joints
from ..model.configs import DecodingConfig
from ..model.masked_generator import token_condition_from_segments
from ..model.motion_tokenizer import num_tokens_for_frames
from ..motion.foot_contact import FootLockSettings, channels_at_fps
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from ..motion.motion_result import MotionResult
from ..motion.take_cleanup import cleaned_motion
from . import loops, paths
from .constraint_solver import meet_constraints
from .decoding_engine import (
    GenerationOptions,
    StepCounter,
    decode_windowed,
    locomotion_tokens,
    steps_per_decode,
    unlikely_tokens,
    window_starts,
)
from .gait_matching import walk_on_gait_cycles
from .prompt_conditions import prompt_conditions
from .prompt_kinds import prompt_kinds, spans_and_kinds
from .prompt_vocabulary import guidance_boosts
from .timeline import Timeline
from .transition_inpainting import decode_segments_together, inpaint_transitions, transition_windows
from .walk_candidates import SHOWN_FEET, stride_score

CONSTRAINT_FREE_TOKENS = 2
"""Tokens on each side of a constrained token decoded again around it (0.4 s each side at 20 fps)."""


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


def generate_codes(bundle: ModelBundle, timeline: Timeline, seed: int, options: GenerationOptions,
                   counter: StepCounter, config: DecodingConfig) -> tuple[Tensor, int]:
    """Codes (L, Q) of one variation and the number of 20 fps frames they cover."""
    num_frames = model_frames(timeline)
    num_tokens = num_tokens_for_frames(num_frames)
    spans = timeline.segment_ranges(MODEL_FPS)
    embeddings = prompt_conditions(bundle, timeline.prompts)
    condition = token_condition_from_segments(embeddings, spans, num_tokens)
    spans_and_prompts = list(zip(spans, timeline.prompts, strict=True))
    rng = torch.Generator()
    rng.manual_seed(int(seed))
    if options.transitions == "per_token" or len(spans) == 1:
        return decode_windowed(bundle, num_frames, condition, None, config, rng, options, counter,
                               spans_and_prompts, walk_candidates=True), num_frames
    # MMM-style: each segment on its own, then inpaint the tokens around every boundary with both sides fixed
    # (batched: all segments in one decode, all boundary windows in another; see transition_inpainting.py).
    bounds = token_boundaries(spans, num_tokens)
    layers = bundle.generator.config.num_quantizers
    codes = torch.full((num_tokens, layers), -1, dtype=torch.int64)
    short = [i for i in range(len(spans)) if bounds[i + 1] - bounds[i] <= options.max_window_tokens]
    if short:
        lengths = [bounds[i + 1] - bounds[i] for i in short]
        own_spans = [(n * FRAMES_PER_TOKEN, [((0, n * FRAMES_PER_TOKEN), timeline.prompts[i])])
                     for n, i in zip(lengths, short, strict=True)]
        kinds = prompt_kinds(bundle, [timeline.prompts[i] for i in short])
        decoded = decode_segments_together(bundle.generator, lengths, embeddings[short], config, rng, counter.on_step,
                                           [kind.walking for kind in kinds], [kind.steady for kind in kinds],
                                           stride_score(bundle, own_spans),
                                           guidance_boosts(bundle, [timeline.prompts[i] for i in short]))
        for index, segment_codes in zip(short, decoded, strict=True):
            codes[bounds[index]:bounds[index + 1]] = segment_codes
    for index in sorted(set(range(len(spans))) - set(short)):  # longer than a window: decoded in windows
        start, end = bounds[index], bounds[index + 1]
        own = embeddings[index].expand(end - start, -1)
        frames = (end - start) * FRAMES_PER_TOKEN
        codes[start:end] = decode_windowed(bundle, frames, own, None, config, rng, options, counter,
                                           [((0, frames), timeline.prompts[index])], walk_candidates=True)
    windows = transition_windows(bounds, num_tokens, options.transition_tokens, options.inpaint_context_tokens)
    kinds = spans_and_kinds(bundle, spans_and_prompts)
    return inpaint_transitions(bundle.generator, codes, condition, windows, config, rng, counter.on_step,
                               locomotion_tokens(num_tokens, kinds), locomotion_tokens(num_tokens, kinds, steady=True),
                               unlikely_tokens(bundle, num_tokens, spans_and_prompts)), num_frames


def planned_steps(bundle: ModelBundle, timeline: Timeline, options: GenerationOptions, config: DecodingConfig) -> int:
    """Decoding steps of one variation (for the progress total)."""
    per_decode = steps_per_decode(bundle, config)
    num_tokens = num_tokens_for_frames(model_frames(timeline))
    windows = len(window_starts(num_tokens, options))
    if options.transitions == "per_token" or len(timeline.segments) == 1:
        return windows * per_decode
    bounds = token_boundaries(timeline.segment_ranges(MODEL_FPS), num_tokens)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    long_windows = sum(len(window_starts(n, options)) for n in lengths if n > options.max_window_tokens)
    batched = 1 if any(n <= options.max_window_tokens for n in lengths) else 0
    return (batched + long_windows + 1) * per_decode  # + 1: the one batched decode of all transition windows


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


def generate_timeline(bundle: ModelBundle, timeline: Timeline, *, seed: int | None = None, variations: int = 1,
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
    constraints = timeline.constraint_frames()
    steps = planned_steps(bundle, source, options, config)
    if constraints and options.constraint_tokens:
        steps += steps_per_decode(bundle, config) * len(window_starts(num_tokens_for_frames(model_frames(source)),
                                                                      options))
    counter = StepCounter(steps * variations, on_progress, should_cancel)
    counter.check_cancel()
    results = []
    for variation in range(variations):
        codes, num_frames = generate_codes(bundle, source, seed + variation, options, counter, config)
        motion, channels = _decoded_motion(bundle, codes, num_frames, source, options, seed + variation)
        if constraints and options.constraint_tokens:
            codes = keep_constraint_tokens(bundle, codes, num_frames, motion, timeline, constraints, config, rng_for(
                seed + variation), options, counter)
            motion, channels = _decoded_motion(bundle, codes, num_frames, source, options, seed + variation)
        if timeline.loop:
            motion = loops.loop_motion(motion, timeline, channels, options.foot_lock)
        elif options.foot_lock:
            motion = meet_constraints(cleaned_motion(motion, channels, generation_foot_lock(timeline)),
                                      constraints, first_frame=timeline.start_frame or 0)
        results.append(motion)
    return results


def generation_foot_lock(timeline: Timeline | None = None) -> FootLockSettings:
    """The foot clean-up of a generated take: standing held without drift (`foot_contact.hold_standing`), except on
    a timeline with root paths, where the path decides where the body goes."""
    return SHOWN_FEET if timeline is None or not paths.path_spans(timeline) else FootLockSettings(hold_standing=False)


def _decoded_motion(bundle: ModelBundle, codes: Tensor, num_frames: int, timeline: Timeline,
                    options: GenerationOptions, seed: int) -> tuple[MotionResult, np.ndarray]:
    """The motion of `codes` at the timeline's fps, its walks on real gait cycles, on its paths and meeting its
    constraints, with the contact channels the foot clean-up needs."""
    spans_and_prompts = list(zip(timeline.segment_ranges(MODEL_FPS), timeline.prompts, strict=True))
    kinds = spans_and_kinds(bundle, spans_and_prompts)
    features = smooth_decoded_features(bundle.decode_kinds(codes, num_frames, kinds), options.smoothing)
    features = walk_on_gait_cycles(bundle, features, spans_and_prompts, kinds, seed,
                                   keyed_leg_frames(timeline.constraint_frames(), timeline.fps, features.shape[0]))
    features = smooth_standing_root(features, kinds, options.decoding_config(bundle).standing_root_sigma)
    motion = result_from_model_joints(features_to_joints(features), timeline)
    channels = channels_at_fps(features[:, FOOT_CONTACTS], MODEL_FPS, motion.num_frames, motion.fps)
    if timeline.loop:
        return motion, channels
    motion = paths.motion_on_paths(motion, timeline)  # unchanged without paths
    return meet_constraints(motion, timeline.constraint_frames(), first_frame=timeline.start_frame or 0), channels


def keyed_leg_frames(constraints: Sequence, fps: float, num_frames: int) -> np.ndarray:
    """(num_frames,) bool at 20 fps: the frames of the keys (0-based frames at `fps`) that hold a leg joint or the
    hips (whole-body and leg poses, foot, ankle and root targets), widened by the `CONSTRAINT_FREE_TOKENS` tokens
    on each side that the generator decodes again to lead into them, and by one token more: the played strides
    blend out over `gait_matching.BLEND_SIGMA` frames, and with only the tokens decoded again (`constraint_tokens`)
    the legs sped up nearer the keys (peak joint speed near a key over elsewhere, worst: 1.22-1.29 against
    1.09-1.27, `benchmarks/measure_key_pose_contacts.py`)."""
    from .constraints import EffectorTarget, PoseKey

    held = np.zeros(num_frames, dtype=bool)
    legs_and_hips = set(LEG_JOINTS) | {0}
    reach = (CONSTRAINT_FREE_TOKENS + 1) * FRAMES_PER_TOKEN
    for constraint in constraints:
        joints = (constraint.held if isinstance(constraint, PoseKey)
                  else (constraint.joint_index,) if isinstance(constraint, EffectorTarget) else ())
        if legs_and_hips.intersection(joints):
            first = int(math.floor(constraint.start * MODEL_FPS / fps)) - reach
            last = int(math.ceil(constraint.end * MODEL_FPS / fps)) + reach
            held[max(0, first):max(0, min(num_frames, last + 1))] = True
    return held


def rng_for(seed: int) -> torch.Generator:
    rng = torch.Generator()
    rng.manual_seed(int(seed) + 7919)  # the second decode draws apart from the first
    return rng


def constraint_tokens(constraints: Sequence, fps: float, num_tokens: int) -> list[int]:
    """Token index of every constrained frame (0-based frames at `fps`)."""
    tokens = set()
    for constraint in constraints:
        for frame in range(constraint.start, constraint.end + 1):
            tokens.add(min(num_tokens - 1, int(frame * MODEL_FPS / fps) // FRAMES_PER_TOKEN))
    return sorted(tokens)


def keep_constraint_tokens(bundle: ModelBundle, codes: Tensor, num_frames: int, motion: MotionResult,
                           timeline: Timeline, constraints: Sequence, config: DecodingConfig, rng: torch.Generator,
                           options: GenerationOptions, counter: StepCounter) -> Tensor:
    """Codes whose tokens at the constrained frames encode the motion that meets the constraints (KMM's own way of
    steering: known tokens are kept), with the ``CONSTRAINT_FREE_TOKENS`` tokens on each side decoded again so the
    generated motion leads into and out of them; every other token is kept."""
    joints20 = motion.resample(MODEL_FPS).joints if motion.fps != MODEL_FPS else motion.joints
    encoded = bundle.joints_to_codes(np.asarray(joints20, dtype=np.float64)[:num_frames])
    num_tokens = codes.shape[0]
    keys = [token for token in constraint_tokens(constraints, timeline.fps, num_tokens) if token < encoded.shape[0]]
    fixed = codes.clone()
    free = set()
    for token in keys:
        free.update(range(max(0, token - CONSTRAINT_FREE_TOKENS), min(num_tokens, token + CONSTRAINT_FREE_TOKENS + 1)))
    for token in free:
        fixed[token] = -1
    for token in keys:
        fixed[token] = encoded[token]
    spans = timeline.segment_ranges(MODEL_FPS)
    condition = token_condition_from_segments(prompt_conditions(bundle, timeline.prompts), spans, num_tokens)
    return decode_windowed(bundle, num_frames, condition, fixed, config, rng, options, counter,
                           list(zip(spans, timeline.prompts, strict=True)))
