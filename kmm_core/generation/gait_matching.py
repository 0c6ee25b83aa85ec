# SPDX-License-Identifier: GPL-3.0-or-later
"""Real gait cycles under a generated walk (motion matching, as games do; retrieval, as ReMoDiffuse does).

The generator decides where the body goes, how it turns and what its arms and torso do; its legs step poorly
(short quick steps, one pelvis rise a stride, a limp: ``benchmarks/results/gait.md``).  Where a take walks or runs,
the legs, the pelvis height, the speed over the floor and the foot contacts are played from real strides of the
model's own training split instead (``bundle/gait_cycles.py``), one cycle after another at their recorded pace:

- *where*: each frame's weight is its prompt's walking share (``prompt_kinds``: what the prompt's nearest training
  captions do) times how clearly the generated root travels (a smoothstep of its speed from `START_SPEED` to
  `FULL_SPEED` m/s) and keeps a heading (fading out from `TURN_START` to `TURN_END`: a turn on the spot is not a
  stride), so a start, a stop and a turn blend back into the generated motion; the weights are smoothed over
  `BLEND_SIGMA` frames, so the legs pass between the generated and the played ones over about half a second;
- *which strides*: per prompt, the `CANDIDATES` cycles whose clips' captions are nearest the prompt in the text
  space of the bundle's prompt check, less `SPEED_WEIGHT` times how far (log ratio) each cycle's speed is from the
  generated one (the text picks a walk, a jog or a weary shuffle; the generated pace breaks near-ties), among the
  cycles that travel within `MAX_DIRECTION` of the way the generated body travels (none: the generated legs stay);
- *how*: a walk starts on the candidate cycle and phase whose legs are nearest the generated legs at its first frame,
  plays at the recorded pace, and at each left heel strike goes on with the stride the same walker took next in the
  same recording (`GaitCycles.successor`), while that recording is still among the frame's prompt's candidates:
  strides vary from one to the next as that walker's did (one stride repeated is a machine's walk: its feet repeat
  exactly and its one asymmetry repeats with them).  Where the recording has no next stride cut (it turned, stopped or
  ended), the walk goes on with a cycle drawn (the take's seed) among the candidates that last about as long
  (`STRIDE_VARIATION`) and carry the pelvis about as high (`POSTURE_VARIATION`), so the pace and the posture hold (a
  switch to another walker's upright or crouched stride would raise or drop the hips once a stride: a limp); never the
  stride just played while another is like it, and where none is, that walker's other strides, then another of about
  its pelvis height, before itself again (a lone stride played again and again is a machine's walk: with itself among
  those drawn, 72 of the gait benchmark's 466 stride changes played the same stride again, none this way:
  `benchmarks/measure_stride_repeats.py`).  The jump between two cycles is spread over `SWITCH_FADE` of the next
  stride.  The rest of the body rides on the played pelvis height, and the body travels the way the generated one
  does: the played speed over the floor turned onto the generated direction of travel (by at most `MAX_DIRECTION`, and
  only as far as the generated body clearly travels: a slow body's direction is noise), so a walk to the side or on a
  diagonal keeps its way.

Each stride played this way is a real stride: two pelvis rises a stride, symmetric steps, stance and double
support as recorded; the foot clean-up then plants the feet (``motion/foot_contact.py``).  A bundle without gait
cycles (``kmm-train gait-cycles`` adds them) decodes as before.  Measured in ``benchmarks/results/gait.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..bundle.gait_cycles import CYCLE_CHANNELS, LEG_POSITION_CHANNELS, GaitCycles, read_gait_cycles
from ..common.smoothstep import smoothstep
from ..humanml3d.feature_smoothing import LEG_JOINTS, SpansAndKinds, walking_decoder_weights
from ..humanml3d.features import FEATURE_DIM, RIC, ROOT_HEIGHT, ROOT_XZ_VELOCITY, ROOT_YAW_VELOCITY
from ..motion.model_timing import MODEL_FPS
from ..motion.time_filters import gaussian_smooth
from .prompt_vocabulary import VocabularyCheckUnavailable, cached_on_bundle, embed_texts

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle.model_bundle import ModelBundle

CANDIDATES = 8
SPEED_WEIGHT = 0.1
MAX_DIRECTION = np.radians(45.0)
START_SPEED, FULL_SPEED = 0.2, 0.45             # m/s
TURN_START, TURN_END = np.radians(60.0), np.radians(120.0)  # rad/s
SPEED_SIGMA = 10.0                                # frames at 20 fps: a step's surge is not a change of pace
SWITCH_FADE = 0.3                                 # of a stride
BLEND_SIGMA = 3.0                                 # frames at 20 fps: generated legs -> played strides and back
STRIDE_VARIATION = 0.05                           # of a stride's duration, from one stride to the next
POSTURE_VARIATION = 0.01                          # m of mean pelvis height, from one stride to the next
_ROOT_HEIGHT = ROOT_HEIGHT.start
_UPPER_BODY_HEIGHTS = np.array([RIC.start + 3 * (joint - 1) + 1 for joint in range(1, 22) if joint not in LEG_JOINTS])
_CYCLE_ROOT_HEIGHT = int(np.flatnonzero(CYCLE_CHANNELS == _ROOT_HEIGHT)[0])
_CYCLE_LEGS = np.searchsorted(CYCLE_CHANNELS, LEG_POSITION_CHANNELS)


def matching_weights(features: np.ndarray, walking: np.ndarray) -> np.ndarray:
    """(T,) how much of each frame the played cycles take (module docstring: *where*)."""
    frames = features.shape[0]
    speed = np.linalg.norm(features[:, ROOT_XZ_VELOCITY], axis=1) * MODEL_FPS
    turn = np.abs(2.0 * features[:, ROOT_YAW_VELOCITY.start]) * MODEL_FPS
    if frames > 1:
        speed, turn = gaussian_smooth(speed, SPEED_SIGMA), gaussian_smooth(turn, SPEED_SIGMA)
    return np.asarray(walking, dtype=np.float64) * smoothstep(speed, START_SPEED, FULL_SPEED) \
        * (1.0 - smoothstep(turn, TURN_START, TURN_END))


def candidate_cycles(cycles: GaitCycles, prompt: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """The `CANDIDATES` cycles for a prompt's unit embedding and its generated mean velocity over the floor (m/s, in
    the body's facing frame), best first; only cycles travelling within `MAX_DIRECTION` of that direction (a step
    back is never played as a step forward); none when no cycle does."""
    speed = float(np.linalg.norm(velocity))
    cosine = cycles.travel @ velocity / np.maximum(np.linalg.norm(cycles.travel, axis=1) * speed, 1e-9)
    score = cycles.embeddings @ prompt - SPEED_WEIGHT * np.abs(np.log(cycles.speed / max(speed, 1e-3)))
    order = np.argsort(-score, kind="stable")
    return order[cosine[order] >= np.cos(MAX_DIRECTION)][:CANDIDATES]


def _at(cycles: GaitCycles, cycle: int, phase: float) -> np.ndarray:
    position = phase * (cycles.samples.shape[1] - 1)
    low = min(int(position), cycles.samples.shape[1] - 2)
    share = position - low
    return cycles.samples[cycle, low] * (1.0 - share) + cycles.samples[cycle, low + 1] * share


def _start(cycles: GaitCycles, candidates: np.ndarray, legs: np.ndarray) -> tuple[int, float]:
    """The candidate cycle and phase whose leg positions are nearest `legs` (module docstring: *how*)."""
    best = (np.inf, int(candidates[0]), 0.0)
    for cycle in candidates:
        distance = ((cycles.samples[cycle, :-1][:, _CYCLE_LEGS] - legs) ** 2).sum(axis=1)
        sample = int(np.argmin(distance))
        if distance[sample] < best[0]:
            best = (float(distance[sample]), int(cycle), sample / (cycles.samples.shape[1] - 1))
    return best[1], best[2]


def _next_cycle(cycles: GaitCycles, cycle: int, candidates: np.ndarray, rng: np.random.Generator) -> int:
    """The stride after `cycle`: the one its walker took next, while its recording is among the `candidates`' ones;
    else another of the `candidates` of about its duration (within `STRIDE_VARIATION`) and mean pelvis height (within
    `POSTURE_VARIATION`), drawn; else another stride of the same recording among them (its walker's own pace and
    posture); else another of about its pelvis height (the pace changes once, the hips stay); else itself again;
    or, where the candidates changed with the prompt and none is like it, one of about its duration, or any of
    them."""
    following = int(cycles.successor[cycle])
    if following >= 0 and cycles.clips[following] in {cycles.clips[candidate] for candidate in candidates}:
        return following
    pace = np.abs(cycles.duration[candidates] / cycles.duration[cycle] - 1.0) <= STRIDE_VARIATION
    posture = np.abs(cycles.pelvis_height[candidates] - cycles.pelvis_height[cycle]) <= POSTURE_VARIATION
    other = candidates != cycle
    same_recording = np.array([cycles.clips[candidate] == cycles.clips[cycle] for candidate in candidates])
    for similar in (candidates[pace & posture & other], candidates[same_recording & other],
                    candidates[posture & other], candidates[~other], candidates[pace]):
        if len(similar):
            return int(rng.choice(similar))
    return int(rng.choice(candidates))


def _turned(velocity: np.ndarray, angle: float) -> np.ndarray:
    """A (2,) velocity over the floor (x, z in the facing frame) turned by `angle` radians about the vertical."""
    cosine, sine = np.cos(angle), np.sin(angle)
    return np.array([cosine * velocity[0] + sine * velocity[1], -sine * velocity[0] + cosine * velocity[1]])


def play_gait_cycles(features: np.ndarray, cycles: GaitCycles, weights: np.ndarray, candidates: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """(T, 263) `features` with the cycles played under the frames of weight > 0 (module docstring).
    `candidates` (T, CANDIDATES): each frame's candidate cycles, best first (its prompt's; any row where the weight
    is 0); a prompt with fewer candidates repeats its best in the free places, so the best is drawn more often."""
    features = np.asarray(features, dtype=np.float64)
    out = features.copy()
    frames = features.shape[0]
    velocity = gaussian_smooth(features[:, ROOT_XZ_VELOCITY], SPEED_SIGMA) if frames > 1 else features[:, 1:3]
    heading = np.arctan2(velocity[:, 0], velocity[:, 1])  # the generated travel's angle in the facing frame
    sure = smoothstep(np.linalg.norm(velocity, axis=1) * MODEL_FPS, START_SPEED, FULL_SPEED)  # a slow body's is noise
    travel_angle = np.arctan2(cycles.travel[:, 0], cycles.travel[:, 1])  # each cycle's own, the same frame
    frame = 0
    while frame < frames:
        if weights[frame] <= 0:
            frame += 1
            continue
        cycle, phase = _start(cycles, candidates[frame], features[frame, LEG_POSITION_CHANNELS])
        offset, fade = np.zeros(len(CYCLE_CHANNELS)), 0.0
        while frame < frames and weights[frame] > 0:
            played = _at(cycles, cycle, phase) + offset * fade
            turn = np.angle(np.exp(1j * (heading[frame] - travel_angle[cycle])))  # wrapped to +-pi
            played[:2] = _turned(played[:2], float(np.clip(turn, -MAX_DIRECTION, MAX_DIRECTION)) * sure[frame])
            row = features[frame].copy()
            lift = played[_CYCLE_ROOT_HEIGHT] - row[_ROOT_HEIGHT]
            row[CYCLE_CHANNELS] = played
            row[_UPPER_BODY_HEIGHTS] += lift
            out[frame] = (1.0 - weights[frame]) * features[frame] + weights[frame] * row
            step = 1.0 / (cycles.duration[cycle] * MODEL_FPS)
            phase += step
            fade = max(0.0, fade - step / SWITCH_FADE)
            if phase >= 1.0:
                phase -= 1.0
                ended = _at(cycles, cycle, 1.0) + offset * fade
                cycle = _next_cycle(cycles, cycle, candidates[min(frame + 1, frames - 1)], rng)
                offset, fade = ended - _at(cycles, cycle, 0.0), 1.0
            frame += 1
    return out


def _bundle_cycles(bundle: ModelBundle) -> GaitCycles:
    from ..bundle.weight_checksums import GAIT_CYCLE_FILES, verify_bundle_files

    listed = [name for name in GAIT_CYCLE_FILES if name in (bundle.config.get("files") or {})]
    if listed:
        verify_bundle_files(bundle.path, bundle.config, listed)  # a damaged file fails here, naming it
    cycles = read_gait_cycles(bundle.path)
    if cycles is None:
        raise VocabularyCheckUnavailable(f"{bundle.path}: no gait cycles (`kmm-train gait-cycles` adds them)")
    return cycles


def walk_on_gait_cycles(bundle: ModelBundle, features: np.ndarray, spans_and_prompts: Sequence,
                        spans_and_kinds: SpansAndKinds, seed: int, keyed: np.ndarray | None = None) -> np.ndarray:
    """(T, 263) generated features at 20 fps with the bundle's gait cycles played where they walk (module
    docstring); unchanged when the bundle has none or no frame walks.  `spans_and_prompts` / `spans_and_kinds`:
    ([start, end) frames, the prompt / its kind) of the take's segments (a later span overrides an earlier one).
    `keyed` (T,) bool: frames whose legs or hips the timeline's keys hold, and those the generator decoded to lead
    into them; the generated legs stay there (a recorded stride knows nothing of the key, and blending from its
    phase into the keyed legs at the last moment sped the legs up: twice the take's peak joint speed elsewhere)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM or features.shape[0] < 2:
        return features
    walking = walking_decoder_weights(features.shape[0], spans_and_kinds)
    weights = np.zeros(features.shape[0])
    for (start, end), _ in spans_and_prompts:  # each segment's own frames: a neighbour's decoding never moves a walk
        start, end = max(0, int(start)), min(features.shape[0], int(end))
        if end - start >= 2:
            weights[start:end] = matching_weights(features[start:end], walking[start:end])
    if keyed is not None:
        weights[np.asarray(keyed, dtype=bool)[:len(weights)]] = 0.0
    weights = gaussian_smooth(weights, BLEND_SIGMA)  # the legs pass between generated and played over ~0.5 s
    if not np.any(weights > 0):
        return features
    cycles = cached_on_bundle(bundle, "_gait_cycles", _bundle_cycles)
    if cycles is None:
        return features
    prompts = [prompt for _, prompt in spans_and_prompts]
    embedded = dict(zip(dict.fromkeys(prompts), embed_texts(bundle, list(dict.fromkeys(prompts)), cycles.space),
                        strict=True))
    velocity = features[:, ROOT_XZ_VELOCITY] * MODEL_FPS
    candidates = np.zeros((features.shape[0], CANDIDATES), dtype=np.int64)
    for (start, end), prompt in spans_and_prompts:
        start, end = max(0, int(start)), min(features.shape[0], int(end))
        walking = weights[start:end] > 0.5
        chosen = candidate_cycles(cycles, embedded[prompt], velocity[start:end][walking].mean(axis=0)
                                  if walking.any() else np.array([0.0, FULL_SPEED]))
        if len(chosen) == 0:
            weights[start:end] = 0.0  # no recorded stride goes this way: the generated legs stay
            continue
        candidates[start:end, :len(chosen)] = chosen
        candidates[start:end, len(chosen):] = chosen[0]
    return play_gait_cycles(features, cycles, weights, candidates, np.random.default_rng([int(seed), 2718]))
