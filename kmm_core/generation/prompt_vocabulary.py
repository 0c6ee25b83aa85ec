# SPDX-License-Identifier: GPL-3.0-or-later
"""Is a prompt like anything the model was trained on?  The out-of-vocabulary check of ``kmm generate`` and the
worker, and the files it needs in a bundle.

A prompt is compared with every distinct training caption in the aligner's text space (the sentence embeddings
the generator is conditioned on, unit length, so the dot product is the cosine similarity).  When its best
similarity is below the bundle's threshold the prompt is *out of vocabulary*: the motion will be whatever the
model makes of unfamiliar words, so the user is warned and shown the closest known prompts.

Bundle files (written by `write_prompt_vocabulary`, e.g. from ``kmm-train bundle``):

- ``vocabulary.json`` (`kmm_core.vocabulary`): actions, styles, captions per split, and ``out_of_vocabulary``:
  the threshold and how it was chosen, with its measured rates.
- ``vocabulary.safetensors``: ``train_embeddings`` (N, E) float16, one row per ``captions.train`` entry.

Threshold: for every validation caption (held-out takes, same caption templates) the best similarity to a
*different* training caption, i.e. a new wording of a known action; the threshold is that distribution's
`VAL_FALSE_ALARM` quantile, so about that fraction of known-action wordings would be warned about.  The false-alarm
rate on the held-out paraphrases of ``evaluation/paraphrases.py`` (other verbs and sentence shapes) and the
warning rate on clearly unknown prompts (`UNKNOWN_PROMPTS`) are measured and stored beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputFileError, KMMError
from ..vocabulary import Vocabulary, read_vocabulary, write_vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from ..model_bundle import ModelBundle

EMBEDDINGS_FILE = "vocabulary.safetensors"
VAL_FALSE_ALARM = 0.02
SUGGESTIONS = 3
DISTINCT_SUGGESTION_SIMILARITY = 0.93   # suggestions closer than this to an earlier one are left out
EMBED_BATCH = 256
# Prompts about actions absent from the project's training data (for the measured warning rate; none of these
# actions is in Bandai-Namco, CMU or the extra sources).
UNKNOWN_PROMPTS = (
    "a person juggles three balls", "a person plays the guitar", "someone swims the breaststroke",
    "a man rides a bicycle", "a woman types on a keyboard", "a person brushes their teeth",
    "someone paints a wall with a roller", "a person drives a car", "the person rows a boat",
    "a person plays the violin", "someone knits a scarf", "a man shaves his beard",
)


class VocabularyCheckUnavailable(KMMError):
    """The bundle cannot check prompts (no vocabulary files, or no aligner to embed text with)."""


@dataclass(frozen=True)
class PromptCheck:
    """How one prompt compares with the training captions."""

    prompt: str
    similarity: float                 # best cosine similarity to a training caption
    threshold: float
    suggestions: tuple[str, ...]      # closest known prompts, most similar first

    @property
    def known(self) -> bool:
        return self.similarity >= self.threshold

    @property
    def warning(self) -> str | None:
        if self.known:
            return None
        closest = "; ".join(f'"{s}"' for s in self.suggestions)
        return (f'"{self.prompt}" is far from everything this model was trained on (similarity '
                f"{self.similarity:.2f} < {self.threshold:.2f}): the motion may not match it. Closest known "
                f"prompts: {closest}. `kmm vocab` lists what the model knows.")

    def to_dict(self, segment: int | None = None) -> dict:
        """The worker's ``warnings`` entry (docs/worker_protocol.md)."""
        return {"segment": segment, "prompt": self.prompt, "similarity": round(self.similarity, 4),
                "threshold": round(self.threshold, 4), "message": self.warning or "",
                "suggestions": list(self.suggestions)}


