# SPDX-License-Identifier: GPL-3.0-or-later
"""What a prompt asks the whole body to do, as the text encoder understands it: the recorded motion of the training
captions nearest to it.

Generation decodes the frames of a walk, of a calm standing body and of everything else differently (the bundle's
walking, standing and gesture decoders, a walk's guidance and gait-cycle pull and candidate decodes, a calm body's
root smoothing).  Which of these a prompt gets is decided here, from no list of words: the prompt's MiniLM sentence
embedding is compared with every training caption of the bundle (``vocabulary.safetensors``, the same table the
out-of-vocabulary check reads), and the `NEIGHBOURS` most similar captions' actions lend it what their recorded
clips do (``vocabulary.json``'s per-action ``motion``: the share of clips that walk, walk on a steady heading, stand
in place, measured by ``humanml3d/motion_kind.py``), weighted by similarity.  Only a clear answer counts: each
share is passed through a smoothstep from `UNSURE` (nothing) to `SURE` (all), so a prompt whose nearest captions
disagree ("a man crouches down": crouches and crouching walks; "someone dances": dances that travel in step and
dances that do not) keeps the plain decoding every prompt had before any treatment: the tokenizer's decoder and the
full guidance (the everyday-phrasing suite lost its crouches, hops and dances to the walk treatment without it).  "a man makes his way across the room",
"someone wanders ahead slowly" and "a person walks forward" all have walks as their nearest captions, so they are
decoded as walks; "a man waves both hands above his head" has waves, whose clips stand.

A bundle without that table (made before it existed) decodes every prompt with the tokenizer's decoder alone and
none of the walking or standing treatments; ``kmm-train vocabulary`` adds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..common.smoothstep import smoothstep
from ..humanml3d.feature_smoothing import SpansAndKinds
from ..humanml3d.motion_kind import MotionKind, mean_kind
from .prompt_vocabulary import PromptVocabulary, VocabularyCheckUnavailable, cached_on_bundle, embed_texts

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle.model_bundle import ModelBundle

NEIGHBOURS = 8
"""Training captions that lend a prompt their actions' motion (the nearest of ~16,000; a caption's wording
variants of one action fill several places, so a clear prompt's eight are one or two actions)."""

UNSURE = 0.7
SURE = 0.95
"""The neighbours' mean share at which a treatment starts, and at which it is whole."""

SpansAndPrompts = Sequence[tuple[tuple[int, int], str]]


class PromptKinds:
    """The kinds of prompts for one bundle: `of(prompts)`; `load` raises VocabularyCheckUnavailable without the
    bundle's caption table or its per-action motion."""

    def __init__(self, vocabulary: PromptVocabulary):
        motion = vocabulary.vocabulary.action_motion()
        actions = vocabulary.vocabulary.train_actions
        if not motion or len(actions) != vocabulary.train.shape[0]:
            raise VocabularyCheckUnavailable(f"{vocabulary.vocabulary.path}: no per-action motion "
                                             "(`kmm-train vocabulary` measures it)")
        self.bundle = vocabulary.bundle
        self.train = vocabulary.train
        self.space = vocabulary.space
        self.caption_kinds = [motion.get(action, MotionKind()) for action in actions]
        self._cache: dict[str, MotionKind] = {}

    @classmethod
    def load(cls, bundle: ModelBundle) -> PromptKinds:
        """From the bundle's caption table as the prompt check loaded it (read and verified once per bundle)."""
        vocabulary = cached_on_bundle(bundle, "_prompt_vocabulary", PromptVocabulary.load)
        if vocabulary is None:
            raise VocabularyCheckUnavailable(f"{bundle.path}: no caption table (`kmm-train vocabulary` adds it)")
        return cls(vocabulary)

    def of(self, prompts: Sequence[str]) -> list[MotionKind]:
        new = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._cache]
        if new:
            for prompt, embedding in zip(new, embed_texts(self.bundle, new, self.space), strict=True):
                similarity = self.train @ embedding
                nearest = np.argsort(-similarity)[:NEIGHBOURS]
                mean = mean_kind([self.caption_kinds[i] for i in nearest], np.clip(similarity[nearest], 1e-3, None))
                self._cache[prompt] = MotionKind(sure(mean.walking), sure(mean.steady), sure(mean.standing))
        return [self._cache[prompt] for prompt in prompts]


def sure(share: float) -> float:
    """0 up to `UNSURE`, 1 from `SURE`, a smoothstep between."""
    return float(smoothstep(share, UNSURE, SURE))


def prompt_kinds(bundle: ModelBundle, prompts: Sequence[str]) -> list[MotionKind]:
    """Each prompt's kind (module docstring); all zero when the bundle has no table.  Cached on the bundle."""
    kinds = cached_on_bundle(bundle, "_prompt_kinds", PromptKinds.load)
    return kinds.of(prompts) if kinds else [MotionKind() for _ in prompts]


def spans_and_kinds(bundle: ModelBundle, spans_and_prompts: SpansAndPrompts) -> SpansAndKinds:
    """([start, end), prompt) -> ([start, end), the prompt's kind)."""
    kinds = prompt_kinds(bundle, [prompt for _, prompt in spans_and_prompts])
    return [(span, kind) for (span, _), kind in zip(spans_and_prompts, kinds, strict=True)]
