# SPDX-License-Identifier: GPL-3.0-or-later
"""MiniLM (a 6-layer BERT encoder) in plain PyTorch, read from the package's safetensors and tokenizer.json.

Why not transformers' ``AutoModel``: importing ``transformers.models.bert`` pulls in most of transformers (and
torch.distributed, scipy) and cost more than a second of every cold ``kmm generate`` and first Generate in Blender,
for a model whose forward pass is 40 lines. The tokenizer is the same ``tokenizer.json`` read by the ``tokenizers``
library that transformers' fast tokenizer wraps. ``tests/test_text_encoder.py`` checks that hidden states match
transformers' ``BertModel`` on the same weights.

Parameter names are BERT's (``embeddings.word_embeddings.weight``, ``encoder.layer.0.attention.self.query.weight``,
...), so the package's ``model.safetensors`` loads as is (its pooler is not used and not loaded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.bounded_read import read_json


@dataclass(frozen=True)
class BertSettings:
    """The fields of the model's config.json that the forward pass uses."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_file(cls, path: Path) -> BertSettings:
        data = read_json(path, "text encoder config")
        if data.get("hidden_act", "gelu") != "gelu" or data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT with GELU and absolute positions is supported")
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor  # (B, N, hidden)


class _Linear(nn.Module):
    """nn.Linear's parameters and forward without its random initialisation (every weight comes from the file;
    initialising 23M parameters cost 0.3 s of every start-up)."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs))
        self.bias = nn.Parameter(torch.empty(outputs))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


def _embedding(count: int, dim: int) -> nn.Embedding:
    return nn.Embedding(count, dim, _weight=torch.empty(count, dim))  # a given weight skips the random init


class _Layer(nn.Module):
    """Post-norm BERT layer with BERT's parameter names."""

    def __init__(self, s: BertSettings):
        super().__init__()
        hidden = s.hidden_size
        self.heads = s.num_attention_heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = _Linear(hidden, hidden)
        self.attention.self.key = _Linear(hidden, hidden)
        self.attention.self.value = _Linear(hidden, hidden)
        self.attention.output = nn.Module()
        self.attention.output.dense = _Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=s.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = _Linear(hidden, s.intermediate_size)
        self.output = nn.Module()
        self.output.dense = _Linear(s.intermediate_size, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=s.layer_norm_eps)

    def forward(self, x: Tensor, attention_bias: Tensor) -> Tensor:
        batch, length, hidden = x.shape
        attention = self.attention

        def heads(linear: _Linear) -> Tensor:
            return linear(x).view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        scores = heads(attention.self.query) @ heads(attention.self.key).transpose(-1, -2)
        scores = scores / math.sqrt(hidden // self.heads) + attention_bias
        context = (scores.softmax(-1) @ heads(attention.self.value)).transpose(1, 2).reshape(batch, length, hidden)
        x = attention.output.LayerNorm(attention.output.dense(context) + x)
        return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(x))) + x)


class MiniLMEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> EncoderOutput`` (last hidden states), like transformers' BertModel."""

    def __init__(self, settings: BertSettings):
        super().__init__()
        self.config = settings
        hidden = settings.hidden_size
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = _embedding(settings.vocab_size, hidden)
        self.embeddings.position_embeddings = _embedding(settings.max_position_embeddings, hidden)
        self.embeddings.token_type_embeddings = _embedding(settings.type_vocab_size, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=settings.layer_norm_eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(settings) for _ in range(settings.num_hidden_layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> EncoderOutput:
        embeddings = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = embeddings.word_embeddings(input_ids) + embeddings.position_embeddings(positions) \
            + embeddings.token_type_embeddings(types)
        x = embeddings.LayerNorm(x)
        # transformers adds the dtype's minimum to masked scores; any value that big gives the same softmax.
        attention_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, attention_bias)
        return EncoderOutput(last_hidden_state=x)


class TokenBatch(dict):
    """input_ids / attention_mask / token_type_ids tensors; ``.to(device)`` like transformers' BatchEncoding."""

    def to(self, device) -> TokenBatch:
        return TokenBatch({name: tensor.to(device) for name, tensor in self.items()})


class MiniLMTokenizer:
    """The model's WordPiece tokenizer (tokenizer.json through the ``tokenizers`` library), padded to the longest."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def __call__(self, texts: list[str], padding: bool = True, truncation: bool = True, max_length: int = 128,
                 return_tensors: str = "pt") -> TokenBatch:
        if truncation:
            self._tokenizer.enable_truncation(max_length=max_length)
        else:
            self._tokenizer.no_truncation()
        if padding:
            self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        encodings = self._tokenizer.encode_batch(list(texts))
        return TokenBatch(input_ids=torch.tensor([e.ids for e in encodings], dtype=torch.long),
                          attention_mask=torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
                          token_type_ids=torch.tensor([e.type_ids for e in encodings], dtype=torch.long))


def load_minilm(folder: Path) -> tuple[MiniLMTokenizer, MiniLMEncoder]:
    """Tokenizer and encoder of the MiniLM folder (config.json, tokenizer.json, model.safetensors)."""
    from safetensors.torch import load_file

    model = MiniLMEncoder(BertSettings.from_file(folder / "config.json"))
    weights = load_file(str(folder / "model.safetensors"))
    wanted = model.state_dict().keys()
    missing = [name for name in wanted if name not in weights]
    if missing:
        raise ValueError(f"{folder / 'model.safetensors'}: missing {', '.join(missing[:5])}")
    model.load_state_dict({name: weights[name] for name in wanted}, strict=True, assign=True)
    return MiniLMTokenizer(folder / "tokenizer.json"), model.eval()
