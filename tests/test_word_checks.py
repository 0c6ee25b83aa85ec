# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train check-words` and its file (bundle/word_strength.py): a tiny real bundle's words measured on generated
motion, the file read back by `kmm vocab`, and a weak word named by the prompt check that the CLI and the worker
report (the panel shows the worker's warnings: tests/test_blender_prompt_warnings.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from kmm_core.bundle.word_strength import (
    WORD_CHECKS_FILE,
    read_word_strengths,
    word_strengths_from_dict,
)
from kmm_core.common.errors import InputFileError
from kmm_core.evaluation.word_checks import main as check_words_main


def _document(words):
    return {"format_version": 1, "model": "m", "strong_rate": 0.6,
            "words": [{"word": w, "check": c, "rate": r, "generations": 20, "strong": r >= 0.6,
                       "alternative": "" if r >= 0.6 else "jump", "alternative_prompt": "" if r >= 0.6 else
                       "a person jumps forward"} for w, c, r in words]}


def test_a_prompt_uses_the_most_specific_listed_word():
    strengths = word_strengths_from_dict(_document([("walk", "travel", 0.9), ("walk-back", "backward", 0.2),
                                                    ("kick", "kick", 0.1), ("getup_faceup", "getup", 0.0),
                                                    ("jump", "jump", 0.8)]))
    assert strengths.word_in("a man walks forward").word == "walk"
    assert strengths.word_in("someone walks backwards").word == "walk-back"
    assert [w.word for w in strengths.weak_words_in("the person kicks with the left leg")] == ["kick"]
    assert [w.word for w in strengths.weak_words_in("a person gets up from the floor")] == ["getup_faceup"]
    assert strengths.weak_words_in("a person jumps") == [] and strengths.word_in("a person juggles") is None
    message = strengths.get("kick").warning()
    assert '"kick" is a weak word' in message and "10% of 20" in message and '"a person jumps forward"' in message


def test_malformed_word_checks_name_the_file(tmp_path):
    (tmp_path / WORD_CHECKS_FILE).write_text(json.dumps({"format_version": 7, "words": []}), encoding="utf-8")
    with pytest.raises(InputFileError, match=r"word_checks.json.*format_version 7"):
        read_word_strengths(tmp_path)
    assert read_word_strengths(tmp_path / "missing") is None


@pytest.fixture(scope="module")
def measured_bundle(tiny_bundle, tmp_path_factory):
    """A copy of the tiny real bundle measured by `kmm-train check-words` (1 phrasing x 2 seeds, 2 s clips)."""
    bundle = tmp_path_factory.mktemp("measured") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    table = bundle.parent / "words.md"
    assert check_words_main(["--checkpoint", str(bundle), "--seeds", "2", "--phrasings", "1", "--seconds", "2",
                             "--threads", "1", "--quiet", "--table", str(table)]) == 0
    return bundle


def test_check_words_measures_every_listed_word(measured_bundle):
    from kmm_core.bundle.vocabulary import read_vocabulary

    strengths = read_word_strengths(measured_bundle)
    vocabulary = read_vocabulary(measured_bundle)
    assert [w.word for w in strengths.words] == list(vocabulary.action_words)
    for word in strengths.words:
        assert word.generations == 2 and word.check and word.strong == (word.rate >= 0.6)
        assert word.strong or word.alternative == "" or strengths.get(word.alternative).strong
    table = (measured_bundle.parent / "words.md").read_text(encoding="utf-8")
    assert all(f"`{w.word}`" in table for w in strengths.words)


def test_vocab_shows_the_rates_and_the_cli_warns_about_a_weak_word(measured_bundle, tmp_path, capsys):
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.cli import main as kmm_main
    from kmm_core.generation.prompt_vocabulary import prompt_warnings
    from kmm_core.vocab_command import warn_about_prompts

    # Make one listed word weak on purpose: the file is the interface the warning reads.
    path = measured_bundle / WORD_CHECKS_FILE
    document = json.loads(path.read_text(encoding="utf-8"))
    row = next(r for r in document["words"] if r["word"] == "walk")
    row.update(rate=0.0, passed=0, strong=False, alternative="run", alternative_prompt="a person runs")
    path.write_text(json.dumps(document), encoding="utf-8")

    assert kmm_main(["vocab", "--checkpoint", str(measured_bundle)]) == 0
    listing = capsys.readouterr().out
    assert "Action words as measured" in listing and "walk: travel 0% -> try run" in listing
    bundle = ModelBundle.load(measured_bundle, device="cpu")
    checks = warn_about_prompts(bundle, ["a person walks"])
    err = capsys.readouterr().err
    assert checks[0].weak_words and '"walk" is a weak word' in err and '"a person runs"' in err
    (warning,) = prompt_warnings(bundle, [(0, "a person walks")])
    assert warning["suggestions"][0] == "a person runs" and '"walk" is a weak word' in warning["message"]
