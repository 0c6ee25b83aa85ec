# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train check-words` and its file (bundle/word_strength.py): a tiny real bundle's words measured on generated
motion, the file read back by `kmm vocab`, and a weak word named by the prompt check that the CLI and the worker
report (the panel shows the worker's warnings: tests/test_blender_prompt_warnings.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import checkpoints_root
from kmm_core.bundle.word_strength import (
    WORD_CHECKS_FILE,
    read_word_strengths,
    word_strengths_from_dict,
)
from kmm_core.common.errors import InputFileError
from kmm_core.evaluation.action_checks import CHECK_KINDS, CHECK_NAMES
from kmm_core.evaluation.word_checks import (
    WordCheckError,
    _side_distance,
    choose_alternatives,
    is_label_like,
    plan_words,
    word_table,
)
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
    assert 'it reads as "kick", a weak word' in message and "10% of 20" in message and '"a person jumps forward"' in message


def _row(word, check, strong, phrasings, side=None):
    return {"word": word, "check": check, "side": side, "phrasings": phrasings, "generations": 20,
            "passed": 20 if strong else 0, "rate": 1.0 if strong else 0.0, "strong": strong, "alternative": "",
            "alternative_prompt": ""}


def _embeddings(similarity: list[float]) -> np.ndarray:
    """Unit rows: row 0 (the weak word) and row i with cosine similarity[i] to it."""
    vectors = np.zeros((len(similarity), len(similarity) + 1))
    for index, cosine in enumerate(similarity):
        vectors[index, 0], vectors[index, index + 1] = cosine, np.sqrt(1.0 - cosine ** 2)
    return vectors


@pytest.mark.parametrize(("weak", "candidates", "expected"), [
    # The same check before a more similar word of another kind ("crawl" once pointed to "sneak2StepsLStart").
    (("sideflip", "inverted", None), [("rotateArmsBothBackward1Reps", "hands_high", 0.9, None),
                                      ("cartwheel-like", "inverted", 0.2, None)], "cartwheel-like"),
    # No strong word of the same check: one of the same kind of action (on the floor), plain before label-like.
    (("crawl", "crawl", None), [("sneak2StepsLStart", "travel", 0.95, "left"), ("lieDownFloor", "lie", 0.9, None),
                                ("roll", "ground", 0.3, None)], "roll"),
    # A plain word before a dataset label of the same check, even a less similar one.
    (("jump", "jump", None), [("hopBothLegs1hops", "jump", 0.9, None), ("jumping", "jump", 0.5, None)], "jumping"),
    # The same side before none, none before the opposite one.
    (("walk-right", "sideways", "right"), [("walk-turn-left", "turn", 0.9, "left"), ("walking", "travel", 0.8, None),
                                           ("walk-turn-right", "turn", 0.4, "right")], "walk-turn-right"),
    # The opposite side even of the same check only when nothing else will do: a weak side step to the left is
    # offered the turn to the left, not the strong side step to the right.
    (("walk-left", "sideways", "left"), [("walk-right", "sideways", 0.95, "right"),
                                         ("walk-turn-left", "turn", 0.5, "left")], "walk-turn-left"),
    (("walk-left", "sideways", "left"), [("walk-right", "sideways", 0.95, "right")], "walk-right"),
    (("wave-right-hand", "wave", "right"), [("wave-left-hand", "wave", 0.9, "left"),
                                            ("wave-both-hands", "wave", 0.4, None)], "wave-both-hands"),
    # Nothing of its kind: the closest plain word of any kind.
    (("kickLFront1Reps", "kick", "left"), [("sneak2StepsLStart", "travel", 0.9, "left"), ("walking", "travel", 0.2, None),
                                           ("basketball", "travel", 0.5, None)], "basketball"),
    # Equal in every rule: the closest.
    (("punch", "punch", None), [("slash", "swing", 0.3, None), ("swordplay", "swing", 0.6, None)], "swordplay"),
])
def test_a_weak_words_alternative_is_what_an_animator_would_try(weak, candidates, expected):
    rows = [_row(weak[0], weak[1], False, [f"a person does a {weak[0]}"], weak[2])]
    rows += [_row(word, check, True, [f"a person does a {word}"], side) for word, check, _, side in candidates]
    choose_alternatives(rows, _embeddings([1.0] + [similarity for _, _, similarity, _ in candidates]))
    assert (rows[0]["alternative"], rows[0]["alternative_prompt"]) == (expected, f"a person does a {expected}")
    assert all(row["alternative"] == "" for row in rows[1:])        # strong words get none


def test_an_alternatives_prompt_never_uses_a_weak_word():
    # spinkick's first example prompt uses "kicks" (the weak word itself): its second is offered; a strong word
    # whose every example uses a weak word is never offered, however close.
    rows = [_row("kick", "kick", False, ["someone kicks"]),
            _row("spinkick", "kick", True, ["someone kicks", "a person does a spinkick"]),
            _row("kickLFront1Reps", "kick", False, ["someone kicks forward with the left leg"], "left"),
            _row("soccer", "travel", True, ["a figure kicks a ball"])]
    choose_alternatives(rows, _embeddings([1.0, 0.5, 0.9, 0.99]))
    assert (rows[0]["alternative"], rows[0]["alternative_prompt"]) == ("spinkick", "a person does a spinkick")
    assert rows[2]["alternative"] == "spinkick"
    rows = [_row("kick", "kick", False, ["someone kicks"]), _row("soccer", "travel", True, ["a figure kicks a ball"])]
    choose_alternatives(rows, _embeddings([1.0, 0.9]))
    assert rows[0]["alternative"] == rows[0]["alternative_prompt"] == ""


def test_the_prompt_offered_is_the_strong_words_caption_nearest_what_was_asked():
    """With the strong words' training captions to choose from, the one nearest the weak word's phrasings that warns
    about no weak word is offered: a pick-up is offered putting something down on the floor, not the first caption
    the word's check happened to generate."""
    rows = [_row("pick-up-box", "reach_floor", False, ["someone picks up a box from the floor"]),
            _row("depositFloorR", "reach_floor", True, ["a figure bends down and places an object"]),
            _row("bend", "reach_floor", False, ["a person bends over"])]
    asked, near, far, weak = np.eye(4)
    choices = {1: [("a person bends down to the floor", asked), ("someone lies on the floor", far),
                   ("a person puts something down on the floor", (asked + 2 * near) / np.sqrt(5.0))]}
    choose_alternatives(rows, np.stack([asked, near, weak]), choices)
    # The nearest caption uses the weak word "bends": the nearest without one is offered.
    assert (rows[0]["alternative"], rows[0]["alternative_prompt"]) == (
        "depositFloorR", "a person puts something down on the floor")


def test_every_check_has_a_kind_of_action():
    assert set(CHECK_KINDS) == set(CHECK_NAMES)
    assert is_label_like("kickLFront1Reps") and is_label_like("sneak2StepsLStart") and is_label_like("grabHighR")
    assert not any(map(is_label_like, ("spinkick", "walk-turn-left", "zombie_walk", "cartwheel-like")))


@pytest.mark.parametrize("name", ["kmm-small", "kmm-small-open"])
def test_shipped_alternatives_are_strong_plain_and_clear_the_warning(name):
    """The shipped models' word_checks.json: each weak word's alternative is a strong word whose prompt warns about
    no weak word (taking the suggestion clears the warning); a plain word of the same check whenever one not of the
    opposite side has an example prompt to offer (a dataset label only where the check has no plain strong word:
    'arm' -> 'grabHighR'); never the opposite side where another word will do."""
    folder = checkpoints_root() / name
    strengths = read_word_strengths(folder)
    rows = json.loads((folder / WORD_CHECKS_FILE).read_text(encoding="utf-8"))["words"]
    side = {row["word"]: row.get("side") for row in rows}
    offerable = {row["word"] for row in rows if row["strong"] and not is_label_like(row["word"])
                 and any(not strengths.weak_words_in(prompt) for prompt in row["phrasings"])}
    weak = [word for word in strengths.words if not word.strong]
    assert weak and all(word.alternative for word in weak)
    for word in weak:
        alternative = strengths.get(word.alternative)
        assert alternative.strong, word
        assert strengths.weak_words_in(word.alternative_prompt) == [], word
        same_check = [other for other in offerable if strengths.get(other).check == word.check
                      and _side_distance(side[word.word], side[other]) < 2]
        if same_check:
            assert alternative.check == word.check and alternative.word in offerable, word
        assert _side_distance(side[word.word], side[alternative.word]) < 2, word


def test_a_word_no_check_applies_to_is_left_unmeasured():
    """ACCAD's "idle-armswing" and "look-around" name no action a geometric check knows: check-words measures the
    other words, lists those as not measured (neither strong nor weak) in its file and table, and refuses only a
    vocabulary with no measurable word at all."""
    from types import SimpleNamespace

    def vocabulary(*words):
        actions = [SimpleNamespace(content=w, examples=[f"a person does {w}", f"someone does {w}"]) for w in words]
        return SimpleNamespace(action_words=list(words), actions=actions, path="vocabulary.json")

    plans, unchecked = plan_words(vocabulary("walk", "idle-armswing", "crawl-forward", "look-around"), 1)
    assert [(plan.word, plan.check) for plan in plans] == [("walk", "travel"), ("crawl-forward", "crawl")]
    assert unchecked == ["idle-armswing", "look-around"] and plans[0].phrasings == ["a person does walk"]
    document = {**_document([("walk", "travel", 0.9)]), "settings": {"phrasings": 1, "seeds": 2, "seconds": 4},
                "seconds": 3, "unchecked": unchecked}
    document["words"][0]["passed"] = 18
    assert "Not measured (no geometric check applies, so neither strong nor weak): `idle-armswing`, " \
           "`look-around`." in word_table(document)
    with pytest.raises(WordCheckError, match="no action word has a geometric check"):
        plan_words(vocabulary("idle-armswing"), 1)


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
    assert checks[0].weak_words and 'it reads as "walk", a weak word' in err and '"a person runs"' in err
    (warning,) = prompt_warnings(bundle, [(0, "a person walks")])
    assert warning["suggestions"][0] == "a person runs" and 'it reads as "walk", a weak word' in warning["message"]


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "1000000", "--phrasings", "1000000"], "--seeds 1000000: must be from 1 to 200"),
    (["--seeds", "100000"], "--seeds 100000: must be from 1 to 200"),
    (["--phrasings", "21"], "--phrasings 21: must be from 1 to 20"),
    (["--seconds", "0.01"], "--seconds 0.01: must be from 1 to 10"),
    (["--seconds", "1e308"], "--seconds 1e+308: must be from 1 to 10"),
    (["--strong-rate", "nan"], "--strong-rate nan: must be a share from 0 to 1"),
    (["--seed", "-1"], "--seed -1: must be from 0 to"),
    (["--batch-size", "0"], "--batch-size 0: must be from 1 to 1024"),
])
def test_each_option_out_of_range_is_named_with_its_value_before_any_work(args, message, tiny_bundle, capsys):
    """`--phrasings 1000000 --seeds 1000000` grew past 8.8 GB in a minute; `--seconds 0.01` was refused as
    "num_frames"; `--strong-rate nan` and `--seconds 1e308` shared one message.  Each is refused at once, naming
    its option and value."""
    assert check_words_main(["--checkpoint", str(tiny_bundle), *args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_too_many_clips_in_all_are_refused_before_the_model_loads(tiny_bundle, capsys, monkeypatch):
    from kmm_core.evaluation import word_checks

    monkeypatch.setattr(word_checks, "MAX_GENERATIONS", 3)
    assert check_words_main(["--checkpoint", str(tiny_bundle), "--seeds", "2", "--quiet"]) == 1
    assert "more than 3 one run may hold: lower --seeds or --phrasings" in capsys.readouterr().err


def test_an_unwritable_table_folder_is_refused_first_and_the_bundle_kept(tiny_bundle, tmp_path, capsys):
    """`--table` into a read-only folder failed only after the whole generation, the bundle's word_checks.json
    already replaced by the new measurement: now refused before anything runs, the bundle untouched.  (/proc
    stands for a read-only folder: no user, root included, can create a file in it.)"""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()}
    code = check_words_main(["--checkpoint", str(bundle), "--seeds", "1", "--phrasings", "1", "--quiet",
                             "--table", "/proc/words.md"])
    err = capsys.readouterr().err
    assert code == 1 and "--table's folder '/proc' cannot be written" in err, err
    assert {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()} == before
