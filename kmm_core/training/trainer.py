# SPDX-License-Identifier: GPL-3.0-or-later
"""The training loop every stage shares.

The contract with a stage:

* ``module`` is a ``torch.nn.Module`` with ``compute_loss(batch) -> (loss_tensor, metrics: dict[str, float])``;
* ``train_batches`` is a :class:`~.batches.ResumableBatches` (endless, position saved in checkpoints);
* ``validate(module) -> dict[str, float]`` is optional; it runs in eval mode without gradients on rank 0, and the RNG
  states are restored afterwards, so validating never changes what training computes;
* ``stage_config`` is the stage's ``[train.<stage>]`` table.

Everything else happens here: seeding, AdamW (weight decay on matrices only) with linear warmup and cosine decay,
gradient clipping, mixed precision on CUDA, periodic logging/validation/checkpoints, exact resume, a clean stop on
Ctrl-C / SIGTERM (finish the step, save, return), a clear error on a non-finite loss or gradient (raised before the
optimizer step, so nothing corrupt is ever saved), and DistributedDataParallel when a process group is given.

Exact resume: a checkpoint holds weights, optimizer moments, the global step (the learning rate is a pure function of
it), every RNG state and the data position, so an interrupted run continued from its last checkpoint reproduces an
uninterrupted run bit for bit on the same hardware.

A stage wires it like this (``kmm-train`` runs the same code under ``torchrun`` for several processes)::

    context = init_distributed()
    seed_everything(stage.seed)  # before building the model, so its initialisation repeats
    module = MotionTokenizer(config.tokenizer)
    batches = ShuffledBatches(train_set, stage.batch_size, seed=stage.seed, collate_fn=collate,
                              rank=context.rank, world_size=context.world_size, num_workers=stage.num_workers)
    result = Trainer(module, batches, stage, out_dir / "tokenizer", validate=validate, resume=resume,
                     distributed=context).run()
    if context.is_main and result.stopped_by is None:
        export_weights(module, out_dir / "tokenizer.safetensors", config=config.tokenizer)
    shutdown_distributed()
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.errors import KMMError
from .batches import EmptyDataError, ResumableBatches
from .checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainStageConfig
from .distributed import DistributedContext, barrier, current_context, sum_across_processes, wrap_for_data_parallel
from .run_log import RunLog

CHECKPOINT_DIR = "checkpoints"
Validate = Callable[[torch.nn.Module], Mapping[str, float]]


class TrainingError(KMMError, RuntimeError):
    """Training cannot go on (non-finite loss, output folder conflict, ...); the message names the step."""


class NonFiniteLossError(TrainingError):
    """The loss or the gradient norm became NaN or infinite; ``step`` is the 1-based step that produced it."""

    def __init__(self, step: int, message: str):
        self.step = step
        super().__init__(message)


@dataclass
class TrainResult:
    """How a run ended."""

    step: int  # optimizer steps done in total (including those of resumed-from runs)
    stopped_by: str | None  # "SIGINT" / "SIGTERM" when stopped early, None when all steps ran
    last_checkpoint: Path | None
    train_loss: float | None  # mean loss over the last logging window
    validation: dict[str, float] | None  # the last validation metrics


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call before building the model so its initialisation repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def scheduled_learning_rate(step: int, config: TrainStageConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup to ``lr``, cosine decay to ``lr*min_lr_ratio``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    min_lr = config.lr * config.min_lr_ratio
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - min_lr)


def adamw_for(module: torch.nn.Module, config: TrainStageConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings (dim >= 2) only: decaying biases and norm gains only hurts."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingError(f"{type(module).__name__} has no trainable parameters")
    groups = [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts / lists / tuples moved to ``device``; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({key: move_to_device(value, device) for key, value in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: move_to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **changes)
    return batch


class _ComputeLoss(torch.nn.Module):
    """Makes ``compute_loss`` the forward pass, because DistributedDataParallel synchronises through ``forward``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        return self.model.compute_loss(batch)