def embed_texts(bundle: ModelBundle, texts: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, E) unit sentence embeddings of `texts` in the bundle's aligner space (float32)."""
    import torch

    if bundle.aligner is None:
        raise VocabularyCheckUnavailable("the bundle has no aligner, whose text space the check uses")
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), EMBED_BATCH):
            batch = list(texts[start:start + EMBED_BATCH])
            rows.append(bundle.aligner.encode_text(batch).sentence.float().cpu().numpy())
            bundle.aligner.text_encoder.clear_cache()   # thousands of captions: keep the cache small
    if not rows:
        return np.zeros((0, bundle.aligner.embed_dim), dtype=np.float32)
    embeddings = np.concatenate(rows).astype(np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)


def _best_other(queries: np.ndarray, query_texts: list[str] | tuple[str, ...], train: np.ndarray,
                train_texts: tuple[str, ...]) -> np.ndarray:
    """Best similarity of each query to a training caption whose text differs from the query's."""
    index = {text: i for i, text in enumerate(train_texts)}
    similarity = queries @ train.T
    for row, text in enumerate(query_texts):
        if text in index:
            similarity[row, index[text]] = -np.inf
    return similarity.max(axis=1)


def calibrate(bundle: ModelBundle, vocabulary: Vocabulary, train: np.ndarray) -> dict:
    """The ``out_of_vocabulary`` entry: threshold from the val captions, and its measured rates."""
    from ..evaluation.paraphrases import paraphrase_prompts

    if not vocabulary.val_captions:
        raise VocabularyCheckUnavailable("the dataset has no validation captions to choose the threshold on")
    val = embed_texts(bundle, vocabulary.val_captions)
    val_best = _best_other(val, vocabulary.val_captions, train, vocabulary.train_captions)
    threshold = float(np.quantile(val_best, VAL_FALSE_ALARM))
    paraphrases = [prompt for _, prompt in paraphrase_prompts()]
    paraphrase_best = (embed_texts(bundle, paraphrases) @ train.T).max(axis=1)
    unknown_best = (embed_texts(bundle, UNKNOWN_PROMPTS) @ train.T).max(axis=1)
    warned_paraphrases = [p for p, s in zip(paraphrases, paraphrase_best, strict=True) if s < threshold]
    return {
        "threshold": round(threshold, 4),
        "space": "aligner sentence embeddings (cosine similarity)",
        "chosen_on": (f"validation captions ({len(vocabulary.val_captions)} distinct): the {VAL_FALSE_ALARM:.0%} "
                      "quantile of each one's best similarity to a different training caption"),
        "val_false_alarm_rate": round(float(np.mean(val_best < threshold)), 4),
        "paraphrase_false_alarm_rate": round(len(warned_paraphrases) / len(paraphrases), 4),
        "paraphrases": len(paraphrases),
        "paraphrases_warned": warned_paraphrases,
        "unknown_prompt_warning_rate": round(float(np.mean(unknown_best < threshold)), 4),
        "unknown_prompts": {p: round(float(s), 4) for p, s in zip(UNKNOWN_PROMPTS, unknown_best, strict=True)},
        "train_captions": len(vocabulary.train_captions),
    }


def write_prompt_vocabulary(bundle: ModelBundle, vocabulary: Vocabulary, bundle_dir: str | Path | None = None
                            ) -> dict:
    """Embed the training captions, choose the threshold, write vocabulary.json + vocabulary.safetensors into the
    bundle folder (default: the bundle's own); returns the ``out_of_vocabulary`` entry."""
    import torch
    from safetensors.torch import save_file

    folder = Path(bundle_dir) if bundle_dir is not None else bundle.path
    if not vocabulary.train_captions:
        raise VocabularyCheckUnavailable("the dataset has no training captions")
    train = embed_texts(bundle, vocabulary.train_captions)
    report = calibrate(bundle, vocabulary, train)
    temporary = folder / (EMBEDDINGS_FILE + ".tmp")
    save_file({"train_embeddings": torch.from_numpy(train).to(torch.float16)}, str(temporary),
              metadata={"captions": str(len(vocabulary.train_captions))})
    temporary.replace(folder / EMBEDDINGS_FILE)
    write_vocabulary(folder, Vocabulary(**{**vocabulary.__dict__, "out_of_vocabulary": report}))
    return report


