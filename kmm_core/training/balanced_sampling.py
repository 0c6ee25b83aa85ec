# SPDX-License-Identifier: GPL-3.0-or-later
"""How often each training clip is drawn, so small sources' actions are seen often enough to be learned.

A prepared dataset (``kmm-train prepare``) is dominated by a few big sources: in the default model's data
Bandai-Namco 2 holds 5,400 of 6,852 clips in 10 actions, while DeepMimic's 20 actions have 90 clips between them.
Drawn uniformly, one of DeepMimic's actions is in about one batch of 32 in 70. ``[train.<stage>] balance = b``
gives each action group (``dataset/content`` of the prepared ``index.csv``) of ``n`` clips the total weight ``n**b``,
shared equally by its clips: ``b = 1`` is uniform over clips (plain shuffling, the default), ``b = 0`` draws every
action equally often, ``b = 0.5`` (square-root balancing, as used for multilingual language-model data) is between.
Clips missing from the index (a HumanML3D folder has none) form one group of their own.

The sources whose takes are named for what happens in them (ACCAD, CMU ASF/AMC: ``data/named_take_sources.py``)
give every take its own content ("walk-turn-left-45", "walk-stop-stand"): as groups, ACCAD's 62 contents of 2 clips
each would take 41% of the draws for 2.6% of the minutes.  Their clips are grouped by the action their content's
geometric check measures instead (``accad/turn``, ``accad/crawl``, ``accad/getup``; ``accad/other`` for a content
with no check, such as standing or swaying): 12 ACCAD groups, each drawn as often as any other action.

``[train.<stage>] group_weights = {"accad/travel" = 3.0}`` then multiplies chosen groups' totals (a key is a group
name or a shell pattern, ``"accad/*"``): a fine-tune can draw the few clips it is for more often without drawing
every other small group more often too, as lowering ``balance`` would.  A key that matches no group is an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from ..common.errors import InputFileError
from ..data.named_take_sources import NAMED_TAKE_DATASETS
from ..data.prepare import INDEX_CSV, read_index
from ..evaluation.action_checks import checks_for_action

UNLABELLED = "(not in index.csv)"


def action_groups(root: str | Path, names: Sequence[str]) -> list[str]:
    """The ``dataset/content`` group of each clip name, from ``root/index.csv``."""
    root = Path(root)
    if not (root / INDEX_CSV).is_file():
        raise InputFileError(root / INDEX_CSV, "balanced sampling needs the action labels of a folder written by "
                                               "`kmm-train prepare`; set balance = 1.0 for other data")
    label = {row["name"]: group_of(row.get("dataset", ""), row.get("content", "")) for row in read_index(root)}
    return [label.get(name, UNLABELLED) for name in names]


def group_of(dataset: str, content: str) -> str:
    """``dataset/content``; for a named-take source ``dataset/<the check of its content>`` (see the module)."""
    if dataset in NAMED_TAKE_DATASETS:
        checks = checks_for_action(content)
        return f"{dataset}/{checks[0] if checks else 'other'}"
    return f"{dataset}/{content}"


def sampling_weights(groups: Sequence[str], balance: float,
                     group_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Per-clip probabilities (summing to 1): group of n clips -> n**balance in total, split equally, times the
    factor of each ``group_weights`` key (a group name or shell pattern) that matches the group."""
    if not groups:
        raise ValueError("no clips to weight")
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], got {balance}")
    sizes = Counter(groups)
    factors = group_factors(sizes, group_weights or {})
    weights = np.array([factors[g] * float(sizes[g]) ** balance / sizes[g] for g in groups], dtype=np.float64)
    return weights / weights.sum()


def group_factors(groups: Sequence[str] | Mapping[str, int], group_weights: Mapping[str, float]) -> dict[str, float]:
    """Each group's multiplier: the product of the factors of the ``group_weights`` keys matching it (1 if none).

    A key that matches no group, or a factor that is not finite and > 0, is a ValueError naming the key and the
    groups there are (a misspelt group would otherwise silently change nothing)."""
    factors = {group: 1.0 for group in groups}
    for pattern, factor in group_weights.items():
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"group_weights[{pattern!r}] = {factor}: a factor must be finite and > 0")
        matched = groups_matching(factors, pattern)
        if not matched:
            known = ", ".join(sorted(factors)[:12]) + (", ..." if len(factors) > 12 else "")
            raise ValueError(f"group_weights[{pattern!r}] matches no action group of the training clips; "
                             f"groups are dataset/content, e.g. {known}")
        for group in matched:
            factors[group] *= float(factor)
    return factors


def groups_matching(groups: Iterable[str], pattern: str) -> list[str]:
    """The groups a ``group_weights`` key chooses: its exact name or a shell pattern (``"accad/*"``), case-sensitive."""
    return [group for group in groups if fnmatchcase(group, pattern)]


def group_shares(groups: Sequence[str], weights: np.ndarray) -> dict[str, float]:
    """Each group's share of the draws (for the training log and tests)."""
    shares: dict[str, float] = {}
    for group, weight in zip(groups, weights, strict=True):
        shares[group] = shares.get(group, 0.0) + float(weight)
    return shares
