# SPDX-License-Identifier: GPL-3.0-or-later
"""Captions of the extra sources' labels: HDM05 camelCase classes become natural phrases with exact sides."""

from __future__ import annotations

import pytest

from kmm_core.data.action_captions import (
    CMU_EXPMAP_PHRASES,
    DEEPMIMIC_PHRASES,
    HDM05_PHRASES,
    captions_from_phrases,
    deepmimic_label,
    hdm05_class_phrase,
    split_camel_case,
)
from kmm_core.motion.skeleton import mirror_text


@pytest.mark.parametrize("name, phrase", [
    ("kickRSide2Reps", "kicks sideways with the right leg twice"),
    ("punchLFront1Reps", "punches forward with the left hand once"),
    ("sneak4StepsRStart", "sneaks four steps starting with the right foot"),
    ("walkLeftCircle4StepsLstart", "walks four steps to the left in a circle starting with the left foot"),
    ("rotateArmsLForward4Reps", "rotates the left arm forward four times"),
    ("jumpingJack1Reps", "does jumping jacks once"),
    ("kickLFront1Reps", "kicks forward with the left leg"),          # hand-written phrase wins
])
def test_hdm05_class_names_become_phrases(name, phrase):
    assert hdm05_class_phrase(name) == phrase


def test_split_camel_case_keeps_single_capitals():
    assert split_camel_case("kickLFront1Reps") == ["kick", "L", "Front", "1", "Reps"]
    assert split_camel_case("grabHighR") == ["grab", "High", "R"]


@pytest.mark.parametrize("phrases", [*HDM05_PHRASES.values(), *CMU_EXPMAP_PHRASES.values(),
                                     *DEEPMIMIC_PHRASES.values()])
def test_captions_are_varied_and_keep_their_side_words(phrases):
    captions = captions_from_phrases(phrases, seed="s", count=3)
    assert len(set(captions)) == 3
    assert captions == captions_from_phrases(phrases, seed="s", count=3)       # deterministic
    for caption in captions:
        phrase = next(p for p in phrases if caption.endswith(" " + p))
        for side in ("left", "right"):
            assert (side in caption.split()) == (side in phrase.split()), caption
    # Phrases that name a side name exactly one per limb, so mirroring swaps them cleanly.
    if any("left" in p or "right" in p for p in phrases):
        assert all(mirror_text(mirror_text(c)) == c and mirror_text(c) != c for c in captions)


def test_deepmimic_labels_of_file_names():
    assert deepmimic_label("humanoid3d_long_walk2") == "walk"
    assert deepmimic_label("humanoid3d_stealthy_walk0") == "stealthy_walk"
    assert deepmimic_label("humanoid3d_long_zombie") == "zombie_walk"
    assert deepmimic_label("humanoid3d_getup_faceup") == "getup_faceup"
