# SPDX-License-Identifier: GPL-3.0-or-later
"""The out-of-vocabulary warning: on the shipped model a known prompt passes silently and "a person juggles three
balls" warns with suggestions (the check itself, `kmm generate`, and the real worker's result event); the files
`kmm-train all` writes for it; the protocol's `warnings` field."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.bundle.vocabulary import read_vocabulary
from kmm_core.cli import main as kmm_main
from kmm_core.generation.prompt_vocabulary import (
    EMBEDDINGS_FILE,
    PromptVocabulary,
    VocabularyCheckUnavailable,
    embed_texts,
)
from kmm_core.worker.client import WorkerClient
from kmm_core.worker.protocol import Generate, ProtocolError, decode, encode

JUGGLE = "a person juggles three balls"
CRATE = "a mover lifts a heavy crate from the floor"  # unknown; its closest caption uses a weak word (pick-up-box)
KNOWN = ("a person walks forward", "someone waves the left hand", "a man raises both hands")


@pytest.fixture(scope="module")
def shipped():
    return ModelBundle.load(default_bundle_path(), device="cpu")


@pytest.fixture(scope="module")
def shipped_check(shipped):
    return PromptVocabulary.load(shipped)


def test_known_prompts_pass_and_juggling_warns(shipped, shipped_check):
    checks = shipped_check.check([*KNOWN, JUGGLE])
    for check in checks[:-1]:
        assert check.known and check.warning is None, check
    juggle = checks[-1]
    assert not juggle.known and juggle.similarity < juggle.threshold
    assert len(juggle.suggestions) == 3 and len(set(juggle.suggestions)) == 3
    vocabulary = read_vocabulary(default_bundle_path())
    assert set(juggle.suggestions) <= set(vocabulary.train_captions)
    assert JUGGLE in juggle.warning and all(s in juggle.warning for s in juggle.suggestions)
    # Suggestions are close training captions, most similar first, the first being the closest of all that use no
    # weak word (word_checks.json) and that the model performed at its guidance (caption_checks.json's `passed`).
    embeddings = dict(zip(vocabulary.train_captions, shipped_check.train, strict=True))
    strengths = shipped_check.words
    performed = ~shipped_check.captions.unperformed
    usable = [c for c, done in zip(vocabulary.train_captions, performed, strict=True)
              if done and not strengths.weak_words_in(c)]
    for prompt, check in ((JUGGLE, juggle), (CRATE, shipped_check.check([CRATE])[0])):
        assert not check.known and len(check.suggestions) == 3, check
        query = embed_texts(shipped, [prompt], shipped_check.space)[0]
        similarities = [float(embeddings[s] @ query) for s in check.suggestions]
        assert similarities == sorted(similarities, reverse=True)
        closest = max(vocabulary.train_captions, key=lambda caption: float(embeddings[caption] @ query))
        assert float(embeddings[closest] @ query) == pytest.approx(check.similarity, abs=1e-5)
        assert not any(strengths.weak_words_in(s) for s in check.suggestions)
        assert similarities[0] == pytest.approx(max(float(embeddings[c] @ query) for c in usable), abs=1e-5)
    assert strengths.weak_words_in(closest) and closest not in check.suggestions  # the mover's box


def test_shipped_threshold_and_its_measured_rates(shipped_check):
    ood = read_vocabulary(default_bundle_path()).out_of_vocabulary
    assert ood["threshold"] == pytest.approx(shipped_check.threshold) and ood["space"] == shipped_check.space
    assert ood["val_false_alarm_rate"] <= 0.01 and ood["val_unseen_action_warning_rate"] == pytest.approx(0.01, abs=0.01)
    assert ood["paraphrase_false_alarm_rate"] <= 0.05 and ood["paraphrases"] == 40
    assert ood["unknown_prompt_warning_rate"] >= 0.9
    assert set(ood["spaces"]) == {"aligner", "minilm"}
    # The stored rates are what the check does now.
    from kmm_core.evaluation.paraphrases import paraphrase_prompts

    paraphrases = [prompt for _, prompt in paraphrase_prompts()]
    warned = [c.prompt for c in shipped_check.check(paraphrases) if not c.known]
    assert warned == ood["paraphrases_warned"]


def test_kmm_generate_warns_only_about_the_unknown_prompt(tmp_path, capsys):
    timeline = tmp_path / "t.json"
    timeline.write_text(json.dumps({"fps": 20, "segments": [{"prompt": KNOWN[0], "seconds": 1.0},
                                                            {"prompt": JUGGLE, "seconds": 1.0}]}), encoding="utf-8")
    assert kmm_main(["generate", "--timeline", str(timeline), "-o", str(tmp_path / "out.npz"), "--seed", "0",
                     "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and JUGGLE in warnings[0] and "Closest known prompts" in warnings[0]
    assert kmm_main(["generate", KNOWN[0], "--seconds", "1", "-o", str(tmp_path / "known.npz"), "--seed", "0",
                     "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_worker_result_carries_the_warning(tmp_path):
    client = WorkerClient(sys.executable, worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    try:
        client.handshake(timeout=180)
        timeline = {"fps": 20, "segments": [{"prompt": KNOWN[0], "seconds": 1.0}, {"prompt": JUGGLE, "seconds": 1.0}]}
        events: list = []
        answer = client.wait_for(client.send(Generate(timeline=timeline, output_dir=str(tmp_path), seed=0, steps=2)),
                                 timeout=300, on_event=events.append)
    finally:
        client.shutdown(20)
    assert answer["type"] == "result", answer
    (warning,) = answer["warnings"]
    assert warning["segment"] == 1 and warning["prompt"] == JUGGLE
    assert warning["similarity"] < warning["threshold"] and len(warning["suggestions"]) == 3
    logged = [e for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert [e["message"] for e in logged] == [warning["message"]]


def test_kmm_train_all_writes_the_vocabulary_files(tiny_bundle, tiny_model):
    vocabulary = read_vocabulary(tiny_bundle)
    assert (tiny_bundle / EMBEDDINGS_FILE).is_file()
    ood = vocabulary.out_of_vocabulary
    assert set(ood) >= {"threshold", "val_false_alarm_rate", "paraphrase_false_alarm_rate", "chosen_on"}
    check = PromptVocabulary.load(tiny_model)
    assert check.space == "minilm"
    assert check.train.shape == (len(vocabulary.train_captions), tiny_model.text_conditioner.text_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(check.train, axis=1), 1.0, atol=2e-3)
    # A training caption is as close as it gets to itself.
    (result,) = check.check([vocabulary.train_captions[0]])
    assert result.similarity == pytest.approx(1.0, abs=2e-3) and result.known
    # ... and the generator's own condition of every training caption, for prompt_conditions.onto_captions.
    some = list(vocabulary.train_captions[:5])
    assert check.conditions.shape == (len(vocabulary.train_captions), tiny_model.text_conditioner.cond_dim)
    np.testing.assert_allclose(check.conditions[:5], tiny_model.prompt_embeddings(some).numpy(), atol=1e-5)


def test_caption_conditions_added_to_an_older_bundle_and_a_damaged_table_named(tiny_bundle, tmp_path, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from kmm_core.common.errors import InputFileError
    from kmm_core.generation.prompt_vocabulary import CONDITIONS_KEY
    from kmm_core.training.bundle_writer import record_checksums
    from kmm_core.training.cli import main as train_main

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    tensors = load_file(str(copy / EMBEDDINGS_FILE))
    conditions = tensors.pop(CONDITIONS_KEY)
    save_file(tensors, str(copy / EMBEDDINGS_FILE))  # as `kmm-train vocabulary` wrote it before the conditions
    record_checksums(copy)
    assert PromptVocabulary.load(ModelBundle.load(copy, device="cpu")).conditions is None
    assert train_main(["vocabulary", "--conditions-only", "--bundle", str(copy)]) == 0
    assert "the conditions of" in capsys.readouterr().out
    added = PromptVocabulary.load(ModelBundle.load(copy, device="cpu"))  # checksums verified on load
    np.testing.assert_allclose(added.conditions, conditions.numpy(), atol=1e-5)
    np.testing.assert_array_equal(added.train, load_file(str(tiny_bundle / EMBEDDINGS_FILE))["train_embeddings"]
                                  .float().numpy())
    # A table of the wrong width is named, file and tensor, not read as conditions.
    save_file({**tensors, CONDITIONS_KEY: torch.zeros(len(conditions), 3)}, str(copy / EMBEDDINGS_FILE))
    record_checksums(copy)
    with pytest.raises(InputFileError, match=rf"vocabulary.safetensors.*{CONDITIONS_KEY} has shape \(\d+, 3\)"):
        PromptVocabulary.load(ModelBundle.load(copy, device="cpu"))
    save_file({**tensors, CONDITIONS_KEY: torch.full_like(conditions, float("nan"))}, str(copy / EMBEDDINGS_FILE))
    record_checksums(copy)
    with pytest.raises(InputFileError, match=rf"vocabulary.safetensors.*{CONDITIONS_KEY} holds values that are not"):
        PromptVocabulary.load(ModelBundle.load(copy, device="cpu"))
    # A damaged table is named by its checksum, not rewritten.
    (copy / EMBEDDINGS_FILE).write_bytes((copy / EMBEDDINGS_FILE).read_bytes()[:-8])
    assert train_main(["vocabulary", "--conditions-only", "--bundle", str(copy)]) == 1
    assert "vocabulary.safetensors" in capsys.readouterr().err
    # Other modes still need the training data.
    assert train_main(["vocabulary", "--bundle", str(copy)]) == 1
    assert "--dataset is required" in capsys.readouterr().err


def test_bundle_without_vocabulary_files_is_not_checked(tiny_bundle, tmp_path):
    import shutil

    from kmm_core.training.bundle_writer import record_checksums

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / EMBEDDINGS_FILE).unlink()
    record_checksums(copy)  # the embeddings were never there (deleting a listed file is damage: test_model_choice.py)
    with pytest.raises(VocabularyCheckUnavailable, match="no caption embeddings"):
        PromptVocabulary.load(ModelBundle.load(copy, device="cpu"))


def test_protocol_result_warnings():
    warning = {"segment": 1, "prompt": JUGGLE, "similarity": 0.4, "threshold": 0.6, "message": "far",
               "suggestions": ["a person walks"], "predicted_pass_rate": 0.25}
    line = encode({"type": "result", "id": "g-1", "paths": [], "info": {}, "warnings": [warning]})
    assert decode(line)["warnings"] == [warning]
    assert decode('{"type":"result","id":"g-1","paths":[],"info":{}}')["warnings"] == []
    for bad, field in ((dict(warning, similarity="high"), "similarity"), ({"segment": 1}, "exactly"),
                       (dict(warning, suggestions=[3]), "suggestions"),
                       (dict(warning, predicted_pass_rate="low"), "predicted_pass_rate"),
                       ({k: v for k, v in warning.items() if k != "predicted_pass_rate"}, "exactly")):
        with pytest.raises(ProtocolError, match=f"result.warnings: .*{field}"):
            encode({"type": "result", "id": "g-1", "warnings": [bad]})
