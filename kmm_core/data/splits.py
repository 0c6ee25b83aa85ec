# SPDX-License-Identifier: GPL-3.0-or-later
"""Deterministic train/val/test split by take, stratified by content.

A take is one source recording (a BVH file): all of its windows and their mirrored copies go to the same split, so
no test clip shares frames with a training clip.  Within each content stratum the takes are shuffled with a seed
derived from (seed, stratum) and dealt out test first, then val, then train, so that:

- every stratum with >= 2 takes appears in test, every stratum with >= 3 takes in val as well;
- a stratum with a single take goes to train (a content the model never sees cannot be learned);
- adding or removing takes of one stratum does not move the takes of any other stratum.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping

from ..common.errors import ConfigError

SPLITS = ("train", "val", "test")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")


def split_counts(num_takes: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) take counts of one stratum."""
    if num_takes <= 1:
        return num_takes, 0, 0
    test = max(1, round(num_takes * test_fraction)) if test_fraction > 0 else 0
    val = max(1, round(num_takes * val_fraction)) if val_fraction > 0 and num_takes >= 3 else 0
    while test + val >= num_takes:  # keep at least one take for training
        if val > 0 and val >= test:
            val -= 1
        else:
            test -= 1
    return num_takes - val - test, val, test


def assign_splits(take_strata: Mapping[str, str], seed: int = 0, val_fraction: float = 0.1,
                  test_fraction: float = 0.1) -> dict[str, str]:
    """Map every take id to "train", "val" or "test"; `take_strata` maps take id -> stratum (content) key."""
    check_fractions(val_fraction, test_fraction)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for take, stratum in take_strata.items():
        by_stratum[stratum].append(take)
    assignment: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        takes = sorted(by_stratum[stratum])
        random.Random(f"{seed}|{stratum}").shuffle(takes)
        _, val, test = split_counts(len(takes), val_fraction, test_fraction)
        for index, take in enumerate(takes):
            assignment[take] = "test" if index < test else "val" if index < test + val else "train"
    return assignment
