# SPDX-License-Identifier: GPL-3.0-or-later
"""torchrun / DistributedDataParallel: launch-environment checks and a real 2-process Gloo run on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import NextFrameDataset, NextFrameMLP, tiny_stage_config

from kmm_core.training.batches import ShuffledBatches
from kmm_core.training.checkpoint import list_checkpoints
from kmm_core.training.distributed import (
    DistributedSetupError,
    init_distributed,
    read_launch_environment,
)
from kmm_core.training.run_log import read_log
from kmm_core.training.trainer import Trainer, seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS, BATCH_PER_PROCESS = 12, 6


def test_launch_environment_is_read_and_checked():
    assert read_launch_environment({}) == (0, 1, 0)
    assert read_launch_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(DistributedSetupError, match=r"RANK=4 is outside 0\.\.WORLD_SIZE-1 \(3\)"):
        read_launch_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(DistributedSetupError, match=r"WORLD_SIZE='two' is not an integer"):
        read_launch_environment({"WORLD_SIZE": "two"})
    with pytest.raises(DistributedSetupError, match="MASTER_ADDR is not set; launch with torchrun"):
        init_distributed("cpu", environ={"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_single_process_needs_no_process_group():
    context = init_distributed("cpu", environ={})
    assert (context.rank, context.world_size, context.backend, context.is_main) == (0, 1, None, True)
    assert not context.is_distributed and not torch.distributed.is_initialized()


@pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun not found next to {sys.executable}")
def test_two_gloo_processes_agree_and_match_one_process_with_the_global_batch(humanml3d_fixture_dir, tmp_path):
    out_dir = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]))
    completed = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO_ROOT / "tests" / "training_helpers.py"),
            str(humanml3d_fixture_dir),
            str(out_dir),
            str(STEPS),
            str(BATCH_PER_PROCESS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "rank 0/2 backend gloo finished step 12" in completed.stdout
    assert "rank 1/2 backend gloo finished step 12" in completed.stdout

    rank0, rank1 = (load_file(str(out_dir / f"rank{rank}.safetensors")) for rank in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # DDP: every process applied the same update

    # Only rank 0 logged and saved: one record per log step, one final checkpoint.
    train_steps = [r["step"] for r in read_log(out_dir / "log.jsonl") if r["kind"] == "train"]
    assert train_steps == list(range(5, STEPS + 1, 5)) + [STEPS]
    assert [p.name for p in list_checkpoints(out_dir / "checkpoints")] == [f"step_{STEPS:08d}"]

    # One process with the global batch (2 x 6) sees the same items each step and must end at the same weights.
    seed_everything(0)
    single = NextFrameMLP(dropout=0.0)
    initial = {k: v.clone() for k, v in single.state_dict().items()}
    batches = ShuffledBatches(NextFrameDataset(humanml3d_fixture_dir), 2 * BATCH_PER_PROCESS, seed=3)
    config = tiny_stage_config(steps=STEPS, batch_size=2 * BATCH_PER_PROCESS, checkpoint_every=0)
    Trainer(single, batches, config, tmp_path / "single", progress=False).run()
    largest_update = max((single.state_dict()[k] - initial[k]).abs().max().item() for k in initial)
    assert largest_update > 1e-3  # the comparison below is about training, not about untouched weights
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(rank0[name], tensor, atol=1e-5, rtol=1e-4)
