# SPDX-License-Identifier: GPL-3.0-or-later
"""Is a prompt like anything the model was trained on?  The out-of-vocabulary check of ``kmm generate`` and the
worker, read from the bundle's vocabulary files.

A prompt is compared with every distinct training caption by the cosine similarity of sentence embeddings in a text
space of the bundle: ``aligner`` (the aligner's sentence embeddings, which condition the generator) or ``minilm``
(the frozen MiniLM sentence embeddings the aligner reads).  When its best similarity is below the bundle's
threshold the prompt is *out of vocabulary*: the motion will be whatever the model makes of unfamiliar words, so
the user is warned and shown the closest known prompts.  A prompt that uses an action word the model lists but
rarely performs (a WEAK word of ``word_checks.json``, ``bundle/word_strength.py``) is warned about too, naming the
word, its measured pass rate and a strong word to try instead, whose example prompt is offered first.  A prompt
whose nearest training captions the model mostly did not perform (``caption_checks.json``,
``bundle/caption_checks.py``: their pass rate, each weighted by its nearness, below its ``warn_below``) is warned about, naming
one of them, and offered the closest captions it did perform.  The same results say how much of a raised guidance a
prompt is generated at (``PromptCheck.guidance_boost``, `guidance_boosts`: the model rarely performs its nearest
captions at its guidance and more often at ``decoding.unlikely_guidance_factor`` times it); its predicted pass rate
is the one at the guidance it gets, and the warning, which reads the rate at the bundle's own guidance, names both.
Known prompts that use a weak word are never suggested ("a person juggles three balls" is closest to throwing a
ball, which kmm-small rarely performs).

Bundle files (written by ``kmm_core/training/bundle_vocabulary.py``, which also chooses the space and the threshold
on the validation split; inference only reads them):

- ``vocabulary.json`` (`kmm_core.bundle.vocabulary`): actions, styles, captions per split with their actions, and
  ``out_of_vocabulary``: the space, the threshold, how they were chosen, and the measured rates.
- ``vocabulary.safetensors``: ``train_embeddings`` (N, E) float16, one row per ``captions.train`` entry, in that space;
  ``train_conditions`` (N, cond_dim) float32, the generator's own condition of each (``prompt_conditions``' second
  retrieval; bundles made before it lack it).

Space: MiniLM (`CHECK_SPACE`).  Both spaces are measured and stored; on the shipped kmm-small the aligner's space
maps every sentence near one of its ~30 trained actions, so clearly unknown prompts score 0.68-0.92 there, as high
as paraphrases of known actions (0.60-0.93), and no threshold separates them; in MiniLM's space they score
0.26-0.50 against 0.49-0.86 (training/runs/kmm-small/vocabulary.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..bundle.caption_checks import CaptionChecks, read_caption_checks
from ..bundle.vocabulary import Vocabulary, read_vocabulary
from ..bundle.word_strength import WordStrength, WordStrengths, read_word_strengths
from ..common.errors import InputFileError, KMMError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..bundle.model_bundle import ModelBundle

T = TypeVar("T")
EMBEDDINGS_FILE = "vocabulary.safetensors"
CONDITIONS_KEY = "train_conditions"
SPACES = ("aligner", "minilm")
CHECK_SPACE = "minilm"
SUGGESTIONS = 3
DISTINCT_SUGGESTION_SIMILARITY = 0.93   # suggestions closer than this to an earlier one are left out
EMBED_BATCH = 256


class VocabularyCheckUnavailable(KMMError):
    """The bundle cannot check prompts (no vocabulary files, or no aligner to embed text with)."""


@dataclass(frozen=True)
class PromptCheck:
    """How one prompt compares with the training captions."""

    prompt: str
    similarity: float                 # best cosine similarity to a training caption
    threshold: float
    suggestions: tuple[str, ...]      # closest known prompts without a weak word, most similar first
    weak_words: tuple[WordStrength, ...] = ()   # listed action words the model rarely performs (word_checks.json)
    predicted_pass_rate: float | None = None  # from its nearest train captions' results (caption_checks.json)
    warn_below: float = 0.0
    unperformed: str = ""             # its nearest train caption the model does not perform, if among them
    guidance_boost: float = 0.0       # how much of the raised guidance it is generated at (caption_checks.boost_weight)
    boost_factor: float = 1.0
    usual_pass_rate: float | None = None  # predicted at the bundle's own guidance (what `unlikely` reads)
    measured_boost_factor: float | None = None  # the raise `predicted_pass_rate` was measured at (None: boost_factor)

    @property
    def known(self) -> bool:
        return self.similarity >= self.threshold

    @property
    def usual_rate(self) -> float | None:
        """Its predicted pass rate at the bundle's own guidance (the one it is generated at when not raised)."""
        return self.predicted_pass_rate if self.usual_pass_rate is None else self.usual_pass_rate

    @property
    def guidance_multiple(self) -> float:
        """The multiple of the bundle's guidance it is generated at (1 when not raised)."""
        return 1.0 + (self.boost_factor - 1.0) * self.guidance_boost

    @property
    def measured_multiple(self) -> float:
        """The multiple of the bundle's guidance `predicted_pass_rate` was measured at (`guidance_multiple` unless
        the generation raises by another factor than the caption checks did: `kmm generate --unlikely-guidance`)."""
        measured = self.boost_factor if self.measured_boost_factor is None else self.measured_boost_factor
        return 1.0 + (measured - 1.0) * self.guidance_boost

    @property
    def unlikely(self) -> bool:
        """The model performs too few of the training captions nearest this prompt at its own guidance
        (caption_checks.json), however hard the prompt is guided."""
        return self.usual_rate is not None and self.usual_rate < self.warn_below

    @property
    def warned(self) -> bool:
        """Out of vocabulary, using a weak action word, or unlikely to be performed."""
        return not self.known or bool(self.weak_words) or self.unlikely

    @property
    def warning(self) -> str | None:
        if not self.warned:
            return None
        parts = [f'"{self.prompt}": ' + " ".join(word.warning() for word in self.weak_words)] if self.weak_words else []
        if self.unlikely:
            example = f' (not "{self.unperformed}")' if self.unperformed else ""
            raised = ""
            if self.guidance_multiple != 1.0 and abs(self.measured_multiple - self.guidance_multiple) < 0.05:
                raised = (f"; guided harder ({self.guidance_multiple:.1f}x), as this prompt is, it performed "
                          f"{self.predicted_pass_rate:.0%} of them")
            elif self.guidance_multiple != 1.0:  # raised by another factor than the one measured
                raised = (f"; this prompt is guided at {self.guidance_multiple:.1f}x, and guided at "
                          f"{self.measured_multiple:.1f}x it performed {self.predicted_pass_rate:.0%} of them")
            parts.append(f'"{self.prompt}": the model performed {self.usual_rate:.0%} of the training captions '
                         f"nearest it{' at its usual guidance' if raised else ''}{example}{raised}, so the motion may "
                         "not be what it says.")
        if not self.known:
            closest = "; ".join(f'"{s}"' for s in self.suggestions)
            parts.append(f'"{self.prompt}" is far from everything this model was trained on (similarity '
                         f"{self.similarity:.2f} < {self.threshold:.2f}): the motion may not match it. Closest "
                         f"known prompts: {closest}.")
        return " ".join(parts) + " `kmm vocab` lists what the model knows."

    def offered_prompts(self) -> tuple[str, ...]:
        """Prompts to offer instead: the weak words' strong alternatives first, then the closest known prompts
        (only when the prompt is out of vocabulary)."""
        alternatives = [word.alternative_prompt for word in self.weak_words if word.alternative_prompt]
        return tuple(dict.fromkeys(alternatives + (list(self.suggestions) if not self.known or self.unlikely
                                                   else [])))

    def to_dict(self, segment: int | None = None) -> dict:
        """The worker's ``warnings`` entry (docs/worker_protocol.md)."""
        return {"segment": segment, "prompt": self.prompt, "similarity": round(self.similarity, 4),
                "threshold": round(self.threshold, 4), "message": self.warning or "",
                "suggestions": list(self.offered_prompts()),
                "predicted_pass_rate": (None if self.predicted_pass_rate is None
                                        else round(self.predicted_pass_rate, 4))}


