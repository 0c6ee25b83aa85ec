# SPDX-License-Identifier: GPL-3.0-or-later
"""Contrastive batches that hold a sided clip beside its mirror (``[train.aligner] mirror_pairs = true``).

`kmm-train prepare` writes every window of a take twice, as recorded and mirrored, and gives the mirror the
captions with their sides swapped ("kicks with the left leg" -> "... right leg"; ``index.csv``: same ``take`` and
``window``, ``mirrored`` 0 and 1).  A clip whose mirror's captions differ from its own is *sided*: what its captions
say depends on which side moves.  Drawn at random, a sided clip's mirror is almost never in its batch, so the
contrastive loss never asks the text side to tell the two apart, and the shipped aligner put "a person kicks forward
with the left leg" and "... right leg" at cosine 0.78 (its hands, whose captions are many, at 0.45).  With pairs, each
drawn sided clip brings its mirror into the batch as the other's hardest negative; clips without a sided mirror are
paired with the next such clip drawn, as before.  A clip and a mirror whose captions are the same (a walk forward)
are never put together: one caption would then have two right answers in one row of the loss.

Measured on the default's aligner, fine-tuned 600 steps with and without pairs (``training/runs/
kmm-small-all-v19/COMMAND.md``): the two legs' kick captions 0.78 -> 0.54 apart in cosine, the sidesteps 0.57 ->
0.29, the hands 0.45 -> 0.37.  A generator fine-tuned 1,500 steps on that aligner kicked with neither leg (the same
fine-tune on the shipped aligner kept the right leg's kick), so no shipped model uses it yet: off by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..common.errors import InputFileError
from ..data.prepare import INDEX_CSV, read_index


def mirror_partners(root: str | Path, names: Sequence[str], captions: Sequence[Sequence[str]]) -> np.ndarray:
    """(N,) int: for each clip the index of its mirror among `names` when that mirror's captions differ from its own
    (a sided clip), else -1; from ``root/index.csv`` (a window and its mirror share ``take`` and ``window``)."""
    root = Path(root)
    if not (root / INDEX_CSV).is_file():
        raise InputFileError(root / INDEX_CSV, "mirror_pairs needs the take, window and mirrored columns of a "
                                               "folder written by `kmm-train prepare`; set mirror_pairs = false")
    where = {name: i for i, name in enumerate(names)}
    windows: dict[tuple[str, str], dict[str, int]] = {}
    for row in read_index(root):
        if row.get("name") in where:
            windows.setdefault((row.get("take", ""), row.get("window", "")), {})[row.get("mirrored", "")] = \
                where[row["name"]]
    partners = np.full(len(names), -1, dtype=np.int64)
    for twins in windows.values():
        original, mirrored = twins.get("0"), twins.get("1")
        if original is None or mirrored is None or set(captions[original]) == set(captions[mirrored]):
            continue
        partners[original], partners[mirrored] = mirrored, original
    return partners


def paired_order(order: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """`order` (drawn item indices) rearranged in pairs, as long as it: each item with a partner followed by that
    partner, the others two by two in the order drawn; a pair always starts at an even position, so a batch of even
    size never splits one."""
    items: list[int] = []
    single = -1
    for index in order.tolist():
        partner = int(partners[index])
        if partner >= 0:
            items += [index, partner]
        elif single < 0:
            single = index
        else:
            items += [single, index]
            single = -1
        if len(items) >= len(order):
            break
    if len(items) < len(order) and single >= 0:
        items.append(single)
    return np.asarray(items[:len(order)], dtype=np.int64)
