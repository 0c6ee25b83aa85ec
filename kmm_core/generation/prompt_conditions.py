# SPDX-License-Identifier: GPL-3.0-or-later
"""The generator's condition for a prompt: its own text embedding, completed by the training captions nearest in
meaning that the model performs (retrieval, as ReMoDiffuse retrieves; here the captions' conditions are retrieved,
not their motions).

The generator is conditioned on one vector per prompt, the aligner's sentence embedding: a small head over MiniLM
trained on the bundle's ~4,000 templated training captions alone.  It places wording it never saw by the words it
shares with them ("a person ambles forward" lands beside "a person dribbles forward", "a woman heads straight ahead
on foot" beside a sideways walk), while MiniLM, trained on a billion sentence pairs, finds the walks.  So a prompt far
from every training caption is conditioned ``OWN`` on its own aligner embedding and ``1 - OWN`` on the mean of the
aligner embeddings of its ``NEIGHBOURS`` nearest training captions in MiniLM's space (the table the prompt check
reads, ``vocabulary.safetensors``), weighted by a softmax of their similarity at ``TEMPERATURE``, rescaled to the
length of the prompt's own embedding.  Only captions the model performed count (``caption_checks.json``: each train
caption generated once and judged by its action's geometric check), so a prompt is not pulled towards what the model
fails at.  The nearer the prompt is to a training caption, the more of its own embedding it keeps (``own_share``:
all of it from a best similarity of ``KNOWN``, as a training caption or one a word apart has; ``OWN`` below
``FAR``): the aligner places the captions it was trained on where the generator learnt them.

Measured (``benchmarks/measure_prompt_conditions.py``, ``benchmarks/results/prompt_conditions.md``): the
everyday-phrasing suite 45 -> 55 of 66 and the 40 held-out directional paraphrases 0.48 -> 0.65 directional accuracy
(sides the MiniLM neighbours alone often lose, which is why the prompt keeps a share: all neighbours, 0.55); the test
split's R-precision, FID and directional accuracy unchanged within their intervals (docs/results.md).

A bundle without the caption table generates from the prompt's own embedding; one without caption checks retrieves
from every training caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..common.smoothstep import smoothstep
from .prompt_vocabulary import PromptVocabulary, VocabularyCheckUnavailable, cached_on_bundle, embed_texts

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..bundle.model_bundle import ModelBundle

OWN = 0.3
"""The prompt's own embedding's share of the condition of a prompt far from every training caption (the rest: its
nearest performed training captions')."""
FAR = 0.85
KNOWN = 0.97
"""Below a best MiniLM similarity of ``FAR`` to the training captions a prompt takes ``OWN`` of its own embedding;
from ``KNOWN`` (a training caption, or one word apart) all of it; a smoothstep between.  The aligner was trained on
those captions and places them where the generator learnt them."""
NEIGHBOURS = 8
TEMPERATURE = 0.05
"""Softmax temperature over the neighbours' cosine similarities (0.05: a caption 0.05 closer weighs e times more)."""


class CaptionRetrieval:
    """One bundle's retrieval table: the training captions' MiniLM embeddings (the prompt check's) and which of them
    the model performed."""

    def __init__(self, vocabulary: PromptVocabulary):
        self.bundle = vocabulary.bundle
        self.vocabulary = vocabulary
        checks = vocabulary.captions
        self.performed = (np.ones(vocabulary.train.shape[0], dtype=bool) if checks is None
                          else np.asarray(checks.passed != 0.0))
        self._conditions: dict[int, np.ndarray] = {}
        self._neighbours: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}

    @classmethod
    def load(cls, bundle: ModelBundle) -> CaptionRetrieval:
        """From the bundle's caption table as the prompt check loaded it (read and verified once per bundle)."""
        vocabulary = cached_on_bundle(bundle, "_prompt_vocabulary", PromptVocabulary.load)
        if vocabulary is None or vocabulary.space != "minilm":
            raise VocabularyCheckUnavailable(f"{bundle.path}: no MiniLM caption table (`kmm-train vocabulary`)")
        return cls(vocabulary)

    def neighbours(self, prompts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per prompt: (the indices of its `NEIGHBOURS` nearest performed training captions, their softmax
        weights, its best similarity to any training caption); each distinct prompt searched once per bundle (a
        generation and the captions shown for it ask for the same prompts)."""
        new = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._neighbours]
        if new:
            similarity = embed_texts(self.bundle, new, "minilm") @ self.vocabulary.train.T  # float32 as loaded
            best = similarity.max(axis=1)
            similarity[:, ~self.performed] = -np.inf
            for prompt, row, closest in zip(new, similarity, best, strict=True):
                nearest = np.argsort(-row, kind="stable")[:NEIGHBOURS]
                nearest = nearest[np.isfinite(row[nearest])]
                weights = np.exp((row[nearest] - row[nearest].max()) / TEMPERATURE)
                self._neighbours[prompt] = (nearest, weights / weights.sum(), float(closest))
        return [self._neighbours[prompt] for prompt in prompts]

    def caption_conditions(self, captions: np.ndarray) -> np.ndarray:
        """(len(captions), cond_dim) the generator's own conditions of these training captions (cached)."""
        new = [int(i) for i in dict.fromkeys(captions.tolist()) if int(i) not in self._conditions]
        if new:
            rows = own_conditions(self.bundle, [self.vocabulary.vocabulary.train_captions[i] for i in new])
            for index, row in zip(new, rows.cpu().numpy(), strict=True):
                self._conditions[index] = row
        return np.stack([self._conditions[int(i)] for i in captions])

    def blend(self, prompts: Sequence[str], own: torch.Tensor) -> torch.Tensor:
        """``own`` (S, cond_dim), the prompts' own conditions, completed by their neighbours' (module docstring)."""
        import torch

        rows = []
        for (nearest, weights, best), mine in zip(self.neighbours(prompts), own, strict=True):
            share = own_share(best)
            if nearest.size == 0 or share >= 1.0:
                rows.append(mine)
                continue
            retrieved = torch.from_numpy(weights @ self.caption_conditions(nearest)).to(mine)
            blended = share * mine + (1.0 - share) * retrieved
            rows.append(blended * (mine.norm() / blended.norm().clamp(min=1e-12)))
        return torch.stack(rows)


def own_share(best_similarity: float) -> float:
    """The prompt's own embedding's share of its condition, from its best similarity to the training captions."""
    return OWN + (1.0 - OWN) * float(smoothstep(best_similarity, FAR, KNOWN))


def own_conditions(bundle: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """(S, cond_dim) the prompts' own sentence conditions, with no retrieval (the bundle's text conditioner)."""
    return bundle.prompt_embeddings(prompts)


def prompt_conditions(bundle: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """(S, cond_dim) float32 on the bundle's device: the generator's condition of each prompt (module docstring);
    the prompt's own embedding where the bundle has no caption table."""
    own = own_conditions(bundle, prompts)
    retrieval = cached_on_bundle(bundle, "_caption_retrieval", CaptionRetrieval.load)
    if retrieval is None or OWN >= 1.0 or len(prompts) == 0:
        return own
    return retrieval.blend(prompts, own)


def retrieved_captions(bundle: ModelBundle, prompts: Sequence[str],
                       count: int = 3) -> list[tuple[float, tuple[str, ...]]]:
    """Per prompt, (its own embedding's share of its condition, the `count` training captions that weigh most in the
    rest, heaviest first): what the user is shown (the command line's note, the worker's ``result.info.conditions``).
    (1.0, ()) for a prompt that keeps its own condition (a training caption, or one word apart) and without the
    caption table."""
    retrieval = cached_on_bundle(bundle, "_caption_retrieval", CaptionRetrieval.load)
    if retrieval is None or OWN >= 1.0:
        return [(1.0, ()) for _ in prompts]
    captions = retrieval.vocabulary.vocabulary.train_captions
    shown = []
    for nearest, _, best in retrieval.neighbours(prompts):
        share = own_share(best)
        shown.append((share, tuple(dict.fromkeys(captions[int(i)] for i in nearest))[:count]) if share < 1.0
                     else (1.0, ()))
    return shown


def conditions_info(bundle: ModelBundle, prompts: Sequence[tuple[int | None, str]]) -> list[dict]:
    """The worker's ``info.conditions`` (and ``kmm vocab --check --json``'s ``conditions``): for each (segment,
    prompt) whose prompt is not (nearly) a training caption, ``{segment, prompt, own_share, captions}``: the share of
    its condition its own words give and the training captions nearest in meaning that give the rest, heaviest
    first."""
    unique = list(dict.fromkeys(prompt for _, prompt in prompts))
    shown = dict(zip(unique, retrieved_captions(bundle, unique), strict=True))
    return [{"segment": segment, "prompt": prompt, "own_share": round(shown[prompt][0], 3),
             "captions": list(shown[prompt][1])} for segment, prompt in prompts if shown[prompt][1]]
