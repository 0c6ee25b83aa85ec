# SPDX-License-Identifier: GPL-3.0-or-later
"""Edit an existing motion with the model: regenerate a part, continue it, or fill the gap between two motions.

Every mode works the same way: the motion around the part to make is encoded into tokens, those tokens are fixed,
the model decodes the free tokens in between (so the new part fits its context), and the decoded motion is placed
back into the world frame of the source by a rigid fit (yaw + translation) on the context frames.

Frames outside the edited part are COPIED from the source (joints, root translation and rotations), so they stay
bit-identical; only the frames inside the part are new.  The new part meets the kept motion through a linear
correction of the remaining offset across the part and a short pose cross-fade inside the part's first and last
frames, so nothing jumps at either edge.  A foot-locked source gets its new frames foot-locked too
(`edit_cleanup.py`, same cross-fade margin inside the part), and a regenerated part that lies on a timeline `path`
follows it (`paths.follow_paths`), so an edited take is as clean as a fresh one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..bundle.model_bundle import ModelBundle
from ..common.bounded_read import parse_json
from ..common.errors import InputFileError, KMMError
from ..common.limits import EDIT_MODES
from ..common.progress import CancelCheck, ProgressCallback
from ..common.smoothstep import smoothstep
from ..humanml3d.feature_smoothing import smooth_decoded_features, smooth_standing_root
from ..humanml3d.features import FOOT_CONTACTS, features_to_joints
from ..model.masked_generator import token_condition_from_segments
from ..motion.kinematics import inverse_kinematics
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from ..motion.motion_result import MotionResult
from .decoding_engine import GenerationOptions, StepCounter, decode_windowed, steps_per_decode, window_starts
from .edit_cleanup import clean_edited_part
from .gait_matching import walk_on_gait_cycles
from .paths import follow_paths, path_spans
from .prompt_conditions import prompt_conditions
from .prompt_kinds import spans_and_kinds
from .timeline import Segment, Timeline, TimelineError

CONTEXT_SECONDS = 2.0
"""Motion on each side of an edit that the model sees (fixed tokens)."""
BLEND_SECONDS = 0.25
"""Cross-fade from kept to new poses inside each edge of the edited part."""
TRANSITION_PROMPT = "transition"


class EditError(KMMError, ValueError):
    """An edit request does not fit the motion it edits (names the field)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


