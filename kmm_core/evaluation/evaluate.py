# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train eval``: evaluate model bundles on a dataset split and write ``results.json`` + ``results.md``.

::

    kmm-train eval --checkpoint BUNDLE --data DATASET --split test [--replications 20] [--out results/]
    kmm-train eval --compare BUNDLE_A BUNDLE_B ... --data DATASET --out results/
    python -m kmm_core.evaluation.evaluate ...     (the same program)

What is measured (docs/evaluation.md explains each number):

* Text-to-motion metrics (R-precision, FID, Diversity, MM-Dist, MultiModality) through the **evaluator**: the
  separately trained text and motion encoders (``evaluator.safetensors``), never a generator's own aligner.  With
  ``--compare`` every row uses the same evaluator (``--evaluator FOLDER``, else the first bundle that has one), so the
  rows are comparable.
* Directional accuracy (geometric, ``directional.py``) on the split's own side-specific captions and on the
  held-out ``paraphrases.py`` prompts.
* Transition Peak Jerk / AUJ on multi-prompt timelines built from the split's captions, generated through the same
  ``generate_timeline`` the add-on uses; mean jerk over whole motions, foot skating and floor penetration of the
  text-to-motion generations, after the same foot-contact cleanup ``generate_timeline`` applies (``--no-foot-lock``:
  the raw decoded joints).  The evaluator-based metrics (R-precision, FID, ...) read the decoded features, which the
  cleanup does not change.
* Size and speed: parameter count, seconds to generate a 1-minute timeline on the chosen device; the tokenizer's
  reconstruction MPJPE (mm) and codebook perplexity on the split.

Protocol (Guo et al. 2022, adapted): every split clip is one item (a caption with its own time span is an item of its
own), its motion the first ``--max-frames`` frames (a multiple of 4) of its span.  Replication ``r`` uses seed
``base_seed + r`` for the caption chosen per item, the R-precision batches, the pairs of Diversity and
MultiModality and the generator's sampling; generated motions have the real motions' lengths.  The real motion
windows are fixed, so the ground-truth row's FID is 0 by construction: it is the floor, and its R-precision and
MM-Dist are the ceiling the evaluator can reach on real data.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputFileError, KMMError
from ..generation.timeline import DEFAULT_TRANSITIONS, TRANSITION_MODES
from ..humanml3d.dataset_folder import HumanML3DFolder
from ..humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_decoded_features
from ..humanml3d.features import features_to_joints
from .confidence import mean_confidence_interval, replication_seeds, summarize_runs
from .directional import directional_accuracy, parse_directional_intent
from .motion_quality import floor_penetration, foot_skating, ground_truth_jerk_level, mean_jerk, transition_jerk
from .paraphrases import paraphrase_prompts
from .report import RESULTS_FORMAT_VERSION, metric_entry, write_results
from .retrieval_metrics import (
    R_PRECISION_BATCH,
    R_PRECISION_TOP_K,
    diversity,
    fid,
    mm_distance,
    multimodality,
    r_precision,
)

FPS = 20.0  # HumanML3D features and the model run at 20 frames per second
FRAMES_PER_TOKEN = 4
GROUND_TRUTH = "ground truth"


class EvaluationError(KMMError, ValueError):
    """The evaluation cannot run as asked (no evaluator, too few clips, ...); the message says what to change."""


