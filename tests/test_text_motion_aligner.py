# SPDX-License-Identifier: GPL-3.0-or-later
"""Text-motion aligner: real MiniLM text, real HumanML3D motion crops, symmetric InfoNCE with learnable τ."""

from __future__ import annotations

import math

import pytest
import torch
from model_test_data import stack_crops
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import ConfigError
from kmm_core.model.configs import AlignerConfig
from kmm_core.model.text_encoder import MINILM_DIM, MiniLMTextEncoder
from kmm_core.model.text_motion_aligner import TextMotionAligner, text_condition

CAPTIONS = [
    "a person walks forward",
    "a person turns to the left",
    "a person turns to the right",
    "a person raises the left hand",
    "a person raises the right hand",
    "a person jumps in place",
]
STARTS = [0, 25, 50, 75, 100, 125]
CROP = 40


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def text_encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


@pytest.fixture(scope="module")
def motions(normalised_fixture_clip) -> torch.Tensor:
    return stack_crops(normalised_fixture_clip, STARTS, CROP)


def _aligner(text_encoder=None) -> TextMotionAligner:
    torch.manual_seed(0)
    config = AlignerConfig(embed_dim=32, hidden_dim=64, text_layers=1, motion_layers=1, heads=4, dropout=0.0)
    return TextMotionAligner(config, text_encoder)


@pytest.fixture(scope="module")
def trained(text_encoder, motions):
    aligner = _aligner(text_encoder)
    minilm = text_encoder.encode(CAPTIONS)
    valid = torch.ones(motions.shape[:2], dtype=torch.bool)
    valid[3, 33:] = False
    optimiser = torch.optim.AdamW(aligner.parameters(), lr=3e-3)
    history = []
    temperatures = []
    for _ in range(40):
        out = aligner(minilm, motions, valid)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        history.append(float(out.loss.detach()))
        temperatures.append(float(out.temperature.detach()))
    aligner.eval()
    return aligner, valid, history, temperatures


def test_infonce_falls(trained):
    _, _, history, _ = trained
    assert history[0] == pytest.approx(math.log(6), abs=0.4)  # 0.5 * (CE + CE) of an untrained model ~ log B
    assert history[-1] < 0.5 * history[0], history


def test_temperature_is_learnable(trained):
    aligner, _, _, temperatures = trained
    assert temperatures[0] == pytest.approx(0.07, rel=1e-4)
    assert abs(temperatures[-1] - temperatures[0]) > 1e-3
    assert aligner.logit_scale.requires_grad


def test_trained_aligner_matches_texts_to_their_motions(trained, motions):
    aligner, valid, _, _ = trained
    with torch.no_grad():
        text = aligner.encode_text(CAPTIONS).sentence
        motion = aligner.encode_motion(motions, valid)
    assert torch.allclose(motion.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert (text @ motion.t()).argmax(dim=1).tolist() == list(range(6))


def test_alignment_separates_left_from_right(trained, text_encoder):
    aligner, _, _, _ = trained
    pair = ["a person raises the left hand", "a person raises the right hand"]
    raw = text_encoder.encode(pair).sentence
    with torch.no_grad():
        aligned = aligner.encode_text(pair).sentence
    raw_cos = float(raw[0] @ raw[1])
    aligned_cos = float(aligned[0] @ aligned[1])
    assert aligned_cos < raw_cos - 0.2, (raw_cos, aligned_cos)


def test_condition_sources(trained, text_encoder):
    aligner, _, _, _ = trained
    aligned = text_condition(CAPTIONS[:2], "aligner", text_encoder, aligner)
    assert aligned.sentence.shape == (2, 32) and aligned.tokens.shape[-1] == 32
    raw = text_condition(CAPTIONS[:2], "minilm", text_encoder)
    assert raw.sentence.shape == (2, MINILM_DIM)
    with pytest.raises(ConfigError, match="condition_source"):
        text_condition(CAPTIONS[:2], "clip", text_encoder, aligner)
    with pytest.raises(ConfigError, match="needs a trained"):
        text_condition(CAPTIONS[:2], "aligner", text_encoder, None)


def test_state_dict_excludes_minilm_and_round_trips(trained, text_encoder, motions, tmp_path):
    aligner, valid, _, _ = trained
    state = aligner.state_dict()
    assert not any(key.startswith(("text_encoder", "_text_encoder", "model.")) for key in state)
    assert sum(v.numel() for v in state.values()) < 1_000_000  # MiniLM alone has 22.7M
    save_file(state, tmp_path / "aligner.safetensors")
    restored = _aligner(text_encoder)
    restored.load_state_dict(load_file(tmp_path / "aligner.safetensors"))
    restored.eval()
    with torch.no_grad():
        assert torch.equal(restored.encode_motion(motions, valid), aligner.encode_motion(motions, valid))
        assert torch.equal(restored.encode_text(CAPTIONS).sentence, aligner.encode_text(CAPTIONS).sentence)


def test_configuration_errors():
    with pytest.raises(ConfigError, match="hidden_dim"):
        AlignerConfig(hidden_dim=30, heads=4)
    with pytest.raises(ConfigError, match="motion_inputs"):
        AlignerConfig.from_dict({"motion_inputs": "tokens"})
    with pytest.raises(ConfigError, match="no MiniLM encoder"):
        _aligner().encode_text(["a person walks"])
