# SPDX-License-Identifier: GPL-3.0-or-later
"""The panel's out-of-vocabulary warning, end to end: real Blender, the real worker, the shipped model."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

from kmm_core.bundle.model_bundle import default_bundle_path

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def outcome():
    pytest.importorskip("bpy")
    return run_blender_script("prompt_warnings.py", str(default_bundle_path()), timeout=600)


def test_unknown_prompt_is_warned_on_its_row_with_suggestions(outcome):
    known, juggle = outcome["rows"]
    assert known["warning"] == "" and known["suggestions"] == []
    assert juggle["warned_prompt"] == "a person juggles three balls"
    assert "far from everything this model was trained on" in juggle["warning"]
    assert len(juggle["suggestions"]) == 3 and all(s in juggle["warning"] for s in juggle["suggestions"])
    assert outcome["reported"] == [juggle["warning"]]
    # The row itself carries a question-mark icon; the known row keeps its plain dot.
    assert outcome["row_icons"][1] == [["label", "", "QUESTION"]]
    assert outcome["row_icons"][0] == [["label", "", "DOT"]]


def test_panel_offers_the_suggestions_and_using_one_clears_the_warning(outcome):
    labels = [entry for entry in outcome["panel"] if entry[0] == "label"]
    buttons = [entry for entry in outcome["panel"] if entry[0] == "operator"]
    assert labels[0][1].startswith("Segment 2:") and labels[0][2] == "QUESTION"
    suggestions = outcome["rows"][1]["suggestions"]
    assert [b[1] for b in buttons] == ["kmm.use_suggestion"] * 3
    assert [b[3] for b in buttons] == [{"index": 1, "suggestion": s} for s in suggestions]
    assert outcome["use_suggestion"] == ["FINISHED"]
    assert outcome["prompt_after"] == suggestions[0]
    assert outcome["warning_after"] == "" and outcome["panel_after"] == []
    assert "segment 8: no such row" in outcome["bad_index"]
