# SPDX-License-Identifier: GPL-3.0-or-later
"""The data of an evaluation: the items of a dataset split with fixed motion windows, their captions, the
side-specific (directional) items and the paraphrase prompts.

Part of ``kmm-train eval`` (``evaluate.py``); docs/evaluation.md explains each number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..humanml3d.dataset_folder import HumanML3DFolder
from ..humanml3d.features import features_to_joints
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from .directional import parse_directional_intent
from .settings import EvaluationError, EvaluationSettings


@dataclass(frozen=True)
class EvalItem:
    """One evaluation item: a motion window [start, start + frames) of clip `name` and the captions describing it."""

    name: str
    captions: tuple[str, ...]
    start: int
    frames: int
    content: str = ""
    style: str = ""


def _window_frames(available: int, settings: EvaluationSettings) -> int:
    length = min(available, settings.max_frames) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    return length if length >= settings.min_frames else 0


def _read_content_labels(root: Path) -> dict[str, tuple[str, str]]:
    """Clip name -> (content label, style) from a prepared folder's index.csv ({} for other folders)."""
    from ..data.prepare import INDEX_CSV, read_index

    if not (root / INDEX_CSV).is_file():
        return {}
    return {row["name"]: (row.get("content", ""), row.get("style", "")) for row in read_index(root)}


def window_reader(folder: HumanML3DFolder) -> Callable[[EvalItem], np.ndarray]:
    """item -> its window of raw features (float64), each clip's file read once."""
    cache: dict[str, np.ndarray] = {}

    def window(item: EvalItem) -> np.ndarray:
        clip = item.name.split("@")[0]
        if clip not in cache:
            cache[clip] = folder.load_features(clip).astype(np.float64)
        return cache[clip][item.start:item.start + item.frames]

    return window


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
            start = min(int(round(caption.start * MODEL_FPS)), frames)
            end = min(int(round(caption.end * MODEL_FPS)), frames) if caption.end > caption.start else frames
            length = _window_frames(end - start, settings)
            if length:
                items.append(EvalItem(f"{name}@{start}", (caption.text,), start, length,
                                      *contents.get(name, ("", ""))))
        length = _window_frames(frames, settings)
        if whole and length:
            items.append(EvalItem(name, tuple(whole), 0, length, *contents.get(name, ("", ""))))
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


def directional_items(items: Sequence[EvalItem]) -> list[tuple[EvalItem, str]]:
    """(item, first caption with a side-specific intent) of every item that has one."""
    found = []
    for item in items:
        for caption in item.captions:
            if parse_directional_intent(caption) is not None:
                found.append((item, caption))
                break
    return found


def spread(values: Sequence, limit: int | None) -> list:
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
        window = window_reader(folder)
        features = [window(item) for item in items]
        directional = spread(directional_items(all_items), settings.max_directional)
        return cls(root=Path(root), items=items, features=features,
                   joints=[features_to_joints(f) for f in features], directional=directional,
                   directional_joints=[features_to_joints(window(item)) for item, _ in directional],
                   all_items=all_items)
