# SPDX-License-Identifier: GPL-3.0-or-later
"""The generator's condition completed by the nearest performed training captions (kmm_core/generation/
prompt_conditions.py), on the shipped model: wording the aligner misplaces is pulled towards the captions MiniLM
finds for it, a caption the model performs keeps its own condition, failed captions are never retrieved, and a
bundle without the caption table generates from the prompt alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from kmm_core.generation import prompt_conditions as conditions
from kmm_core.generation.prompt_conditions import (
    CaptionRetrieval,
    own_conditions,
    prompt_conditions,
    retrieved_captions,
)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1))


def test_a_walk_in_other_words_is_conditioned_nearer_the_walk(shipped_bundle):
    reference = own_conditions(shipped_bundle, ["a person walks forward"])[0]
    for prompt in ("a person ambles forward", "a woman heads straight ahead on foot"):
        own = own_conditions(shipped_bundle, [prompt])[0]
        blended = prompt_conditions(shipped_bundle, [prompt])[0]
        # The aligner alone puts these by a dribble and a sideways walk; their MiniLM neighbours are walks.
        assert _cosine(blended, reference) > _cosine(own, reference) + 0.1, prompt
        assert torch.isclose(blended.norm(), own.norm(), rtol=1e-4)


def test_a_performed_caption_keeps_its_own_condition_and_failed_ones_are_never_retrieved(shipped_bundle):
    retrieval = CaptionRetrieval.load(shipped_bundle)
    captions = retrieval.vocabulary.vocabulary.train_captions
    performed = int(np.flatnonzero(retrieval.performed)[0])
    failed = np.flatnonzero(~retrieval.performed)
    assert failed.size > 100 and retrieval.performed.sum() > 1000  # kmm-small: 3,145 of 4,004 performed
    (nearest, weights, best), (nearest_failed, _, best_failed) = retrieval.neighbours(
        [captions[performed], captions[int(failed[0])]])
    assert nearest[0] == performed and weights[0] == weights.max() and best > 0.999 and best_failed > 0.999
    assert np.isclose(weights.sum(), 1.0) and len(nearest) == conditions.NEIGHBOURS
    assert not set(nearest_failed.tolist()) & set(failed.tolist())
    assert retrieval.neighbours([]) == [] and retrieved_captions(shipped_bundle, []) == []  # an edit with no prompt
    # A training caption is known: its own condition, whether the model performs it or not.
    for caption in (captions[performed], captions[int(failed[0])]):
        assert torch.equal(prompt_conditions(shipped_bundle, [caption]), own_conditions(shipped_bundle, [caption]))


def test_the_own_share_rises_from_far_to_known():
    shares = [conditions.own_share(s) for s in (0.3, conditions.FAR, 0.9, conditions.KNOWN, 1.0)]
    assert shares[0] == shares[1] == conditions.OWN and shares[-2] == shares[-1] == 1.0
    assert conditions.OWN < shares[2] < 1.0


def test_without_the_caption_table_the_prompt_alone_conditions(tiny_bundle, tmp_path):
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.training.bundle_writer import record_checksums

    bundle_path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle_path)
    document = json.loads((bundle_path / "vocabulary.json").read_text())
    document.pop("out_of_vocabulary")  # as a bundle made before the prompt check: no caption table to read
    (bundle_path / "vocabulary.json").write_text(json.dumps(document))
    record_checksums(bundle_path)
    bundle = ModelBundle.load(bundle_path, device="cpu")
    prompts = ["a person walks forward", "a person jumps"]
    assert torch.equal(prompt_conditions(bundle, prompts), own_conditions(bundle, prompts))


def test_own_share_one_is_the_prompt_alone(shipped_bundle, monkeypatch):
    monkeypatch.setattr(conditions, "OWN", 1.0)
    prompts = ["a person ambles forward"]
    assert torch.equal(prompt_conditions(shipped_bundle, prompts), own_conditions(shipped_bundle, prompts))


def test_the_command_line_says_which_captions_complete_a_prompt(shipped_bundle):
    import io

    from kmm_core.vocab_command import warn_about_prompts

    stream = io.StringIO()
    warn_about_prompts(shipped_bundle, ["a person ambles forward", "a person walks forward", "a person ambles forward"],
                       stream)
    notes = [line for line in stream.getvalue().splitlines() if line.startswith("kmm: note:")]
    assert len(notes) == 1, notes  # once per distinct prompt; a training caption needs none
    assert notes[0].startswith('kmm: note: "a person ambles forward" is generated from its own words (30%)')
    assert "walk" in notes[0].split(": ", 2)[2].split("(70%): ")[1]
