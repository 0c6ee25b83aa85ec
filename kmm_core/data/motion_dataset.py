# SPDX-License-Identifier: GPL-3.0-or-later
"""Torch datasets over a HumanML3D-layout folder: motion windows with captions, and pre-encoded token windows.

:class:`MotionClips` gives one item per clip of a split: the clip's normalised 263-d features cropped at random to a
window whose length is a multiple of 4 frames (one token covers 4 frames) within ``min_frames..max_frames``, plus one
caption drawn at random from the clip's captions (a caption with a time span restricts the window to that span).
:func:`collate_motion` pads a list of items into a :class:`MotionBatch`.

:class:`TokenClips` is the generator's counterpart over codes cached once by the frozen tokenizer: a random window
of whole tokens with a random caption's condition vector.

Randomness: every draw goes through ``generator`` when one is given, else through torch's global RNG. The Trainer
saves and restores the global RNG in checkpoints, so with ``num_workers=0`` an interrupted run resumes exactly; a
validation set uses ``random_crop=False`` (window at the start, first caption) so it is identical on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..common.errors import KMMError
from ..humanml3d.dataset_folder import Caption, HumanML3DFolder
from ..humanml3d.normalizer import Normalizer
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS


class EmptySplitError(KMMError, ValueError):
    """A split lists no usable clip (names the split file)."""


@dataclass
class MotionBatch:
    """Padded motion windows; ``features`` are zero after each clip's ``lengths``."""

    features: torch.Tensor  # (B, T, 263) float32, normalised
    valid: torch.Tensor  # (B, T) bool
    lengths: torch.Tensor  # (B,) int64
    captions: list[str]
    names: list[str]


@dataclass
class TokenBatch:
    """Padded token windows for the generator; codes are -1 after each window's ``token_lengths``."""

    codes: torch.Tensor  # (B, L, Q) int64
    token_valid: torch.Tensor  # (B, L) bool
    condition: torch.Tensor  # (B, cond_dim) float32 sentence condition of each window's caption
    token_lengths: torch.Tensor  # (B,) int64


def window_length(available: int, min_frames: int, max_frames: int) -> int:
    """The longest multiple of 4 frames <= min(available, max_frames); 0 when that is below ``min_frames``."""
    length = min(available, max_frames) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    return length if length >= min_frames else 0


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high) (high >= 1) from ``generator`` or the global torch RNG."""
    return int(torch.randint(high, (1,), generator=generator))


class MotionClips(Dataset):
    """Items ``{"features": (T, 263) float32, "caption": str, "name": str}`` of one split of ``root``.

    Clips (or caption spans) shorter than ``min_frames`` are left out; ``skipped`` counts them. ``normalizer``
    defaults to the folder's Mean/Std. ``preload`` keeps every clip's features in memory (fine up to a few
    thousand clips; real HumanML3D is ~4.6 GB of float32 features, so it is read from disk per item instead).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        min_frames: int = 40,
        max_frames: int = 196,
        normalizer: Normalizer | None = None,
        random_crop: bool = True,
        generator: torch.Generator | None = None,
        preload: bool | None = None,
    ):
        if min_frames < FRAMES_PER_TOKEN or max_frames < min_frames:
            raise ValueError(f"need 4 <= min_frames <= max_frames, got {min_frames}..{max_frames}")
        self.folder = HumanML3DFolder(root)
        self.split = split
        self.min_frames, self.max_frames = min_frames, max_frames
        self.normalizer = normalizer or self.folder.normalizer()
        self.random_crop = random_crop
        self.generator = generator
        names = self.folder.split_names(split)
        split_file = self.folder.root / f"{split}.txt"
        if not names:
            raise EmptySplitError(f"{split_file}: the {split!r} split lists no clips")
        self.names: list[str] = []
        self.captions: list[list[Caption]] = []
        self.num_frames: list[int] = []
        self.skipped = 0
        for name in names:
            frames = self._frame_count(name)
            captions = [c for c in self.folder.load_captions(name) if self._span(c, frames)[1] > 0]
            if window_length(frames, min_frames, max_frames) == 0 or not captions:
                self.skipped += 1
                continue
            self.names.append(name)
            self.captions.append(captions)
            self.num_frames.append(frames)
        if not self.names:
            raise EmptySplitError(
                f"{split_file}: none of the {len(names)} clips of the {split!r} split has {min_frames} frames or more"
            )
        preload = len(self.names) <= 5000 if preload is None else preload
        self._cache: list[np.ndarray] | None = None
        if preload:
            self._cache = [self.normalized_features(i) for i in range(len(self.names))]

    def __len__(self) -> int:
        return len(self.names)

    def _frame_count(self, name: str) -> int:
        return self.folder.frame_count(name, self.split)

    def _span(self, caption: Caption, frames: int) -> tuple[int, int]:
        """(first frame, frames available) a caption's window may be cropped from; 0 frames: unusable caption."""
        if caption.whole_clip:
            start, end = 0, frames
        else:
            start = min(int(round(caption.start * MODEL_FPS)), frames)
            end = min(int(round(caption.end * MODEL_FPS)), frames) if caption.end > caption.start else frames
        available = end - start
        return start, available if window_length(available, self.min_frames, self.max_frames) else 0

    def normalized_features(self, index: int) -> np.ndarray:
        """The whole clip's normalised (T, 263) features (no cropping)."""
        if self._cache is not None:
            return self._cache[index]
        features = self.folder.load_features(self.names[index])
        return self.normalizer.normalize(features).astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        features = self.normalized_features(index)
        captions = self.captions[index]
        caption = captions[_randint(len(captions), self.generator) if self.random_crop else 0]
        span_start, available = self._span(caption, features.shape[0])
        length = window_length(available, self.min_frames, self.max_frames)
        offset = _randint(available - length + 1, self.generator) if self.random_crop else 0
        start = span_start + offset
        window = torch.from_numpy(np.ascontiguousarray(features[start : start + length]))
        return {"features": window, "caption": caption.text, "name": self.names[index]}