class _StopRequests:
    """Turns the first SIGINT / SIGTERM into a request to stop after the current step; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class Trainer:
    """Trains ``module`` on ``train_batches`` as ``stage_config`` says, writing everything under ``out_dir``.

    ``out_dir`` receives ``log.jsonl``, ``checkpoints/step_XXXXXXXX/`` and (if installed) ``tensorboard/``.
    ``resume=True`` continues from the newest checkpoint there (or starts fresh when there is none); ``resume=False``
    refuses an ``out_dir`` that already holds checkpoints rather than mixing two runs.
    ``checkpoint_config`` goes to each checkpoint's ``config.json`` (default: ``{"model": module.config, "train": ...}``).
    ``distributed`` defaults to the joined process group, if any, else one process on CUDA when available.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        train_batches: ResumableBatches,
        stage_config: TrainStageConfig,
        out_dir: str | Path,
        validate: Validate | None = None,
        resume: bool = False,
        *,
        checkpoint_config: Any = None,
        distributed: DistributedContext | None = None,
        progress: bool = True,
        find_unused_parameters: bool = False,
    ):
        if not callable(getattr(module, "compute_loss", None)):
            raise TypeError(f"{type(module).__name__} must define compute_loss(batch) -> (loss, metrics)")
        if not isinstance(train_batches, ResumableBatches):
            raise TypeError(
                f"train_batches ({type(train_batches).__name__}) must be resumable: define __iter__, state_dict and "
                "load_state_dict (see kmm_core.training.batches.ShuffledBatches)"
            )
        self.context = distributed or current_context()
        self.module = module.to(self.context.device)
        self.train_batches = train_batches
        self.config = stage_config
        self.out_dir = Path(out_dir)
        self.checkpoint_dir = self.out_dir / CHECKPOINT_DIR
        self.validate = validate
        self.resume = resume
        self.progress = progress
        self.find_unused_parameters = find_unused_parameters
        if checkpoint_config is None:
            model_config = getattr(module, "config", None)
            checkpoint_config = {
                "model": model_config if dataclasses.is_dataclass(model_config) else None,
                "train": stage_config,
            }
        self.checkpoint_config = checkpoint_config

        on_cuda = self.context.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(stage_config.amp) if on_cuda else None
        self.optimizer = adamw_for(self.module, stage_config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

    # -- the loop -------------------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config, context = self.config, self.context
        step = self._start()
        log = RunLog(
            self.out_dir, total_steps=config.steps, initial_step=step, enabled=context.is_main, progress=self.progress
        )
        if step > 0:
            log.event(step, f"resumed from {self.checkpoint_dir / f'step_{step:08d}'}")
        if config.amp != "none" and self.amp_dtype is None:
            log.event(step, f"amp = '{config.amp}' ignored: mixed precision is used on CUDA only")
        loss_fn = wrap_for_data_parallel(_ComputeLoss(self.module), context, self.find_unused_parameters)
        batches = self._endless(self.train_batches)
        items_per_step = config.batch_size * context.world_size
        window = _Window()
        last_saved: Path | None = None
        last_saved_step = -1
        validation: dict[str, float] | None = None
        self.module.train()
        try:
            with _StopRequests() as stop:
                while step < config.steps:
                    lr = scheduled_learning_rate(step, config)
                    loss, metrics, stop_everywhere = self._train_step(step, lr, next(batches), loss_fn, stop)
                    step += 1
                    window.add(loss, metrics, items_per_step)
                    log.advance()
                    finished = step == config.steps or stop_everywhere
                    if finished or step % config.log_every == 0:
                        log.train(step, lr=lr, **window.flush())
                    if self.validate is not None and _due(step, config.eval_every, config.steps):
                        validation = self._validate(step, log)
                    if finished or _due(step, config.checkpoint_every, config.steps):
                        last_saved, last_saved_step = self._save(step, log), step
                    if stop_everywhere:
                        stopped_by = stop.requested or "a signal to another process"
                        log.event(step, f"stopped by {stopped_by} after step {step}; continue with resume")
                        return TrainResult(step, stopped_by, last_saved, window.last_loss, validation)
        finally:
            log.close()
        if last_saved_step != step:  # resumed a run that had already finished: nothing ran, nothing new to save
            last_saved = latest_checkpoint(self.checkpoint_dir)
        return TrainResult(step, None, last_saved, window.last_loss, validation)

    def _train_step(
        self, step: int, lr: float, batch: Any, loss_fn: torch.nn.Module, stop: _StopRequests
    ) -> tuple[float, Mapping[str, float], bool]:
        """One optimizer update; returns the loss (averaged over processes), the metrics, and whether to stop."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast():
            loss, metrics = loss_fn(move_to_device(batch, self.context.device))
        loss_value, stop_everywhere = self._agree(loss, stop.requested is not None)
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(step + 1, self._non_finite_message(step + 1, "loss", loss_value))
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
            if not self.scaler.is_enabled() and not torch.isfinite(norm):  # with fp16 the scaler skips such steps
                raise NonFiniteLossError(step + 1, self._non_finite_message(step + 1, "gradient norm", norm.item()))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, metrics, stop_everywhere

    # -- pieces of the loop ---------------------------------------------------------------------------------------------

    def _start(self) -> int:
        """Seed a fresh run, or restore everything from the newest checkpoint; returns the step to start from."""
        checkpoint = latest_checkpoint(self.checkpoint_dir)
        if checkpoint is not None and not self.resume:
            raise TrainingError(
                f"{self.out_dir} already holds checkpoints (newest: {checkpoint.name}); resume them or choose another "
                "output folder"
            )
        if checkpoint is None:
            seed_everything(self.config.seed)
            return 0
        state = load_checkpoint(checkpoint, self.module, self.optimizer, scaler=self.scaler)
        if state.data_state is None:
            raise TrainingError(f"{checkpoint}: has no data position to resume the batches from")
        try:
            self.train_batches.load_state_dict(state.data_state)
        except ValueError as error:
            raise TrainingError(f"{checkpoint}: {error}") from None
        return state.step

    def _endless(self, batches: ResumableBatches) -> Iterator[Any]:
        """Batches forever; a stream that ends is started again, one that yields nothing is an error."""
        handed_out = 0
        while True:
            produced = False
            for batch in batches:
                produced = True
                handed_out += 1
                yield batch
            if not produced:
                raise EmptyDataError(
                    "the training data produced no batches"
                    + (f" (after {handed_out} batches the stream ended and restarted empty)" if handed_out else "")
                )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.context.device.type, dtype=self.amp_dtype)

    def _agree(self, loss: torch.Tensor, stop_requested: bool) -> tuple[float, bool]:
        """The loss averaged over processes and whether any process was asked to stop.

        One collective per step keeps processes in lockstep: a NaN or a Ctrl-C seen by one process stops all of them
        at the same step instead of leaving the others waiting forever in the next gradient all-reduce.
        """
        if not self.context.is_distributed:
            return loss.item(), stop_requested
        packed = torch.stack([loss.detach().float(), torch.tensor(float(stop_requested), device=loss.device)])
        sum_across_processes(packed, self.context)
        return packed[0].item() / self.context.world_size, packed[1].item() > 0

    def _validate(self, step: int, log: RunLog) -> dict[str, float] | None:
        if not self.context.is_main:
            return None
        rng_tensors, rng_values = capture_rng_state()
        self.module.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = {name: float(value) for name, value in self.validate(self.module).items()}  # type: ignore[misc]
        finally:
            self.module.train()
            restore_rng_state(rng_tensors, rng_values)
        log.validation(step, metrics)
        return metrics

    def _save(self, step: int, log: RunLog) -> Path | None:
        folder = None
        if self.context.is_main:
            folder = save_checkpoint(
                self.checkpoint_dir,
                step,
                self.module,
                self.optimizer,
                config=self.checkpoint_config,
                scaler=self.scaler,
                data_state=self.train_batches.state_dict(),
                extra={"world_size": self.context.world_size},
                keep=self.config.keep_checkpoints,
            )
            log.event(step, f"saved checkpoint {folder}")
        barrier(self.context)  # nobody runs ahead (or exits) while rank 0 writes
        return folder

    def _non_finite_message(self, step: int, what: str, value: float) -> str:
        newest = latest_checkpoint(self.checkpoint_dir)
        where = f"the newest checkpoint is {newest}" if newest else "no checkpoint has been written yet"
        return (
            f"step {step}: the {what} is {value}; training stopped before the optimizer step, nothing was saved for "
            f"this step and {where}. Lower the learning rate, enable grad_clip, or check the data of this step."
        )


def _due(step: int, every: int, last_step: int) -> bool:
    """Periodic actions (every 0 = never) also run at the last step, so the end state is always covered."""
    return every > 0 and (step % every == 0 or step == last_step)


class _Window:
    """Means of the loss and metrics over one logging window, and the throughput."""

    def __init__(self) -> None:
        self.last_loss: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.losses: list[float] = []
        self.metric_sums: dict[str, float] = {}
        self.items = 0
        self.started = time.perf_counter()

    def add(self, loss: float, metrics: Mapping[str, float], items: int) -> None:
        self.losses.append(loss)
        for name, value in metrics.items():
            self.metric_sums[name] = self.metric_sums.get(name, 0.0) + float(value)
        self.items += items

    def flush(self) -> dict[str, Any]:
        """Means since the last flush, as keyword arguments of RunLog.train."""
        count = max(1, len(self.losses))
        loss = sum(self.losses) / count
        self.last_loss = loss
        record = {
            "loss": loss,
            "metrics": {name: total / count for name, total in self.metric_sums.items()},
            "items_per_second": self.items / max(time.perf_counter() - self.started, 1e-9),
        }
        self._reset()
        return record
