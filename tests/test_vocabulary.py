# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model was trained on: the vocabulary built from prepared data, `kmm vocab` (text and --json) on the shipped
model and on a bundle written by `kmm-train all`, and the errors of a missing or broken vocabulary file."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from kmm_core.bundle.model_bundle import default_bundle_path
from kmm_core.bundle.vocabulary import VOCABULARY_FILE, read_vocabulary, vocabulary_from_dataset
from kmm_core.cli import main as kmm_main
from kmm_core.common.errors import InputFileError
from kmm_core.data.prepare import read_index


def test_vocabulary_of_a_prepared_dataset(prepared_dataset):
    vocabulary = vocabulary_from_dataset(prepared_dataset, "tiny")
    rows = read_index(prepared_dataset)
    trained = {(r["dataset"], r["content"]) for r in rows if r["split"] == "train"}
    assert {(a.dataset, a.content) for a in vocabulary.actions} == trained
    captions = set()
    for row in rows:
        if row["split"] == "train":
            text = (prepared_dataset / "texts" / f"{row['name']}.txt").read_text(encoding="utf-8")
            captions.update(line.split("#")[0] for line in text.splitlines())
    assert set(vocabulary.train_captions) == captions
    for action in vocabulary.actions:
        assert 1 <= len(action.examples) <= 3 and set(action.examples) <= captions
        if action.content == "raise-up-left-hand":
            assert all("left" in example and "right" not in example for example in action.examples)
    assert "elderly" in vocabulary.styles and vocabulary.val_captions
    assert vocabulary.dataset["sources"] == sorted({r["dataset"] for r in rows})


def test_kmm_vocab_lists_the_shipped_model(capsys):
    assert kmm_main(["vocab"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Model kmm-small was trained on")
    for expected in ("bandai-namco-2/wave-left-hand", "cmu/jump", "Styles: ", "out-of-vocabulary warning"):
        assert expected in text
    assert kmm_main(["vocab", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "kmm-small"
    assert {"walk", "run", "jump", "kick", "punch", "bow", "wave-left-hand"} <= set(data["action_words"])
    assert {"elderly", "angry", "happy"} <= set(data["styles"])
    assert all(action["examples"] for action in data["actions"])
    assert data["train_captions"] > 1000 and 0 < data["out_of_vocabulary"]["threshold"] < 1
    # The shipped vocabulary is the training data of the shipped model's generator: the default's sources and the
    # ACCAD takes of its fine-tunes (training/runs/kmm-small-all-v14/COMMAND.md).
    assert data["dataset"]["clips"] == 6904 and data["dataset"]["takes"] == 3315
    assert {"walk-carry-box", "crouch", "standUpLieFloor"} <= set(data["action_words"])
    assert kmm_main(["vocab", "--json", "--captions"]) == 0
    assert "a person walks forward" in json.loads(capsys.readouterr().out)["train_captions"]


def test_kmm_vocab_of_a_bundle_written_by_kmm_train(tiny_bundle, capsys):
    assert kmm_main(["vocab", "--checkpoint", str(tiny_bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["actions"] and data["out_of_vocabulary"]["threshold"] is not None


def test_missing_or_broken_vocabulary_is_named(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    for name in (VOCABULARY_FILE, "vocabulary.safetensors"):  # as in a bundle made before they were checksummed
        manifest.get("files", {}).pop(name, None)
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    (bundle / VOCABULARY_FILE).unlink()
    assert kmm_main(["vocab", "--checkpoint", str(bundle)]) == 2
    assert f"{bundle / VOCABULARY_FILE}: no vocabulary file" in capsys.readouterr().err
    (bundle / VOCABULARY_FILE).write_text('{"format_version": 1, "actions": [{"dataset": "x"}]}', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"vocabulary: actions\[0\]"):
        read_vocabulary(bundle)
    (bundle / VOCABULARY_FILE).write_text('{"format_version": 9', encoding="utf-8")
    with pytest.raises(InputFileError, match="not valid JSON") as caught:
        read_vocabulary(bundle)
    assert caught.value.path == str(bundle / VOCABULARY_FILE)
    assert kmm_main(["vocab", "--checkpoint", str(tmp_path / "nothing")]) == 3


def test_kmm_vocab_check_says_before_generating_what_a_prompt_is_read_as(capsys):
    """`kmm vocab --check`: the warnings and readings `kmm generate` prints before generating, alone; with --json the
    worker's check_prompts answer (warnings and conditions, each prompt's index its segment); a bad prompt named."""
    prompts = ["a person walks forward", "a person points forward", "a person does a cartwheel"]
    assert kmm_main(["vocab", "--check", *prompts]) == 0
    out = capsys.readouterr().out
    assert 'kmm: note: "a person points forward" is generated from its own words (30%)' in out
    assert '"someone walks forward"' in out                       # the model was never taught to point
    assert 'kmm: warning: "a person does a cartwheel": the model performed' in out
    assert '"a person walks forward" is generated' not in out and "a person walks forward\":" not in out
    assert out.rstrip().endswith("kmm: 3 prompt(s) checked, 1 warning(s); nothing generated")
    # A prompt the model performs only guided harder is said to be (caption_checks.json's `boosted`); a walk is not.
    assert kmm_main(["vocab", "--check", "a man bows politely", "a person walks forward"]) == 0
    out = capsys.readouterr().out
    assert 'kmm: note: "a man bows politely" is guided at 2.0x the guidance' in out
    assert '"a person walks forward" is guided' not in out
    # `kmm generate --unlikely-guidance 1` raises nothing, and is not told it does.
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.vocab_command import warn_about_prompts

    said = io.StringIO()
    warn_about_prompts(ModelBundle.load(default_bundle_path(), device="cpu"), ["a man bows politely"], said, 1.0)
    assert "at its usual guidance" not in said.getvalue() and "is guided at" not in said.getvalue()
    assert 'the model performed 12% of the training captions nearest it (not "a man bows politely")' in said.getvalue()
    # Raised by another factor than the caption checks measured: the rate is said with the factor it was measured at.
    said = io.StringIO()
    warn_about_prompts(ModelBundle.load(default_bundle_path(), device="cpu"), ["a man bows politely"], said, 3.0)
    assert "this prompt is guided at 3.0x, and guided at 2.0x it performed 73% of them" in said.getvalue()
    assert "guided harder (3.0x), as this prompt is" not in said.getvalue()
    assert kmm_main(["vocab", "--check", *prompts, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompts"] == 3 and [w["segment"] for w in data["warnings"]] == [2]
    assert [c["segment"] for c in data["conditions"]] == [1] and data["conditions"][0]["own_share"] == 0.3
    assert kmm_main(["vocab", "--check", "a person walks", "  "]) == 2
    assert "--check prompt 2: the prompt is empty" in capsys.readouterr().err