def collate_motion(items: list[dict]) -> MotionBatch:
    """Pad items of :class:`MotionClips` (zeros after each clip) into a :class:`MotionBatch`."""
    lengths = torch.tensor([item["features"].shape[0] for item in items], dtype=torch.int64)
    longest = int(lengths.max())
    features = torch.zeros(len(items), longest, items[0]["features"].shape[1])
    for i, item in enumerate(items):
        features[i, : lengths[i]] = item["features"]
    valid = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
    return MotionBatch(features, valid, lengths, [item["caption"] for item in items], [item["name"] for item in items])


class TokenClips(Dataset):
    """Windows of cached tokenizer codes with the sentence condition of a random caption of the clip.

    ``codes[i]`` is clip i's (L_i, Q) code array, or (P, L_i, Q): the clip tokenized from P frame offsets, one drawn
    at random per window (phase 0 without ``random_crop``); ``conditions[i]`` its captions' (C_i, cond_dim) condition
    vectors.  A window covers ``min_tokens..max_tokens`` whole tokens (the frame limits divided by 4).
    """

    def __init__(
        self,
        codes: list[torch.Tensor],
        conditions: list[torch.Tensor],
        *,
        min_tokens: int = 10,
        max_tokens: int = 49,
        random_crop: bool = True,
        generator: torch.Generator | None = None,
        names: list[str] | None = None,
    ):
        if len(codes) != len(conditions) or (names is not None and len(names) != len(codes)):
            raise ValueError(f"{len(codes)} code arrays but {len(conditions)} condition sets"
                             + (f" and {len(names)} names" if names is not None else ""))
        codes = [c if c.dim() == 3 else c.unsqueeze(0) for c in codes]  # (P, L, Q)
        keep = [i for i, c in enumerate(codes) if c.shape[1] >= min_tokens and conditions[i].shape[0] > 0]
        if not keep:
            raise EmptySplitError(f"no clip has {min_tokens} tokens ({min_tokens * FRAMES_PER_TOKEN} frames) or more")
        self.codes = [codes[i] for i in keep]
        self.conditions = [conditions[i] for i in keep]
        self.names = [names[i] for i in keep] if names is not None else None  # clip names, for balanced sampling
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.random_crop = random_crop
        self.generator = generator

    def __len__(self) -> int:
        return len(self.codes)

    def _window_length(self, codes: torch.Tensor) -> int:
        return min(codes.shape[1], self.max_tokens)

    def window_lengths(self) -> np.ndarray:
        """Each item's window length in tokens (a random crop moves a window, never changes its length)."""
        return np.array([self._window_length(c) for c in self.codes], dtype=np.int64)

    def __getitem__(self, index: int) -> dict:
        codes, conditions = self.codes[index], self.conditions[index]
        length = self._window_length(codes)
        offset = _randint(codes.shape[1] - length + 1, self.generator) if self.random_crop else 0
        caption = _randint(conditions.shape[0], self.generator) if self.random_crop else 0
        phase = _randint(codes.shape[0], self.generator) if self.random_crop and codes.shape[0] > 1 else 0
        return {"codes": codes[phase, offset : offset + length], "condition": conditions[caption]}


def collate_tokens(items: list[dict]) -> TokenBatch:
    """Pad items of :class:`TokenClips` (codes -1 after each window) into a :class:`TokenBatch`."""
    lengths = torch.tensor([item["codes"].shape[0] for item in items], dtype=torch.int64)
    longest = int(lengths.max())
    codes = torch.full((len(items), longest, items[0]["codes"].shape[1]), -1, dtype=torch.int64)
    for i, item in enumerate(items):
        codes[i, : lengths[i]] = item["codes"]
    valid = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
    condition = torch.stack([item["condition"] for item in items]).float()
    return TokenBatch(codes, valid, condition, lengths)
