# SPDX-License-Identifier: GPL-3.0-or-later
"""Generating what an evaluation measures: features for prompts with a bundle's decoding settings, multi-prompt
timelines for the transition and timing metrics, and the bundle's size and tokenizer reconstruction.

Part of ``kmm-train eval`` (``evaluate.py``); docs/evaluation.md explains each number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..bundle.model_bundle import ModelBundle
from ..generation.gait_matching import walk_on_gait_cycles
from ..generation.prompt_conditions import prompt_conditions
from ..generation.prompt_kinds import prompt_kinds
from ..generation.prompt_vocabulary import guidance_boosts
from ..generation.walk_candidates import stride_score
from ..humanml3d.features import features_to_joints, joints_to_features
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from .split_data import EvalItem


def generate_features(bundle: ModelBundle, prompts: Sequence[str], frames: Sequence[int], seed: int,
                      batch_size: int = 32, use_residual: bool = True,
                      guidance_boost: float | None = None) -> list[np.ndarray]:
    """Raw (frames_i, 263) features generated for each prompt with the bundle's decoding settings, its real gait
    cycles played where they walk (`walked_features`).

    ``use_residual=False`` decodes the base quantizer layer only (the residual predictor's ablation).
    ``guidance_boost``: every prompt's share of the bundle's raised guidance (``decoding.unlikely_guidance_factor``:
    0 none, 1 all of it, as ``kmm-train check-captions`` measures both); None: each prompt's own, as generation gives
    it (``prompt_vocabulary.guidance_boosts``).

    Batches hold prompts of similar length; one torch.Generator seeded with `seed` drives all sampling, so the
    same bundle, prompts and seed give the same motions.
    """
    import torch

    from ..model.decoding import decode_tokens

    config = bundle.decoding
    device = bundle.device
    rng = torch.Generator()
    rng.manual_seed(int(seed))
    order = sorted(range(len(prompts)), key=lambda i: frames[i])
    out: list[np.ndarray | None] = [None] * len(prompts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            lengths = [int(frames[i]) for i in chunk]
            sentence = prompt_conditions(bundle, [prompts[i] for i in chunk])
            kinds = prompt_kinds(bundle, [prompts[i] for i in chunk])
            locomotion, steady = (torch.tensor([kind.walking for kind in kinds]),
                                  torch.tensor([kind.steady for kind in kinds]))
            unlikely = torch.tensor(guidance_boosts(bundle, [prompts[i] for i in chunk]) if guidance_boost is None
                                    else [float(guidance_boost)] * len(chunk))
            score = stride_score(bundle, [(n, [((0, n), prompts[i])]) for n, i in zip(lengths, chunk, strict=True)])
            result = decode_tokens(bundle.generator, lengths, sentence=sentence, config=config, rng=rng,
                                   use_residual=use_residual, locomotion=locomotion, steady_walk=steady,
                                   unlikely=unlikely,
                                   candidate_score=score)
            for row, index in enumerate(chunk):
                tokens = math.ceil(lengths[row] / FRAMES_PER_TOKEN)
                codes = result.codes[row:row + 1, :tokens].to(device)
                span = (0, lengths[row])
                out[index] = walked_features(bundle, bundle.decode_kinds(codes, lengths[row], [(span, kinds[row])]),
                                             [(span, prompts[index])], [(span, kinds[row])], seed + index)
    return out  # type: ignore[return-value]


def walked_features(bundle: ModelBundle, features: np.ndarray, spans_and_prompts, spans_and_kinds,
                    seed: int) -> np.ndarray:
    """`features` with the bundle's real gait cycles played where they walk, as generation plays them
    (``generation/gait_matching.py``); where they changed anything, every channel is measured again from the
    joints (as a recorded clip's are), so the evaluator reads legs, rotations and velocities that agree."""
    walked = walk_on_gait_cycles(bundle, features, spans_and_prompts, spans_and_kinds, seed)
    if np.array_equal(walked, features):
        return features
    joints = features_to_joints(walked)
    return joints_to_features(np.concatenate([joints, joints[-1:]]))


def generated_joints(features: Sequence[np.ndarray], foot_lock: bool) -> list[np.ndarray]:
    """Joints of generated features (20 fps), with the foot-contact cleanup of generate_timeline when `foot_lock`."""
    joints = [features_to_joints(f) for f in features]
    return cleaned_joints(joints, features) if foot_lock else joints


def cleaned_joints(joints: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The clean-up of generate_timeline on joints already recovered from `features` (its contacts): the feet held
    on their contacts, then the hands of a body on all fours put on the floor."""
    from ..generation.timeline_generator import generation_foot_lock
    from ..humanml3d.features import FOOT_CONTACTS
    from ..motion.take_cleanup import cleaned_joints as take_cleaned_joints

    return [take_cleaned_joints(j, MODEL_FPS, f[:, FOOT_CONTACTS], generation_foot_lock())
            for j, f in zip(joints, features, strict=True)]


def timeline_of(prompts: Sequence[str], frames: Sequence[int]):
    from ..generation.timeline import Segment, Timeline

    return Timeline(tuple(Segment(prompt, int(count)) for prompt, count in zip(prompts, frames, strict=True)),
                    MODEL_FPS)


def transition_timelines(items: Sequence[EvalItem], count: int, segments: int, seed: int):
    """`count` timelines of `segments` captions of different items, each segment as long as its item's motion."""
    rng = np.random.default_rng([seed, 11])
    timelines = []
    for _ in range(count):
        chosen = rng.choice(len(items), size=min(segments, len(items)), replace=False)
        prompts = [items[i].captions[int(rng.integers(len(items[i].captions)))] for i in chosen]
        timelines.append(timeline_of(prompts, [items[i].frames for i in chosen]))
    return timelines


def timing_timeline(items: Sequence[EvalItem], seconds: float):
    """A timeline of `seconds` made of 10-second segments with the split's first captions."""
    total = int(round(seconds * MODEL_FPS))
    lengths = [200] * (total // 200) + ([total % 200] if total % 200 else [])
    prompts = [items[i % len(items)].captions[0] for i in range(len(lengths))]
    return timeline_of(prompts, lengths)


def count_parameters(bundle: ModelBundle) -> int:
    """Parameters of the generating model: tokenizer + generator (+ aligner when it conditions the generator).
    The frozen MiniLM sentence encoder (22.7 M, shared by all) and the evaluator are not counted."""
    modules = [bundle.tokenizer, bundle.generator]
    if bundle.text_conditioner.source == "aligner" and bundle.aligner is not None:
        modules.append(bundle.aligner)
    return int(sum(p.numel() for module in modules for p in module.parameters()))


def tokenizer_reconstruction(bundle: ModelBundle, features: Sequence[np.ndarray],
                             prompts: Sequence[str] | None = None) -> tuple[np.ndarray, float, list[np.ndarray]]:
    """(per-clip MPJPE in mm of root-relative joints, perplexity of the first codebook over all tokens, the
    reconstructed clips' joints (T, 22, 3)).  `prompts`: per clip, the text whose kind picks its decoders as
    generation would (``ModelBundle.decode_kinds`` with ``prompt_kinds``); None: the tokenizer's decoder for every
    clip."""
    import torch

    device = next(bundle.tokenizer.parameters()).device
    errors, codes_used, reconstructions = [], [], []
    kinds = None if prompts is None else prompt_kinds(bundle, list(prompts))
    with torch.no_grad():
        for number, clip in enumerate(features):
            normalised = torch.from_numpy(bundle.normalizer.normalize(clip).astype(np.float32))[None].to(device)
            codes = bundle.tokenizer.encode(normalised)
            real = features_to_joints(clip)
            frames = clip.shape[0]
            recon = features_to_joints(bundle.codes_to_features(codes, frames) if kinds is None else
                                       bundle.decode_kinds(codes, frames, [((0, frames), kinds[number])]))
            reconstructions.append(recon)
            real, recon = real - real[:, :1], recon - recon[:, :1]
            errors.append(1000.0 * float(np.linalg.norm(real - recon, axis=-1).mean()))
            first = codes[0, :, 0].cpu().numpy()
            codes_used.append(first[first >= 0])
    counts = np.bincount(np.concatenate(codes_used), minlength=bundle.tokenizer.codebook_size).astype(np.float64)
    probabilities = counts[counts > 0] / counts.sum()
    return np.asarray(errors), float(np.exp(-(probabilities * np.log(probabilities)).sum())), reconstructions