def embed_texts(bundle: ModelBundle, texts: list[str] | tuple[str, ...], space: str = "aligner") -> np.ndarray:
    """(N, E) unit sentence embeddings of `texts` in `space` ("aligner" or "minilm"), float32."""
    if space not in SPACES:
        raise KMMError(f"space: {space!r} is not one of {', '.join(SPACES)}")
    if space == "aligner" and bundle.aligner is None:
        raise VocabularyCheckUnavailable("the bundle has no aligner, whose text space the check would use")
    encoder = bundle.text_conditioner.text_encoder
    embed = (bundle.aligner.encode_text if space == "aligner" and bundle.aligner is not None else encoder.encode)
    embeddings = embed_in_batches(bundle, texts, lambda batch: embed(batch).sentence)
    if not len(embeddings):
        return np.zeros((0, 1), dtype=np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)


def embed_in_batches(bundle: ModelBundle, texts: Sequence[str], embed: Callable[[list[str]], torch.Tensor]
                     ) -> np.ndarray:
    """(N, D) float32: `embed` (a batch of texts -> (B, D)) over `texts`, `EMBED_BATCH` at a time without gradients,
    MiniLM's cache emptied after each batch (thousands of captions: keep the cache small); (0, 0) for no texts."""
    import torch

    encoder = bundle.text_conditioner.text_encoder
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), EMBED_BATCH):
            rows.append(embed(list(texts[start:start + EMBED_BATCH])).float().cpu().numpy())
            encoder.clear_cache()
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)


