# SPDX-License-Identifier: GPL-3.0-or-later
"""The generator's condition completed by the nearest performed training captions (kmm_core/generation/
prompt_conditions.py), on the shipped model: wording the aligner misplaces is pulled towards the captions MiniLM
finds for it, a caption the model performs keeps its own condition, failed captions are never retrieved, and a
bundle without the caption table generates from the prompt alone.  A new wording's own share is brought onto the
captions the aligner places it by: "someone strolls along" walks forward over a long take instead of crab-walking."""

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


def test_a_new_wording_s_own_share_is_brought_onto_its_nearest_captions(shipped_bundle):
    retrieval = CaptionRetrieval.load(shipped_bundle)
    stroll = own_conditions(shipped_bundle, ["someone strolls along"])[0]
    onto = retrieval.onto_captions(stroll)
    captions = retrieval.vocabulary.vocabulary.train_captions
    forward = own_conditions(shipped_bundle, ["someone strolls forward"])[0]
    assert torch.isclose(onto.norm(), stroll.norm(), rtol=1e-4)
    assert _cosine(onto, forward) > _cosine(stroll, forward) + 0.05
    # At the captions the generator was trained on: nearer its nearest performed caption than the wording was.
    table = torch.nn.functional.normalize(torch.from_numpy(retrieval.vocabulary.conditions[retrieval.performed]))
    nearest_before, nearest_after = (float((table @ (v / v.norm())).max()) for v in (stroll, onto))
    assert nearest_before < 0.9 and nearest_after > 0.97, (nearest_before, nearest_after)
    # A performed training caption is (almost) its own nearest: brought onto itself.
    performed = int(np.flatnonzero(retrieval.performed)[0])
    mine = own_conditions(shipped_bundle, [captions[performed]])[0]
    assert _cosine(retrieval.onto_captions(mine), mine) > 0.97


def test_a_stroll_in_other_words_walks_forward_over_a_long_take(shipped_bundle):
    from kmm_core.evaluation.action_checks import sideways_travel_fraction
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "someone strolls along", "start": 1,
                                                            "end": 200}]})
    for seed in (0, 1):
        joints = np.asarray(generate_timeline(shipped_bundle, timeline, seed=seed)[0].joints, dtype=np.float64)
        # Its own embedding as it was: 79-91% of the path toward its right (a crab-walk); a walk ahead 5-25%.
        assert abs(sideways_travel_fraction(joints)) < 0.5, seed


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


def test_without_the_captions_conditions_the_own_share_is_the_embedding_as_it_is(tiny_model):
    import copy

    vocabulary = conditions.PromptVocabulary.load(tiny_model)
    own = own_conditions(tiny_model, ["a robot shuffles sideways"])[0]
    assert not torch.equal(CaptionRetrieval(vocabulary).onto_captions(own), own)
    older = copy.copy(vocabulary)
    older.conditions = None  # as a bundle made before `train_conditions` (vocabulary.safetensors) loads
    assert torch.equal(CaptionRetrieval(older).onto_captions(own), own)


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


def test_a_prompt_whose_nearest_captions_the_model_fails_keeps_its_own_condition(shipped_bundle):
    """"a person kicks with the right leg": its nearest captions in the condition space are kicks the model fails
    (0.94), the nearest it performs 0.77: brought onto those it stopped kicking, so it keeps its own condition, and
    kicks with the right leg; the stroll, whose nearest caption is performed, is still brought onto it."""
    from kmm_core.evaluation.action_checks import run_check
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    retrieval = CaptionRetrieval.load(shipped_bundle)
    kick = own_conditions(shipped_bundle, ["a person kicks with the right leg"])[0]
    assert torch.equal(retrieval.onto_captions(kick), kick)
    stroll = own_conditions(shipped_bundle, ["someone strolls along"])[0]
    assert not torch.equal(retrieval.onto_captions(stroll), stroll)
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person kicks with the right leg",
                                                            "start": 1, "end": 100}]})
    joints = np.asarray(generate_timeline(shipped_bundle, timeline, seed=0)[0].joints, dtype=np.float64)
    assert run_check("kick", joints, side="right").passed
