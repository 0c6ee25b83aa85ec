# SPDX-License-Identifier: GPL-3.0-or-later
"""Multi-process training under ``torchrun``: environment, process group, DDP wrapping, small collectives.

``torchrun --nproc_per_node N kmm-train ...`` starts N processes and tells each, through environment variables, who it
is (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and where to meet (``MASTER_ADDR``, ``MASTER_PORT``).
:func:`init_distributed` turns that into a :class:`DistributedContext` (one process without those variables) and joins
the process group: NCCL when the process drives a GPU, Gloo on CPU. Every process trains on its own shard of each
global batch (see ``batches.ShuffledBatches``); DistributedDataParallel averages the gradients so every process applies
the same update, and only rank 0 (``context.is_main``) writes logs and checkpoints.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..common.errors import KMMError


class DistributedSetupError(KMMError, RuntimeError):
    """The launch environment is inconsistent (names the variable)."""


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in the run, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=_default_device)
    backend: str | None = None  # None: no process group (a single process)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and saves."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _environment_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={text!r} is not an integer") from None


def read_launch_environment(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun variables; ``(0, 1, 0)`` when they are absent."""
    world_size = _environment_int(environ, "WORLD_SIZE", 1)
    rank = _environment_int(environ, "RANK", 0)
    local_rank = _environment_int(environ, "LOCAL_RANK", rank)
    if world_size < 1:
        raise DistributedSetupError(f"environment variable WORLD_SIZE={world_size} must be >= 1")
    if not 0 <= rank < world_size:
        raise DistributedSetupError(f"environment variable RANK={rank} is outside 0..WORLD_SIZE-1 ({world_size - 1})")
    if local_rank < 0:
        raise DistributedSetupError(f"environment variable LOCAL_RANK={local_rank} must be >= 0")
    return rank, world_size, local_rank


def init_distributed(
    device: str | torch.device | None = None,
    environ: Mapping[str, str] = os.environ,
    timeout: datetime.timedelta = datetime.timedelta(minutes=30),
) -> DistributedContext:
    """Read the launch environment and, for more than one process, join the process group.

    ``device`` defaults to this process's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU.
    """
    rank, world_size, local_rank = read_launch_environment(environ)
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"LOCAL_RANK={local_rank} asks for GPU {device.index}, but only {torch.cuda.device_count()} are visible"
            )
        torch.cuda.set_device(device)
    if world_size == 1:
        return DistributedContext(rank=0, world_size=1, local_rank=local_rank, device=device, backend=None)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not environ.get(name):
            raise DistributedSetupError(
                f"WORLD_SIZE={world_size} but environment variable {name} is not set; launch with torchrun"
            )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout
        )
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def current_context() -> DistributedContext:
    """The context of an already joined process group, or a single process on the default device."""
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = _environment_int(os.environ, "LOCAL_RANK", rank)
        device = torch.device("cuda", local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        return DistributedContext(rank, world_size, local_rank, device, dist.get_backend())
    return DistributedContext()


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_for_data_parallel(
    module: torch.nn.Module, context: DistributedContext, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when several processes train, else ``module`` itself.

    DDP broadcasts rank 0's parameters and buffers on construction, so all processes start from the same weights.
    """
    if not context.is_distributed:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def sum_across_processes(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """In-place sum over all processes (Gloo has no AVG reduction, so callers divide by the world size)."""
    if context.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()
