# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train` as users run it: subcommands, errors on stderr, Ctrl-C then --resume, bundle assembly and loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kmm_core.bundle.model_bundle import BundleError, ModelBundle, ModelMissingError, default_bundle_path, read_manifest
from kmm_core.training.bundle_writer import assemble_bundle
from kmm_core.training.cli import EXIT_STOPPED, build_parser, main
from kmm_core.training.run_log import read_log

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "kmm_core.training.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=timeout)


def test_module_entry_point_lists_the_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("prepare", "tokenizer", "aligner", "evaluator", "generator", "all", "bundle"):
        assert command in result.stdout
    has_eval = (REPO_ROOT / "kmm_core" / "evaluation" / "evaluate.py").is_file()
    assert ("eval" in build_parser()._subparsers._group_actions[0].choices) == has_eval


def test_prepare_is_dispatched_to_the_prepare_command():
    result = run_cli("prepare", "--help")
    assert result.returncode == 0, result.stderr
    assert "kmm-train prepare" in result.stdout and "--bandai-namco" in result.stdout


def test_bad_override_and_missing_config_exit_1_with_a_message(tmp_path, capsys):
    assert main(["tokenizer", "--config", str(TINY_TRAINING_CONFIG), "--out", str(tmp_path / "run"),
                 "--set", "train.tokenizer.stesp=3"]) == 1
    assert "unknown key 'stesp'" in capsys.readouterr().err
    assert main(["aligner", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "run")]) == 1
    assert "missing.toml: config file not found" in capsys.readouterr().err
    assert main(["all", "--config", str(TINY_TRAINING_CONFIG), "--out", str(tmp_path / "run"),
                 "--set", f"data.root={tmp_path / 'no_data'}"]) == 1
    assert "training data folder not found" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path, prepared_dataset):
    run = tmp_path / "run"
    args = ["tokenizer", "--config", str(TINY_TRAINING_CONFIG), "--out", str(run), "--device", "cpu", "--no-progress",
            "--threads", "1", "--set", f"data.root={prepared_dataset}", "--set", "train.tokenizer.steps=400",
            "--set", "train.tokenizer.checkpoint_every=2", "--set", "train.tokenizer.eval_every=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "kmm_core.training.cli", *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = run / "tokenizer" / "checkpoints"
    try:
        deadline = time.monotonic() + 90
        while not (checkpoints.is_dir() and any(checkpoints.glob("step_*"))):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed assertion above must not leave the trainer running
            process.kill()
            process.communicate()
    assert process.returncode == EXIT_STOPPED, err
    assert "continue with --resume" in err
    stopped_at = max(int(p.name.removeprefix("step_")) for p in checkpoints.glob("step_*"))
    assert 2 <= stopped_at < 400
    assert not (run / "tokenizer.safetensors").exists()  # a stopped stage exports nothing
    result = run_cli(*[a if a != "train.tokenizer.steps=400" else f"train.tokenizer.steps={stopped_at + 2}"
                       for a in args], "--resume")
    assert result.returncode == 0, result.stderr
    assert (run / "tokenizer.safetensors").is_file()
    assert any(f"resumed from {checkpoints / f'step_{stopped_at:08d}'}" in r.get("message", "")
               for r in read_log(run / "tokenizer" / "log.jsonl"))


def test_bundle_float32_matches_float16_bundle(tiny_run, tmp_path):
    assert main(["bundle", "--run", str(tiny_run), "--out", str(tmp_path / "b32"), "--dtype", "float32",
                 "--name", " KMM fp32 "]) == 0
    full = ModelBundle.load(tmp_path / "b32", device="cpu", evaluator=True)
    from kmm_core.evaluation.evaluate import checkpoint_name

    assert checkpoint_name(tmp_path / "b32", full.config) == "KMM fp32"  # the eval table's row name
    assert checkpoint_name(tiny_run / "bundle", read_manifest(tiny_run / "bundle")) == f"{tiny_run.name}/bundle"
    half = ModelBundle.load(tiny_run / "bundle", device="cpu")
    assert full.config["components"] == ["tokenizer", "generator", "aligner", "evaluator"]
    assert "CC BY-NC 4.0" in full.config["licence"] and full.config["dataset"]["train_clips"] > 0
    assert (tmp_path / "b32" / "generator.safetensors").stat().st_size > (
        tiny_run / "bundle" / "generator.safetensors").stat().st_size * 1.8
    texts = ["a person walks forward", "a person waves the right hand"]
    a, b = full.text_conditioner(texts), half.text_conditioner(texts)
    assert a.sentence.shape == (2, full.generator.config.cond_dim)
    assert a.tokens.shape[-1] == full.generator.config.cond_dim
    assert torch.allclose(a.sentence, b.sentence, atol=2e-2)
    assert not torch.allclose(a.sentence[0], a.sentence[1])
    assert full.normalizer.dim == 263 and full.evaluator is not None


def test_bundle_generates_decodable_motion(tiny_bundle):
    from kmm_core.model.decoding import decode_tokens

    bundle = ModelBundle.load(tiny_bundle)
    assert bundle.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    condition = bundle.text_conditioner(["a person runs"])
    result = decode_tokens(bundle.generator, 48, sentence=condition.sentence, seed=1)
    assert result.codes.shape == (1, 12, bundle.generator.config.num_quantizers)
    features = bundle.normalizer.denormalize(bundle.tokenizer.decode(result.codes, num_frames=48))
    assert features.shape == (1, 48, 263) and torch.isfinite(features).all()
    again = decode_tokens(bundle.generator, 48, sentence=condition.sentence, seed=1)
    assert torch.equal(result.codes, again.codes)


def test_missing_bundle_is_a_clear_error(tmp_path, tiny_run):
    assert default_bundle_path().parts[-3:] == ("kmm_core", "checkpoints", "kmm-small")
    with pytest.raises(ModelMissingError, match="nothing: no such folder. Train one.*kmm-train all"):
        ModelBundle.load(tmp_path / "nothing")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ModelMissingError, match="a-file: a file, not a bundle folder"):
        ModelBundle.load(tmp_path / "a-file")
    with pytest.raises(ModelMissingError, match=r"self: a folder, but no KMM model bundle \(bundle.json missing\)"):
        ModelBundle.load("/proc/self")  # an existing folder is never called missing
    (tmp_path / "partial").mkdir()
    with pytest.raises(BundleError, match="generator.safetensors: not found"):
        run = tmp_path / "partial"
        for suffix in (".safetensors", ".json"):
            (run / f"tokenizer{suffix}").write_bytes((tiny_run / f"tokenizer{suffix}").read_bytes())
        assemble_bundle(run, tmp_path / "out")


