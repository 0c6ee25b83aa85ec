# SPDX-License-Identifier: GPL-3.0-or-later
"""A tiny real training task for the training-infrastructure tests, and the torchrun worker of the DDP test.

Task: predict the next frame's normalised HumanML3D features from the current frame's, on the real sample
``new_joint_vecs/012314.npy`` (170 frames x 263 features -> 169 pairs). A 263-32-263 MLP with dropout learns this
within tens of steps on CPU, and dropout makes exact resume depend on the restored RNG state.

Run as a script under torchrun: ``torchrun --nproc_per_node 2 training_helpers.py <fixture_dir> <out_dir> <steps>
<batch_size_per_process>``: each rank trains with the Trainer and exports its final weights to ``rank<R>.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from kmm_core.training.config import TrainStageConfig


class NextFrameDataset(Dataset):
    """(current frame, next frame) pairs of normalised features from one real HumanML3D clip."""

    def __init__(self, fixture_dir: Path):
        features = np.load(fixture_dir / "new_joint_vecs" / "012314.npy")
        mean = np.load(fixture_dir / "Mean.npy")
        std = np.load(fixture_dir / "Std.npy")
        normalised = torch.from_numpy(((features - mean) / std).astype(np.float32))
        self.current, self.next = normalised[:-1], normalised[1:]

    def __len__(self) -> int:
        return len(self.current)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"current": self.current[index], "next": self.next[index]}


class NextFrameMLP(nn.Module):
    """Residual MLP: next = current + f(current); compute_loss is the Trainer contract."""

    def __init__(self, features: int = 263, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, features)
        )

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return current + self.net(current)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        prediction = self(batch["current"])
        loss = nn.functional.mse_loss(prediction, batch["next"])
        return loss, {"mae": (prediction - batch["next"]).abs().mean().item()}


def tiny_stage_config(**overrides) -> TrainStageConfig:
    settings = dict(
        steps=30,
        batch_size=8,
        lr=3e-3,
        warmup=5,
        weight_decay=0.01,
        grad_clip=1.0,
        eval_every=0,
        checkpoint_every=10,
        keep_checkpoints=10,
        log_every=5,
        seed=7,
    )
    settings.update(overrides)
    return TrainStageConfig(**settings)


def state_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _torchrun_worker(fixture_dir: str, out_dir: str, steps: int, batch_size: int) -> None:
    from kmm_core.training.batches import ShuffledBatches
    from kmm_core.training.checkpoint import export_weights
    from kmm_core.training.distributed import init_distributed, shutdown_distributed
    from kmm_core.training.trainer import Trainer, seed_everything

    context = init_distributed()
    try:
        seed_everything(0)
        module = NextFrameMLP(dropout=0.0)  # per-process dropout masks would differ from one process's masks
        dataset = NextFrameDataset(Path(fixture_dir))
        batches = ShuffledBatches(dataset, batch_size, seed=3, rank=context.rank, world_size=context.world_size)
        config = tiny_stage_config(steps=steps, batch_size=batch_size, checkpoint_every=0)
        result = Trainer(module, batches, config, out_dir, distributed=context, progress=False).run()
        export_weights(module, Path(out_dir) / f"rank{context.rank}.safetensors", dtype=torch.float32)
        print(f"rank {context.rank}/{context.world_size} backend {context.backend} finished step {result.step}")
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    _torchrun_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
