# SPDX-License-Identifier: GPL-3.0-or-later
"""The Trainer and its batch stream on a tiny real task (next-frame prediction on real HumanML3D features).

Covers: loss falls, logging/validation/pruning, exact resume (after SIGTERM and after a crash), Ctrl-C in a real
subprocess, NaN detection naming the step, empty data, the learning-rate schedule and the resumable batches.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from training_helpers import NextFrameDataset, NextFrameMLP, state_of, tiny_stage_config

from kmm_core.common.errors import KMMError
from kmm_core.training.batches import EmptyDataError, ShuffledBatches
from kmm_core.training.checkpoint import list_checkpoints, load_weights
from kmm_core.training.config import TrainStageConfig
from kmm_core.training.run_log import read_log
from kmm_core.training.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainingError,
    scheduled_learning_rate,
    seed_everything,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_SEED = 11


@pytest.fixture(scope="module")
def dataset(humanml3d_fixture_dir) -> NextFrameDataset:
    return NextFrameDataset(humanml3d_fixture_dir)


def full_data_mse(dataset: NextFrameDataset):
    def validate(module: torch.nn.Module) -> dict[str, float]:
        prediction = module(dataset.current)
        # Draws from the global RNG on purpose: validation must not change the training's random stream.
        noise_probe = torch.rand(()).item()
        return {"mse": torch.nn.functional.mse_loss(prediction, dataset.next).item(), "probe": noise_probe}

    return validate


def fresh_model(seed: int = 0, module_class=NextFrameMLP, **kwargs) -> torch.nn.Module:
    seed_everything(seed)
    return module_class(**kwargs)


class SignalAtStep(NextFrameMLP):
    """Sends itself a real signal during the forward pass of step ``signal_at`` (as Ctrl-C/SIGTERM would arrive)."""

    def __init__(self, signal_at: int, signum: int):
        super().__init__()
        self.signal_at, self.signum, self.calls = signal_at, signum, 0

    def compute_loss(self, batch):
        self.calls += 1
        if self.calls == self.signal_at:
            os.kill(os.getpid(), self.signum)
        return super().compute_loss(batch)


@pytest.fixture(scope="module")
def uninterrupted_run(dataset, tmp_path_factory):
    """30 steps with dropout, checkpoints every 10 and RNG-drawing validation every 10: the reference for resume."""
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    module = fresh_model()
    batches = ShuffledBatches(dataset, 8, seed=DATA_SEED)
    config = tiny_stage_config(steps=30, eval_every=10)
    result = Trainer(module, batches, config, out_dir, validate=full_data_mse(dataset), progress=False).run()
    return out_dir, state_of(module), result


def test_loss_falls_and_the_log_says_so(dataset, tmp_path):
    module = fresh_model()
    validate = full_data_mse(dataset)
    module.eval()
    with torch.no_grad():
        initial_mse = validate(module)["mse"]
    config = tiny_stage_config(steps=60, eval_every=20, checkpoint_every=10, keep_checkpoints=2, log_every=5)
    result = Trainer(
        module, ShuffledBatches(dataset, 8, seed=DATA_SEED), config, tmp_path, validate=validate, progress=False
    ).run()

    assert result.step == 60 and result.stopped_by is None
    assert result.validation["mse"] < 0.75 * initial_mse, (initial_mse, result.validation)
    records = read_log(tmp_path / "log.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    assert {"loss", "lr", "metrics", "items_per_s", "elapsed_s", "time"} <= set(train[0])
    assert train[0]["items_per_s"] > 0 and "mae" in train[0]["metrics"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["lr"] for r in train] == [scheduled_learning_rate(r["step"] - 1, config) for r in train]
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["step"] for r in validations] == [20, 40, 60]
    assert validations[-1]["metrics"]["mse"] == pytest.approx(result.validation["mse"])
    # keep_checkpoints=2: only the two newest survive, and the newest is the final state.
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000050", "step_00000060"]
    reloaded = fresh_model(seed=99)
    load_weights(reloaded, result.last_checkpoint)
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in module.state_dict().items())
    config_json = json.loads((result.last_checkpoint / "config.json").read_text())
    assert config_json["train"]["steps"] == 60 and config_json["train"]["betas"] == [0.9, 0.99]


def test_resume_after_sigterm_reproduces_the_uninterrupted_run_bit_for_bit(dataset, tmp_path, uninterrupted_run):
    _, reference_state, reference_result = uninterrupted_run
    config = tiny_stage_config(steps=30, eval_every=10)
    validate = full_data_mse(dataset)

    stopping = fresh_model(module_class=SignalAtStep, signal_at=13, signum=signal.SIGTERM)
    first = Trainer(
        stopping, ShuffledBatches(dataset, 8, seed=DATA_SEED), config, tmp_path, validate=validate, progress=False
    ).run()
    assert first.stopped_by == "SIGTERM" and first.step == 13
    assert first.last_checkpoint.name == "step_00000013"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after the run

    resumed_module = fresh_model(seed=12345)  # a different initialisation: everything must come from the checkpoint
    second = Trainer(
        resumed_module,
        ShuffledBatches(dataset, 8, seed=DATA_SEED),
        config,
        tmp_path,
        validate=validate,
        resume=True,
        progress=False,
    ).run()
    assert second.step == 30 and second.stopped_by is None
    for name, tensor in reference_state.items():
        assert torch.equal(resumed_module.state_dict()[name], tensor), name
    assert second.validation == reference_result.validation
    steps_logged = [r["step"] for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert steps_logged == [5, 10, 13, 15, 20, 25, 30]
    assert any("resumed from" in r.get("message", "") for r in read_log(tmp_path / "log.jsonl"))


def test_a_crash_loses_only_the_steps_since_the_last_checkpoint(dataset, tmp_path, uninterrupted_run):
    """A run killed between steps 10 and 20 left step_00000010; resuming from it ends exactly where the reference did."""
    reference_dir, reference_state, _ = uninterrupted_run
    shutil.copytree(reference_dir / "checkpoints" / "step_00000010", tmp_path / "checkpoints" / "step_00000010")
    (tmp_path / "checkpoints" / ".tmp-step_00000017-killed").mkdir()  # what a save killed half-way leaves behind
    module = fresh_model(seed=5)
    result = Trainer(
        module,
        ShuffledBatches(dataset, 8, seed=DATA_SEED),
        tiny_stage_config(steps=30, eval_every=10),
        tmp_path,
        validate=full_data_mse(dataset),
        resume=True,
        progress=False,
    ).run()
    assert result.step == 30
    for name, tensor in reference_state.items():
        assert torch.equal(module.state_dict()[name], tensor), name
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_ctrl_c_in_a_real_process_saves_and_exits_cleanly(humanml3d_fixture_dir, tmp_path):
    script = f"""
