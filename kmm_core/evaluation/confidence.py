# SPDX-License-Identifier: GPL-3.0-or-later
"""Mean and 95% confidence interval of a metric over repeated evaluation runs with fixed seeds.

Text-to-motion papers repeat the whole evaluation (e.g. 20 times) and report mean ± 1.96·std/sqrt(n).  With few
runs the normal quantile understates the uncertainty, so the half-width here uses Student's t with n - 1 degrees
of freedom and the sample standard deviation (ddof = 1): mean ± t_{(1+c)/2, n-1} · s / sqrt(n).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..common.errors import InputTensorError

DEFAULT_REPLICATIONS = 20


@dataclass(frozen=True)
class ConfidenceInterval:
    """mean ± half_width at `confidence`, from `count` runs (half_width is NaN for a single run)."""

    mean: float
    half_width: float
    count: int
    std: float
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def mean_confidence_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> ConfidenceInterval:
    """Student-t confidence interval of the mean of repeated measurements."""
    samples = np.asarray(values, dtype=np.float64).ravel()
    if samples.size == 0:
        raise InputTensorError("values: no measurements to summarise")
    if not np.all(np.isfinite(samples)):
        raise InputTensorError("values: contains NaN or infinite values")
    if not 0.0 < confidence < 1.0:
        raise InputTensorError(f"confidence: must be in (0, 1), got {confidence}")
    mean = float(samples.mean())
    if samples.size == 1:
        return ConfidenceInterval(mean, math.nan, 1, math.nan, confidence)
    std = float(samples.std(ddof=1))
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df=samples.size - 1))
    return ConfidenceInterval(mean, quantile * std / math.sqrt(samples.size), int(samples.size), std, confidence)


def replication_seeds(count: int = DEFAULT_REPLICATIONS, base_seed: int = 0) -> tuple[int, ...]:
    """The fixed seeds of `count` replications: base_seed, base_seed + 1, ..."""
    if count < 1:
        raise InputTensorError(f"count: need at least one replication, got {count}")
    return tuple(range(base_seed, base_seed + count))


def summarize_runs(runs: Sequence[Mapping[str, float]], confidence: float = 0.95) -> dict[str, ConfidenceInterval]:
    """Per metric name, the confidence interval over runs (each run a {metric: value} mapping, same keys)."""
    if not runs:
        raise InputTensorError("runs: no runs to summarise")
    names = list(runs[0])
    for index, run in enumerate(runs):
        if set(run) != set(names):
            raise InputTensorError(f"runs[{index}]: metrics {sorted(run)} differ from runs[0]'s {sorted(names)}")
    return {name: mean_confidence_interval([run[name] for run in runs], confidence) for name in names}


def repeat_with_seeds(evaluate: Callable[[int], Mapping[str, float]], seeds: Sequence[int] | None = None,
                      confidence: float = 0.95) -> dict[str, ConfidenceInterval]:
    """Run `evaluate(seed)` once per fixed seed (default: 20 replications, seeds 0..19) and summarise."""
    seeds = replication_seeds() if seeds is None else tuple(seeds)
    return summarize_runs([dict(evaluate(seed)) for seed in seeds], confidence)
