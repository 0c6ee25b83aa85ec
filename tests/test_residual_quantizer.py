# SPDX-License-Identifier: GPL-3.0-or-later
"""Residual VQ on real HumanML3D feature vectors: codes, straight-through, EMA, dead codes, dropout, saving."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import ConfigError, InputTensorError
from kmm_core.model.configs import QuantizerConfig
from kmm_core.model.residual_quantizer import ResidualVectorQuantizer

FEATURE_DIM = 263


@pytest.fixture(scope="module")
def frames(normalised_fixture_clip) -> torch.Tensor:
    """The fixture clip's 170 normalised feature frames (170, 263): real vectors to quantise."""
    return normalised_fixture_clip


def _quantizer(**overrides) -> ResidualVectorQuantizer:
    torch.manual_seed(0)
    options = dict(num_quantizers=3, codebook_size=16, code_dim=FEATURE_DIM, ema_decay=0.5, dead_code_steps=3,
                   quantizer_dropout=0.0)
    options.update(overrides)
    return ResidualVectorQuantizer(QuantizerConfig(**options))


def test_codes_shape_straight_through_and_decode(frames):
    quantizer = _quantizer()
    x = frames[:160].reshape(4, 40, FEATURE_DIM).clone().requires_grad_(True)
    out = quantizer(x)  # training mode: initialises the codebooks from these vectors
    assert out.codes.shape == (4, 40, 3) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 16
    assert out.num_layers == 3 and out.perplexity.shape == (3,) and bool((out.perplexity >= 1).all())
    # Straight-through: the gradient of the quantised output reaches the input unchanged.
    (out.quantized * 2.0).sum().backward(retain_graph=True)
    assert torch.allclose(x.grad, torch.full_like(x, 2.0))
    # The commitment loss pulls the input towards its codes.
    x.grad = None
    out.commitment_loss.backward()
    assert x.grad.abs().sum() > 0
    quantizer.eval()
    codes = quantizer.encode_codes(x.detach())
    assert torch.allclose(quantizer.decode_codes(codes), quantizer(x.detach()).quantized, atol=1e-5)