class PromptVocabulary:
    """The check of one loaded bundle: `check(prompts)`; `load` raises VocabularyCheckUnavailable when the bundle
    lacks the files (bundles made before they existed) or an aligner."""

    def __init__(self, bundle: ModelBundle, vocabulary: Vocabulary, train: np.ndarray, threshold: float,
                 space: str, words: WordStrengths | None = None, captions: CaptionChecks | None = None,
                 conditions: np.ndarray | None = None):
        self.bundle = bundle
        self.vocabulary = vocabulary
        self.train = train
        self.conditions = conditions
        self.threshold = threshold
        self.space = space
        self.words = words
        self.captions = captions
        self._weak_captions: dict[int, bool] = {}
        self._checks: dict[str, PromptCheck] = {}

    @classmethod
    def load(cls, bundle: ModelBundle, caption_checks: bool = True) -> PromptVocabulary:
        """The bundle's check; `caption_checks` False leaves its ``caption_checks.json`` unread (``kmm-train
        check-captions``, which writes it anew, generates without the file it replaces)."""
        from safetensors.numpy import load_file

        from ..bundle.weight_checksums import verify_vocabulary_files

        verify_vocabulary_files(bundle.path, bundle.config)  # a damaged vocabulary file fails here, naming it
        try:
            vocabulary = read_vocabulary(bundle.path)
        except InputFileError as error:
            raise VocabularyCheckUnavailable(str(error)) from None
        threshold = vocabulary.out_of_vocabulary.get("threshold")
        space = vocabulary.out_of_vocabulary.get("space", "aligner")
        if space not in SPACES or (space == "aligner" and bundle.aligner is None):
            raise VocabularyCheckUnavailable(f"{vocabulary.path}: text space {space!r} is not available")
        path = bundle.path / EMBEDDINGS_FILE
        if not isinstance(threshold, int | float) or not path.is_file():
            raise VocabularyCheckUnavailable(f"{path}: no caption embeddings / threshold in this bundle "
                                             "(`kmm-train vocabulary` adds them)")
        try:
            tensors = load_file(str(path))
            train = tensors["train_embeddings"].astype(np.float32)
        except (OSError, KeyError, ValueError) as error:
            raise InputFileError(path, f"cannot read the caption embeddings: {error}") from None
        width = (bundle.aligner.embed_dim if space == "aligner" and bundle.aligner is not None
                 else bundle.text_conditioner.text_encoder.dim)
        if train.shape != (len(vocabulary.train_captions), width):
            raise InputFileError(path, f"train_embeddings has shape {train.shape}, expected "
                                       f"({len(vocabulary.train_captions)}, {width})")
        conditions = tensors.get(CONDITIONS_KEY)
        if conditions is not None:
            conditions = conditions.astype(np.float32)
            expected = (len(vocabulary.train_captions), bundle.text_conditioner.cond_dim)
            if conditions.shape != expected:
                raise InputFileError(path, f"{CONDITIONS_KEY} has shape {conditions.shape}, expected {expected}")
            if not np.all(np.isfinite(conditions)):
                raise InputFileError(path, f"{CONDITIONS_KEY} holds values that are not finite")
        captions = read_caption_checks(bundle.path, len(vocabulary.train_captions)) if caption_checks else None
        if captions is not None and captions.boost_factor != bundle.decoding.unlikely_guidance_factor:
            # measured at another raised guidance than the bundle decodes with: its base results only, no boost
            captions = dataclasses.replace(captions, boosted=None, boost_factor=1.0)
        return cls(bundle, vocabulary, train, float(threshold), space, read_word_strengths(bundle.path), captions,
                   conditions)

    def _never_suggested(self, caption: int) -> bool:
        """Whether training caption `caption` uses a weak word or the model did not perform it (never suggested)."""
        if self.captions is not None and self.captions.unperformed[caption]:
            return True
        if self.words is None:
            return False
        if caption not in self._weak_captions:
            self._weak_captions[caption] = bool(self.words.weak_words_in(self.vocabulary.train_captions[caption]))
        return self._weak_captions[caption]

    def check(self, prompts: list[str] | tuple[str, ...]) -> list[PromptCheck]:
        """The check of each prompt, each distinct prompt checked once per loaded bundle (generation asks for the
        same prompts' guidance on every decoding pass, the command line and the panel for their warnings)."""
        unique = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._checks]
        embeddings = embed_texts(self.bundle, unique, self.space) if unique else []
        checks = self._checks
        for prompt, embedding in zip(unique, embeddings, strict=True):
            similarity = self.train @ embedding
            order = np.argsort(-similarity)
            chosen: list[int] = []
            for index in order[:200]:
                if self._never_suggested(int(index)):
                    continue
                if all(self.train[index] @ self.train[c] < DISTINCT_SUGGESTION_SIMILARITY for c in chosen):
                    chosen.append(int(index))
                if len(chosen) == SUGGESTIONS:
                    break
            predicted = self.captions.predicted(similarity) if self.captions is not None else None
            checks[prompt] = PromptCheck(
                prompt, float(similarity[order[0]]), self.threshold,
                tuple(self.vocabulary.train_captions[i] for i in chosen),
                tuple(self.words.weak_words_in(prompt)) if self.words else (),
                predicted.rate if predicted else None, self.captions.warn_below if self.captions else 0.0,
                self.vocabulary.train_captions[predicted.unperformed] if predicted and predicted.unperformed >= 0
                else "", predicted.boost if predicted else 0.0,
                self.captions.boost_factor if self.captions else 1.0, predicted.usual if predicted else None)
        return [checks[prompt] for prompt in prompts]