@dataclass(frozen=True)
class EvaluationSettings:
    """Sizes and seeds of one evaluation; the defaults follow the published protocol where one exists."""

    split: str = "test"
    replications: int = 20
    base_seed: int = 0
    max_samples: int | None = None       # items of the split used for the text-to-motion metrics (None: all)
    mm_texts: int = 100                  # MultiModality: texts ...
    mm_generations: int = 30             # ... times generations per text
    max_directional: int | None = None   # cap on the split's directional prompts and on the paraphrases
    directional_seconds: float = 4.0     # length of each paraphrase generation
    transition_timelines: int = 32       # multi-prompt timelines per replication for Peak Jerk / AUJ
    transition_segments: int = 3         # prompts per timeline
    timing_runs: int = 3                 # timed generations of a 1-minute timeline
    timing_seconds: float = 60.0
    min_frames: int = 40
    max_frames: int = 196
    batch_size: int = 32                 # generation / embedding batch
    device: str = "cpu"
    transitions: str = DEFAULT_TRANSITIONS  # how timeline prompts meet (transition and timing metrics)
    foot_lock: bool = True               # clean foot contacts as generation does (joint-based metrics, timelines)
    smoothing: float = DECODED_SMOOTHING_SIGMA  # Gaussian (frames) on decoded features, as generation does

    def __post_init__(self) -> None:
        checks = {
            "replications": self.replications >= 1,
            "smoothing": 0 <= self.smoothing <= 4,
            "max_samples": self.max_samples is None or self.max_samples >= 2,
            "mm_texts": self.mm_texts >= 1,
            "mm_generations": self.mm_generations >= 2,
            "max_directional": self.max_directional is None or self.max_directional >= 1,
            "directional_seconds": self.directional_seconds >= 1.0,
            "transition_timelines": self.transition_timelines >= 1,
            "transition_segments": self.transition_segments >= 2,
            "timing_runs": self.timing_runs >= 1,
            "timing_seconds": self.timing_seconds > 0,
            "min_frames": self.min_frames >= FRAMES_PER_TOKEN,
            "max_frames": self.max_frames >= self.min_frames,
            "batch_size": self.batch_size >= 1,
            "transitions": self.transitions in TRANSITION_MODES,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"evaluation settings: invalid {', '.join(bad)} (sizes must be positive; "
                              f"mm_generations >= 2, transition_segments >= 2, max_frames >= min_frames)")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device: {self.device!r} is not cpu, cuda or cuda:N")

    @property
    def seeds(self) -> tuple[int, ...]:
        return replication_seeds(self.replications, self.base_seed)


# ---------------------------------------------------------------------------------------------------------------
# the data: items of a split with fixed motion windows
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalItem:
    """One evaluation item: a motion window [start, start + frames) of clip `name` and the captions describing it."""

    name: str
    captions: tuple[str, ...]
    start: int
    frames: int
    content: str = ""


def _window_frames(available: int, settings: EvaluationSettings) -> int:
    length = min(available, settings.max_frames) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    return length if length >= settings.min_frames else 0


def _read_content_labels(root: Path) -> dict[str, str]:
    """Clip name -> content label from a prepared folder's index.csv ({} for other folders)."""
    from ..data.prepare import INDEX_CSV, read_index

    if not (root / INDEX_CSV).is_file():
        return {}
    return {row["name"]: row.get("content", "") for row in read_index(root)}


def load_items(folder: HumanML3DFolder, settings: EvaluationSettings) -> list[EvalItem]:
    """Every usable item of the split: whole-clip captions grouped into one item per clip, each time-span caption
    an item of its own (HumanML3D's evaluation loader does the same); windows shorter than min_frames are left out."""
    names = folder.split_names(settings.split)
    if not names:
        raise EvaluationError(f"{folder.root / (settings.split + '.txt')}: the {settings.split!r} split lists no clips")
    contents = _read_content_labels(folder.root)
    items: list[EvalItem] = []
    for name in names:
        frames = folder.frame_count(name, settings.split)
        whole: list[str] = []
        for caption in folder.load_captions(name):
            if caption.whole_clip:
                whole.append(caption.text)
                continue
            start = min(int(round(caption.start * FPS)), frames)
            end = min(int(round(caption.end * FPS)), frames) if caption.end > caption.start else frames
            length = _window_frames(end - start, settings)
            if length:
                items.append(EvalItem(f"{name}@{start}", (caption.text,), start, length, contents.get(name, "")))
        length = _window_frames(frames, settings)
        if whole and length:
            items.append(EvalItem(name, tuple(whole), 0, length, contents.get(name, "")))
    if len(items) < 2:
        raise EvaluationError(f"{folder.root}: the {settings.split!r} split has {len(items)} usable item(s) of at "
                              f"least {settings.min_frames} frames with captions; need at least 2")
    return items


