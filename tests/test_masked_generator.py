# SPDX-License-Identifier: GPL-3.0-or-later
"""Masked generator on real tokens: codes of HumanML3D fixture crops from a tiny trained tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_test_data import stack_crops, train_tiny_tokenizer
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import ConfigError, InputTensorError
from kmm_core.model.configs import GeneratorConfig
from kmm_core.model.keyframe_masker import KeyFrameMasker, sample_mask_ratio
from kmm_core.model.masked_generator import MaskedGenerator, build_backbone, token_condition_from_segments

COND_DIM = 16
CODEBOOK = 32
LAYERS = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokens(normalised_fixture_clip):
    """(codes (B, L, Q), token_valid, token_embeddings) of 4 real crops, from a tokenizer trained a few steps."""
    crops = stack_crops(normalised_fixture_clip, (0, 40, 80, 120), 48)
    valid = torch.ones(crops.shape[:2], dtype=torch.bool)
    valid[3, 37:] = False  # 10 tokens instead of 12
    tokenizer = train_tiny_tokenizer(crops, valid, num_quantizers=LAYERS, codebook_size=CODEBOOK)
    codes = tokenizer.encode(crops, valid)
    token_valid = codes[..., 0] >= 0
    return codes, token_valid, tokenizer.token_embeddings(codes)


def _generator(backbone="transformer", **overrides) -> MaskedGenerator:
    torch.manual_seed(0)
    options = dict(codebook_size=CODEBOOK, num_quantizers=LAYERS, cond_dim=COND_DIM, d_model=64, n_layers=2,
                   backbone=backbone, residual_n_layers=1, dropout=0.0)
    options.update(overrides)
    return MaskedGenerator(GeneratorConfig(**options))


def _sentences(batch: int) -> torch.Tensor:
    return torch.randn(batch, COND_DIM, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_loss_falls_on_a_tiny_batch(tokens, backbone):
    codes, token_valid, embeddings = tokens
    generator = _generator(backbone)
    optimiser = torch.optim.AdamW(generator.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(1)
    history = []
    for _ in range(40):
        out = generator.training_loss(codes, token_valid, _sentences(4), token_embeddings=embeddings, generator=rng)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        history.append((float(out.base_loss.detach()), float(out.residual_loss.detach())))
    first = np.mean(history[:5], axis=0)
    last = np.mean(history[-5:], axis=0)
    assert last[0] < 0.6 * first[0], (first, last)  # base layer
    assert last[1] < 0.8 * first[1], (first, last)  # residual predictor


def test_training_masks_the_key_frames_of_the_token_embeddings(tokens):
    codes, token_valid, embeddings = tokens
    generator = _generator()
    out = generator.training_loss(codes, token_valid, _sentences(4), token_embeddings=embeddings,
                                  generator=torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    ratio = sample_mask_ratio(4, schedule="cosine", generator=replay)
    expected = KeyFrameMasker(method="gaussian")(embeddings, token_valid, ratio, generator=replay)
    assert torch.equal(out.mask, expected)
    assert not bool((out.mask & ~token_valid).any()) and bool(out.mask.any(dim=1).all())
    with pytest.raises(ConfigError, match="token_embeddings"):
        generator.training_loss(codes, token_valid, _sentences(4))
    # The random masker needs no embeddings.
    _generator(masker="random").training_loss(codes, token_valid, _sentences(4))


def test_null_condition_ignores_the_text_and_conditions_change_logits(tokens):
    codes, token_valid, _ = tokens
    generator = _generator().eval()
    base = codes[..., 0]
    a, b = _sentences(4), torch.randn(4, COND_DIM)
    dropped = torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(generator(base, token_valid, a, drop_condition=dropped),
                              generator(base, token_valid, b, drop_condition=dropped))
        assert not torch.allclose(generator(base, token_valid, a), generator(base, token_valid, b))
        # Per-token conditions: changing the condition of the second half changes the logits there.
        per_token = a.unsqueeze(1).expand(-1, base.shape[1], -1).clone()
        first = generator(base, token_valid, a, cond_per_token=per_token)
        per_token[:, 6:] = b.unsqueeze(1)
        second = generator(base, token_valid, a, cond_per_token=per_token)
        assert not torch.allclose(first[:, 6:], second[:, 6:])
        # Without a sentence, the prefix is the mean of the per-token conditions.
        assert generator(base, token_valid, cond_per_token=per_token).shape == (4, base.shape[1], CODEBOOK)


def test_condition_dropout_rate_in_training(tokens):
    codes, token_valid, embeddings = tokens
    generator = _generator(cond_drop_prob=0.5, random_replace_prob=0.0)
    dropped = []
    hook = generator.condition.register_forward_hook(lambda m, args, out: dropped.append(args[3]))
    rng = torch.Generator().manual_seed(3)
    for _ in range(25):
        generator.training_loss(codes[..., 0], token_valid, _sentences(4), token_embeddings=embeddings, generator=rng)
    hook.remove()
    rate = float(torch.cat(dropped).float().mean())
    assert 0.3 < rate < 0.7
    generator.eval()
    dropped.clear()
    generator.condition.register_forward_hook(lambda m, args, out: dropped.append(args[3]))
    generator.training_loss(codes[..., 0], token_valid, _sentences(4), token_embeddings=embeddings)
    assert dropped == [None]  # never dropped outside training


def test_token_condition_from_segments():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    per_token = token_condition_from_segments(embeddings, [(0, 20), (28, 48)], num_tokens=12)
    # Token t covers frames 4t..4t+3 (centre 4t + 1.5).
    assert torch.equal(per_token[:5], embeddings[0].expand(5, 2))
    assert torch.equal(per_token[7:], embeddings[1].expand(5, 2))
    assert 0 < float(per_token[5, 1]) < float(per_token[6, 1]) < 1  # the transition blends
    assert torch.allclose(per_token[5:7].sum(-1), torch.ones(2))
    assert per_token[5].tolist() == [0.8125, 0.1875]  # centre 21.5 in the gap [20, 28): 1.5 / 8 of the way
    with pytest.raises(InputTensorError, match="segment 1"):
        token_condition_from_segments(embeddings, [(0, 20), (10, 48)], num_tokens=12)


def test_token_condition_before_between_and_after_segments():
    """Tokens before the first segment take it, tokens after the last take that one, each gap blends its own two
    neighbours, a token inside a segment takes exactly that segment's row."""
    embeddings = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    per_token = token_condition_from_segments(embeddings, [(8, 16), (16, 24), (32, 40)], num_tokens=13)
    expected_rows = {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 8: 2, 9: 2, 10: 2, 11: 2, 12: 2}
    for token, row in expected_rows.items():
        assert torch.equal(per_token[token], embeddings[row]), token
    # Gap [24, 32): token 6 (centre 25.5) and 7 (centre 29.5) between segments 1 and 2.
    assert per_token[6].tolist() == [0.0, 0.8125, 0.1875]
    assert per_token[7].tolist() == [0.0, 0.3125, 0.6875]