def test_damaged_bundle_files_name_the_file_and_line(tmp_path, tiny_bundle, monkeypatch):
    import shutil

    monkeypatch.setenv("KMM_ALLOW_UNCHECKED_BUNDLE", "1")  # the explicit opt-out for a bundle without checksums
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, damaged)
    manifest = json.loads((damaged / "bundle.json").read_text())
    manifest.pop("files")  # a bundle without checksums (tests/test_weight_checksums.py covers those): JSON errors
    (damaged / "bundle.json").write_text(json.dumps(manifest))
    (damaged / "generator.json").write_text('{\n  "d_model": 64,\n  oops\n}', encoding="utf-8")
    with pytest.raises(BundleError, match=r"generator.json, line 3: generator config is not valid JSON"):
        ModelBundle.load(damaged)
    (damaged / "bundle.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(BundleError, match=r"bundle.json: expected a JSON object"):
        ModelBundle.load(damaged)


@pytest.mark.parametrize("name", ["tiny", "small", "full"])
def test_shipped_configs_load_and_fit_together(name):
    from kmm_core.training.stages import check_generator_fits, evaluator_config, load_project_config

    config = load_project_config(REPO_ROOT / "training" / "configs" / f"{name}.toml")
    check_generator_fits(config, config.tokenizer, config.aligner)
    assert evaluator_config(config).embed_dim >= 1
    if name == "full":
        assert config.generator.n_layers == 4 and config.generator.backbone == "mamba"
        assert config.tokenizer.quantizer.num_quantizers == 6 and config.tokenizer.quantizer.codebook_size == 512


def test_torchrun_two_processes_train_every_stage_and_write_one_bundle(tmp_path, prepared_dataset):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    run = tmp_path / "run"
    overrides = [item for stage in ("tokenizer", "aligner", "generator")
                 for item in ("--set", f"train.{stage}.steps=3", "--set", f"train.{stage}.batch_size=4")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "kmm_core.training.cli", "all",
               "--stages", "tokenizer,aligner,generator", "--config", str(TINY_TRAINING_CONFIG), "--out", str(run),
               "--set", f"data.root={prepared_dataset}", *overrides, "--device", "cpu", "--threads", "1",
               "--no-progress"]
    # A session of its own, so a hang kills the workers too, not only torchrun.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                               env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("bundle written to") == 1  # rank 0 only
    for stage in ("tokenizer", "aligner", "generator"):
        records = [r for r in read_log(run / stage / "log.jsonl") if r.get("kind") == "train"]
        assert records[-1]["step"] == 3
    bundle = ModelBundle.load(run / "bundle", device="cpu")
    assert bundle.config["components"] == ["tokenizer", "generator", "aligner"]
