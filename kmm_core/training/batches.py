# SPDX-License-Identifier: GPL-3.0-or-later
"""The resumable batch stream the Trainer draws from.

Exact resume needs the data position in the checkpoint, so a training stream is not just an iterable: it is a
:class:`ResumableBatches` that says where it is (``state_dict``) and can start again from there (``load_state_dict``).
:class:`ShuffledBatches` is the implementation every stage uses: an endless stream over a map-style dataset, one fresh
permutation per epoch drawn from a generator seeded by ``(seed, epoch)`` alone, so position ``(epoch, batch)`` fully
determines the next batch and skipping to it costs nothing (no batches are loaded and thrown away).

Sharding for DistributedDataParallel works like ``DistributedSampler``, but by batch: step ``k`` of an epoch takes
the ``k``-th block of ``batch_size x world_size`` indices of the permutation and process ``rank`` takes its slice.
Every process therefore sees equal-sized batches (no process waits on another at the end of an epoch), and one process
with ``batch_size x world_size`` sees exactly the union of what the processes see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..common.errors import KMMError
from .mirror_pairs import paired_order


class EmptyDataError(KMMError, ValueError):
    """The training data cannot fill a single batch."""


@runtime_checkable
class ResumableBatches(Protocol):
    """An endless iterable of batches whose position can be saved and restored.

    ``state_dict()`` must describe the position after the batches handed out so far (JSON-compatible values only);
    ``load_state_dict()`` is called before iteration starts.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class ShuffledBatches:
    """Endless, reshuffled-every-epoch batches of ``dataset`` (incomplete last batches are dropped).

    ``collate_fn`` defaults to torch's ``default_collate``. With ``num_workers > 0`` items are loaded in worker
    processes; their random streams depend on the epoch only, so a dataset that draws random numbers in
    ``__getitem__`` resumes bit-exactly only with ``num_workers=0`` (then it draws from the restored global RNG).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        lengths: np.ndarray | None = None,
        length_buckets: int = 0,
        partners: np.ndarray | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.collate_fn = collate_fn
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(dataset),) or not np.all(weights >= 0) or not weights.sum() > 0:  # type: ignore[arg-type]
                raise ValueError(f"weights must be {len(dataset)} non-negative numbers with a positive sum")  # type: ignore[arg-type]
            weights = weights / weights.sum()
        self.weights = weights
        self.dataset_size = len(dataset)  # type: ignore[arg-type]
        if length_buckets < 0:
            raise ValueError(f"length_buckets must be >= 0, got {length_buckets}")
        if length_buckets and (lengths is None or np.shape(lengths) != (self.dataset_size,)):
            raise ValueError(f"length_buckets = {length_buckets} needs the length of each of the {self.dataset_size} "
                             "items")
        self.lengths = None if not length_buckets else np.asarray(lengths)
        self.length_buckets = length_buckets
        if partners is not None:
            partners = np.asarray(partners, dtype=np.int64)
            if partners.shape != (self.dataset_size,) or np.any(partners >= self.dataset_size) or np.any(partners < -1):
                raise ValueError(f"partners must be {self.dataset_size} item indices or -1")
            if batch_size % 2 or length_buckets:
                raise ValueError("paired items need an even batch_size and no length_buckets, got batch_size "
                                 f"{batch_size}, length_buckets {length_buckets}")
        self.partners = partners
        self.global_batch_size = batch_size * world_size
        self.batches_per_epoch = self.dataset_size // self.global_batch_size
        if self.batches_per_epoch == 0:
            processes = f" x {world_size} processes" if world_size > 1 else ""
            raise EmptyDataError(
                f"the training data has {self.dataset_size} items, fewer than one batch of {batch_size}{processes}; "
                "add data or lower batch_size"
            )
        self.epoch = 0
        self.batch_in_epoch = 0

    @property
    def weighted(self) -> bool:
        """Whether clips are drawn by weights (balanced sampling) rather than shuffled."""
        return self.weights is not None

    def __len__(self) -> int:
        """Batches per epoch (the stream itself is endless)."""
        return self.batches_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "seed": self.seed,
            "dataset_size": self.dataset_size,
            "global_batch_size": self.global_batch_size,
            "weighted": self.weighted,
            "length_buckets": self.length_buckets,
            "paired": self.partners is not None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # A different dataset size or global batch would make the saved position point at different items.
        defaults = {"length_buckets": 0, "paired": False}  # a checkpoint from before these options had neither
        current = {**{key: getattr(self, key) for key in ("seed", "dataset_size", "global_batch_size", "weighted",
                                                          "length_buckets")}, "paired": self.partners is not None}
        for key, value in current.items():
            saved = state.get(key, defaults.get(key, value))
            if saved != value:
                raise ValueError(
                    f"cannot resume the data stream: the checkpoint has {key}={saved} "
                    f"but this run has {key}={value}"
                )
        batch_in_epoch = int(state["batch_in_epoch"])
        if not 0 <= batch_in_epoch <= self.batches_per_epoch:
            raise ValueError(f"batch_in_epoch {batch_in_epoch} is outside 0..{self.batches_per_epoch}")
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = batch_in_epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The item order of ``epoch``: a function of ``(seed, epoch)`` only, never of the global RNG.

        With ``weights``, an epoch is ``dataset_size`` draws with replacement by those probabilities. With
        ``length_buckets``, the same items are regrouped by length (see :meth:`_by_length`); with ``partners``, each
        drawn item that has one is followed by it (``mirror_pairs.paired_order``)."""
        if self.weights is not None:
            order = np.random.default_rng([self.seed, epoch]).choice(self.dataset_size, size=self.dataset_size,
                                                                      replace=True, p=self.weights)
        elif not self.shuffle:
            order = np.arange(self.dataset_size)
        else:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
        if self.partners is not None:
            return paired_order(order, self.partners)
        return order if not self.length_buckets else self._by_length(order, epoch)

    def _by_length(self, order: np.ndarray, epoch: int) -> np.ndarray:
        """Batches of similar length from the same items: each run of ``length_buckets`` global batches of
        ``order`` is sorted by item length (stably) and cut into global batches, then the epoch's batches are
        shuffled. Every item of the epoch is still drawn exactly as often as before, but a batch pads to a length
        close to its items' own (with random batches, about half of a batch's tokens are padding)."""
        used = self.batches_per_epoch * self.global_batch_size
        group = self.length_buckets * self.global_batch_size
        runs = [order[start : min(start + group, used)] for start in range(0, used, group)]
        sorted_items = np.concatenate([run[np.argsort(self.lengths[run], kind="stable")] for run in runs])
        batches = sorted_items.reshape(self.batches_per_epoch, self.global_batch_size)
        shuffled = batches[np.random.default_rng([self.seed, epoch, 1]).permutation(self.batches_per_epoch)]
        return np.concatenate([shuffled.reshape(-1), order[used:]])

    def batch_indices(self, epoch: int, batch: int) -> list[int]:
        """This process's item indices for batch ``batch`` of ``epoch``."""
        order = self.epoch_order(epoch)
        start = batch * self.global_batch_size + self.rank * self.batch_size
        return order[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[Any]:
        while True:
            if self.batch_in_epoch >= self.batches_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            order = self.epoch_order(self.epoch)
            first = self.batch_in_epoch * self.global_batch_size + self.rank * self.batch_size
            index_lists = [
                order[start : start + self.batch_size].tolist()
                for start in range(first, self.batches_per_epoch * self.global_batch_size, self.global_batch_size)
            ]
            loader = DataLoader(
                self.dataset,
                batch_sampler=index_lists,
                collate_fn=self.collate_fn,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                # An explicit generator keeps the loader from drawing its worker base seed from the global RNG,
                # which would make the training RNG depend on where an epoch's iteration started.
                generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch),
            )
            for batch in loader:
                self.batch_in_epoch += 1  # counted as handed out, so state_dict() is right while the step runs
                yield batch