# ---- geometry helpers ---------------------------------------------------------------------------------------------
def sample_joints(joints: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """Joints linearly interpolated at `times` (seconds from frame 0), clamped to the clip."""
    position = np.clip(np.asarray(times, dtype=np.float64) * fps, 0.0, len(joints) - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(joints) - 1)
    weight = (position - lower)[:, None, None]
    joints = np.asarray(joints, dtype=np.float64)
    return joints[lower] * (1.0 - weight) + joints[upper] * weight


def rigid_fit(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw rotation (3, 3) and translation (3,) that best map joints `moving` onto `fixed` (same shape (N, 22, 3)):
    2-D Procrustes in the ground plane, mean height difference in Y."""
    a = moving.reshape(-1, 3)
    b = fixed.reshape(-1, 3)
    a_xz, b_xz = a[:, [0, 2]], b[:, [0, 2]]
    a_mean, b_mean = a_xz.mean(0), b_xz.mean(0)
    covariance = (a_xz - a_mean).T @ (b_xz - b_mean)
    angle = math.atan2(covariance[0, 1] - covariance[1, 0], covariance[0, 0] + covariance[1, 1])
    cos, sin = math.cos(angle), math.sin(angle)
    rotation_2d = np.array([[cos, sin], [-sin, cos]])  # row vectors: x' = x @ R
    translation_2d = b_mean - a_mean @ rotation_2d
    rotation = np.eye(3)
    rotation[np.ix_([0, 2], [0, 2])] = rotation_2d
    translation = np.array([translation_2d[0], b[:, 1].mean() - a[:, 1].mean(), translation_2d[1]])
    return rotation, translation


def apply_rigid(joints: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    return joints @ rotation + translation


def splice(kept: np.ndarray, new: np.ndarray, start: int, end: int, blend_frames: int) -> np.ndarray:
    """`kept` with frames [start, end) replaced by `new` (same length as kept): the offset between new and kept at
    the frames just outside the part is corrected linearly across it, and the first/last `blend_frames` inside
    cross-fade from kept poses.  Frames outside [start, end) are the very same values as in `kept`."""
    out = np.array(kept, dtype=np.float64, copy=True)
    count = end - start
    before = kept[start - 1] - new[start - 1] if start > 0 else None
    after = kept[end] - new[end] if end < len(kept) else None
    before = after if before is None else before
    after = before if after is None else after
    part = np.asarray(new[start:end], dtype=np.float64)
    if before is not None:
        ramp = ((np.arange(count) + 1.0) / (count + 1.0))[:, None, None]
        offset = before.mean(0) * (1.0 - ramp) + after.mean(0) * ramp  # one offset per frame for all joints
        part = part + offset
    position = np.arange(count, dtype=np.float64)
    weight = np.ones(count)
    if blend_frames > 0 and start > 0:
        weight = np.minimum(weight, smoothstep((position + 1.0) / (blend_frames + 1.0)))
    if blend_frames > 0 and end < len(kept):
        weight = np.minimum(weight, smoothstep((count - position) / (blend_frames + 1.0)))
    weight = weight[:, None, None]
    out[start:end] = kept[start:end] * (1.0 - weight) + part * weight
    return out


# ---- results ------------------------------------------------------------------------------------------------------
def replace_frames(source: MotionResult, joints: np.ndarray, start: int, end: int, segment_frames: np.ndarray,
                   prompts: Sequence[str], timeline_json: str) -> MotionResult:
    """A result whose frames outside [start, end) are copied from `source` (already laid out over the output's
    frames) and whose frames inside come from `joints` (full output length), with bone rotations by inverse
    kinematics against the source's rest offsets."""
    root, rotations = inverse_kinematics(joints[start:end], source.rest_offsets)
    rotations = rotations.astype(np.float32)
    if start > 0:  # keep the quaternion hemisphere continuous with the kept frame before
        flip = np.sum(rotations[0] * source.local_rotations[start - 1], axis=-1) < 0
        rotations[:, flip] *= -1.0
    out_joints = source.joints.copy()
    out_root = source.root_translation.copy()
    out_rotations = source.local_rotations.copy()
    out_joints[start:end] = joints[start:end]
    out_root[start:end] = root
    out_rotations[start:end] = rotations
    return MotionResult(fps=source.fps, joints=out_joints, root_translation=out_root, local_rotations=out_rotations,
                        rest_offsets=source.rest_offsets, segment_frames=segment_frames,
                        segment_prompts=tuple(prompts), timeline_json=timeline_json)


def _concatenate(parts: Sequence[MotionResult], fps: float) -> MotionResult:
    """Frames of several results one after the other (arrays copied, not recomputed)."""
    return MotionResult(fps=fps, joints=np.concatenate([p.joints for p in parts]),
                        root_translation=np.concatenate([p.root_translation for p in parts]),
                        local_rotations=np.concatenate([p.local_rotations for p in parts]),
                        rest_offsets=parts[0].rest_offsets)


def _placeholder(frames: int, like: MotionResult) -> MotionResult:
    """Frames to be filled: copies of the last frame of `like` (replaced by replace_frames)."""
    return MotionResult(fps=like.fps, joints=np.repeat(like.joints[-1:], frames, 0),
                        root_translation=np.repeat(like.root_translation[-1:], frames, 0),
                        local_rotations=np.repeat(like.local_rotations[-1:], frames, 0),
                        rest_offsets=like.rest_offsets)


def timeline_json_for(segment_frames: np.ndarray, prompts: Sequence[str], fps: float, total: int) -> str:
    """The timeline of a result's segments, when they tile all its frames from 0; else ""."""
    if len(segment_frames) == 0 or segment_frames[0, 0] != 0 or segment_frames[-1, 1] != total:
        return ""
    if np.any(segment_frames[1:, 0] != segment_frames[:-1, 1]) or not all(p.strip() for p in prompts):
        return ""
    try:
        segments = [Segment(prompt, int(end - start)) for (start, end), prompt in zip(segment_frames, prompts,
                                                                                       strict=True)]
        return Timeline(tuple(segments), fps=fps, min_segment_seconds=0.0, max_total_seconds=math.inf).to_json()
    except TimelineError:
        return ""


# ---- model calls --------------------------------------------------------------------------------------------------
def _token_span(start_frame: int, end_frame: int, fps: float) -> tuple[int, int]:
    """Tokens covering source frames [start, end) (at `fps`), on the 20 fps token grid."""
    first = math.floor(start_frame / fps * MODEL_FPS / FRAMES_PER_TOKEN)
    last = math.ceil(end_frame / fps * MODEL_FPS / FRAMES_PER_TOKEN)
    return first, max(last, first + 1)


def _prompts_of(source: MotionResult) -> tuple[np.ndarray, tuple[str, ...]]:
    return source.segment_frames, tuple(source.segment_prompts)


def _condition(bundle: ModelBundle, spans_and_prompts: Sequence[tuple[tuple[int, int], str]], num_tokens: int):
    spans = [span for span, _ in spans_and_prompts]
    embeddings = prompt_conditions(bundle, [prompt for _, prompt in spans_and_prompts])
    return token_condition_from_segments(embeddings, spans, num_tokens)


def _decode(bundle: ModelBundle, codes: torch.Tensor, condition: torch.Tensor, seed: int,
            options: GenerationOptions, counter: StepCounter,
            spans_and_prompts: Sequence[tuple[tuple[int, int], str]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode the free (-1) tokens of `codes` (L, Q): joints (4L, 22, 3) at 20 fps in the model's frame and the
    four foot-contact channels (4L, 4) of the decoded features.  `spans_and_prompts` (20 fps frames; a later span
    overrides an earlier one) decide which frames get the standing-root smoothing and the gait cycles, as in a fresh
    take."""
    config = options.decoding_config(bundle)
    rng = torch.Generator()
    rng.manual_seed(int(seed))
    frames = codes.shape[0] * FRAMES_PER_TOKEN
    decoded = decode_windowed(bundle, frames, condition, codes, config, rng, options, counter, spans_and_prompts,
                              walk_candidates=True)
    kinds = spans_and_kinds(bundle, spans_and_prompts)
    features = smooth_decoded_features(bundle.decode_kinds(decoded, frames, kinds), options.smoothing)
    features = walk_on_gait_cycles(bundle, features, spans_and_prompts, kinds, seed)
    features = smooth_standing_root(features, kinds, config.standing_root_sigma)
    return features_to_joints(features), features[:, FOOT_CONTACTS]


def _cleans(source: MotionResult, options: GenerationOptions) -> bool:
    """New frames are foot-locked when the source was (as recorded in it) and the options do not turn it off."""
    return bool(source.foot_lock) and options.foot_lock


def _recorded_contacts(motion: MotionResult) -> np.ndarray:
    return (np.zeros((motion.num_frames, 4), np.uint8) if motion.foot_contacts is None
            else np.asarray(motion.foot_contacts, dtype=np.uint8))


def _channels_at(channels20: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Decoded contact channels (20 fps) at `times` (seconds on the decoded clock), nearest frame."""
    index = np.clip(np.rint(np.asarray(times) * MODEL_FPS).astype(np.int64), 0, len(channels20) - 1)
    return channels20[index]


def _source_timeline(source: MotionResult) -> Timeline | None:
    if not source.timeline_json:
        return None
    try:  # bounded: nesting capped, as for a timeline file
        data = parse_json(source.timeline_json, "the source's timeline_json", "timeline", allow_non_finite=True)
    except InputFileError as error:
        raise EditError(str(error)) from None
    return Timeline.from_dict(data, min_segment_seconds=0.0, max_total_seconds=math.inf)


def _kept_timeline_json(source: MotionResult, segment: int | None, prompt: str | None) -> str:
    """The source's timeline (paths and loop kept) with segment `segment` taking `prompt`; "" when the source has
    none or its segments are not the result's."""
    timeline = _source_timeline(source)
    if timeline is None or len(timeline.segments) != len(source.segment_prompts):
        return ""
    if segment is not None and prompt is not None:
        segments = list(timeline.segments)
        segments[segment] = dataclasses.replace(segments[segment], prompt=prompt)
        timeline = dataclasses.replace(timeline, segments=tuple(segments))
    return timeline.to_json()


def _on_paths(generated: np.ndarray, source: MotionResult) -> np.ndarray:
    """`generated` (the source's frames) re-placed on the paths of the source's timeline, if it has any."""
    timeline = _source_timeline(source)
    if timeline is None:
        return generated
    spans = path_spans(timeline) if not timeline.loop else []
    if not spans or timeline.total_frames != source.num_frames:
        return generated
    return follow_paths(generated, source.fps, spans)


def _steps(bundle: ModelBundle, num_tokens: int, options: GenerationOptions) -> int:
    return steps_per_decode(bundle, options.decoding_config(bundle)) * len(window_starts(num_tokens, options))


def _check_seed(seed: int | None) -> int:
    return int(torch.randint(0, 2**31, ())) if seed is None else int(seed)


# ---- the three edits ----------------------------------------------------------------------------------------------
def regenerate(bundle: ModelBundle, source: MotionResult, *, segment: int | None = None,
               frame_range: tuple[int, int] | None = None, prompt: str | None = None, seed: int | None = None,
               variations: int = 1, options: GenerationOptions | None = None,
               on_progress: ProgressCallback | None = None,
               should_cancel: CancelCheck | None = None) -> list[MotionResult]:
    """Remake one segment (index) or source frames [start, end) with a new prompt and/or seed.

    Every frame outside the part is bit-identical to the source.  `prompt` None keeps the part's prompt(s).
    """
    options = options or GenerationOptions()
    seed = _check_seed(seed)
    total = source.num_frames
    if (segment is None) == (frame_range is None):
        raise EditError("segment", "give exactly one of segment or frame_range")
    if segment is not None:
        if not 0 <= segment < len(source.segment_frames):
            raise EditError("segment", f"the source has {len(source.segment_frames)} segment(s); index {segment} "
                                       "does not exist")
        start, end = (int(v) for v in source.segment_frames[segment])
    else:
        start, end = (int(v) for v in frame_range)
        if not 0 <= start < end <= total:
            raise EditError("frame_range", f"[{start}, {end}) is outside the source's {total} frames")
    segment_frames, prompts = _prompts_of(source)
    if not len(prompts) and prompt is None:
        raise EditError("prompt", "the source has no prompts, so the edit needs one")
    times = np.arange(math.ceil(total / source.fps * MODEL_FPS)) / MODEL_FPS
    source20 = sample_joints(source.joints, source.fps, times)
    context = bundle.joints_to_codes(source20)
    num_tokens = context.shape[0]
    first, last = _token_span(start, end, source.fps)
    last = min(last, num_tokens)
    fixed = context.clone()
    fixed[first:last] = -1
    # Conditions: the source's segments, with the edited part taking the new prompt.
    scale = MODEL_FPS / source.fps
    parts = [((round(s * scale), max(round(e * scale), round(s * scale) + 1)), p)
             for (s, e), p in zip(segment_frames, prompts, strict=True)]
    condition = _condition(bundle, parts, num_tokens) if parts else None
    if prompt is not None:
        new = prompt_conditions(bundle, [prompt])[0]
        condition = new.expand(num_tokens, -1).clone() if condition is None else condition
        condition[first:last] = new
    decoded_prompts = parts + ([((first * FRAMES_PER_TOKEN, last * FRAMES_PER_TOKEN), prompt)] if prompt is not None
                               else [])
    new_prompts = list(prompts)
    if segment is not None and prompt is not None:
        new_prompts[segment] = prompt
    timeline_json = _kept_timeline_json(source, segment, prompt)
    if timeline_json == "":
        timeline_json = timeline_json_for(segment_frames, new_prompts, source.fps, total) if new_prompts else ""
    if prompt is None or segment is None:
        timeline_json = source.timeline_json if timeline_json == "" else timeline_json
    counter = StepCounter(_steps(bundle, num_tokens, options) * variations, on_progress, should_cancel)
    blend = max(1, round(BLEND_SECONDS * source.fps))
    blend = min(blend, (end - start) // 2)
    context_frames = np.r_[max(0, start - round(CONTEXT_SECONDS * source.fps)):start,
                           end:min(total, end + round(CONTEXT_SECONDS * source.fps))]
    results = []
    for variation in range(variations):
        generated20, channels20 = _decode(bundle, fixed, condition, seed + variation, options, counter,
                                          decoded_prompts)
        generated = sample_joints(generated20, MODEL_FPS, np.arange(total) / source.fps)
        fit_frames = context_frames if context_frames.size else np.arange(total)
        rotation, translation = rigid_fit(generated[fit_frames], source.joints[fit_frames].astype(np.float64))
        generated = _on_paths(apply_rigid(generated, rotation, translation), source)
        joints = splice(source.joints.astype(np.float64), generated, start, end, blend)
        edited = replace_frames(source, joints, start, end, segment_frames, new_prompts, timeline_json)
        if _cleans(source, options):
            edited = clean_edited_part(edited, start, end, _recorded_contacts(source),
                                       _channels_at(channels20, np.arange(start, end) / source.fps), blend)
        results.append(edited)
    return results


def _context_window(joints: np.ndarray, fps: float, at_end: bool) -> tuple[np.ndarray, np.ndarray]:
    """Whole tokens of context at 20 fps from the end (or start) of a clip: (joints20, the clip frame index each
    context frame corresponds to, as float)."""
    seconds = min(CONTEXT_SECONDS, (len(joints) - 1) / fps) if len(joints) > 1 else 1.0 / MODEL_FPS
    tokens = max(1, math.floor(seconds * MODEL_FPS / FRAMES_PER_TOKEN))
    count = tokens * FRAMES_PER_TOKEN
    if at_end:
        times = (len(joints) - 1) / fps - (count - 1 - np.arange(count)) / MODEL_FPS
    else:
        times = np.arange(count) / MODEL_FPS
    return sample_joints(joints, fps, times), times * fps


def continue_motion(bundle: ModelBundle, source: MotionResult, prompt: str, seconds: float, *,
                    seed: int | None = None, variations: int = 1, options: GenerationOptions | None = None,
                    on_progress: ProgressCallback | None = None,
                    should_cancel: CancelCheck | None = None) -> list[MotionResult]:
    """The source followed by `seconds` of new motion for `prompt`; the source frames are kept bit-identical."""
    options = options or GenerationOptions()
    seed = _check_seed(seed)
    fps, total = source.fps, source.num_frames
    new_frames = round(seconds * fps)
    if new_frames < 1:
        raise EditError("seconds", f"{seconds} s is less than one frame at {fps:g} fps")
    context20, context_index = _context_window(source.joints, fps, at_end=True)
    context_codes = bundle.joints_to_codes(context20)
    k = context_codes.shape[0]
    # Generated time 0 is the first context frame; new frame i (output frame total + i) sits at this time:
    start_time = context_index[0] / fps
    new_times = (total + np.arange(new_frames)) / fps - start_time
    num_tokens = k + max(1, math.ceil((new_times[-1] * MODEL_FPS + 1) / FRAMES_PER_TOKEN) - k)
    codes = torch.full((num_tokens, context_codes.shape[1]), -1, dtype=torch.int64)
    codes[:k] = context_codes
    last_prompt = source.segment_prompts[-1] if source.segment_prompts else prompt
    decoded_prompts = [((0, k * FRAMES_PER_TOKEN), last_prompt),
                       ((k * FRAMES_PER_TOKEN, num_tokens * FRAMES_PER_TOKEN), prompt)]
    condition = _condition(bundle, decoded_prompts, num_tokens)
    frames = np.concatenate([source.segment_frames, [[total, total + new_frames]]]).astype(np.int64)
    prompts = (*source.segment_prompts, prompt)
    timeline_json = timeline_json_for(frames, prompts, fps, total + new_frames)
    counter = StepCounter(_steps(bundle, num_tokens, options) * variations, on_progress, should_cancel)
    layout = _concatenate([source, _placeholder(new_frames, source)], fps)
    results = []
    kept_contacts = np.concatenate([_recorded_contacts(source), np.zeros((new_frames, 4), np.uint8)])
    blend = min(max(1, round(BLEND_SECONDS * fps)), new_frames // 2)
    for variation in range(variations):
        generated20, channels20 = _decode(bundle, codes, condition, seed + variation, options, counter,
                                          decoded_prompts)
        rotation, translation = rigid_fit(generated20[: k * FRAMES_PER_TOKEN], context20)
        generated20 = apply_rigid(generated20, rotation, translation)
        # Continue from exactly where the source ends: remove the offset left at its last frame.
        offset = source.joints[-1].astype(np.float64) - sample_joints(
            generated20, MODEL_FPS, np.array([(total - 1) / fps - start_time]))[0]
        new = sample_joints(generated20, MODEL_FPS, new_times) + offset.mean(0)
        joints = np.concatenate([source.joints.astype(np.float64), new])
        edited = replace_frames(layout, joints, total, total + new_frames, frames, prompts, timeline_json)
        if _cleans(source, options):
            edited = clean_edited_part(edited, total, total + new_frames, kept_contacts,
                                       _channels_at(channels20, new_times), blend)
        results.append(edited)
    return results


def inbetween(bundle: ModelBundle, source: MotionResult, target: MotionResult, seconds: float, *,
              prompt: str | None = None, seed: int | None = None, variations: int = 1, options: GenerationOptions | None = None,
              on_progress: ProgressCallback | None = None,
              should_cancel: CancelCheck | None = None) -> list[MotionResult]:
    """source + `seconds` of new motion + target: the new part leads from the source's last pose into the
    target's first.  Source and target frames are kept (target resampled first when its fps differs).
    `prompt` None conditions the gap on a blend of the source's last and the target's first prompt."""
    options = options or GenerationOptions()
    seed = _check_seed(seed)
    fps = source.fps
    if target.fps != fps:
        target = target.resample(fps)
    gap = round(seconds * fps)
    if gap < 1:
        raise EditError("seconds", f"{seconds} s is less than one frame at {fps:g} fps")
    before20, _ = _context_window(source.joints, fps, at_end=True)
    after20, _ = _context_window(target.joints, fps, at_end=False)
    before_codes, after_codes = bundle.joints_to_codes(before20), bundle.joints_to_codes(after20)
    ka, kb = before_codes.shape[0], after_codes.shape[0]
    middle = max(1, round(seconds * MODEL_FPS / FRAMES_PER_TOKEN))
    num_tokens = ka + middle + kb
    codes = torch.full((num_tokens, before_codes.shape[1]), -1, dtype=torch.int64)
    codes[:ka] = before_codes
    codes[ka + middle:] = after_codes
    last = source.segment_prompts[-1] if source.segment_prompts else (prompt or TRANSITION_PROMPT)
    first = target.segment_prompts[0] if target.segment_prompts else (prompt or TRANSITION_PROMPT)
    spans = [((0, ka * FRAMES_PER_TOKEN), last)]
    if prompt is not None:
        spans.append(((ka * FRAMES_PER_TOKEN, (ka + middle) * FRAMES_PER_TOKEN), prompt))
    spans.append((((ka + middle) * FRAMES_PER_TOKEN, num_tokens * FRAMES_PER_TOKEN), first))
    condition = _condition(bundle, spans, num_tokens)
    total = source.num_frames
    frames = np.concatenate([source.segment_frames, [[total, total + gap]],
                             target.segment_frames + total + gap]).astype(np.int64)
    prompts = (*source.segment_prompts, prompt or TRANSITION_PROMPT, *target.segment_prompts)
    out_total = total + gap + target.num_frames
    timeline_json = timeline_json_for(frames, prompts, fps, out_total)
    layout = _concatenate([source, _placeholder(gap, source), target], fps)
    counter = StepCounter(_steps(bundle, num_tokens, options) * variations, on_progress, should_cancel)
    # Gap frame i sits between the last source context frame (i = -1) and the first target one (i = gap).
    gap_positions = (ka * FRAMES_PER_TOKEN - 1) + (np.arange(gap) + 1.0) * (middle * FRAMES_PER_TOKEN + 1) / (gap + 1)
    kept_contacts = np.concatenate([_recorded_contacts(source), np.zeros((gap, 4), np.uint8),
                                    _recorded_contacts(target)])
    blend = min(max(1, round(BLEND_SECONDS * fps)), gap // 2)
    results = []
    for variation in range(variations):
        generated20, channels20 = _decode(bundle, codes, condition, seed + variation, options, counter, spans)
        rotation, translation = rigid_fit(generated20[: ka * FRAMES_PER_TOKEN], before20)
        generated20 = apply_rigid(generated20, rotation, translation)
        new = sample_joints(generated20, MODEL_FPS, gap_positions / MODEL_FPS)
        edges = np.concatenate([generated20[ka * FRAMES_PER_TOKEN - 1: ka * FRAMES_PER_TOKEN],
                                new, generated20[(ka + middle) * FRAMES_PER_TOKEN:][:1]])
        kept = np.concatenate([source.joints[-1:], np.zeros_like(new), target.joints[:1]]).astype(np.float64)
        placed = splice(kept, edges, 1, gap + 1, 0)[1:-1]
        joints = np.concatenate([source.joints, placed, target.joints]).astype(np.float64)
        edited = replace_frames(layout, joints, total, total + gap, frames, prompts, timeline_json)
        if _cleans(source, options):
            edited = clean_edited_part(edited, total, total + gap, kept_contacts,
                                       _channels_at(channels20, gap_positions / MODEL_FPS), blend)
        results.append(edited)
    return results



def run_edit(bundle: ModelBundle, mode: str, source: MotionResult, *, target: MotionResult | None = None,
             segment: int | None = None, frame_range: tuple[int, int] | None = None, prompt: str | None = None,
             seconds: float | None = None, seed: int | None = None, variations: int = 1,
             options: GenerationOptions | None = None, on_progress: ProgressCallback | None = None,
             should_cancel: CancelCheck | None = None) -> list[MotionResult]:
    """The one dispatch from an edit ``mode`` (``limits.EDIT_MODES``) to its function, shared by ``kmm edit`` and
    the worker's ``edit`` request: regenerate a `segment` / `frame_range` (new `prompt` optional), continue with
    `prompt` for `seconds`, or make `seconds` in between `source` and `target`."""
    common = {"seed": seed, "variations": variations, "options": options, "on_progress": on_progress,
              "should_cancel": should_cancel}
    if mode == "regenerate":
        return regenerate(bundle, source, segment=segment, frame_range=frame_range, prompt=prompt, **common)
    if mode == "continue":
        if prompt is None or seconds is None:
            raise EditError("prompt" if prompt is None else "seconds", "continue needs a prompt and seconds")
        return continue_motion(bundle, source, prompt, seconds, **common)
    if mode == "inbetween":
        if target is None or seconds is None:
            raise EditError("target" if target is None else "seconds", "inbetween needs a target and seconds")
        return inbetween(bundle, source, target, seconds, prompt=prompt, **common)
    raise EditError("mode", f"must be one of {', '.join(EDIT_MODES)}, got {mode!r}")
