# SPDX-License-Identifier: GPL-3.0-or-later
"""The decoder stage (kmm-train decoder) on the tiny real dataset: the jerk term makes reconstructions smoother, the
codes the generator learned do not change, the bundle ships the refined decoder and refuses one refined from
another tokenizer, and an off stage says how to turn it on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import KMMError
from kmm_core.data.motion_dataset import MotionClips, collate_motion
from kmm_core.model.motion_tokenizer import MotionTokenizer
from kmm_core.training.bundle_writer import assemble_bundle
from kmm_core.training.stages import (
    DecoderRefinement,
    StageError,
    load_project_config,
    load_stage_model,
    run_stages,
    tokenizer_validation,
    train_decoder,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train_batches(prepared_dataset):
    clips = MotionClips(prepared_dataset, "train", max_frames=64, random_crop=False)
    return clips.normalizer, [collate_motion([clips[i] for i in range(s, s + 8)]) for s in range(0, 32, 8)]


def _refine(tiny_run, normalizer, batches, jerk_weight: float, steps: int = 25) -> MotionTokenizer:
    torch.manual_seed(0)
    module = DecoderRefinement(load_stage_model(tiny_run, "tokenizer", CPU), normalizer, jerk_weight).train()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    for step in range(steps):
        loss, _ = module.compute_loss(batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.tokenizer.eval()


def test_the_jerk_term_makes_reconstructions_smoother_and_keeps_the_codes(tiny_run, train_batches):
    normalizer, batches = train_batches
    original = load_stage_model(tiny_run, "tokenizer", CPU)
    plain = _refine(tiny_run, normalizer, batches, jerk_weight=0.0)
    smooth = _refine(tiny_run, normalizer, batches, jerk_weight=1.0)
    with torch.no_grad():
        ratios = {name: tokenizer_validation(model, batches, normalizer, CPU)["jerk_ratio"]
                  for name, model in (("plain", plain), ("smooth", smooth))}
        for batch in batches:  # frozen encoder and codebooks (no EMA update in training mode): the same codes
            assert torch.equal(smooth.encode(batch.features, batch.valid),
                               original.encode(batch.features, batch.valid))
    assert ratios["smooth"] < 0.8 * ratios["plain"], ratios
    for key, value in original.state_dict().items():
        if not key.startswith("decoder."):
            assert torch.equal(smooth.state_dict()[key], value), key


def test_the_stage_writes_a_tokenizer_whose_codes_are_the_tokenizers(tiny_run, prepared_dataset):
    clips = MotionClips(prepared_dataset, "val", max_frames=64, random_crop=False)
    batch = collate_motion([clips[i] for i in range(min(6, len(clips)))])
    tokenizer = load_stage_model(tiny_run, "tokenizer", CPU)
    refined = load_stage_model(tiny_run, "decoder", CPU)
    assert torch.equal(refined.encode(batch.features, batch.valid), tokenizer.encode(batch.features, batch.valid))
    changed = [key for key, value in refined.state_dict().items()
               if not torch.equal(value, tokenizer.state_dict()[key])]
    assert changed and all(key.startswith("decoder.") for key in changed), changed
    shipped = load_file(str(tiny_run / "bundle" / "tokenizer.safetensors"))
    refined_weights = load_file(str(tiny_run / "decoder.safetensors"))
    for key in changed:  # the bundle carries the refined decoder (float16)
        assert torch.allclose(shipped[key].float(), refined_weights[key], atol=1e-2, rtol=1e-2), key


def test_the_bundle_refuses_a_decoder_refined_from_another_tokenizer(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("bundle", "cache", "checkpoints"))
    weights = load_file(str(run / "decoder.safetensors"))
    key = next(k for k in weights if k.startswith("encoder."))
    weights[key] = weights[key] + 0.01
    save_file(weights, str(run / "decoder.safetensors"))
    with pytest.raises(KMMError, match=rf"decoder\.safetensors.*another tokenizer \({key} differs"):
        assemble_bundle(run, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "bundle.json").exists()


def test_an_off_decoder_stage_is_skipped_by_all_and_refused_alone(tiny_run, prepared_dataset, tmp_path, capsys):
    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.jerk_weight=0"])
    with pytest.raises(StageError, match=r"\[decoder\] jerk_weight > 0"):
        train_decoder(config, tiny_run, device="cpu", progress=False)
    assert run_stages(config, tmp_path / "run", ["aligner", "decoder"], device="cpu", progress=False)[0].stage == "aligner"
    assert "stage decoder skipped" in capsys.readouterr().out
    assert not (tmp_path / "run" / "decoder.safetensors").exists()