import json, sys
sys.path[:0] = [{str(REPO_ROOT / "tests")!r}, {str(REPO_ROOT)!r}]
from pathlib import Path
from training_helpers import NextFrameDataset, NextFrameMLP, tiny_stage_config
from kmm_core.training.batches import ShuffledBatches
from kmm_core.training.trainer import Trainer, seed_everything
seed_everything(0)
dataset = NextFrameDataset(Path({str(humanml3d_fixture_dir)!r}))
config = tiny_stage_config(steps=10**7, log_every=1, checkpoint_every=0)
result = Trainer(NextFrameMLP(), ShuffledBatches(dataset, 8), config, {str(tmp_path)!r}, progress=False).run()
print(json.dumps({{"step": result.step, "stopped_by": result.stopped_by, "checkpoint": str(result.last_checkpoint)}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    log_path = tmp_path / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log_path.exists() and len(read_log(log_path)) >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert outcome["stopped_by"] == "SIGINT" and outcome["step"] >= 5
    checkpoint = Path(outcome["checkpoint"])
    assert checkpoint.name == f"step_{outcome['step']:08d}"
    state = json.loads((checkpoint / "training_state.json").read_text())
    assert state["step"] == outcome["step"]
    load_weights(NextFrameMLP(), checkpoint)
    assert "stopped by SIGINT" in read_log(log_path)[-1]["message"]


class PoisonedDataset(Dataset):
    """The real dataset with one corrupt (NaN) item."""

    def __init__(self, dataset: NextFrameDataset, poisoned_index: int):
        self.dataset, self.poisoned_index = dataset, poisoned_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if index == self.poisoned_index:
            item = {"current": torch.full_like(item["current"], float("nan")), "next": item["next"]}
        return item


def test_nan_loss_stops_with_the_step_and_saves_nothing_corrupt(dataset, tmp_path):
    batches = ShuffledBatches(PoisonedDataset(dataset, poisoned_index=100), 8, seed=DATA_SEED)
    bad_step = next(b for b in range(len(batches)) if 100 in batches.batch_indices(0, b)) + 1
    assert bad_step > 1
    module = fresh_model()
    config = tiny_stage_config(steps=50, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match=rf"^step {bad_step}: the loss is nan") as caught:
        Trainer(module, batches, config, tmp_path, progress=False).run()
    assert caught.value.step == bad_step
    assert f"step_{bad_step - 1:08d}" in str(caught.value)  # points at the newest good checkpoint
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert checkpoints[-1].name == f"step_{bad_step - 1:08d}"
    assert all(torch.isfinite(t).all() for t in module.state_dict().values())
    reloaded = fresh_model(seed=3)
    load_weights(reloaded, checkpoints[-1])
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in module.state_dict().items())


class NoBatches:
    """A resumable stream over nothing."""

    def __iter__(self):
        return iter(())

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_empty_data_is_a_clear_error(dataset, tmp_path):
    small = torch.utils.data.Subset(dataset, range(5))
    with pytest.raises(EmptyDataError, match="has 5 items, fewer than one batch of 8"):
        ShuffledBatches(small, 8)
    with pytest.raises(EmptyDataError, match="has 5 items, fewer than one batch of 4 x 2 processes"):
        ShuffledBatches(small, 4, rank=1, world_size=2)
    with pytest.raises(EmptyDataError, match="produced no batches"):
        Trainer(fresh_model(), NoBatches(), tiny_stage_config(), tmp_path, progress=False).run()
    assert issubclass(EmptyDataError, KMMError)


def test_contract_violations_are_named(dataset, tmp_path):
    with pytest.raises(TypeError, match="compute_loss"):
        Trainer(torch.nn.Linear(2, 2), ShuffledBatches(dataset, 8), tiny_stage_config(), tmp_path)
    with pytest.raises(TypeError, match="must be resumable"):
        Trainer(fresh_model(), [1, 2, 3], tiny_stage_config(), tmp_path)


def test_an_output_folder_with_checkpoints_is_not_overwritten(dataset, tmp_path):
    config = tiny_stage_config(steps=3, checkpoint_every=0)
    Trainer(fresh_model(), ShuffledBatches(dataset, 8), config, tmp_path, progress=False).run()
    with pytest.raises(TrainingError, match="already holds checkpoints .*step_00000003"):
        Trainer(fresh_model(), ShuffledBatches(dataset, 8), config, tmp_path, progress=False).run()
    # Resuming a finished run does nothing and reports where it ended.
    result = Trainer(fresh_model(), ShuffledBatches(dataset, 8), config, tmp_path, resume=True, progress=False).run()
    assert result.step == 3 and result.last_checkpoint.name == "step_00000003"


def test_amp_is_ignored_on_cpu_and_said_so(dataset, tmp_path):
    config = tiny_stage_config(steps=2, amp="bf16", checkpoint_every=0)
    Trainer(fresh_model(), ShuffledBatches(dataset, 8), config, tmp_path, progress=False).run()
    assert any("ignored" in r.get("message", "") for r in read_log(tmp_path / "log.jsonl"))


def test_learning_rate_schedule_warms_up_then_decays_to_the_floor():
    config = TrainStageConfig(steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    rates = [scheduled_learning_rate(step, config) for step in range(100)]
    assert rates[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert rates[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert scheduled_learning_rate(100, config) == pytest.approx(1e-4)
    assert rates[55] == pytest.approx(1e-4 + 0.5 * 0.9e-3)  # half way through the decay: the cosine's midpoint


def test_batches_resume_mid_epoch_and_cover_each_epoch_once(dataset):
    stream = ShuffledBatches(dataset, 16, seed=4)
    per_epoch = len(stream)
    iterator = iter(stream)
    drawn = [next(iterator)["current"] for _ in range(per_epoch + 3)]
    first_epoch = torch.cat(drawn[:per_epoch])
    assert first_epoch.shape[0] == per_epoch * 16
    assert torch.unique(first_epoch, dim=0).shape[0] == first_epoch.shape[0]  # no item twice in one epoch
    assert stream.state_dict()["epoch"] == 1 and stream.state_dict()["batch_in_epoch"] == 3
    assert not torch.equal(drawn[0], drawn[per_epoch])  # a new permutation in the new epoch

    resumed = ShuffledBatches(dataset, 16, seed=4)
    resumed.load_state_dict(stream.state_dict())
    assert torch.equal(next(iter(resumed))["current"], next(iterator)["current"])
    with pytest.raises(ValueError, match="global_batch_size"):
        ShuffledBatches(dataset, 8, seed=4).load_state_dict(stream.state_dict())


def test_shards_together_are_the_single_process_batch(dataset):
    single = iter(ShuffledBatches(dataset, 12, seed=9))
    shards = [iter(ShuffledBatches(dataset, 4, seed=9, rank=rank, world_size=3)) for rank in range(3)]
    for _ in range(len(dataset) // 12 + 2):  # across an epoch boundary
        whole = next(single)["current"]
        assert torch.equal(torch.cat([next(shard)["current"] for shard in shards]), whole)


def test_validation_never_changes_what_training_computes(dataset, tmp_path, uninterrupted_run):
    """The reference run validated (drawing random numbers) every 10 steps; without validation the weights are equal."""
    _, reference_state, _ = uninterrupted_run
    module = fresh_model()
    Trainer(
        module,
        ShuffledBatches(dataset, 8, seed=DATA_SEED),
        tiny_stage_config(steps=30, eval_every=0),
        tmp_path,
        progress=False,
    ).run()
    for name, tensor in reference_state.items():
        assert torch.equal(module.state_dict()[name], tensor), name
