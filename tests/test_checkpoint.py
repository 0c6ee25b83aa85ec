# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint folders: exact round trip of weights, optimizer and RNG; key checks; atomic writes; pruning; fp16 export."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from training_helpers import NextFrameDataset, NextFrameMLP, tiny_stage_config

import kmm_core.training.checkpoint as checkpoint_module
from kmm_core.common.atomic_write import OutputWriteError
from kmm_core.common.errors import KMMError
from kmm_core.training.checkpoint import (
    CheckpointError,
    export_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_checkpoint_config,
    save_checkpoint,
)
from kmm_core.training.trainer import adamw_for, seed_everything


@pytest.fixture(scope="module")
def dataset(humanml3d_fixture_dir) -> NextFrameDataset:
    return NextFrameDataset(humanml3d_fixture_dir)


def train_steps(module, optimizer, dataset, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        rows = slice(8 * step % 160, 8 * step % 160 + 8)
        loss, _ = module.compute_loss({"current": dataset.current[rows], "next": dataset.next[rows]})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def trained(dataset, steps: int = 5):
    seed_everything(0)
    module = NextFrameMLP()
    optimizer = adamw_for(module, tiny_stage_config(weight_decay=0.1))
    train_steps(module, optimizer, dataset, steps)
    return module, optimizer


def test_round_trip_restores_weights_optimizer_rng_and_data_position(dataset, tmp_path):
    module, optimizer = trained(dataset)
    saved_weights = {k: v.clone() for k, v in module.state_dict().items()}
    saved_optimizer = optimizer.state_dict()
    saved_optimizer_tensors = {(p, k): v.clone() for p, s in saved_optimizer["state"].items() for k, v in s.items()}
    folder = save_checkpoint(
        tmp_path,
        5,
        module,
        optimizer,
        config={"train": tiny_stage_config()},
        data_state={"epoch": 2, "batch_in_epoch": 7},
        extra={"note": "x"},
    )
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))

    train_steps(module, optimizer, dataset, 3, start=5)  # move everything on
    reference, _ = trained(dataset, steps=6)  # what one more step from the saved state must give

    fresh = NextFrameMLP()
    fresh_optimizer = adamw_for(fresh, tiny_stage_config(weight_decay=0.1))
    state = load_checkpoint(folder, fresh, fresh_optimizer)
    assert (state.step, state.data_state, state.extra) == (5, {"epoch": 2, "batch_in_epoch": 7}, {"note": "x"})
    for name, tensor in saved_weights.items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    restored = fresh_optimizer.state_dict()
    for (param, key), tensor in saved_optimizer_tensors.items():
        assert torch.equal(restored["state"][param][key], tensor), (param, key)
    assert restored["param_groups"] == saved_optimizer["param_groups"]
    assert isinstance(fresh_optimizer.param_groups[0]["betas"], tuple)
    # The restored optimizer and RNG (dropout) continue exactly as the uninterrupted reference.
    train_steps(fresh, fresh_optimizer, dataset, 1, start=5)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name

    load_checkpoint(folder, NextFrameMLP())  # RNG states again: the same numbers as right after saving
    assert (random.random(), np.random.rand()) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])
    assert read_checkpoint_config(folder)["train"]["steps"] == tiny_stage_config().steps


def test_files_are_safetensors_and_json_only(dataset, tmp_path):
    module, optimizer = trained(dataset, steps=1)
    folder = save_checkpoint(tmp_path, 1, module, optimizer, data_state={"epoch": 0, "batch_in_epoch": 1})
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "training_state.json",
        "training_state.safetensors",
    ]
    for name in ("model.safetensors", "training_state.safetensors"):
        raw = (folder / name).read_bytes()
        header_length = struct.unpack("<Q", raw[:8])[0]
        json.loads(raw[8 : 8 + header_length])  # the safetensors header is JSON; no pickle anywhere
    with safe_open(str(folder / "training_state.safetensors"), "pt") as handle:
        names = set(handle.keys())
    assert {"rng.torch", "rng.numpy_key"} <= names
    assert any(name.startswith("optimizer.") and name.endswith(".exp_avg_sq") for name in names)
    state_json = json.loads((folder / "training_state.json").read_text())
    assert state_json["step"] == 1 and len(state_json["rng"]["python"]["state"]) == 625


