# SPDX-License-Identifier: GPL-3.0-or-later
"""Model-agnostic training infrastructure behind ``kmm-train``.

A training stage (tokenizer, aligner, generator, evaluator) hands the :class:`~.trainer.Trainer`

* a ``torch.nn.Module`` with ``compute_loss(batch) -> (loss_tensor, metrics: dict[str, float])``,
* a resumable stream of training batches (:class:`~.batches.ResumableBatches`, e.g. :class:`~.batches.ShuffledBatches`),
* optionally ``validate(module) -> dict[str, float]``,
* its ``[train.<stage>]`` settings (:class:`~.config.TrainStageConfig`),

and the Trainer does the rest: seeding, AdamW with warmup + cosine decay, gradient clipping, mixed precision on CUDA,
periodic validation, atomic pickle-free checkpoints with exact resume, graceful Ctrl-C / SIGTERM, logging, and
multi-process training under ``torchrun``.

Modules:

* ``config``       TOML -> nested dataclasses, with ``--set key=value`` overrides and precise errors (no torch).
* ``batches``      the resumable, shardable batch stream the Trainer draws from.
* ``checkpoint``   checkpoint folders (safetensors + JSON), keeping the last K, half-precision export.
* ``run_log``      JSON-lines log, optional TensorBoard, tqdm progress bar.
* ``distributed``  torchrun environment, process groups, DistributedDataParallel wrapping.
* ``trainer``      the loop itself.

This ``__init__`` imports nothing so that ``config`` stays importable without torch.
"""
