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
everyday-phrasing suite 41 -> 55 of 66 and the 40 held-out directional paraphrases 0.49 -> 0.63 directional accuracy
(sides the MiniLM neighbours alone often lose, which is why the prompt keeps a share: all neighbours, 0.57); the test
split's R-precision, FID and directional accuracy unchanged within their intervals (docs/results.md).

The prompt's own share is itself brought onto the training captions first (`CaptionRetrieval.onto_captions`): the
generator learnt its conditions at the captions' aligner embeddings, and a new wording's embedding lies between
them, where the generator may do what none of them asks.  "someone strolls along" (aligner similarity 0.88 to
"someone strolls forward") crab-walked to its right over a 10-second take, 80-90% of its path sideways, while
"someone strolls forward" walks straight.  So the own share is the softmax mean (the same ``NEIGHBOURS`` and
``TEMPERATURE``) of the conditions of its nearest performed training captions in the aligner's own space: the
aligner's reading, side words included, at a point the generator was trained on.  Measured on the same benchmark
(``--seconds 10``, ``prompt_conditions_10s.md``: 48 -> 51 of 66 everyday phrasings over 10-second takes; 54 -> 55
over 5 s; directional accuracy 0.658 -> 0.633, three of the 120 paraphrase takes).  Only performed captions: the
captions nearest "a person kicks with the right leg" (0.94) are kicks the model fails.  But where the nearest
captions are ones the model fails and the nearest performed one is more than ``ONTO_GAP`` farther (the kick: 0.94
against 0.77), the performed ones mean something else, and the prompt keeps its own condition: brought onto them,
the right-leg kick kicked in none of 8 seeds, kept, in 8 of 8, every other everyday phrasing as before
(``training/runs/kmm-small-all-v16/COMMAND.md`` section 11).

A bundle without the caption table generates from the prompt's own embedding; one without caption checks retrieves
from every training caption; one without the captions' conditions (``vocabulary.safetensors``' ``train_conditions``,
``kmm-train vocabulary --conditions-only`` adds them) keeps the prompt's own embedding as it is.
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
ONTO_GAP = 0.1
"""A prompt's own condition is brought onto its nearest performed captions only where the nearest performed caption
is within this cosine of the nearest caption of all (module docstring): farther, those captions mean something else."""


class CaptionRetrieval:
    """One bundle's retrieval table: the training captions' MiniLM embeddings (the prompt check's) and which of them
    the model performed."""

    def __init__(self, vocabulary: PromptVocabulary):
        self.bundle = vocabulary.bundle
        self.vocabulary = vocabulary
        checks = vocabulary.captions
        self.performed = (np.ones(vocabulary.train.shape[0], dtype=bool) if checks is None
                          else ~checks.unperformed)
        self._conditions: dict[int, np.ndarray] = {}
        self._neighbours: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        table = vocabulary.conditions
        self._caption_directions = (None if table is None
                                    else table / np.linalg.norm(table, axis=1, keepdims=True).clip(min=1e-12))

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
                self._neighbours[prompt] = (*softmax_nearest(row), float(closest))
        return [self._neighbours[prompt] for prompt in prompts]

    def caption_conditions(self, captions: np.ndarray) -> np.ndarray:
        """(len(captions), cond_dim) the generator's own conditions of these training captions (the bundle's
        table, else computed once each)."""
        if self.vocabulary.conditions is not None:
            return self.vocabulary.conditions[captions]
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
            mine = self.onto_captions(mine)
            retrieved = torch.from_numpy(weights @ self.caption_conditions(nearest)).to(mine)
            blended = share * mine + (1.0 - share) * retrieved
            rows.append(blended * (mine.norm() / blended.norm().clamp(min=1e-12)))
        return torch.stack(rows)

    def onto_captions(self, own: torch.Tensor) -> torch.Tensor:
        """A prompt's own condition (cond_dim,) brought onto the training captions (module docstring): the softmax
        mean of the conditions of its `NEIGHBOURS` nearest performed captions by cosine in the condition space, at
        its own length; itself where the bundle has no caption conditions, or where the nearest performed caption is
        more than `ONTO_GAP` farther than the nearest caption of all."""
        import torch

        if self._caption_directions is None:
            return own
        mine = own.detach().cpu().numpy().astype(np.float32)
        similarity = self._caption_directions @ (mine / max(float(np.linalg.norm(mine)), 1e-12))
        if not self.performed.any() or similarity.max() - similarity[self.performed].max() > ONTO_GAP:
            return own  # its nearest captions are ones the model fails: the performed ones mean something else
        similarity[~self.performed] = -np.inf
        nearest, weights = softmax_nearest(similarity)  # at least one: a performed caption exists
        onto = weights @ self.vocabulary.conditions[nearest]
        onto *= float(np.linalg.norm(mine)) / max(float(np.linalg.norm(onto)), 1e-12)
        return torch.from_numpy(onto.astype(np.float32)).to(own)


def softmax_nearest(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the `NEIGHBOURS` most similar finite entries of `similarity` (most similar first) and their
    softmax weights at `TEMPERATURE` (summing to 1)."""
    nearest = np.argsort(-similarity, kind="stable")[:NEIGHBOURS]
    nearest = nearest[np.isfinite(similarity[nearest])]
    weights = np.exp((similarity[nearest] - similarity[nearest].max(initial=0.0)) / TEMPERATURE)
    return nearest, weights / max(float(weights.sum()), 1e-30)


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