def cached_on_bundle(bundle: ModelBundle, attribute: str, load: Callable[[ModelBundle], T]) -> T | None:
    """`load(bundle)` once per bundle object (kept on it as `attribute`); None when it raises
    VocabularyCheckUnavailable (the bundle lacks the vocabulary files)."""
    cached = getattr(bundle, attribute, None)
    if cached is None:
        try:
            cached = load(bundle)
        except VocabularyCheckUnavailable:
            cached = False
        try:
            object.__setattr__(bundle, attribute, cached)
        except (AttributeError, TypeError):
            pass
    return cached or None


def check_prompts(bundle: ModelBundle, prompts: list[str] | tuple[str, ...]) -> list[PromptCheck] | None:
    """Checks of `prompts`, or None when the bundle cannot check (reason in the exception's absence: use
    PromptVocabulary.load to learn why).  The loaded check is cached on the bundle object."""
    checker = cached_on_bundle(bundle, "_prompt_vocabulary", PromptVocabulary.load)
    return checker.check(prompts) if checker else None


def guidance_boosts(bundle: ModelBundle, prompts: Sequence[str]) -> list[float]:
    """Each prompt's share of the bundle's raised guidance (``decoding.unlikely_guidance_factor``; `PromptCheck`
    ``guidance_boost``): 0 for all where the bundle decodes without one or cannot check."""
    if bundle.decoding.unlikely_guidance_factor == 1.0 or not prompts:
        return [0.0] * len(prompts)
    checks = check_prompts(bundle, list(prompts))
    return [check.guidance_boost for check in checks] if checks else [0.0] * len(prompts)


def prompt_warnings(bundle: ModelBundle, prompts: list[tuple[int | None, str]]) -> list[dict]:
    """The worker's result ``warnings``: one entry per (segment, prompt) whose prompt is out of vocabulary or uses a
    weak action word; [] when every prompt is known and strong or the bundle cannot check."""
    checks = check_prompts(bundle, [prompt for _, prompt in prompts])
    if not checks:
        return []
    return [check.to_dict(segment) for (segment, _), check in zip(prompts, checks, strict=True) if check.warned]
