# SPDX-License-Identifier: GPL-3.0-or-later
"""Cut a bundle's real gait cycles (``bundle/gait_cycles.py``) from the training split it was trained on:
``kmm-train gait-cycles --dataset DIR --bundle BUNDLE``.

The clips: the training split's clips (mirrored ones included, so left and right lead alike) of the datasets the
bundle was trained on (``bundle.json``'s ``dataset.per_dataset``), that walk or run on a steady heading as
``humanml3d/motion_kind.py`` measures them (never by their captions' words).  In each, the straight steady
stretches (``evaluation/gait.steady_windows`` of `WINDOW_SECONDS`, those that follow on one another joined, so
the strides a walker took one after another stay one after another) are cut at the left foot's heel strikes
(``evaluation/gait.foot_down``): a cycle runs from one to the next, with exactly one right heel strike between,
lasts `MIN_SECONDS` to `MAX_SECONDS`, its two steps differ in time by at most `MAX_STEP_ASYMMETRY` of their mean
and its pelvis rises over each stance leg (at least `MIN_PELVIS_BOB` of the pelvis height's power at two rises a
stride against one, as ``evaluation/gait.py`` measures a walk): a stumble, a stop or a limp is not a stride to
play, and a stride that rises over one leg much more than over the other bobs half like a limp where it is played
twice (the real walks' 3-s windows: at least 0.84 at the 10th percentile; at 0.5, 2,194 strides of kmm-small's
split, at 0.8, 2,066: 21 of CMU's 51 and 128 of all were such).  Each cycle is resampled to the format's phases;
beside it, the frames it spans in its clip (which stride followed it) and its clip's captions embedded in the text
space of the bundle's prompt check (so a prompt finds the cycles whose captions it is nearest).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..bundle.gait_cycles import CYCLE_CHANNELS, PHASE_SAMPLES, GaitCycles, write_gait_cycles
from ..bundle.model_bundle import BUNDLE_FILE
from ..bundle.vocabulary import read_clip_captions, read_clip_features, read_index_rows, read_vocabulary
from ..common.errors import InputFileError
from ..evaluation.gait import foot_down, heel_strikes, steady_windows
from ..humanml3d.features import ROOT_XZ_VELOCITY, features_to_joints
from ..humanml3d.motion_kind import FEATURES_FPS, clip_motion_kind, leg_length

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle.model_bundle import ModelBundle

WINDOW_SECONDS = 2.0
MIN_SECONDS = 0.45
MAX_SECONDS = 1.6
MAX_STEP_ASYMMETRY = 0.15
MIN_PELVIS_BOB = 0.8


def steady_stretches(joints: np.ndarray, fps: float) -> list[slice]:
    """The clip's straight steady windows of `WINDOW_SECONDS`, those that follow on one another joined."""
    stretches: list[slice] = []
    for window in steady_windows(joints, fps, WINDOW_SECONDS):
        if stretches and stretches[-1].stop == window.start:
            stretches[-1] = slice(stretches[-1].start, window.stop)
        else:
            stretches.append(window)
    return stretches


def cycle_frames(features: np.ndarray, fps: float = FEATURES_FPS) -> list[tuple[int, int]]:
    """[(first, last)] feature frames of each gait cycle of one clip (module docstring): left heel strike to the
    next, both included, first to last (a cycle that starts on the frame another ends is the stride after it)."""
    joints = features_to_joints(features)
    legs = leg_length(joints)
    cycles = []
    for window in steady_stretches(joints, fps):
        part = joints[window]
        left = heel_strikes(foot_down(part, fps, "left", legs))
        right = heel_strikes(foot_down(part, fps, "right", legs))
        for first, last in zip(left[:-1], left[1:], strict=True):
            between = right[(right > first) & (right < last)]
            if len(between) != 1 or not MIN_SECONDS <= (last - first) / fps <= MAX_SECONDS:
                continue
            asymmetry = abs((between[0] - first) - (last - between[0])) / ((last - first) / 2.0)
            height = joints[window.start + first:window.start + last, 0, 1]
            power = np.abs(np.fft.rfft(height - height.mean())[1:3]) ** 2
            if asymmetry <= MAX_STEP_ASYMMETRY and power[1] >= MIN_PELVIS_BOB * max(power.sum(), 1e-18):
                cycles.append((window.start + int(first), window.start + int(last)))
    return cycles


