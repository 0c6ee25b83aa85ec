# SPDX-License-Identifier: GPL-3.0-or-later
"""The panel's prompt warnings, end to end (asked before generating with Check Prompts, then given by the
generation): real Blender, the real worker, the shipped model.  One row far from
everything the model was trained on (out of vocabulary), one using a weak action word ("kick": rarely performed,
measured in the shipped word_checks.json), one known prompt."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

from kmm_core.bundle.model_bundle import default_bundle_path
from kmm_core.bundle.word_strength import read_word_strengths

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def outcome():
    pytest.importorskip("bpy")
    return run_blender_script("prompt_warnings.py", str(default_bundle_path()), timeout=600)


def _groups(panel: list) -> list[tuple[str, str, list[dict]]]:
    """The drawn groups: (the first label's icon, the wrapped labels joined, the suggestion buttons' properties)."""
    groups: list[tuple[str, str, list[dict]]] = []
    for kind, text, icon, extra in panel:
        if kind == "label" and icon in ("QUESTION", "INFO"):
            groups.append((icon, text, []))
        elif kind == "label":
            groups[-1] = (groups[-1][0], f"{groups[-1][1]} {text}", groups[-1][2])
        else:
            assert (text, icon) == ("kmm.use_suggestion", f'Use "{extra["suggestion"]}"'), (text, icon)
            groups[-1][2].append(extra)
    return groups


def _boxes(panel: list) -> list[tuple[str, list[dict]]]:
    """The drawn warning boxes: (the message's wrapped labels joined, the suggestion buttons' properties)."""
    return [(text, buttons) for icon, text, buttons in _groups(panel) if icon == "QUESTION"]


def test_unknown_prompt_is_warned_on_its_row_with_suggestions(outcome):
    known, juggle, kick = outcome["rows"]
    assert known["warning"] == "" and known["suggestions"] == []
    assert juggle["warned_prompt"] == "a person juggles three balls"
    assert "far from everything this model was trained on" in juggle["warning"]
    assert len(juggle["suggestions"]) == 3 and all(s in juggle["warning"] for s in juggle["suggestions"])
    assert outcome["reported"] == [juggle["warning"], kick["warning"]]
    # A warned row carries a question-mark icon; the known row keeps its plain dot.
    assert outcome["row_icons"][1] == outcome["row_icons"][2] == [["label", "", "QUESTION"]]
    assert outcome["row_icons"][0] == [["label", "", "DOT"]]


def test_weak_word_is_warned_with_its_rate_and_a_strong_word_to_try(outcome):
    word = read_word_strengths(default_bundle_path()).get("kick")
    assert word is not None and not word.strong and word.alternative   # the shipped measurement makes "kick" weak
    kick = outcome["rows"][2]
    assert kick["warned_prompt"] == "a person kicks"
    assert f'it reads as "kick", a weak word for this model (an action of its training data that its kick check ' \
           f"passed in {word.rate:.0%} of {word.generations} generations)" in kick["warning"]
    assert f'Try "{word.alternative_prompt}" instead (the strong word "{word.alternative}"' in kick["warning"]
    assert "far from everything" not in kick["warning"]            # a known prompt: only the word is warned about
    # The strong word's prompt first; "a person kicks" is also like captions the model did not perform
    # (caption_checks.json), so the closest it did perform follow.
    assert kick["suggestions"][0] == word.alternative_prompt
    assert "the model performed" in kick["warning"] and len(kick["suggestions"]) > 1
    # The panel draws the whole message under the table (wrapped over labels) and the strong word's prompt button.
    (_, _), (text, buttons) = _boxes(outcome["panel"])
    assert text == f"Segment 3: {' '.join(kick['warning'].split())}"
    assert buttons == [{"index": 2, "suggestion": suggestion} for suggestion in kick["suggestions"]]
    # Taking it puts the strong word's prompt into the row and clears the last warning.
    assert outcome["use_kick_suggestion"] == ["FINISHED"]
    assert outcome["kick_prompt_after"] == word.alternative_prompt and outcome["panel_after_both"] == []


def test_panel_offers_the_suggestions_and_using_one_clears_the_warning(outcome):
    suggestions = outcome["rows"][1]["suggestions"]
    (text, buttons), _ = _boxes(outcome["panel"])
    assert text.startswith("Segment 2:")
    assert buttons == [{"index": 1, "suggestion": s} for s in suggestions]
    assert outcome["use_suggestion"] == ["FINISHED"]
    assert outcome["prompt_after"] == suggestions[0]
    assert outcome["warning_after"] == ""
    assert [text.split(":")[0] for text, _ in _boxes(outcome["panel_after"])] == ["Segment 3"]
    assert "segment 8: no such row" in outcome["bad_index"]


def test_a_prompt_read_with_the_nearest_known_captions_says_which(outcome):
    """A prompt unlike the training captions is generated partly from the nearest captions the model performs
    (kmm_core/generation/prompt_conditions.py); the row keeps them and the panel names them while the prompt stays."""
    known, juggle, _kick = outcome["rows"]
    assert known["read_with"] == []                      # a training caption keeps its own condition
    assert 1 <= len(juggle["read_with"]) <= 3 and juggle["prompt"] not in juggle["read_with"]
    notes = [text for icon, text, _ in _groups(outcome["panel"]) if icon == "INFO"]
    assert notes[0] == ("Segment 2 is read with what the model knows nearest to it: "
                        + ", ".join(f'"{caption}"' for caption in juggle["read_with"]))
    # Once the row's prompt is replaced, the note is no longer drawn for it.
    assert not any(text.startswith("Segment 2 ") for icon, text, _ in _groups(outcome["panel_after"]) if icon == "INFO")


def test_check_prompts_says_before_generating_what_the_generation_says(outcome):
    """Check Prompts (protocol 5's check_prompts): before anything is generated the rows get the warnings,
    suggestions and readings the generation then gives, the panel draws them, and no take is made; a row with an
    empty prompt is named before the backend is asked."""
    assert outcome["actions_made_by_check"] == 0
    assert outcome["rows_checked"] == outcome["rows"]
    assert outcome["checked"] == outcome["reported"]
    assert outcome["panel_checked"] == outcome["panel"]
    assert outcome["empty_row"] == "segment 1: the prompt is empty"
