# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion tokenizer (VQ-VAE) on random crops of the real HumanML3D fixture clip, at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_test_data import stack_crops
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import InputTensorError
from kmm_core.model.configs import QuantizerConfig, TokenizerConfig
from kmm_core.model.motion_tokenizer import MotionTokenizer, num_tokens_for_frames

CROP = 45  # not a multiple of 4 on purpose


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(clip: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, clip.shape[0] - CROP, (count,), generator=rng)
    return stack_crops(clip, starts.tolist(), CROP)


def _tiny_tokenizer(quantizer_dropout: float = 0.2) -> MotionTokenizer:
    torch.manual_seed(0)
    return MotionTokenizer(TokenizerConfig(
        width=32, res_blocks=2, quantizer=QuantizerConfig(num_quantizers=3, codebook_size=32, code_dim=32,
                                                         dead_code_steps=5, quantizer_dropout=quantizer_dropout)))


@pytest.fixture(scope="module")
def trained(normalised_fixture_clip):
    """A tiny tokenizer trained for a few steps on random crops; the loss history comes along."""
    tokenizer = _tiny_tokenizer()
    optimiser = torch.optim.AdamW(tokenizer.parameters(), lr=3e-3)
    batch = _crops(normalised_fixture_clip, 6, seed=1)
    valid = torch.ones(batch.shape[:2], dtype=torch.bool)
    valid[2, 38:] = False
    history = []
    for _ in range(30):
        out = tokenizer(batch, valid)
        optimiser.zero_grad()
        out.losses["total"].backward()
        optimiser.step()
        history.append({k: float(v.detach()) for k, v in out.losses.items()})
    tokenizer.eval()
    return tokenizer, batch, valid, history


def test_tokenizer_overfits_a_small_batch(trained):
    _, _, _, history = trained
    first, last = history[0], history[-1]
    assert last["total"] < 0.7 * first["total"], (first, last)
    assert last["reconstruction"] < first["reconstruction"]
    assert all(np.isfinite(list(h.values())).all() for h in history)


def test_codes_shape_and_lengths_not_divisible_by_four(trained):
    tokenizer, batch, valid, _ = trained
    codes = tokenizer.encode(batch, valid)
    assert codes.shape == (6, num_tokens_for_frames(CROP), 3) == (6, 12, 3)
    # Clip 2 has 38 valid frames -> ceil(38 / 4) = 10 tokens, the rest is padding (-1).
    assert bool((codes[2, 10:] == -1).all()) and bool((codes[2, :10] >= 0).all())
    assert bool((codes[[0, 1, 3, 4, 5]] >= 0).all())
    assert tokenizer.decode(codes).shape == (6, 48, 263)
    assert tokenizer.decode(codes, num_frames=CROP).shape == (6, CROP, 263)
    out = tokenizer(batch, valid)
    assert out.reconstruction.shape == batch.shape
    assert out.token_valid.sum(1).tolist() == [12, 12, 10, 12, 12, 12]
    with pytest.raises(InputTensorError, match="num_frames"):
        tokenizer.decode(codes, num_frames=49)


def test_padding_content_does_not_change_codes(trained):
    tokenizer, batch, valid, _ = trained
    noisy = batch.clone()
    noisy[2, 38:] = torch.randn(CROP - 38, 263) * 50
    assert torch.equal(tokenizer.encode(noisy, valid), tokenizer.encode(batch, valid))


def test_fewer_quantizer_layers_still_decode(trained, normalised_fixture_clip):
    tokenizer, batch, _, _ = trained
    codes = tokenizer.encode(batch)
    error_of_mean_pose = float(torch.nn.functional.smooth_l1_loss(torch.zeros_like(batch), batch))
    for layers in (1, 2, 3):
        with torch.no_grad():
            reconstruction = tokenizer.decode(codes[..., :layers], num_frames=CROP)
        error = float(torch.nn.functional.smooth_l1_loss(reconstruction, batch))
        assert np.isfinite(error) and error < 0.8 * error_of_mean_pose, (layers, error, error_of_mean_pose)


def test_token_embeddings_are_the_quantised_latents(trained):
    tokenizer, batch, valid, _ = trained
    codes = tokenizer.encode(batch, valid)
    embeddings = tokenizer.token_embeddings(codes)
    assert embeddings.shape == (6, 12, 32)
    assert torch.allclose(tokenizer.decode(codes), tokenizer._decode_latent(embeddings))
    assert float(embeddings[2, 10:].abs().max()) == 0.0  # padding tokens embed to zero


def test_state_dict_round_trips_through_safetensors(trained, tmp_path):
    tokenizer, batch, valid, _ = trained
    save_file(tokenizer.state_dict(), tmp_path / "tokenizer.safetensors")
    restored = _tiny_tokenizer()
    restored.load_state_dict(load_file(tmp_path / "tokenizer.safetensors"))
    restored.eval()
    codes = tokenizer.encode(batch, valid)
    assert torch.equal(restored.encode(batch, valid), codes)
    assert torch.equal(restored.decode(codes), tokenizer.decode(codes))


def test_bad_inputs_are_named(trained):
    tokenizer, batch, _, _ = trained
    with pytest.raises(InputTensorError, match="features"):
        tokenizer.encode(batch[..., :100])
    holes = torch.ones(batch.shape[:2], dtype=torch.bool)
    holes[0, 5] = False
    with pytest.raises(InputTensorError, match="valid"):
        tokenizer.encode(batch, holes)
