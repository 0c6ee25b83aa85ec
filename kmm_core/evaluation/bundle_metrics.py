# SPDX-License-Identifier: GPL-3.0-or-later
"""Every metric of one replication: the ground-truth row and one bundle's row, from the cached real-motion
embeddings (``ReplicationCache``).

Part of ``kmm-train eval`` (``evaluate.py``); docs/evaluation.md explains each number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..bundle.model_bundle import ModelBundle
from ..generation.prompt_kinds import prompt_kinds
from ..humanml3d.dataset_folder import HumanML3DFolder
from ..humanml3d.feature_smoothing import smooth_generated_features
from ..humanml3d.features import features_to_joints
from ..motion.model_timing import MODEL_FPS
from . import animator_subsets
from .body_motion import kind_of
from .body_motion import ratios as body_ratios
from .body_motion import summarize as body_summary
from .confidence import mean_confidence_interval, summarize_runs
from .directional import directional_accuracy
from .evaluator import Evaluator
from .generated_motions import (
    cleaned_joints,
    count_parameters,
    generate_features,
    generated_joints,
    timeline_of,
    timing_timeline,
    tokenizer_reconstruction,
    transition_timelines,
)
from .motion_quality import floor_penetration, foot_skating, ground_truth_jerk_level, mean_jerk, transition_jerk
from .paraphrases import paraphrase_prompts
from .report import metric_entry
from .retrieval_metrics import (
    R_PRECISION_BATCH,
    R_PRECISION_TOP_K,
    diversity,
    fid,
    mm_distance,
    multimodality,
    r_precision,
)
from .settings import EvaluationSettings
from .split_data import EvaluationData, choose_captions, spread, subset, window_reader


def r_precision_batch(count: int) -> int:
    return min(R_PRECISION_BATCH, count)


def text_motion_metrics(text: np.ndarray, motion: np.ndarray, real: np.ndarray, seed: int) -> dict[str, float]:
    batch = r_precision_batch(len(text))
    precision = r_precision(text, motion, batch_size=batch, top_k=min(R_PRECISION_TOP_K, batch), seed=seed)
    metrics = {f"r_precision_top{k + 1}": float(value) for k, value in enumerate(precision)}
    metrics.update(fid=fid(real, motion), diversity=diversity(motion, seed=seed), mm_distance=mm_distance(text, motion))
    return metrics


def _skating(joints: Sequence[np.ndarray]) -> float:
    return float(np.mean([foot_skating(j, MODEL_FPS).skating_ratio for j in joints]))


def _body_metrics(joints: Sequence[np.ndarray], cache: ReplicationCache, prefix: str) -> dict[str, float]:
    """The body-part measures of `joints` (one motion per item of the split, in order) as ratios to the real items'
    (body_motion.py), and the frozen-feet share itself, each key prefixed by the stage: "body_" (as shipped, after
    the clean-up), "raw_body_" (the decoder's output), "tokenizer_body_" (real clips encoded and decoded)."""
    summary = body_summary(joints, cache.kinds, MODEL_FPS)
    values = {f"{prefix}{key}": value for key, value in body_ratios(summary, cache.body_real).items()}
    values[f"{prefix}frozen_feet"] = summary["frozen_feet"]
    return values


def _joint_metrics(joints: Sequence[np.ndarray]) -> dict[str, float]:
    """Whole-motion mean jerk, foot skating and floor penetration (mean depth, mm) of some motions."""
    return {"mean_jerk": mean_jerk(joints, MODEL_FPS), "foot_skating_ratio": _skating(joints),
            "floor_penetration_mm": 1000.0 * float(np.mean([floor_penetration(j).mean_depth for j in joints]))}


class ReplicationCache:
    """What every row of one evaluation shares: captions and their evaluator embeddings per seed, real embeddings."""

    def __init__(self, data: EvaluationData, evaluator: Evaluator, settings: EvaluationSettings):
        self.data, self.evaluator, self.settings = data, evaluator, settings
        self.real = evaluator.embed_motions(data.features, settings.batch_size)
        self._texts: dict[int, tuple[list[str], np.ndarray]] = {}
        self.jerk_level = ground_truth_jerk_level(data.joints, MODEL_FPS)
        self.kinds = [kind_of(item.captions) for item in data.items]  # locomotion / standing / other, per item
        self.body_real = body_summary(data.joints, self.kinds, MODEL_FPS)
        # the animator's subsets of the whole split (animator_subsets.py), their real windows and measures
        window = window_reader(HumanML3DFolder(data.root))
        self.subsets = {name: items for name, items in animator_subsets.select(
            data.all_items, settings.subset_items).items() if items and settings.subset_items}
        self.subset_features = {name: [window(item) for item in items] for name, items in self.subsets.items()}
        self.subset_joints = {name: [features_to_joints(f) for f in features]
                              for name, features in self.subset_features.items()}
        self.animator_real = {"split": animator_subsets.measures(data.joints, MODEL_FPS, "split", self.kinds)}
        self.animator_real.update({name: animator_subsets.measures(joints, MODEL_FPS, name)
                                   for name, joints in self.subset_joints.items()})

    def animator_ratios(self, subset: str, joints: Sequence[np.ndarray], prefix: str = "") -> dict[str, float]:
        """generated / real of the animator's measures of one subset ("split": the split's items in order)."""
        made = animator_subsets.measures(joints, MODEL_FPS, subset, self.kinds if subset == "split" else None)
        return {prefix + key: value for key, value in
                animator_subsets.ratios(subset, made, self.animator_real[subset]).items()}

    def captions(self, seed: int) -> tuple[list[str], np.ndarray]:
        if seed not in self._texts:
            captions = choose_captions(self.data.items, seed)
            self._texts[seed] = (captions, self.evaluator.embed_texts(captions))
        return self._texts[seed]


def evaluate_ground_truth(cache: ReplicationCache) -> dict[str, Any]:
    """Metrics of the real motions: the ceiling of R-precision / directional accuracy, FID's floor (0)."""
    data, settings = cache.data, cache.settings
    runs = []
    for seed in settings.seeds:
        _captions, text = cache.captions(seed)
        runs.append(text_motion_metrics(text, cache.real, cache.real, seed))
    metrics: dict[str, Any] = {key: metric_entry(value) for key, value in summarize_runs(runs).items()}
    if data.directional:
        report = directional_accuracy([p for _, p in data.directional], data.directional_joints, MODEL_FPS)
        metrics["directional_accuracy_split"] = metric_entry(report.overall_accuracy)  # seed-independent
    metrics.update({key: metric_entry(value) for key, value in _joint_metrics(data.joints).items()})
    metrics.update({key: metric_entry(value) for key, value in _body_metrics(data.joints, cache, "body_").items()})
    return metrics


def evaluate_bundle(bundle: ModelBundle, cache: ReplicationCache, log: Callable[[str], None] = lambda _m: None,
                    examples: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Every metric of one loaded bundle, each summarised over the replications (or clips / timing runs).
    `examples`, when given, receives the first replication's generated joints per item ("generated") and the
    tokenizer's reconstructions ("tokenizer"), in the order of the split's items (for body_plots.py)."""
    from ..generation.decoding_engine import GenerationOptions
    from ..generation.timeline import Timeline
    from ..generation.timeline_generator import generate_timeline

    data, evaluator, settings = cache.data, cache.evaluator, cache.settings
    options = GenerationOptions(transitions=settings.transitions, foot_lock=settings.foot_lock,
                                smoothing=settings.smoothing, standing_root_sigma=settings.standing_root_sigma)
    standing_sigma = options.decoding_config(bundle).standing_root_sigma

    def generate(prompts: Sequence[str], lengths: Sequence[int], seed: int) -> list[np.ndarray]:
        """Features as generate_timeline decodes them (smoothed with the same sigma, standing prompts' root too)."""
        return [smooth_generated_features(f, kind, settings.smoothing, standing_sigma) for f, kind in
                zip(generate_features(bundle, prompts, lengths, seed, settings.batch_size),
                    prompt_kinds(bundle, prompts), strict=True)]

    frames = [item.frames for item in data.items]
    paraphrases = spread(paraphrase_prompts(), settings.max_directional)
    paraphrase_frames = int(round(settings.directional_seconds * MODEL_FPS))
    runs: list[dict[str, float]] = []
    for seed in settings.seeds:
        log(f"seed {seed}: text-to-motion ({len(data.items)} items)")
        captions, text = cache.captions(seed)
        generated = generate(captions, frames, seed)
        motion = evaluator.embed_motions(generated, settings.batch_size)
        run = text_motion_metrics(text, motion, cache.real, seed)
        raw = generated_joints(generated, foot_lock=False)  # joints recovered once, for both stages
        shipped = cleaned_joints(raw, generated) if settings.foot_lock else raw
        run.update(_joint_metrics(shipped))
        run.update(_body_metrics(shipped, cache, "body_"))
        if settings.foot_lock:  # the decoder's own output, to pin each defect to the stage that makes it
            run.update(_body_metrics(raw, cache, "raw_body_"))
        if examples is not None and "generated" not in examples:
            examples["generated"] = shipped
        run.update(cache.animator_ratios("split", shipped))
        for name, items in cache.subsets.items():
            log(f"seed {seed}: {animator_subsets.SUBSET_TITLES[name]} subset ({len(items)} items)")
            made = generate(choose_captions(items, seed), [item.frames for item in items], seed)
            raw_made = generated_joints(made, foot_lock=False)
            run.update(cache.animator_ratios(name, cleaned_joints(raw_made, made) if settings.foot_lock else raw_made))
        if settings.short_action:
            result = generate_timeline(bundle, Timeline.from_dict(animator_subsets.SHORT_ACTION_TIMELINE), seed=seed,
                                       options=options)[0]
            short = animator_subsets.short_action(np.asarray(result.joints), int(result.segment_frames[1, 0]))
            run["short_action_after_walk"] = float(short.performed)
            run["short_action_left_rise"] = short.left_rise

        mm_items = subset(list(range(len(data.items))), settings.mm_texts, seed)
        mm_prompts = [captions[i] for i in mm_items for _ in range(settings.mm_generations)]
        mm_frames = [frames[i] for i in mm_items for _ in range(settings.mm_generations)]
        log(f"seed {seed}: multimodality ({len(mm_prompts)} generations)")
        mm_motion = evaluator.embed_motions(generate(mm_prompts, mm_frames, seed + 100_003), settings.batch_size)
        run["multimodality"] = multimodality(mm_motion.reshape(len(mm_items), settings.mm_generations, -1), seed=seed)

        log(f"seed {seed}: directional ({len(data.directional)} split prompts, {len(paraphrases)} paraphrases)")
        if data.directional:
            prompts = [p for _, p in data.directional]
            made = generate(prompts, [item.frames for item, _ in data.directional], seed)
            run["directional_accuracy_split"] = directional_accuracy(
                prompts, [features_to_joints(m) for m in made], MODEL_FPS).overall_accuracy
        prompts = [p for _, p in paraphrases]
        made = generate(prompts, [paraphrase_frames] * len(prompts), seed)
        run["directional_accuracy_paraphrase"] = directional_accuracy(
            prompts, [features_to_joints(m) for m in made], MODEL_FPS).overall_accuracy

        log(f"seed {seed}: transitions ({settings.transition_timelines} timelines)")
        motions, boundaries = [], []
        for index, timeline in enumerate(transition_timelines(data.all_items, settings.transition_timelines,
                                                              settings.transition_segments, seed)):
            result = generate_timeline(bundle, timeline, seed=seed * 1000 + index, options=options)[0]
            motions.append(np.asarray(result.joints, dtype=np.float64))
            boundaries.append(result.segment_frames[1:, 0].tolist())
        jerk = transition_jerk(motions, boundaries, MODEL_FPS, cache.jerk_level)
        run["transition_peak_jerk"] = jerk.peak_jerk
        run["transition_auj"] = jerk.area_under_jerk
        runs.append(run)

    metrics: dict[str, Any] = {key: metric_entry(value) for key, value in summarize_runs(runs).items()}
    metrics["parameters"] = metric_entry(count_parameters(bundle))

    log(f"timing a {settings.timing_seconds:g} s timeline ({settings.timing_runs} runs)")
    timeline = timing_timeline(data.all_items, settings.timing_seconds)
    warm_up = timeline_of([timeline.prompts[0]], [40])
    generate_timeline(bundle, warm_up, seed=0, options=options)  # lazy init, caches
    durations = []
    for run_index in range(settings.timing_runs):
        started = time.perf_counter()
        generate_timeline(bundle, timeline, seed=run_index, options=options)
        durations.append((time.perf_counter() - started) * 60.0 / settings.timing_seconds)
    metrics["generation_seconds_per_minute"] = metric_entry(mean_confidence_interval(durations))

    # each clip decoded as generation would decode its captions (standing ones by a bundle's standing decoder, plain
    # walks by its walking decoder)
    errors, perplexity, reconstructions = tokenizer_reconstruction(
        bundle, data.features, [" ".join(item.captions) for item in data.items])
    metrics["tokenizer_mpjpe_mm"] = metric_entry(mean_confidence_interval(errors))
    metrics.update({key: metric_entry(value)
                    for key, value in _body_metrics(reconstructions, cache, "tokenizer_body_").items()})
    metrics.update({key: metric_entry(value) for key, value in
                    cache.animator_ratios("split", reconstructions, "tokenizer_").items()})
    for name, features in cache.subset_features.items():
        captions = [" ".join(item.captions) for item in cache.subsets[name]]
        _errors, _perplexity, rebuilt = tokenizer_reconstruction(bundle, features, captions)
        metrics.update({key: metric_entry(value) for key, value in
                        cache.animator_ratios(name, rebuilt, "tokenizer_").items()})
    if examples is not None:
        examples["tokenizer"] = reconstructions
    metrics["codebook_perplexity"] = metric_entry(perplexity)  # one measurement over the whole split
    return metrics