def test_more_layers_reconstruct_better(frames):
    quantizer = _quantizer(num_quantizers=4)
    x = frames[:168].reshape(4, 42, FEATURE_DIM)
    for _ in range(5):
        quantizer(x)
    quantizer.eval()
    codes = quantizer.encode_codes(x)
    errors = [float((quantizer.decode_codes(codes[..., :q]) - x).pow(2).mean()) for q in range(1, 5)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.8 * errors[0]
    # Asking for fewer layers leaves the others unused (-1).
    two = quantizer.encode_codes(x, num_layers=2)
    assert torch.equal(two[..., :2], codes[..., :2]) and bool((two[..., 2:] == -1).all())


def test_ema_moves_codes_to_the_mean_of_their_vectors(frames):
    quantizer = _quantizer(num_quantizers=1, codebook_size=6, dead_code_steps=1000)
    x = frames.unsqueeze(0)
    for _ in range(40):
        out = quantizer(x)
    codes = out.codes[0, :, 0]
    centroid_gap = []
    for code in codes.unique():
        assigned = frames[codes == code]
        centroid_gap.append(float((quantizer.codebooks[0, code] - assigned.mean(0)).norm() / assigned.mean(0).norm()))
    # After many EMA steps on the same data the codebook sits at a k-means fixed point.
    assert max(centroid_gap) < 0.05, centroid_gap


def test_dead_codes_are_reseeded_with_encoder_outputs(frames):
    quantizer = _quantizer(num_quantizers=1, codebook_size=8, dead_code_steps=3)
    x = frames[:120].reshape(3, 40, FEATURE_DIM)
    quantizer(x)  # data-dependent initialisation
    with torch.no_grad():
        # A code nobody will ever choose (the EMA statistics define the code, so move those too).
        quantizer.codebooks[0, 5] = 1e3
        quantizer.ema_embed_sum[0, 5] = 1e3 * quantizer.ema_cluster_size[0, 5]
    reseeded = [int(quantizer(x).dead_codes[0]) for _ in range(3)]
    assert reseeded[-1] >= 1, reseeded
    nearest_data = (frames[:120] - quantizer.codebooks[0, 5]).norm(dim=-1).min()
    assert float(nearest_data) < 1.0  # code 5 now is (a jittered copy of) a real vector
    assert int(quantizer.steps_unused[0, 5]) == 0
    quantizer.eval()
    assert int(quantizer(x).dead_codes.sum()) == 0  # no codebook changes outside training


def test_quantizer_dropout_uses_fewer_layers(frames):
    quantizer = _quantizer(num_quantizers=4, quantizer_dropout=1.0)
    x = frames[:160].reshape(4, 40, FEATURE_DIM)
    torch.manual_seed(3)
    used = set()
    for _ in range(12):
        out = quantizer(x)
        used.add(out.num_layers)
        assert bool((out.codes[..., : out.num_layers] >= 0).all())
        assert bool((out.codes[..., out.num_layers:] == -1).all())
    assert len(used) > 1 and min(used) < 4
    # Outside training all layers are used unless fewer are asked for; the output is the sum of those layers.
    quantizer.eval()
    assert quantizer(x).num_layers == 4
    for layers in (1, 2, 4):
        out = quantizer(x, num_layers=layers)
        assert torch.allclose(out.quantized, quantizer.decode_codes(out.codes), atol=1e-4)


def test_padding_is_ignored(frames):
    quantizer = _quantizer(num_quantizers=2)
    x = frames[:160].reshape(4, 40, FEATURE_DIM).clone()
    valid = torch.ones(4, 40, dtype=torch.bool)
    valid[2, 30:] = False
    x[2, 30:] = 1e4  # garbage in the padding must not reach the codebooks
    out = quantizer(x, valid)
    assert bool((out.codes[2, 30:] == -1).all()) and bool((out.codes[valid] >= 0).all())
    assert float(quantizer.codebooks.abs().max()) < 100


def test_state_dict_round_trips_through_safetensors(frames, tmp_path):
    quantizer = _quantizer()
    x = frames[:160].reshape(4, 40, FEATURE_DIM)
    for _ in range(3):
        quantizer(x)
    save_file(quantizer.state_dict(), tmp_path / "rvq.safetensors")
    restored = _quantizer()
    restored.load_state_dict(load_file(tmp_path / "rvq.safetensors"))
    quantizer.eval()
    restored.eval()
    assert torch.equal(restored.encode_codes(x), quantizer.encode_codes(x))
    assert bool(restored.initialised.all())


def test_bad_inputs_name_the_argument(frames):
    quantizer = _quantizer()
    with pytest.raises(InputTensorError, match="quantizer input"):
        quantizer(frames[:10, :100].unsqueeze(0))
    with pytest.raises(InputTensorError, match="outside the codebook"):
        quantizer.decode_codes(torch.full((1, 2, 3), 16))
    with pytest.raises(ConfigError, match="quantizer_dropout"):
        QuantizerConfig(quantizer_dropout=1.5)
    with pytest.raises(ConfigError, match="quantizer.typo"):
        from kmm_core.model.configs import TokenizerConfig

        TokenizerConfig.from_dict({"quantizer": {"typo": 1}})


def test_mixed_precision_training_quantises_in_float32_as_without_it(frames):
    # `kmm-train` with `amp = "bf16"` runs the tokenizer under autocast, where the encoder's output comes in bfloat16
    # (on an H200 the EMA update then failed: index_add_ of bfloat16 rows into the float32 sums).  The quantizer
    # quantises in float32 whatever comes in: the same codes and codebook update as a float32 pass on the same values.
    x = frames.unsqueeze(0).to(torch.bfloat16)
    plain = _quantizer()  # seeds the generator the first codebook draw uses
    expected = plain(x.float())
    mixed = _quantizer()
    leaf = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mixed(leaf)
    assert out.quantized.dtype == torch.float32 and out.commitment_loss.dtype == torch.float32
    assert torch.equal(out.codes, expected.codes)
    torch.testing.assert_close(mixed.codebooks, plain.codebooks)
    (out.quantized.square().mean() + out.commitment_loss).backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad.float()).all()