def subset(items: Sequence, limit: int | None, seed: int) -> list:
    """At most `limit` of `items`, chosen by a seeded draw and kept in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in chosen]


def choose_captions(items: Sequence[EvalItem], seed: int) -> list[str]:
    """One caption per item for replication `seed` (uniform among the item's captions)."""
    rng = np.random.default_rng([seed, 7])
    return [item.captions[int(rng.integers(len(item.captions)))] for item in items]


def _directional_items(items: Sequence[EvalItem]) -> list[tuple[EvalItem, str]]:
    """(item, first caption with a side-specific intent) of every item that has one."""
    found = []
    for item in items:
        for caption in item.captions:
            if parse_directional_intent(caption) is not None:
                found.append((item, caption))
                break
    return found


def _spread(values: Sequence, limit: int | None) -> list:
    """At most `limit` values evenly spaced over the sequence (keeps every content label represented)."""
    if limit is None or limit >= len(values):
        return list(values)
    return [values[int(i)] for i in np.linspace(0, len(values) - 1, limit).round().astype(int)]


@dataclass
class EvaluationData:
    """The split's items with their real feature windows and joints (loaded once, shared by every checkpoint)."""

    root: Path
    items: list[EvalItem]               # text-to-motion items (after --max-samples)
    features: list[np.ndarray]          # raw (T, 263) windows of `items`
    joints: list[np.ndarray]            # (T, 22, 3) joints of `items`
    directional: list[tuple[EvalItem, str]]
    directional_joints: list[np.ndarray]
    all_items: list[EvalItem] = field(repr=False, default_factory=list)

    @classmethod
    def load(cls, root: str | Path, settings: EvaluationSettings) -> EvaluationData:
        folder = HumanML3DFolder(root)
        all_items = load_items(folder, settings)
        items = subset(all_items, settings.max_samples, settings.base_seed)
        cache: dict[str, np.ndarray] = {}

        def window(item: EvalItem) -> np.ndarray:
            clip = item.name.split("@")[0]
            if clip not in cache:
                cache[clip] = folder.load_features(clip).astype(np.float64)
            return cache[clip][item.start:item.start + item.frames]

        features = [window(item) for item in items]
        directional = _spread(_directional_items(all_items), settings.max_directional)
        return cls(root=Path(root), items=items, features=features,
                   joints=[features_to_joints(f) for f in features], directional=directional,
                   directional_joints=[features_to_joints(window(item)) for item, _ in directional],
                   all_items=all_items)


# ---------------------------------------------------------------------------------------------------------------
# the evaluator (text and motion encoders trained for evaluation only)
# ---------------------------------------------------------------------------------------------------------------

class Evaluator:
    """Unit text and motion embeddings from the evaluation encoders; motions are given as raw 263-d features and
    normalised with the statistics the evaluator was trained with."""

    def __init__(self, model, normalizer, path: Path, device):
        self.model = model
        self.normalizer = normalizer
        self.path = path
        self.device = device

    def embed_texts(self, texts: Sequence[str], chunk: int = 256) -> np.ndarray:
        import torch

        rows = []
        with torch.no_grad():
            for start in range(0, len(texts), chunk):
                rows.append(self.model.encode_text(list(texts[start:start + chunk])).sentence.float().cpu().numpy())
        return np.concatenate(rows).astype(np.float64)

    def embed_motions(self, features: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """(N, D) embeddings; batches of similar length so that little padding enters the encoder."""
        import torch

        order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
        out = np.zeros((len(features), self.model.embed_dim))
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                longest = max(features[i].shape[0] for i in chunk)
                batch = torch.zeros(len(chunk), longest, features[chunk[0]].shape[1])
                valid = torch.zeros(len(chunk), longest, dtype=torch.bool)
                for row, index in enumerate(chunk):
                    frames = features[index].shape[0]
                    batch[row, :frames] = torch.from_numpy(self.normalizer.normalize(features[index]).astype(np.float32))
                    valid[row, :frames] = True
                embedded = self.model.encode_motion(batch.to(self.device), valid.to(self.device))
                out[chunk] = embedded.float().cpu().numpy()
        return out


def load_evaluator(folder: str | Path, device: str = "cpu") -> Evaluator:
    """The evaluator of a bundle or run folder: ``evaluator.safetensors`` + ``evaluator.json`` + Mean/Std.npy."""
    import torch

    from ..humanml3d.normalizer import Normalizer
    from ..model.configs import AlignerConfig
    from ..model.text_encoder import MiniLMTextEncoder
    from ..model.text_motion_aligner import TextMotionAligner
    from ..training.checkpoint import load_weights

    folder = Path(folder)
    weights, config_path = folder / "evaluator.safetensors", folder / "evaluator.json"
    if not folder.is_dir():
        raise InputFileError(folder, "evaluator folder not found")
    for path in (weights, config_path):
        if not path.is_file():
            raise InputFileError(path, "not found: the evaluator is trained by `kmm-train evaluator` (or "
                                       "`kmm-train all`) and copied into bundles; pass --evaluator FOLDER")
    try:
        config = AlignerConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")), "evaluator")
    except json.JSONDecodeError as error:
        raise InputFileError(config_path, f"invalid JSON: {error.msg}", line=error.lineno) from None
    torch_device = torch.device(device)
    model = TextMotionAligner(config)
    load_weights(model, weights)
    model = model.float().to(torch_device).eval().requires_grad_(False)
    model.attach_text_encoder(MiniLMTextEncoder().to(torch_device))
    return Evaluator(model, Normalizer.from_folder(folder), folder, torch_device)


# ---------------------------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------------------------

def generate_features(bundle, prompts: Sequence[str], frames: Sequence[int], seed: int,
                      batch_size: int = 32, use_residual: bool = True) -> list[np.ndarray]:
    """Raw (frames_i, 263) features generated for each prompt with the bundle's decoding settings.

    ``use_residual=False`` decodes the base quantizer layer only (the residual predictor's ablation).

    Batches hold prompts of similar length; one torch.Generator seeded with `seed` drives all sampling, so the
    same bundle, prompts and seed give the same motions.
    """
    import torch

    from ..generation.timeline_generator import bundle_decoding_config, prompt_embeddings
    from ..model.decoding import decode_tokens

    config = bundle_decoding_config(bundle)
    device = next(bundle.generator.parameters()).device
    rng = torch.Generator()
    rng.manual_seed(int(seed))
    order = sorted(range(len(prompts)), key=lambda i: frames[i])
    out: list[np.ndarray | None] = [None] * len(prompts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            lengths = [int(frames[i]) for i in chunk]
            sentence = prompt_embeddings(bundle, [prompts[i] for i in chunk])
            result = decode_tokens(bundle.generator, lengths, sentence=sentence, config=config, rng=rng,
                                   use_residual=use_residual)
            for row, index in enumerate(chunk):
                tokens = math.ceil(lengths[row] / FRAMES_PER_TOKEN)
                codes = result.codes[row:row + 1, :tokens].to(device)
                decoded = bundle.tokenizer.decode(codes, num_frames=lengths[row])[0]
                out[index] = bundle.normalizer.denormalize(decoded.float().cpu().numpy().astype(np.float64))
    return out  # type: ignore[return-value]


def _timeline(prompts: Sequence[str], frames: Sequence[int]):
    from ..generation.timeline import Segment, Timeline

    return Timeline(tuple(Segment(prompt, int(count)) for prompt, count in zip(prompts, frames, strict=True)), FPS)


def transition_timelines(items: Sequence[EvalItem], count: int, segments: int, seed: int):
    """`count` timelines of `segments` captions of different items, each segment as long as its item's motion."""
    rng = np.random.default_rng([seed, 11])
    timelines = []
    for _ in range(count):
        chosen = rng.choice(len(items), size=min(segments, len(items)), replace=False)
        prompts = [items[i].captions[int(rng.integers(len(items[i].captions)))] for i in chosen]
        timelines.append(_timeline(prompts, [items[i].frames for i in chosen]))
    return timelines


def timing_timeline(items: Sequence[EvalItem], seconds: float):
    """A timeline of `seconds` made of 10-second segments with the split's first captions."""
    total = int(round(seconds * FPS))
    lengths = [200] * (total // 200) + ([total % 200] if total % 200 else [])
    prompts = [items[i % len(items)].captions[0] for i in range(len(lengths))]
    return _timeline(prompts, lengths)


def count_parameters(bundle) -> int:
    """Parameters of the generating model: tokenizer + generator (+ aligner when it conditions the generator).
    The frozen MiniLM sentence encoder (22.7 M, shared by all) and the evaluator are not counted."""
    modules = [bundle.tokenizer, bundle.generator]
    if bundle.text_conditioner.source == "aligner" and bundle.aligner is not None:
        modules.append(bundle.aligner)
    return int(sum(p.numel() for module in modules for p in module.parameters()))


def tokenizer_reconstruction(bundle, features: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """(per-clip MPJPE in mm of root-relative joints, perplexity of the first codebook over all tokens)."""
    import torch

    device = next(bundle.tokenizer.parameters()).device
    errors, codes_used = [], []
    with torch.no_grad():
        for clip in features:
            normalised = torch.from_numpy(bundle.normalizer.normalize(clip).astype(np.float32))[None].to(device)
            codes = bundle.tokenizer.encode(normalised)
            decoded = bundle.tokenizer.decode(codes, num_frames=clip.shape[0])[0].float().cpu().numpy()
            real = features_to_joints(clip)
            recon = features_to_joints(bundle.normalizer.denormalize(decoded.astype(np.float64)))
            real, recon = real - real[:, :1], recon - recon[:, :1]
            errors.append(1000.0 * float(np.linalg.norm(real - recon, axis=-1).mean()))
            first = codes[0, :, 0].cpu().numpy()
            codes_used.append(first[first >= 0])
    counts = np.bincount(np.concatenate(codes_used), minlength=bundle.tokenizer.codebook_size).astype(np.float64)
    probabilities = counts[counts > 0] / counts.sum()
    return np.asarray(errors), float(np.exp(-(probabilities * np.log(probabilities)).sum()))


# ---------------------------------------------------------------------------------------------------------------
# metrics of one replication
# ---------------------------------------------------------------------------------------------------------------

def _r_precision_batch(count: int) -> int:
    return min(R_PRECISION_BATCH, count)


def _text_motion_metrics(text: np.ndarray, motion: np.ndarray, real: np.ndarray, seed: int) -> dict[str, float]:
    batch = _r_precision_batch(len(text))
    precision = r_precision(text, motion, batch_size=batch, top_k=min(R_PRECISION_TOP_K, batch), seed=seed)
    metrics = {f"r_precision_top{k + 1}": float(value) for k, value in enumerate(precision)}
    metrics.update(fid=fid(real, motion), diversity=diversity(motion, seed=seed), mm_distance=mm_distance(text, motion))
    return metrics


def _skating(joints: Sequence[np.ndarray]) -> float:
    return float(np.mean([foot_skating(j, FPS).skating_ratio for j in joints]))


def _joint_metrics(joints: Sequence[np.ndarray]) -> dict[str, float]:
    """Whole-motion mean jerk, foot skating and floor penetration (mean depth, mm) of some motions."""
    return {"mean_jerk": mean_jerk(joints, FPS), "foot_skating_ratio": _skating(joints),
            "floor_penetration_mm": 1000.0 * float(np.mean([floor_penetration(j).mean_depth for j in joints]))}


def generated_joints(features: Sequence[np.ndarray], foot_lock: bool) -> list[np.ndarray]:
    """Joints of generated features (20 fps), with the foot-contact cleanup of generate_timeline when `foot_lock`."""
    from ..foot_contact import clean_foot_contacts
    from ..humanml3d.features import FOOT_CONTACTS

    joints = [features_to_joints(f) for f in features]
    if not foot_lock:
        return joints
    return [clean_foot_contacts(j, FPS, f[:, FOOT_CONTACTS]).joints for j, f in zip(joints, features, strict=True)]


class ReplicationCache:
    """What every row of one evaluation shares: captions and their evaluator embeddings per seed, real embeddings."""

    def __init__(self, data: EvaluationData, evaluator: Evaluator, settings: EvaluationSettings):
        self.data, self.evaluator, self.settings = data, evaluator, settings
        self.real = evaluator.embed_motions(data.features, settings.batch_size)
        self._texts: dict[int, tuple[list[str], np.ndarray]] = {}
        self.jerk_level = ground_truth_jerk_level(data.joints, FPS)

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
        runs.append(_text_motion_metrics(text, cache.real, cache.real, seed))
    metrics: dict[str, Any] = {key: metric_entry(value) for key, value in summarize_runs(runs).items()}
    if data.directional:
        report = directional_accuracy([p for _, p in data.directional], data.directional_joints, FPS)
        metrics["directional_accuracy_split"] = metric_entry(report.overall_accuracy)  # seed-independent
    metrics.update({key: metric_entry(value) for key, value in _joint_metrics(data.joints).items()})
    return metrics


def evaluate_bundle(bundle, cache: ReplicationCache, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Every metric of one loaded bundle, each summarised over the replications (or clips / timing runs)."""
    from ..generation.timeline_generator import GenerationOptions, generate_timeline

    data, evaluator, settings = cache.data, cache.evaluator, cache.settings
    options = GenerationOptions(transitions=settings.transitions, foot_lock=settings.foot_lock,
                                smoothing=settings.smoothing)

    def generate(prompts: Sequence[str], lengths: Sequence[int], seed: int) -> list[np.ndarray]:
        """Features as generate_timeline decodes them (smoothed with the same sigma)."""
        return [smooth_decoded_features(f, settings.smoothing)
                for f in generate_features(bundle, prompts, lengths, seed, settings.batch_size)]

    frames = [item.frames for item in data.items]
    paraphrases = _spread(paraphrase_prompts(), settings.max_directional)
    paraphrase_frames = int(round(settings.directional_seconds * FPS))
    runs: list[dict[str, float]] = []
    for seed in settings.seeds:
        log(f"seed {seed}: text-to-motion ({len(data.items)} items)")
        captions, text = cache.captions(seed)
        generated = generate(captions, frames, seed)
        motion = evaluator.embed_motions(generated, settings.batch_size)
        run = _text_motion_metrics(text, motion, cache.real, seed)
        run.update(_joint_metrics(generated_joints(generated, settings.foot_lock)))

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
                prompts, [features_to_joints(m) for m in made], FPS).overall_accuracy
        prompts = [p for _, p in paraphrases]
        made = generate(prompts, [paraphrase_frames] * len(prompts), seed)
        run["directional_accuracy_paraphrase"] = directional_accuracy(
            prompts, [features_to_joints(m) for m in made], FPS).overall_accuracy

        log(f"seed {seed}: transitions ({settings.transition_timelines} timelines)")
        motions, boundaries = [], []
        for index, timeline in enumerate(transition_timelines(data.all_items, settings.transition_timelines,
                                                              settings.transition_segments, seed)):
            result = generate_timeline(bundle, timeline, seed=seed * 1000 + index, options=options)[0]
            motions.append(np.asarray(result.joints, dtype=np.float64))
            boundaries.append(result.segment_frames[1:, 0].tolist())
        jerk = transition_jerk(motions, boundaries, FPS, cache.jerk_level)
        run["transition_peak_jerk"] = jerk.peak_jerk
        run["transition_auj"] = jerk.area_under_jerk
        runs.append(run)

    metrics: dict[str, Any] = {key: metric_entry(value) for key, value in summarize_runs(runs).items()}
    metrics["parameters"] = metric_entry(count_parameters(bundle))

    log(f"timing a {settings.timing_seconds:g} s timeline ({settings.timing_runs} runs)")
    timeline = timing_timeline(data.all_items, settings.timing_seconds)
    warm_up = _timeline([timeline.prompts[0]], [40])
    generate_timeline(bundle, warm_up, seed=0, options=options)  # lazy init, caches
    durations = []
    for run_index in range(settings.timing_runs):
        started = time.perf_counter()
        generate_timeline(bundle, timeline, seed=run_index, options=options)
        durations.append((time.perf_counter() - started) * 60.0 / settings.timing_seconds)
    metrics["generation_seconds_per_minute"] = metric_entry(mean_confidence_interval(durations))

    errors, perplexity = tokenizer_reconstruction(bundle, data.features)
    metrics["tokenizer_mpjpe_mm"] = metric_entry(mean_confidence_interval(errors))
    metrics["codebook_perplexity"] = metric_entry(perplexity)  # one measurement over the whole split
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# the program
# ---------------------------------------------------------------------------------------------------------------

def checkpoint_name(path: Path, manifest: dict[str, Any]) -> str:
    """A row name: bundle.json's "name", else the folder name (with its parent for the usual RUN/bundle)."""
    name = manifest.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.name == "bundle" else path.name


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _all_metric_keys(rows: list[dict[str, Any]]) -> None:
    """Give every row every metric key (None where the metric does not apply), in table order."""
    from .report import METRIC_KEYS

    for row in rows:
        row["metrics"] = {key: row["metrics"].get(key) for key in METRIC_KEYS}


def run_evaluation(checkpoints: Sequence[str | Path], data_root: str | Path, settings: EvaluationSettings,
                   evaluator_path: str | Path | None = None,
                   log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Evaluate every checkpoint (bundle folder) on `data_root`'s split; returns the results document."""
    from ..model_bundle import ModelBundle, read_manifest

    if not checkpoints:
        raise EvaluationError("no checkpoint to evaluate: give --checkpoint BUNDLE or --compare BUNDLE ...")
    # Check every path before any slow work, so a typo fails in a second.
    manifests = [read_manifest(path) for path in checkpoints]
    data_folder = HumanML3DFolder(data_root)
    data_folder.split_names(settings.split)
    if evaluator_path is None:
        with_evaluator = [Path(p) for p, m in zip(checkpoints, manifests, strict=True)
                          if "evaluator" in m.get("components", [])]
        if not with_evaluator:
            raise EvaluationError(f"no evaluator: none of {', '.join(map(str, checkpoints))} contains "
                                  f"evaluator.safetensors; train one with `kmm-train evaluator` and pass its run "
                                  f"folder with --evaluator FOLDER")
        evaluator_path = with_evaluator[0]
    evaluator = load_evaluator(evaluator_path, settings.device)
    log(f"loading {settings.split} split of {data_root}")
    data = EvaluationData.load(data_root, settings)
    cache = ReplicationCache(data, evaluator, settings)
    rows = [{"name": GROUND_TRUTH, "kind": "ground_truth", "checkpoint": None, "metrics": evaluate_ground_truth(cache)}]
    suffix = ("" if settings.foot_lock else " (no foot lock)") + (
        "" if settings.smoothing == DECODED_SMOOTHING_SIGMA else f" (smoothing {settings.smoothing:g})")
    names = _unique([checkpoint_name(Path(p), m) + suffix for p, m in zip(checkpoints, manifests, strict=True)])
    for name, path in zip(names, checkpoints, strict=True):
        log(f"evaluating {name} ({path})")
        bundle = ModelBundle.load(path, device=settings.device)
        rows.append({"name": name, "kind": "checkpoint", "checkpoint": str(Path(path).resolve()),
                     "metrics": evaluate_bundle(bundle, cache, log)})
    _all_metric_keys(rows)
    batch = _r_precision_batch(len(data.items))
    notes = {
        "evaluator": str(Path(evaluator_path).resolve()),
        "items": f"{len(data.items)} of {len(data.all_items)} items of the split",
        "r_precision_chance": f"top-k chance level is k/{batch} (batches of {batch} pairs): "
                              + ", ".join(f"top-{k} {k / batch:.3f}" for k in range(1, min(3, batch) + 1)),
        "directional_prompts": f"{len(data.directional)} side-specific captions of the split; "
                               f"{len(_spread(paraphrase_prompts(), settings.max_directional))} held-out paraphrases",
        "transitions": f"{settings.transition_timelines} timelines x {settings.transition_segments} captions per "
                       f"replication, 1-second windows; ground-truth jerk level {cache.jerk_level:.1f} m/s^3",
        "parameters": "tokenizer + generator (+ aligner when it conditions the generator); MiniLM not counted",
        "ground_truth": "real motion windows are fixed, so FID(ground truth) = 0; its R-precision and MM-Dist are the "
                        "evaluator's ceiling on real data",
    }
    return {"format_version": RESULTS_FORMAT_VERSION,
            "settings": {**asdict(settings), "data": str(Path(data_root).resolve()),
                         "checkpoints": [str(Path(p).resolve()) for p in checkpoints],
                         "r_precision_batch": batch},
            "notes": notes, "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    defaults = EvaluationSettings()
    parser = argparse.ArgumentParser(prog="kmm-train eval",
                                     description="Evaluate KMM model bundles; writes results.json and results.md.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="model bundle folder to evaluate")
    which.add_argument("--compare", type=Path, nargs="+", metavar="BUNDLE",
                       help="several bundle folders: one table row each, all measured with the same evaluator")
    parser.add_argument("--data", type=Path, required=True, help="HumanML3D-layout dataset folder")
    parser.add_argument("--split", default=defaults.split, help="split file to evaluate on (default: test)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    parser.add_argument("--evaluator", type=Path,
                        help="folder with evaluator.safetensors/.json + Mean/Std.npy (default: the first bundle's)")
    parser.add_argument("--replications", type=int, default=defaults.replications)
    parser.add_argument("--seed", type=int, default=defaults.base_seed, help="seed of the first replication")
    parser.add_argument("--max-samples", type=int, default=None, help="use at most this many items of the split")
    parser.add_argument("--mm-texts", type=int, default=defaults.mm_texts)
    parser.add_argument("--mm-generations", type=int, default=defaults.mm_generations)
    parser.add_argument("--max-directional", type=int, default=None,
                        help="use at most this many directional split prompts and paraphrases")
    parser.add_argument("--transition-timelines", type=int, default=defaults.transition_timelines)
    parser.add_argument("--transition-segments", type=int, default=defaults.transition_segments)
    parser.add_argument("--timing-runs", type=int, default=defaults.timing_runs)
    parser.add_argument("--timing-seconds", type=float, default=defaults.timing_seconds,
                        help="length of the timed timeline (default 60; the result is scaled to seconds per minute)")
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, help="cpu (default), cuda, cuda:N, auto")
    parser.add_argument("--transitions", choices=TRANSITION_MODES, default=defaults.transitions,
                        help=f"how timeline prompts meet in the transition and timing metrics (default: "
                             f"{defaults.transitions}, the generation default)")
    parser.add_argument("--no-foot-lock", dest="foot_lock", action="store_false",
                        help="measure the raw decoded motion (default: after the foot-contact cleanup generation "
                             "applies); rows are named '... (no foot lock)'")
    parser.add_argument("--smoothing", type=float, default=defaults.smoothing, metavar="FRAMES",
                        help=f"Gaussian on decoded features, in 20 fps frames (default {defaults.smoothing:g}, as "
                             f"generation; 0: the raw decoder output); other values name the rows '... (smoothing S)'")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 bad input (message on stderr), 2 bad command line (argparse)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    log = (lambda _m: None) if args.quiet else (lambda m: print(f"[kmm-train eval] {m}", file=sys.stderr, flush=True))
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        settings = EvaluationSettings(
            split=args.split, replications=args.replications, base_seed=args.seed, max_samples=args.max_samples,
            mm_texts=args.mm_texts, mm_generations=args.mm_generations, max_directional=args.max_directional,
            transition_timelines=args.transition_timelines, transition_segments=args.transition_segments,
            timing_runs=args.timing_runs, timing_seconds=args.timing_seconds,
            max_frames=args.max_frames, batch_size=args.batch_size,
            device=device, transitions=args.transitions, foot_lock=args.foot_lock, smoothing=args.smoothing)
        checkpoints = [args.checkpoint] if args.checkpoint is not None else list(args.compare)
        results = run_evaluation(checkpoints, args.data, settings, args.evaluator, log)
        json_path, md_path = write_results(results, args.out)
    except KMMError as error:
        print(f"kmm-train eval: error: {error}", file=sys.stderr)
        return 1
    print(f"[kmm-train eval] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