class PromptVocabulary:
    """The check of one loaded bundle: `check(prompts)`; `load` raises VocabularyCheckUnavailable when the bundle
    lacks the files (bundles made before they existed) or an aligner."""

    def __init__(self, bundle: ModelBundle, vocabulary: Vocabulary, train: np.ndarray, threshold: float):
        self.bundle = bundle
        self.vocabulary = vocabulary
        self.train = train
        self.threshold = threshold

    @classmethod
    def load(cls, bundle: ModelBundle) -> PromptVocabulary:
        from safetensors.numpy import load_file

        try:
            vocabulary = read_vocabulary(bundle.path)
        except InputFileError as error:
            raise VocabularyCheckUnavailable(str(error)) from None
        if bundle.aligner is None:
            raise VocabularyCheckUnavailable("the bundle has no aligner, whose text space the check uses")
        threshold = vocabulary.out_of_vocabulary.get("threshold")
        path = bundle.path / EMBEDDINGS_FILE
        if not isinstance(threshold, int | float) or not path.is_file():
            raise VocabularyCheckUnavailable(f"{path}: no caption embeddings / threshold in this bundle "
                                             "(`kmm-train vocabulary` adds them)")
        try:
            train = load_file(str(path))["train_embeddings"].astype(np.float32)
        except (OSError, KeyError, ValueError) as error:
            raise InputFileError(path, f"cannot read the caption embeddings: {error}") from None
        if train.shape != (len(vocabulary.train_captions), bundle.aligner.embed_dim):
            raise InputFileError(path, f"train_embeddings has shape {train.shape}, expected "
                                       f"({len(vocabulary.train_captions)}, {bundle.aligner.embed_dim})")
        return cls(bundle, vocabulary, train, float(threshold))

    def check(self, prompts: list[str] | tuple[str, ...]) -> list[PromptCheck]:
        unique = list(dict.fromkeys(prompts))
        embeddings = embed_texts(self.bundle, unique)
        checks = {}
        for prompt, embedding in zip(unique, embeddings, strict=True):
            similarity = self.train @ embedding
            order = np.argsort(-similarity)
            chosen: list[int] = []
            for index in order[:200]:
                if all(self.train[index] @ self.train[c] < DISTINCT_SUGGESTION_SIMILARITY for c in chosen):
                    chosen.append(int(index))
                if len(chosen) == SUGGESTIONS:
                    break
            checks[prompt] = PromptCheck(prompt, float(similarity[order[0]]), self.threshold,
                                         tuple(self.vocabulary.train_captions[i] for i in chosen))
        return [checks[prompt] for prompt in prompts]


def check_prompts(bundle: ModelBundle, prompts: list[str] | tuple[str, ...]) -> list[PromptCheck] | None:
    """Checks of `prompts`, or None when the bundle cannot check (reason in the exception's absence: use
    PromptVocabulary.load to learn why).  The loaded check is cached on the bundle object."""
    cached = getattr(bundle, "_prompt_vocabulary", None)
    if cached is None:
        try:
            cached = PromptVocabulary.load(bundle)
        except VocabularyCheckUnavailable:
            cached = False
        try:
            object.__setattr__(bundle, "_prompt_vocabulary", cached)
        except (AttributeError, TypeError):
            pass
    return cached.check(prompts) if cached else None


def prompt_warnings(bundle: ModelBundle, prompts: list[tuple[int | None, str]]) -> list[dict]:
    """The worker's result ``warnings``: one entry per (segment, prompt) whose prompt is out of vocabulary; []
    when every prompt is known or the bundle cannot check."""
    checks = check_prompts(bundle, [prompt for _, prompt in prompts])
    if not checks:
        return []
    return [check.to_dict(segment) for (segment, _), check in zip(prompts, checks, strict=True) if not check.known]
