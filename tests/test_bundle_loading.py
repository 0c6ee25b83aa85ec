# SPDX-License-Identifier: GPL-3.0-or-later
"""Start-up loads only what generation uses, and still verifies all of that: the shipped bundle without its
evaluation encoders (a damaged evaluator file does not stop generation, but does stop evaluation), checksums of every
loaded file, and non-finite weights refused in every float type."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path, read_manifest
from kmm_core.bundle.weight_checksums import WeightFileError, verify_bundle_files
from kmm_core.evaluation.evaluator import load_evaluator
from kmm_core.model.weights import CheckpointError, load_weights

SHIPPED = default_bundle_path()


def _damage(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[100_000:108_192] = b"\xff" * 8192
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def bundle_with_damaged_evaluator(tmp_path_factory) -> Path:
    bundle = Path(shutil.copytree(SHIPPED, tmp_path_factory.mktemp("bundles") / "kmm-small"))
    _damage(bundle / "evaluator.safetensors")
    return bundle


def test_generation_loads_neither_the_evaluator_nor_its_file(bundle_with_damaged_evaluator):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bundle = ModelBundle.load(bundle_with_damaged_evaluator, device="cpu")
        assert torch.get_num_threads() == 2  # loading runs on one thread and gives the caller's count back
    finally:
        torch.set_num_threads(threads)
    assert bundle.evaluator is None and "evaluator" not in bundle.config  # not built, not read
    assert "evaluator" in bundle.config["components"]  # the bundle still says it has one
    condition = bundle.prompt_embeddings(["a person raises the left hand"])
    assert condition.shape == (1, bundle.generator.config.cond_dim) and torch.isfinite(condition).all()


def test_evaluation_still_verifies_the_evaluator(bundle_with_damaged_evaluator):
    damaged = bundle_with_damaged_evaluator / "evaluator.safetensors"
    with pytest.raises(WeightFileError, match=r"evaluator\.safetensors: SHA-256 .* does not match") as error:
        ModelBundle.load(bundle_with_damaged_evaluator, device="cpu", evaluator=True)
    assert error.value.path == str(damaged)
    with pytest.raises(WeightFileError, match=r"evaluator\.safetensors: SHA-256 .* does not match"):
        load_evaluator(bundle_with_damaged_evaluator)
    assert ModelBundle.load(SHIPPED, device="cpu", evaluator=True).evaluator is not None


def test_every_file_generation_loads_is_verified(tmp_path):
    manifest = read_manifest(SHIPPED)
    loaded = ["tokenizer.safetensors", "tokenizer.json", "generator.safetensors", "generator.json",
              "aligner.safetensors", "aligner.json", "standing_decoder.safetensors", "standing_decoder.json",
              "walking_decoder.safetensors", "walking_decoder.json", "gesture_decoder.safetensors",
              "gesture_decoder.json", "Mean.npy", "Std.npy"]
    # every file: + the evaluator's two, the vocabulary's two and the gait cycles' two (generation verifies those
    # when a take walks: tests/test_gait_matching.py)
    assert verify_bundle_files(SHIPPED, manifest, loaded) == 14 and verify_bundle_files(SHIPPED, manifest) == 20
    for name in ("aligner.safetensors", "standing_decoder.safetensors", "walking_decoder.safetensors",
                 "gesture_decoder.safetensors", "Std.npy"):
        bundle = Path(shutil.copytree(SHIPPED, tmp_path / name))
        target = bundle / name
        if name.endswith(".npy"):
            target.write_bytes(target.read_bytes()[:-8] + b"\x00" * 8)
        else:
            _damage(target)
        with pytest.raises(WeightFileError, match=rf"{name.replace('.', chr(92) + '.')}: SHA-256"):
            ModelBundle.load(bundle, device="cpu")
    with pytest.raises(WeightFileError, match=r"'files' has no checksum for extra\.safetensors"):
        verify_bundle_files(SHIPPED, manifest, ["extra.safetensors"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_non_finite_weights_are_refused_in_every_float_type(dtype, tmp_path):
    module = torch.nn.Linear(4, 3)
    weights = {name: value.detach().to(dtype) for name, value in module.state_dict().items()}
    save_file(weights, str(tmp_path / "ok.safetensors"))
    load_weights(module, tmp_path / "ok.safetensors")
    weights["weight"][1, 2] = float("inf")
    weights["bias"][0] = float("nan")
    save_file(weights, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: 1 non-finite value\(s\) \(NaN or infinity\) in "
                                              r"(weight|bias)"):
        load_weights(module, tmp_path / "bad.safetensors")
