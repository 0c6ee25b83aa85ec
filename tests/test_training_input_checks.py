# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train` refuses what it cannot train on in one line, before any work: a thread count torch cannot run, a
model config the bundle loader would refuse, statistics that cannot normalise, an `--out` that is a file, and a
damaged training state on `--resume` (checked field by field before anything is restored)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from training_helpers import NextFrameDataset, NextFrameMLP, tiny_stage_config

from kmm_core.common.errors import ConfigError
from kmm_core.common.limits import MODEL_CONFIG_RANGES, max_threads
from kmm_core.model.configs import QuantizerConfig, TokenizerConfig
from kmm_core.model.weights import CheckpointError
from kmm_core.training.batches import ShuffledBatches
from kmm_core.training.checkpoint import STATE_JSON_FILE, list_checkpoints
from kmm_core.training.cli import main
from kmm_core.training.trainer import Trainer, seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = REPO_ROOT / "training" / "configs" / "tiny.toml"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("threads", ["0", "100000", str(max_threads() + 1)])
def test_a_thread_count_outside_1_to_4_per_cpu_is_one_line(threads, tmp_path, capsys):
    code = main(["tokenizer", "--config", str(TINY), "--out", str(tmp_path / "run"), "--threads", threads])
    assert code == 1
    assert f"--threads must be 1 to {max_threads()}" in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # refused before anything was made


@pytest.mark.parametrize("value", [20_000, 10**9])
def test_a_codebook_the_bundle_loader_would_refuse_is_refused_before_training(value, tmp_path, capsys):
    code = main(["all", "--config", str(TINY), "--out", str(tmp_path / "run"),
                 "--set", f"tokenizer.quantizer.codebook_size={value}"])
    assert code == 1
    line = _one_line_error(capsys)
    low, high = MODEL_CONFIG_RANGES["codebook_size"]
    assert "[tokenizer.quantizer] key 'codebook_size'" in line and f"{low} to {high}" in line, line
    assert "width" not in line
    assert not (tmp_path / "run").exists()


def test_a_too_large_model_names_the_field_that_makes_it_large():
    with pytest.raises(ConfigError, match=r"^quantizer\.codebook_size: the tokenizer would have about 1,074 million"):
        TokenizerConfig(width=64, res_blocks=1,
                        quantizer=QuantizerConfig(num_quantizers=32, codebook_size=16_384, code_dim=2048))
    with pytest.raises(ConfigError, match=r"^width: the tokenizer"):
        TokenizerConfig(width=2048, res_blocks=8)


@pytest.mark.parametrize("damage", ["zeros", "negative", "nan"])
def test_training_data_whose_std_cannot_normalise_is_refused_naming_the_file(damage, prepared_dataset, tmp_path,
                                                                              capsys):
    data = Path(shutil.copytree(prepared_dataset, tmp_path / "data"))
    std = np.load(data / "Std.npy")
    if damage == "zeros":
        std[:] = 0.0
    elif damage == "negative":
        std[[4, 5, 6, 200]] = -0.5
    else:
        std[100] = np.nan
    np.save(data / "Std.npy", std)
    code = main(["tokenizer", "--config", str(TINY), "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--no-progress", "--set", f"data.root={data}"])
    assert code == 1
    line = _one_line_error(capsys)
    assert f"{data / 'Std.npy'}:" in line, line
    expected = {"zeros": "all 263 of its values are zero", "negative": "feature indices 4-6, 200",
                "nan": "feature indices 100"}[damage]
    assert expected in line, line
    assert not (tmp_path / "run" / "tokenizer").exists()  # no stage started


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    assert main(["tokenizer", "--config", str(TINY), "--out", str(existing)]) == 1
    assert f"--out {existing}: is a file, not a folder" in _one_line_error(capsys)
    assert existing.read_text() == "mine\n"  # untouched


@pytest.fixture(scope="module")
def finished_run(humanml3d_fixture_dir, tmp_path_factory) -> Path:
    """A Trainer run folder of 10 steps on the tiny next-frame task, with its checkpoint at step 10."""
    out = tmp_path_factory.mktemp("state-run")
    seed_everything(0)
    Trainer(NextFrameMLP(), ShuffledBatches(NextFrameDataset(humanml3d_fixture_dir), 8, seed=3),
            tiny_stage_config(steps=10, checkpoint_every=10), out, progress=False).run()
    return out


def _damaged_resume(finished_run: Path, tmp_path: Path, humanml3d_fixture_dir, change) -> CheckpointError:
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    state_path = list_checkpoints(run / "checkpoints")[-1] / STATE_JSON_FILE
    state = json.loads(state_path.read_text())
    change(state)
    state_path.write_text(json.dumps(state))
    seed_everything(0)
    trainer = Trainer(NextFrameMLP(), ShuffledBatches(NextFrameDataset(humanml3d_fixture_dir), 8, seed=3),
                      tiny_stage_config(steps=20, checkpoint_every=10), run, resume=True, progress=False)
    with pytest.raises(CheckpointError) as caught:
        trainer.run()
    assert caught.value.path == str(state_path)
    return caught.value


@pytest.mark.parametrize(("change", "field", "reason"), [
    (lambda s: s.pop("rng"), "rng", "is missing"),
    (lambda s: s["rng"]["numpy"].pop("position"), "rng.numpy.position", "is missing"),
    (lambda s: s.update(step=-50), "step", "is -50, but the checkpoint folder is step 10"),
    (lambda s: s.update(step="10"), "step", "must be an integer, got str"),
    (lambda s: s["rng"]["python"].update(state=[1.5]), "rng.python.state", "must be a list of 32-bit unsigned integers"),
    (lambda s: s["optimizer"]["param_groups"][0].update(lr=-1.0), "optimizer.param_groups[0].lr", "must be a finite number >= 0"),
    (lambda s: s.pop("data"), "data", "is missing"),
])
def test_a_damaged_training_state_is_refused_naming_the_file_and_field(change, field, reason, finished_run, tmp_path,
                                                                       humanml3d_fixture_dir):
    error = _damaged_resume(finished_run, tmp_path, humanml3d_fixture_dir, change)
    assert f"field '{field}' {reason}" in str(error), str(error)
    assert "\n" not in str(error)


def test_kmm_train_resume_from_a_state_without_rng_is_one_line(prepared_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["tokenizer", "--config", str(TINY), "--out", str(run), "--device", "cpu", "--no-progress",
            "--threads", "1", "--set", f"data.root={prepared_dataset}", "--set", "train.tokenizer.steps=2",
            "--set", "train.tokenizer.eval_every=0"]
    assert main(args) == 0
    capsys.readouterr()
    state_path = list_checkpoints(run / "tokenizer" / "checkpoints")[-1] / STATE_JSON_FILE
    state = json.loads(state_path.read_text())
    del state["rng"]
    state_path.write_text(json.dumps(state))
    assert main([*[a if a != "train.tokenizer.steps=2" else "train.tokenizer.steps=4" for a in args], "--resume"]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"kmm-train tokenizer: error: {state_path}: field 'rng' is missing"), line
    assert os.path.getsize(state_path) > 0  # the damaged checkpoint is left for the user to inspect
