# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and write a dataset folder in HumanML3D's layout.

::

    ROOT/new_joints/NAME.npy       (T, 22, 3) float32 joints recovered from the features
    ROOT/new_joint_vecs/NAME.npy   (T, 263) float32 features
    ROOT/texts/NAME.txt            one caption a line: ``caption#tokens#start#end``
    ROOT/Mean.npy, ROOT/Std.npy    (263,) statistics
    ROOT/train.txt, val.txt, test.txt  one clip name a line

Caption lines: ``tokens`` are space-separated ``word/TAG`` pairs (HumanML3D tags words with spaCy; we have no
tagger, so we write ``word/OTHER``, and read any tag); ``start``/``end`` are seconds within the clip, and
``0.0#0.0`` (or NaN, which HumanML3D's loaders treat as 0) means the whole clip.  Folders may lack ``texts/``
(the public HumanML3D release does): only asking for the captions of such a clip is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.bounded_read import read_text
from ..common.checked_path import checked_join
from ..common.errors import InputFileError, KMMError
from ..motion.skeleton import NUM_JOINTS
from .features import FEATURE_DIM, features_to_joints
from .normalizer import MEAN_FILE, Normalizer

JOINTS_DIR = "new_joints"
FEATURES_DIR = "new_joint_vecs"
TEXTS_DIR = "texts"
UNKNOWN_TAG = "OTHER"

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
_WORD_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class DatasetFolderError(KMMError, ValueError):
    """Something given to a dataset-folder writer cannot be stored in HumanML3D's layout."""


@dataclass(frozen=True)
class Caption:
    """One caption of a clip; ``start``/``end`` in seconds, both 0.0 for the whole clip."""

    text: str
    tokens: tuple[str, ...] = ()
    start: float = 0.0
    end: float = 0.0

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0


def tokenize_caption(text: str) -> tuple[str, ...]:
    """``word/OTHER`` tokens of a caption: lower-case words and numbers, punctuation dropped."""
    return tuple(f"{word}/{UNKNOWN_TAG}" for word in _WORD_PATTERN.findall(text.lower()))


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name) or name in {".", ".."}:
        raise DatasetFolderError(f"clip name {name!r}: use letters, digits, '_', '-', '.' only (it becomes a file name)")
    return name


def _parse_time(field: str, label: str, path: Path, line: int) -> float:
    try:
        value = float(field)
    except ValueError as error:
        raise InputFileError(path, f"{label} {field!r} is not a number of seconds", line=line) from error
    if math.isnan(value):
        return 0.0  # HumanML3D's loaders read NaN as "from the start / to the end"
    if value < 0 or math.isinf(value):
        raise InputFileError(path, f"{label} {field!r} must be a finite number of seconds >= 0", line=line)
    return value


def parse_caption_line(line: str, path: Path | str, line_number: int) -> Caption:
    """Parse one ``caption#tokens#start#end`` line; errors name ``path`` and ``line_number``."""
    path = Path(path)
    # The caption itself may contain '#': the last three fields are fixed, so split from the right.
    fields = line.rstrip("\r\n").rsplit("#", 3)
    if len(fields) != 4:
        raise InputFileError(path, f"expected 'caption#tokens#start#end', got {line.strip()!r}", line=line_number)
    text, tokens_field, start_field, end_field = fields
    text = text.strip()
    if not text:
        raise InputFileError(path, "empty caption", line=line_number)
    tokens = tuple(tokens_field.split())
    for token in tokens:
        word, slash, tag = token.rpartition("/")
        if not slash or not word or not tag:
            raise InputFileError(path, f"token {token!r} is not of the form word/TAG", line=line_number)
    start = _parse_time(start_field, "start", path, line_number)
    end = _parse_time(end_field, "end", path, line_number)
    if end != 0.0 and end < start:
        raise InputFileError(path, f"end {end} is before start {start}", line=line_number)
    return Caption(text=text, tokens=tokens, start=start, end=end)


