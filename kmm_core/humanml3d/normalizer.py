# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-channel normalisation of motion features with HumanML3D's ``Mean.npy`` / ``Std.npy``.

Works on NumPy arrays and on torch tensors (any leading shape, features last) without importing torch: tensors are
recognised by their ``new_tensor`` method and the statistics are moved to their dtype and device.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..common.atomic_write import atomic_open
from ..common.errors import InputFileError, KMMError
from .features import CHANNEL_GROUPS, FEATURE_DIM

MEAN_FILE = "Mean.npy"
STD_FILE = "Std.npy"
# Channels whose std is below this are constant in the data; dividing by it would blow noise up, so they are
# divided by 1 instead (normalised value = x - mean).
MIN_STD = 1e-6

# HumanML3D's cal_mean_variance gives every channel of a group the group's mean std, so that no single channel
# (e.g. a rarely moving joint) dominates after normalisation.  Root channels form four groups of their own.
HUMANML3D_STD_GROUPS = (slice(0, 1), slice(1, 3), slice(3, 4), CHANNEL_GROUPS["ric"], CHANNEL_GROUPS["rot"],
                        CHANNEL_GROUPS["vel"], CHANNEL_GROUPS["contacts"])


class NormalizerError(KMMError, ValueError):
    """Mean/std statistics that cannot normalise: wrong shapes, negative or non-finite values."""


class Normalizer:
    """x_normalised = (x - mean) / std per feature channel, and back."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        if mean.ndim != 1 or std.shape != mean.shape:
            raise NormalizerError(f"mean and std must be 1-D of the same length, got {mean.shape} and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise NormalizerError("mean/std contain NaN or infinite values")
        if np.any(std < 0):
            raise NormalizerError(f"std has negative values at channels {np.flatnonzero(std < 0).tolist()}")
        self.mean = mean
        self.raw_std = std
        self.std = np.where(std < MIN_STD, 1.0, std)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def _stats_like(self, x):
        if x.shape[-1] != self.dim:
            raise NormalizerError(f"features have {x.shape[-1]} channels, the statistics have {self.dim}")
        if hasattr(x, "new_tensor"):  # torch.Tensor, without importing torch here
            return x.new_tensor(self.mean), x.new_tensor(self.std)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return self.mean.astype(dtype), self.std.astype(dtype)

    def normalize(self, x):
        """(x - mean) / std for a NumPy array or torch tensor (..., dim); returns the same kind."""
        x = x if hasattr(x, "new_tensor") else np.asarray(x)
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x):
        """x * std + mean for a NumPy array or torch tensor (..., dim); returns the same kind."""
        x = x if hasattr(x, "new_tensor") else np.asarray(x)
        mean, std = self._stats_like(x)
        return x * std + mean

    @classmethod
    def from_folder(cls, folder: str | Path) -> Normalizer:
        """Read ``Mean.npy`` and ``Std.npy`` from a HumanML3D-style folder.

        Stricter than the constructor: a file's value that is not finite, or a ``Std.npy`` value that is zero or
        negative, is refused naming the file and the feature indices (`statistics_problem`).  Real data has no
        constant feature group, and a model read through all-zero statistics decoded a pelvis travelling 18 m in
        2 s without a word; training on them learnt nothing useful."""
        folder = Path(folder)
        arrays = []
        for name in (MEAN_FILE, STD_FILE):
            path = folder / name
            if not path.is_file():
                raise InputFileError(path, "file not found (expected HumanML3D statistics Mean.npy / Std.npy)")
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise InputFileError(path, f"not a readable .npy array: {error}") from error
            if array.ndim != 1:
                raise InputFileError(path, f"expected a 1-D array, got shape {array.shape}")
            problem = statistics_problem(array, positive=name == STD_FILE)
            if problem is not None:
                raise InputFileError(path, problem)
            arrays.append(array)
        try:
            return cls(arrays[0], arrays[1])
        except NormalizerError as error:
            raise InputFileError(folder, str(error)) from error

    def save(self, folder: str | Path) -> None:
        """Write ``Mean.npy`` and ``Std.npy`` (float32, as HumanML3D) into ``folder`` (created if missing)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in ((MEAN_FILE, self.mean), (STD_FILE, self.raw_std)):
            with atomic_open(folder / name, "wb") as stream:
                np.save(stream, values.astype(np.float32))

    @classmethod
    def fit(cls, feature_clips: Iterable[np.ndarray], group_std: bool = True) -> Normalizer:
        """Statistics of a collection of (T, dim) feature clips, as HumanML3D's ``cal_mean_variance``.

        With ``group_std`` (263-channel features only), every channel group gets the mean of its channels' stds.
        """
        clips = [np.asarray(clip, dtype=np.float64) for clip in feature_clips]
        if not clips:
            raise NormalizerError("cannot fit statistics to zero clips")
        data = np.concatenate(clips, axis=0)
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        if group_std:
            if data.shape[-1] != FEATURE_DIM:
                raise NormalizerError(f"group_std needs {FEATURE_DIM}-channel features, got {data.shape[-1]}")
            for group in HUMANML3D_STD_GROUPS:
                std[group] = std[group].mean()
        return cls(mean, std)


def statistics_problem(values: np.ndarray, positive: bool) -> str | None:
    """Why a statistics array (``Mean.npy``; ``Std.npy`` with `positive`) cannot normalise features, naming the
    feature indices; None when every value is finite (and, with `positive`, above zero)."""
    if values.dtype.kind not in "fiu":
        return f"expected numbers, got an array of {values.dtype}"
    values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    what = "NaN or infinite"
    if positive:
        bad |= values <= 0
        what = "zero, negative, NaN or infinite (every standard deviation must be above zero)"
    if not bad.any():
        return None
    indices = np.flatnonzero(bad).tolist()
    count = f"all {len(values)}" if len(indices) == len(values) else f"{len(indices)} of {len(values)}"
    return f"{count} of its values {'is' if len(indices) == 1 else 'are'} {what}, at feature indices " \
           f"{_index_ranges(indices)}"


def _index_ranges(indices: list[int], limit: int = 12) -> str:
    """[0, 1, 2, 7] -> "0-2, 7" (at most `limit` ranges, then "...")."""
    ranges: list[str] = []
    start = previous = indices[0]
    for index in [*indices[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ", ".join(ranges[:limit]) + (", ..." if len(ranges) > limit else "")
