# SPDX-License-Identifier: GPL-3.0-or-later
"""Remove the motion tokenizer's frame-to-frame jitter from decoded HumanML3D features (NumPy).

`benchmarks/measure_jerk_sources.py` traced most of the jerk of generated motion to the VQ decoder: real
Bandai-Namco clips passed through the shipped tokenizer (encode, decode) come back with 1.3-1.6x the real mean jerk,
evenly over the four frames of a token (broadband jitter, no token-rate artefact), while transitions, IK and
resampling add little.  A Gaussian of `DECODED_SMOOTHING_SIGMA` = 0.5 frames (25 ms at 20 fps) over time on the
decoded features brings the reconstruction's jerk back to the real level (115 vs 121.5 m/s^3 on 18 real clips,
against 159 unsmoothed) and leaves its error unchanged (42.1 vs 42.3 mm root-relative MPJPE): the filter is far
shorter than any movement, so timing is kept.  The four foot-contact channels are left as decoded; the foot-contact
cleanup that runs after it (foot_contact.py) pins feet again wherever they touch the floor, so contacts are not
smeared.

Calm standing keeps a slower shake in the root that this short filter leaves: the shipped model's calm standing takes
(waves, raised hands) moved the pelvis 2.81x and the head 2.03x as jerkily as real ones
(`benchmarks/measure_standing_root_smoothing.py`).  So the root channels (turn speed, horizontal velocity, height:
features 0-3) of the frames of a standing prompt (its standing share: the nearest training captions' clips stand in
place, ``generation/prompt_kinds.py``) get
a second Gaussian of `STANDING_ROOT_SIGMA` = 2 frames (`smooth_standing_root`): calm pelvis 1.04x real, head 1.71x;
walks and every moving prompt are untouched, and the arms keep their motion (only the root channels change).  The
head kept its shake (1.72x), so the torso chain (spine1, spine2, spine3, neck, head: their root-relative positions
and local rotations, `TORSO_CHANNELS`) of the same frames gets a Gaussian of `STANDING_TORSO_SCALE` = 0.5 times the
root's sigma (1 frame): calm head 1.02x real (the root's 2 frames over-smooth it, 0.63x), the pelvis, the raised
hands' hand_high pass rate and the short action after a walk unchanged; arms and legs are never touched.  Where a
standing segment meets a moving one, the extra smoothing fades in over `ceil(2 * sigma)` frames inside the standing
segment, so neither the root nor the torso has a step at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import attrgetter

import numpy as np

from ..common.errors import InputTensorError
from ..motion.time_filters import gaussian_smooth
from .features import FEATURE_DIM, FOOT_CONTACTS, RIC, ROTATIONS, VELOCITIES
from .motion_kind import MotionKind

DECODED_SMOOTHING_SIGMA = 0.5
"""Frames (at the model's 20 fps) of the Gaussian applied to decoded features; 0 turns smoothing off."""

STANDING_ROOT_SIGMA = 2.0
"""Frames (at 20 fps) of the second Gaussian on the root channels of standing prompts; 0 turns it off."""
STANDING_DECODER_RAMP = 4
"""Frames (one token at 20 fps) over which a standing prompt's frames fade from the tokenizer's decoder to a
bundle's standing decoder next to a moving prompt's frames (and a plain walk's to its walking decoder)."""
ROOT_CHANNELS = slice(0, 4)
"""Root turn speed, root velocity (x, z), root height of the HumanML3D features."""
TORSO_JOINTS = (3, 6, 9, 12, 15)
"""spine1, spine2, spine3, neck, head: the chain whose positions and rotations standing smoothing also calms."""


def joint_channels(joints: Sequence[int], velocities: bool = False) -> np.ndarray:
    """The feature channels of `joints` (1-21): root-relative positions (ric), 6D local rotations and, with
    `velocities`, their velocities."""
    channels = ([RIC.start + 3 * (joint - 1) + axis for joint in joints for axis in range(3)]
                + [ROTATIONS.start + 6 * (joint - 1) + k for joint in joints for k in range(6)])
    if velocities:
        channels += [VELOCITIES.start + 3 * joint + axis for joint in joints for axis in range(3)]
    return np.array(channels)


TORSO_CHANNELS = joint_channels(TORSO_JOINTS)
"""The torso chain's root-relative positions (ric) and 6D local rotations; arms and legs are not among them."""
ROOT_CHANNELS_INDEX = np.arange(ROOT_CHANNELS.start, ROOT_CHANNELS.stop)
LEG_JOINTS = (1, 2, 4, 5, 7, 8, 10, 11)
"""Hips, knees, ankles and feet."""
STANDING_DECODER_CHANNELS = np.concatenate([
    ROOT_CHANNELS_INDEX, np.arange(VELOCITIES.start, VELOCITIES.start + 3),
    joint_channels(LEG_JOINTS + TORSO_JOINTS, velocities=True), np.arange(FOOT_CONTACTS.start, FOOT_CONTACTS.stop)])
"""The channels a bundle's standing decoder gives standing frames: the root, legs, feet and torso chain with their
velocities and the foot contacts.  The arms stay the tokenizer decoder's: the shipped standing decoder, refined to
hold the hips and feet still, also lowered a raised hand by 4-6 cm (benchmarks/results/standing_decoder.md)."""
WALKING_DECODER_CHANNELS = np.arange(FEATURE_DIM)
"""The channels a bundle's walking decoder gives plain walks' frames: all of them (the whole body steps)."""
GESTURE_DECODER_CHANNELS = np.setdiff1d(np.arange(FEATURE_DIM), STANDING_DECODER_CHANNELS)
"""The channels a bundle's gesture decoder gives standing frames: the arms (each arm joint's position, rotation and
velocity), every channel the standing decoder leaves, so a wave's swing comes from a decoder refined to keep it
(`[decoder] hand_weight`) while the rest of the body keeps its decoders."""
STANDING_TORSO_SCALE = 0.5
"""The torso chain's Gaussian on standing prompts, as a share of the root's sigma; 0 leaves the torso as decoded."""

SpansAndKinds = Sequence[tuple[tuple[int, int], MotionKind]]
"""([start, end) frames at 20 fps, what the prompt of those frames asks the body to do: ``motion_kind.MotionKind``,
from the recorded motion of its nearest training captions, ``generation/prompt_kinds.py``); a later span overrides
an earlier one on shared frames."""


def smooth_decoded_features(features: np.ndarray, sigma: float = DECODED_SMOOTHING_SIGMA) -> np.ndarray:
    """(T, 263) features smoothed over time with a Gaussian of `sigma` frames, contact channels untouched."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise InputTensorError(f"features: expected shape (T, {FEATURE_DIM}), got {features.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise InputTensorError(f"sigma: must be a number >= 0, got {sigma!r}")
    if sigma == 0 or features.shape[0] < 2:
        return features.copy()
    smoothed = gaussian_smooth(features, sigma, axis=0)
    smoothed[:, FOOT_CONTACTS] = features[:, FOOT_CONTACTS]
    return smoothed


def standing_weights(num_frames: int, spans_and_kinds: SpansAndKinds, ramp: int) -> np.ndarray:
    """Per frame, how much of the standing-root smoothing it gets: its span's standing share (0 outside spans),
    faded in with a smoothstep over `ramp` frames after the standing frame next to a frame of no standing share
    (which stays as decoded, so a resampled neighbour of it is unchanged too)."""
    return _prompt_kind_weights(num_frames, spans_and_kinds, ramp, attrgetter("standing"))


def _span_shares(num_frames: int, spans_and_kinds: SpansAndKinds, share: Callable[[MotionKind], float]) -> np.ndarray:
    """Per frame, `share` of its span's kind (a later span overrides an earlier one), 0 outside every span."""
    shares = np.zeros(num_frames, dtype=np.float64)
    for (start, end), kind in spans_and_kinds:
        shares[max(0, int(start)):max(0, min(num_frames, int(end)))] = float(share(kind))
    return shares


def _prompt_kind_weights(num_frames: int, spans_and_kinds: SpansAndKinds, ramp: int,
                         share: Callable[[MotionKind], float]) -> np.ndarray:
    """Each frame's `share` of its span's kind, faded in over `ramp` frames after the frame next to one of share 0
    (which keeps weight 0)."""
    shares = _span_shares(num_frames, spans_and_kinds, share)
    chosen = shares > 0
    others = np.flatnonzero(~chosen)
    if others.size == 0:
        return shares
    frames = np.arange(num_frames)
    after = np.searchsorted(others, frames)
    distance = np.minimum(np.abs(frames - others[np.clip(after - 1, 0, others.size - 1)]),
                          np.abs(others[np.clip(after, 0, others.size - 1)] - frames)).astype(np.float64)
    x = np.clip((distance - 1.0) / ramp, 0.0, 1.0)  # the span's first frame keeps its neighbour's decoding
    return np.where(chosen, shares * x * x * (3.0 - 2.0 * x), 0.0)


def locomotion_token_weights(num_tokens: int, spans_and_kinds: SpansAndKinds, frames_per_token: int,
                             steady: bool = False) -> np.ndarray:
    """Per token, the mean walking share of its frames' prompts: how much of
    ``DecodingConfig.locomotion_guidance_factor`` its guidance takes; with `steady`, the mean share of walking on a
    steady heading (how much of ``locomotion_residual_period_bonus`` its residual codes take)."""
    share = attrgetter("steady" if steady else "walking")
    return span_token_means(num_tokens, [(span, share(kind)) for span, kind in spans_and_kinds], frames_per_token)


def span_token_means(num_tokens: int, spans_and_values: Sequence[tuple[tuple[int, int], float]],
                     frames_per_token: int) -> np.ndarray:
    """(num_tokens,) per token, the mean over its frames of their span's value (20 fps spans; a later span overrides
    an earlier one; 0 outside every span)."""
    frames = num_tokens * frames_per_token
    shares = np.zeros(frames, dtype=np.float64)
    for (start, end), value in spans_and_values:
        shares[max(0, int(start)):max(0, min(frames, int(end)))] = float(value)
    return shares.reshape(num_tokens, frames_per_token).mean(axis=1)


def standing_decoder_weights(num_frames: int, spans_and_kinds: SpansAndKinds) -> np.ndarray:
    """Per frame (20 fps), how much of a bundle's standing decoder (``ModelBundle.codes_to_features``) it takes: its
    prompt's standing share, faded in over `STANDING_DECODER_RAMP` frames next to a moving prompt's."""
    return standing_weights(num_frames, spans_and_kinds, STANDING_DECODER_RAMP)


def walking_decoder_weights(num_frames: int, spans_and_kinds: SpansAndKinds) -> np.ndarray:
    """Per frame (20 fps), how much of a bundle's walking decoder (``ModelBundle.codes_to_features``) it takes: its
    prompt's walking share, faded in over `STANDING_DECODER_RAMP` frames next to another prompt's."""
    return _prompt_kind_weights(num_frames, spans_and_kinds, STANDING_DECODER_RAMP, attrgetter("walking"))


def smooth_standing_root(features: np.ndarray, spans_and_kinds: SpansAndKinds,
                         sigma: float = STANDING_ROOT_SIGMA, torso_scale: float | None = None) -> np.ndarray:
    """(T, 263) features whose root channels on the frames of standing prompts get a Gaussian of `sigma` frames,
    and the torso chain's channels (`TORSO_CHANNELS`) one of `torso_scale` * `sigma` frames (`STANDING_TORSO_SCALE`
    when None; 0 leaves the torso as decoded), each blended in by the prompt's standing share.

    `spans_and_kinds`: ([start, end) frames at 20 fps, the prompt's kind) of the features' segments.  Frames of
    prompts of no standing share, and frames no span covers, are returned bit-identical."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise InputTensorError(f"features: expected shape (T, {FEATURE_DIM}), got {features.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise InputTensorError(f"standing root sigma: must be a number >= 0, got {sigma!r}")
    torso_scale = STANDING_TORSO_SCALE if torso_scale is None else torso_scale
    out = features.copy()
    if features.shape[0] < 2:
        return out
    for channels, channel_sigma in ((ROOT_CHANNELS_INDEX, sigma), (TORSO_CHANNELS, sigma * torso_scale)):
        if channel_sigma <= 0:
            continue
        weights = standing_weights(features.shape[0], spans_and_kinds, math.ceil(2 * channel_sigma))
        touched = np.flatnonzero(weights > 0)
        if touched.size == 0:
            continue
        smoothed = gaussian_smooth(features[:, channels], channel_sigma, axis=0)
        frames = np.ix_(touched, channels)
        decoded = features[frames]
        out[frames] = decoded + weights[touched, None] * (smoothed[touched] - decoded)
    return out


def smooth_generated_features(features: np.ndarray, kind: MotionKind, sigma: float = DECODED_SMOOTHING_SIGMA,
                              standing_sigma: float = STANDING_ROOT_SIGMA,
                              torso_scale: float | None = None) -> np.ndarray:
    """One prompt's decoded features as generation smooths them: `smooth_decoded_features`, then
    `smooth_standing_root` over the whole clip for a prompt of `kind` (evaluation's generated motions go through
    here)."""
    smoothed = smooth_decoded_features(features, sigma)
    return smooth_standing_root(smoothed, [((0, smoothed.shape[0]), kind)], standing_sigma, torso_scale)