def test_residual_predictor_is_optional(tokens):
    codes, token_valid, embeddings = tokens
    without = _generator(use_residual_predictor=False)
    assert without.residual is None
    out = without.training_loss(codes, token_valid, _sentences(4), token_embeddings=embeddings)
    assert out.residual_loss is None and torch.equal(out.loss, out.base_loss)
    with_residual = _generator()
    assert sum(p.numel() for p in with_residual.parameters()) > sum(p.numel() for p in without.parameters())


def test_backbones_have_equal_size():
    config = GeneratorConfig()  # paper size: d_model 384, 4 layers
    mamba = sum(p.numel() for p in build_backbone(config, config.n_layers).parameters())
    config.backbone = "transformer"
    transformer = sum(p.numel() for p in build_backbone(config, config.n_layers).parameters())
    assert 0.85 < transformer / mamba < 1.15, (mamba, transformer)


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_state_dict_round_trips_through_safetensors(tokens, tmp_path, backbone):
    codes, token_valid, _ = tokens
    generator = _generator(backbone).eval()
    save_file(generator.state_dict(), tmp_path / "generator.safetensors")
    restored = _generator(backbone, n_layers=2)
    torch.manual_seed(123)  # a different init must be fully overwritten
    restored.load_state_dict(load_file(tmp_path / "generator.safetensors"))
    restored.eval()
    with torch.no_grad():
        expected = generator(codes[..., 0], token_valid, _sentences(4))
        assert torch.equal(restored(codes[..., 0], token_valid, _sentences(4)), expected)
        lower = generator.residual(codes, 2, token_valid, _sentences(4))
        assert torch.equal(restored.residual(codes, 2, token_valid, _sentences(4)), lower)


def test_config_from_dict_rejects_unknown_keys_and_bad_values():
    config = GeneratorConfig.from_dict({"backbone": "transformer", "d_model": 128, "n_heads": 8})
    assert config.d_model == 128 and GeneratorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown key\(s\) n_layer;"):
        GeneratorConfig.from_dict({"n_layer": 4, "backbone": "mamba"})
    with pytest.raises(ConfigError, match="backbone"):
        GeneratorConfig.from_dict({"backbone": "rnn"})
    with pytest.raises(ConfigError, match="masker"):
        GeneratorConfig(masker="keyframe")
    with pytest.raises(ConfigError, match="d_model: expected an integer"):
        GeneratorConfig.from_dict({"d_model": "384"})