def test_weights_that_do_not_fit_are_named(dataset, tmp_path):
    module, _ = trained(dataset, steps=1)
    folder = save_checkpoint(tmp_path, 1, module)
    with pytest.raises(CheckpointError, match=r"shape mismatches: net\.0\.bias \(32,\) vs module \(16,\)"):
        load_weights(NextFrameMLP(hidden=16), folder)

    class Deeper(NextFrameMLP):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 3)

    with pytest.raises(CheckpointError, match=r"missing keys: head\.bias, head\.weight") as caught:
        load_weights(Deeper(), folder / "model.safetensors")
    assert "model.safetensors" in str(caught.value) and isinstance(caught.value, KMMError)

    class Shallower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Identity(), torch.nn.GELU(), torch.nn.Identity(), torch.nn.Linear(32, 263)
            )

    with pytest.raises(CheckpointError, match=r"unexpected keys: net\.0\.bias, net\.0\.weight"):
        load_weights(Shallower(), folder)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a readable safetensors file"):
        load_weights(module, tmp_path / "broken.safetensors")


def test_pruning_keeps_the_newest_and_ignores_unfinished_saves(dataset, tmp_path):
    module, optimizer = trained(dataset, steps=1)
    (tmp_path / ".tmp-step_00000009-abc").mkdir()  # left by a save that was killed
    (tmp_path / "step_00000099").mkdir()  # incomplete folder (not written by save_checkpoint)
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, step, module, optimizer, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000005"]
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    assert not list(tmp_path.glob(".tmp-*"))
    assert latest_checkpoint(tmp_path / "nowhere") is None


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_debris(dataset, tmp_path, monkeypatch):
    module, optimizer = trained(dataset, steps=1)
    save_checkpoint(tmp_path, 1, module, optimizer)
    real_save_file, calls = checkpoint_module.save_file, []

    def disk_full_on_second_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", disk_full_on_second_file)
    with pytest.raises(OutputWriteError, match="No space left.*older checkpoints are unchanged"):
        save_checkpoint(tmp_path, 2, module, optimizer)
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]
    monkeypatch.undo()
    # Saving the same step again replaces it whole.
    train_steps(module, optimizer, dataset, 1, start=1)
    save_checkpoint(tmp_path, 1, module, optimizer)
    reloaded = NextFrameMLP()
    load_weights(reloaded, tmp_path / "step_00000001")
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in module.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]


def test_half_precision_export_for_shipping(dataset, tmp_path):
    module, _ = trained(dataset, steps=3)
    module.register_buffer("frame_count", torch.tensor([170], dtype=torch.int64))
    path = export_weights(module, tmp_path / "ship" / "next_frame.safetensors", config={"hidden": 32})
    with safe_open(str(path), "pt") as handle:
        dtypes = {name: handle.get_tensor(name).dtype for name in handle.keys()}
        assert handle.metadata()["dtype"] == "float16"
    assert dtypes.pop("frame_count") == torch.int64
    assert set(dtypes.values()) == {torch.float16}
    assert json.loads(path.with_suffix(".json").read_text()) == {"hidden": 32}
    full_size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    assert path.stat().st_size < 0.6 * full_size

    shipped = NextFrameMLP()
    shipped.register_buffer("frame_count", torch.zeros(1, dtype=torch.int64))
    load_weights(shipped, path)
    for name, tensor in module.state_dict().items():
        assert shipped.state_dict()[name].dtype == tensor.dtype
        torch.testing.assert_close(shipped.state_dict()[name], tensor, atol=2e-3, rtol=1e-3)


def test_tied_weights_survive(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.out = torch.nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

    module = Tied()
    save_checkpoint(tmp_path, 1, module)
    fresh = Tied()
    load_weights(fresh, tmp_path / "step_00000001")
    assert torch.equal(fresh.embed.weight, module.embed.weight)
    assert fresh.out.weight.data_ptr() == fresh.embed.weight.data_ptr()


def test_incomplete_folder_is_named(tmp_path):
    (tmp_path / "step_00000001").mkdir()
    with pytest.raises(
        CheckpointError, match=r"step_00000001: not a complete checkpoint: model.safetensors is missing"
    ):
        load_checkpoint(tmp_path / "step_00000001", NextFrameMLP())