def format_caption_line(caption: Caption) -> str:
    """``caption#tokens#start#end`` (tokens generated from the text when the caption has none)."""
    text = caption.text.strip()
    if not text:
        raise DatasetFolderError("caption text is empty")
    if "\n" in text or "\r" in text:
        raise DatasetFolderError(f"caption {text!r} contains a line break")
    if "#" in text:
        # HumanML3D's own loaders split lines on every '#', so a '#' in the caption would corrupt them.
        raise DatasetFolderError(f"caption {text!r} contains '#', the field separator of caption lines")
    tokens = caption.tokens or tokenize_caption(text)
    for token in tokens:
        if "#" in token or any(ch.isspace() for ch in token) or "/" not in token:
            raise DatasetFolderError(f"caption {text!r}: token {token!r} must be word/TAG without spaces or '#'")
    for label, value in (("start", caption.start), ("end", caption.end)):
        if not math.isfinite(value) or value < 0:
            raise DatasetFolderError(f"caption {text!r}: {label} {value} must be a finite number of seconds >= 0")
    if caption.end != 0.0 and caption.end < caption.start:
        raise DatasetFolderError(f"caption {text!r}: end {caption.end} is before start {caption.start}")
    return f"{text}#{' '.join(tokens)}#{float(caption.start)}#{float(caption.end)}"


