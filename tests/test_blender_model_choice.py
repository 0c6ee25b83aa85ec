# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's Model preference (Default / Open / Custom Folder), end to end: real Blender, the real worker, real
tiny bundles on a model shelf (conftest `model_shelf`: kmm-small trained on Bandai-Namco + CMU, kmm-small-open on
CMU + HDM05)."""

from __future__ import annotations

import pytest
from blender_scripts.runner import run_blender_script

pytestmark = pytest.mark.blender

OPEN_LICENCE = "CC BY-SA 3.0, commercial use allowed"
DEFAULT_LICENCE = "CC BY-NC 4.0, non-commercial use only"


def _text(labels: list) -> str:
    """The panel's wrapped labels as one line (the first carries the icon, the rest are indented)."""
    assert labels[0][1] == "INFO" and all(icon == "BLANK1" for _, icon in labels[1:])
    return " ".join(text for text, _ in labels)


@pytest.fixture(scope="module")
def outcome(model_shelf):
    pytest.importorskip("bpy")
    return run_blender_script("model_choice.py", str(model_shelf), timeout=900)


def test_the_preference_offers_default_open_and_a_custom_folder(outcome):
    assert outcome["choices"] == ["DEFAULT", "OPEN", "CUSTOM"] and outcome["default_choice"] == "DEFAULT"
    assert outcome["checkpoint_default"] == "default"
    assert _text(outcome["line_before"]) == "Model: Default - kmm-small, non-commercial (not loaded yet)"
    assert "non-commercial use only" in outcome["licence_lines"]["DEFAULT"][0]
    assert "commercial use allowed under CC BY-SA 3.0" in outcome["licence_lines"]["OPEN"][0]
    assert outcome["custom_empty"].startswith("KMMError: Model is Custom Folder but no folder is set")


def test_open_reaches_the_worker_and_the_panel_shows_its_licence(outcome):
    opened = outcome["open"]
    assert opened["checkpoint"] == "open" and opened["takes"] == 1
    assert (opened["model"], opened["model_licence"]) == ("kmm-small-open", OPEN_LICENCE)
    assert _text(opened["line"]) == f"Model: kmm-small-open - {OPEN_LICENCE}"


def test_a_custom_folder_is_loaded_and_named(outcome, model_shelf):
    custom = outcome["custom"]
    assert custom["checkpoint"] == str(model_shelf / "kmm-small") and custom["takes"] == 1
    assert (custom["model"], custom["model_licence"]) == ("kmm-small", DEFAULT_LICENCE)
    assert _text(custom["line"]) == f"Model: kmm-small - {DEFAULT_LICENCE}"
    assert _text(outcome["line_after_release"]) == "Model: Custom Folder (not loaded yet)"