def cycle_samples(features: np.ndarray, first: int, last: int) -> np.ndarray:
    """(PHASE_SAMPLES + 1, len(CYCLE_CHANNELS)) the cycle's channels at evenly spaced phases, linearly
    interpolated between frames (phase 0: frame `first`, phase 1: frame `last`)."""
    frames = np.arange(last - first + 1)
    phases = np.linspace(0.0, last - first, PHASE_SAMPLES + 1)
    part = np.asarray(features, dtype=np.float64)[first:last + 1][:, CYCLE_CHANNELS]
    return np.stack([np.interp(phases, frames, part[:, channel]) for channel in range(part.shape[1])], axis=1)


def trained_datasets(bundle: ModelBundle) -> set[str]:
    """The datasets the bundle was trained on (``bundle.json``'s ``dataset.per_dataset``, as loaded)."""
    per_dataset = (bundle.config.get("dataset") or {}).get("per_dataset")
    if not isinstance(per_dataset, dict) or not per_dataset:
        raise InputFileError(bundle.path / BUNDLE_FILE, "names no datasets (dataset.per_dataset): the cycles are "
                                                        "cut only from the data the model saw")
    return set(per_dataset)


def gait_cycles_from_dataset(bundle: ModelBundle, dataset_dir: str | Path, fps: float = FEATURES_FPS
                             ) -> tuple[GaitCycles, dict[str, int]]:
    """The bundle's gait cycles from a folder written by ``kmm-train prepare`` and the cycles per dataset."""
    from ..generation.prompt_vocabulary import CHECK_SPACE, embed_texts

    folder = Path(dataset_dir)
    index, rows = read_index_rows(folder)
    datasets = trained_datasets(bundle)
    samples, speeds, durations, clips, frames, captions = [], [], [], [], [], {}
    for line, row in enumerate(rows, start=2):
        if row["split"] != "train" or row["dataset"] not in datasets:
            continue
        where = f"{index}, line {line}, name"
        features = read_clip_features(folder, row["name"], where)
        if features.shape[0] < WINDOW_SECONDS * fps or not clip_motion_kind(features, fps).steady:
            continue
        for first, last in cycle_frames(features, fps):
            samples.append(cycle_samples(features, first, last))
            speeds.append(float(np.linalg.norm(features[first:last, ROOT_XZ_VELOCITY], axis=1).mean() * fps))
            durations.append((last - first) / fps)
            clips.append(row["name"])
            frames.append((first, last))
            captions.setdefault(row["name"], (row["dataset"], read_clip_captions(folder / "texts", row["name"],
                                                                                  where)))
    if not samples:
        raise InputFileError(index, f"no steady walk or run in the training split of {', '.join(sorted(datasets))}: "
                                    "no gait cycle to cut")
    try:
        space = read_vocabulary(bundle.path).out_of_vocabulary.get("space", CHECK_SPACE)
    except InputFileError:
        space = CHECK_SPACE
    names = sorted(captions)
    texts = [text for name in names for text in captions[name][1]]
    embedded = embed_texts(bundle, texts, space)
    clip_embedding, row = {}, 0
    for name in names:
        count = len(captions[name][1])
        mean = embedded[row:row + count].mean(axis=0)
        clip_embedding[name] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        row += count
    counts: dict[str, int] = {}
    for name in clips:
        counts[captions[name][0]] = counts.get(captions[name][0], 0) + 1
    cycles = GaitCycles(samples=np.stack(samples), speed=np.array(speeds), duration=np.array(durations),
                        embeddings=np.stack([clip_embedding[name] for name in clips]).astype(np.float32),
                        space=space, clips=tuple(clips), frames=np.array(frames, dtype=np.int64))
    return cycles, dict(sorted(counts.items()))


def add_gait_cycles(bundle_dir: str | Path, dataset_dir: str | Path) -> str:
    """Cut, write and checksum the bundle's gait cycles and say so in its model card; a line saying what was
    written."""
    from ..bundle.model_bundle import ModelBundle
    from .bundle_writer import record_checksums
    from .model_card import add_gait_cycles_section

    bundle = ModelBundle.load(bundle_dir, device="cpu")
    cycles, counts = gait_cycles_from_dataset(bundle, dataset_dir)
    write_gait_cycles(bundle_dir, cycles, counts)
    add_gait_cycles_section(bundle_dir, len(cycles), counts, float(np.median(cycles.duration)),
                            float(np.median(cycles.speed)))
    record_checksums(bundle_dir)
    per = ", ".join(f"{name} {count}" for name, count in counts.items())
    return (f"{len(cycles)} gait cycles ({per}; {np.median(cycles.duration):.2f} s and "
            f"{np.median(cycles.speed):.2f} m/s at the median) written to {bundle_dir}")