class HumanML3DFolder:
    """Read access to a HumanML3D-layout folder; every missing or malformed file raises InputFileError."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputFileError(self.root, "dataset folder not found")

    def features_path(self, name: str) -> Path:
        return self._join(FEATURES_DIR, name, ".npy")

    def frame_count(self, name: str, split: str | None = None) -> int:
        """Number of feature frames of a clip, read from the .npy header only (memory-mapped)."""
        path = self.features_path(name)
        listed = f" (listed in {split}.txt)" if split else ""
        try:
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except FileNotFoundError:
            raise InputFileError(path, f"features of clip {name!r}{listed} not found") from None
        except (ValueError, OSError) as error:
            raise InputFileError(path, f"not a readable .npy array: {error}") from None

    def joints_path(self, name: str) -> Path:
        return self._join(JOINTS_DIR, name, ".npy")

    def text_path(self, name: str) -> Path:
        return self._join(TEXTS_DIR, name, ".txt")

    def _join(self, subfolder: str, name: str, suffix: str) -> Path:
        """A clip's file: the clip-name rule, then the one checked join (never outside the folder)."""
        return checked_join(self.root / subfolder, _check_name(name), suffix=suffix, single=True,
                            where=f"{self.root}: clip name")

    def split_names(self, split: str) -> list[str]:
        """Clip names listed in ``SPLIT.txt`` (blank lines ignored)."""
        path = checked_join(self.root, _check_name(split), suffix=".txt", single=True, where=f"{self.root}: split")
        if not path.is_file():
            raise InputFileError(path, f"split file for {split!r} not found")
        names = []
        for number, line in enumerate(read_text(path, "text file").splitlines(), start=1):
            name = line.strip()
            if not name:
                continue
            if not _NAME_PATTERN.match(name):
                raise InputFileError(path, f"{name!r} is not a clip name", line=number)
            names.append(name)
        return names

    def clip_names(self) -> list[str]:
        """Every clip with a features file, sorted."""
        folder = self.root / FEATURES_DIR
        if not folder.is_dir():
            raise InputFileError(folder, "features folder not found")
        return sorted(path.stem for path in folder.glob("*.npy"))

    def has_captions(self, name: str) -> bool:
        return self.text_path(name).is_file()

    def _load_array(self, path: Path, trailing_shape: tuple[int, ...]) -> np.ndarray:
        if not path.is_file():
            raise InputFileError(path, "file not found")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise InputFileError(path, f"not a readable .npy array: {error}") from error
        if array.ndim != 1 + len(trailing_shape) or array.shape[1:] != trailing_shape or array.shape[0] < 1:
            expected = ", ".join(["frames", *map(str, trailing_shape)])
            raise InputFileError(path, f"expected shape ({expected}), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InputFileError(path, "contains NaN or infinite values")
        return array.astype(np.float32)

    def load_features(self, name: str) -> np.ndarray:
        """(T, 263) float32 features of clip ``name``."""
        return self._load_array(self.features_path(name), (FEATURE_DIM,))

    def load_joints(self, name: str) -> np.ndarray:
        """(T, 22, 3) float32 joints of clip ``name``."""
        return self._load_array(self.joints_path(name), (NUM_JOINTS, 3))

    def load_captions(self, name: str) -> list[Caption]:
        """Captions of clip ``name``; an error if the folder has no text file for it or a line is malformed."""
        path = self.text_path(name)
        if not path.is_file():
            raise InputFileError(path, f"no captions for clip {name!r} (this folder has no such text file)")
        captions = []
        for number, line in enumerate(read_text(path, "text file").splitlines(), start=1):
            if line.strip():
                captions.append(parse_caption_line(line, path, number))
        if not captions:
            raise InputFileError(path, "the caption file is empty")
        return captions

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(Mean, Std) arrays of the folder, each (263,)."""
        normalizer = self.normalizer()
        if normalizer.dim != FEATURE_DIM:
            raise InputFileError(self.root / MEAN_FILE, f"expected {FEATURE_DIM} channels, got {normalizer.dim}")
        return normalizer.mean.astype(np.float32), normalizer.raw_std.astype(np.float32)

    def normalizer(self) -> Normalizer:
        return Normalizer.from_folder(self.root)


def _coerce_caption(caption: Caption | str) -> Caption:
    return Caption(text=caption) if isinstance(caption, str) else caption


def write_clip(
    root: str | Path,
    name: str,
    joints: np.ndarray | None,
    features: np.ndarray,
    captions: Sequence[Caption | str] = (),
) -> None:
    """Write one clip: features, joints and (if any) captions.

    ``joints=None`` stores ``features_to_joints(features)``, which is what HumanML3D's ``new_joints`` hold; given
    joints must have one frame per feature row.  Plain strings are taken as whole-clip captions.
    """
    root = Path(root)
    _check_name(name)
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM or features.shape[0] < 1:
        raise DatasetFolderError(f"clip {name!r}: features must have shape (frames, {FEATURE_DIM}), got {features.shape}")
    if not np.all(np.isfinite(features)):
        raise DatasetFolderError(f"clip {name!r}: features contain NaN or infinite values")
    joints = features_to_joints(features) if joints is None else np.asarray(joints)
    if joints.shape != (features.shape[0], NUM_JOINTS, 3):
        raise DatasetFolderError(
            f"clip {name!r}: joints must have shape ({features.shape[0]}, {NUM_JOINTS}, 3) (one frame per feature "
            f"row, as HumanML3D's new_joints), got {joints.shape}; pass joints=None to store the recovered joints"
        )
    lines = [format_caption_line(_coerce_caption(caption)) for caption in captions]

    (root / FEATURES_DIR).mkdir(parents=True, exist_ok=True)
    (root / JOINTS_DIR).mkdir(parents=True, exist_ok=True)
    np.save(root / FEATURES_DIR / f"{name}.npy", features.astype(np.float32))
    np.save(root / JOINTS_DIR / f"{name}.npy", joints.astype(np.float32))
    if lines:
        (root / TEXTS_DIR).mkdir(parents=True, exist_ok=True)
        (root / TEXTS_DIR / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_split(root: str | Path, split: str, names: Sequence[str]) -> None:
    """Write ``SPLIT.txt`` with one clip name a line."""
    root = Path(root)
    _check_name(split)
    for name in names:
        _check_name(name)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


def write_mean_std(root: str | Path, mean: np.ndarray, std: np.ndarray) -> None:
    """Write ``Mean.npy`` and ``Std.npy`` (float32) after checking they can normalise 263-d features."""
    normalizer = Normalizer(mean, std)
    if normalizer.dim != FEATURE_DIM:
        raise DatasetFolderError(f"mean/std must have {FEATURE_DIM} channels, got {normalizer.dim}")
    normalizer.save(root)
