# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model was trained on: its vocabulary file (``BUNDLE/vocabulary.json``), torch-free.

Written by ``kmm-train bundle`` / ``kmm-train vocabulary`` from the prepared dataset the model was trained on
(``kmm-train prepare``'s index.csv, texts/ and split files), read by ``kmm vocab`` and by the out-of-vocabulary
check of ``kmm generate`` and the worker (``generation/prompt_vocabulary.py``)::

    {
      "format_version": 1,
      "model": "kmm-small",
      "dataset": {"clips": ..., "takes": ..., "sources": ["bandai-namco-1", ...]},
      "actions": [{"dataset": "bandai-namco-2", "content": "walk-turn-left", "takes": 219, "train_takes": 175,
                   "styles": ["active", ...], "examples": ["a man walks forward then turns to the left", ...],
                   "motion": {"walking": 1.0, "steady": 0.02, "standing": 0.0}}],   # what its clips do
      "styles": ["active", ...],
      "captions": {"train": [...], "val": [...],         # distinct captions per split (mirrors included)
                   "train_actions": [...], "val_actions": [...]},   # "dataset/content" of each caption
      "out_of_vocabulary": {...}                          # threshold and its measured rates (added with the
    }                                                     # caption embeddings, vocabulary.safetensors)

Only the train captions count as "known" for the warning; val captions choose its threshold.  An action's
``motion`` is the share of its training clips that walk, walk on a steady heading, stand in place
(``humanml3d/motion_kind.py``, measured on the clips' recorded motion): which decoding a prompt gets follows the
actions of its nearest training captions (``generation/prompt_kinds.py``).
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json, read_text
from ..common.checked_path import checked_join
from ..common.errors import InputFileError
from ..humanml3d.motion_kind import MotionKind, clip_motion_kind, mean_kind

VOCABULARY_FILE = "vocabulary.json"
VOCABULARY_FORMAT_VERSION = 1
EXAMPLES_PER_ACTION = 3


@dataclass(frozen=True)
class Action:
    dataset: str
    content: str
    takes: int
    train_takes: int
    styles: tuple[str, ...]
    examples: tuple[str, ...]
    motion: MotionKind | None = None   # what its training clips do (None: a vocabulary made before it was measured)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.content}"


@dataclass(frozen=True)
class Vocabulary:
    model: str
    actions: tuple[Action, ...]
    styles: tuple[str, ...]
    train_captions: tuple[str, ...]
    val_captions: tuple[str, ...]
    train_actions: tuple[str, ...] = ()   # "dataset/content" of each train caption (first clip it came from)
    val_actions: tuple[str, ...] = ()
    dataset: dict[str, Any] = field(default_factory=dict)
    out_of_vocabulary: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def action_motion(self) -> dict[str, MotionKind]:
        """"dataset/content" -> what its training clips do, for the actions whose motion was measured."""
        return {action.name: action.motion for action in self.actions if action.motion is not None}

    @property
    def action_words(self) -> tuple[str, ...]:
        """Distinct content labels (across datasets), sorted."""
        return tuple(sorted({action.content for action in self.actions}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": VOCABULARY_FORMAT_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "actions": [{"dataset": a.dataset, "content": a.content, "takes": a.takes, "train_takes": a.train_takes,
                         "styles": list(a.styles), "examples": list(a.examples)}
                        | ({"motion": a.motion.to_dict()} if a.motion is not None else {}) for a in self.actions],
            "styles": list(self.styles),
            "captions": {"train": list(self.train_captions), "val": list(self.val_captions),
                         "train_actions": list(self.train_actions), "val_actions": list(self.val_actions)},
            "out_of_vocabulary": self.out_of_vocabulary,
        }


def read_clip_captions(texts_dir: Path, name: str, where: str) -> list[str]:
    path = checked_join(texts_dir, name, suffix=".txt", single=True, where=where)  # never outside texts/
    lines = read_text(path, "captions").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def read_index_rows(folder: Path) -> tuple[Path, list[dict[str, str]]]:
    index = folder / "index.csv"
    if not index.is_file():
        raise InputFileError(index, "not found: the vocabulary is built from a folder written by kmm-train prepare")
    with io.StringIO(read_text(index, "index"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"name", "take", "dataset", "content", "style", "split", "mirrored"}
    if not rows or needed - set(rows[0]):
        raise InputFileError(index, f"expected the columns {', '.join(sorted(needed))}")
    return index, rows


def _action_motion(folder: Path, index: Path, rows: list[dict[str, str]]) -> dict[str, MotionKind]:
    """"dataset/content" -> the mean kind of its original (not mirrored) training clips (``motion_kind.py``); {} for
    a folder without features (captions alone: nothing to measure)."""
    kinds: dict[str, list[MotionKind]] = {}
    if not (folder / "new_joint_vecs").is_dir():
        return {}
    for line, row in enumerate(rows, start=2):
        if row["split"] == "train" and row["mirrored"] == "0":
            features = read_clip_features(folder, row["name"], f"{index}, line {line}, name")
            kinds.setdefault(f"{row['dataset']}/{row['content']}", []).append(clip_motion_kind(features))
    return {name: mean_kind(values) for name, values in kinds.items()}


def measure_action_motion(dataset_dir: str | Path, vocabulary: Vocabulary) -> Vocabulary:
    """`vocabulary` with each action's ``motion`` measured on the training clips of a folder written by
    ``kmm-train prepare`` (actions it has no training clip of keep what they had); captions and everything else
    unchanged (``kmm-train vocabulary --motion-only``).  A folder with a training clip of none of the vocabulary's
    actions (another model's data, or no features) is refused, naming its index."""
    folder = Path(dataset_dir)
    index, rows = read_index_rows(folder)
    motion = _action_motion(folder, index, rows)
    if not any(action.name in motion for action in vocabulary.actions):
        raise InputFileError(index, f"no training clip (split train, not mirrored, features in new_joint_vecs/) of "
                                    f"any of the model's {len(vocabulary.actions)} actions: nothing to measure")
    return replace(vocabulary, actions=tuple(replace(a, motion=motion.get(a.name, a.motion))
                                             for a in vocabulary.actions))


def read_clip_features(folder: Path, name: str, where: str) -> np.ndarray:
    """The (T, 263) features of clip `name` (``new_joint_vecs/<name>.npy``, never outside it; never unpickled)."""
    path = checked_join(folder / "new_joint_vecs", name, suffix=".npy", single=True, where=where)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputFileError(path, f"cannot read the clip's features: {error}") from None


def vocabulary_from_dataset(dataset_dir: str | Path, model: str, seed: int = 0) -> Vocabulary:
    """The vocabulary of a folder written by ``kmm-train prepare`` (index.csv, texts/, train/val split)."""
    folder = Path(dataset_dir)
    index, rows = read_index_rows(folder)
    captions: dict[str, dict[str, str]] = {"train": {}, "val": {}}   # caption -> action of its first clip
    per_action: dict[tuple[str, str], dict[str, Any]] = {}
    styles: set[str] = set()
    for line, row in enumerate(rows, start=2):
        key = (row["dataset"], row["content"])
        entry = per_action.setdefault(key, {"takes": set(), "train_takes": set(), "styles": set(), "captions": []})
        entry["takes"].add(row["take"])
        if row["style"]:
            entry["styles"].add(row["style"])
            styles.add(row["style"])
        texts = read_clip_captions(folder / "texts", row["name"], f"{index}, line {line}, name")
        if row["split"] in captions:
            for text in texts:
                captions[row["split"]].setdefault(text, f"{row['dataset']}/{row['content']}")
        if row["split"] == "train":
            entry["train_takes"].add(row["take"])
            if row["mirrored"] == "0":
                entry["captions"].extend(texts)
    motion = _action_motion(folder, index, rows)
    actions = []
    for (dataset, content), entry in sorted(per_action.items()):
        if not entry["train_takes"]:
            continue   # only in val/test: the model never trained on it
        distinct = sorted(set(entry["captions"]))
        random.Random(f"{seed}|{dataset}|{content}").shuffle(distinct)
        actions.append(Action(dataset, content, len(entry["takes"]), len(entry["train_takes"]),
                              tuple(sorted(entry["styles"])), tuple(distinct[:EXAMPLES_PER_ACTION]),
                              motion.get(f"{dataset}/{content}")))
    summary = {"clips": len(rows), "takes": len({row["take"] for row in rows}),
               "sources": sorted({row["dataset"] for row in rows})}
    train, val = sorted(captions["train"]), sorted(captions["val"])
    return Vocabulary(model=model, actions=tuple(actions), styles=tuple(sorted(styles)),
                      train_captions=tuple(train), val_captions=tuple(val),
                      train_actions=tuple(captions["train"][c] for c in train),
                      val_actions=tuple(captions["val"][c] for c in val), dataset=summary)


MOTION_KEYS = ("walking", "steady", "standing")


def _share(value: Any) -> float:
    share = float(value)
    if not 0.0 <= share <= 1.0:   # NaN fails too
        raise ValueError(f"a motion share must be a number from 0 to 1, got {value!r}")
    return share


def vocabulary_from_dict(data: Any, path: str = "<dict>") -> Vocabulary:
    def fail(message: str) -> InputFileError:
        return InputFileError(path, f"vocabulary: {message}")

    if not isinstance(data, dict):
        raise fail("the top level must be a JSON object")
    if data.get("format_version") != VOCABULARY_FORMAT_VERSION:
        raise fail(f"format_version {data.get('format_version')!r} is not the supported {VOCABULARY_FORMAT_VERSION}")
    actions = []
    for index, entry in enumerate(data.get("actions") or []):
        try:
            motion = entry.get("motion")
            kind = None if motion is None else MotionKind(*(_share(motion[key]) for key in MOTION_KEYS))
            actions.append(Action(str(entry["dataset"]), str(entry["content"]), int(entry["takes"]),
                                  int(entry["train_takes"]), tuple(map(str, entry.get("styles", []))),
                                  tuple(map(str, entry.get("examples", []))), kind))
        except (KeyError, TypeError, ValueError) as error:
            raise fail(f"actions[{index}]: {error!r}") from None
    captions = data.get("captions")
    if not isinstance(captions, dict) or not isinstance(captions.get("train"), list):
        raise fail("'captions' must hold a 'train' list")
    train_actions = tuple(map(str, captions.get("train_actions", [])))
    if train_actions and len(train_actions) != len(captions["train"]):
        raise fail("'captions.train_actions' must have one entry per training caption")
    return Vocabulary(model=str(data.get("model", "")), actions=tuple(actions),
                      styles=tuple(map(str, data.get("styles", []))),
                      train_captions=tuple(map(str, captions["train"])),
                      val_captions=tuple(map(str, captions.get("val", []))),
                      train_actions=train_actions, val_actions=tuple(map(str, captions.get("val_actions", []))),
                      dataset=dict(data.get("dataset") or {}),
                      out_of_vocabulary=dict(data.get("out_of_vocabulary") or {}), path=path)


def read_vocabulary(bundle_dir: str | Path) -> Vocabulary:
    """``vocabulary.json`` of a bundle folder; InputFileError naming the file when missing or malformed."""
    path = Path(bundle_dir) / VOCABULARY_FILE
    if not path.is_file():
        raise InputFileError(path, "no vocabulary file in this model bundle (bundles made before it existed: "
                                   "`kmm-train vocabulary --dataset <prepared data> --bundle <bundle>` adds it)")
    return vocabulary_from_dict(read_json(path, "vocabulary"), str(path))


def write_vocabulary(bundle_dir: str | Path, vocabulary: Vocabulary) -> Path:
    """Write ``vocabulary.json`` atomically (common/atomic_write.py)."""
    return write_text_atomic(Path(bundle_dir) / VOCABULARY_FILE,
                             json.dumps(vocabulary.to_dict(), indent=1, ensure_ascii=False) + "\n")


def format_vocabulary(vocabulary: Vocabulary) -> str:
    """The human-readable listing of ``kmm vocab``."""
    lines = [f"Model {vocabulary.model or '?'} was trained on {len(vocabulary.actions)} actions "
             f"({len(vocabulary.action_words)} distinct action words) from "
             f"{', '.join(vocabulary.dataset.get('sources', [])) or 'unknown sources'}.", ""]
    lines.append("Actions (dataset/content: training takes; example prompts):")
    for action in vocabulary.actions:
        lines.append(f"  {action.dataset}/{action.content}: {action.train_takes} takes")
        lines += [f"      \"{example}\"" for example in action.examples]
    if vocabulary.styles:
        lines += ["", "Styles: " + ", ".join(vocabulary.styles)]
    ood = vocabulary.out_of_vocabulary
    if ood.get("threshold") is not None:
        lines += ["", f"Prompts whose similarity to every training caption is below {ood['threshold']:.2f} "
                      f"({ood.get('space', '?')} space) get an out-of-vocabulary warning "
                      f"({len(vocabulary.train_captions)} distinct training captions)."]
    return "\n".join(lines) + "\n"
