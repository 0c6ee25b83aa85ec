# SPDX-License-Identifier: GPL-3.0-or-later
"""Variations that came out as the same motion are named (kmm_core/generation/variation_likeness.py), on a real
HumanML3D clip: the clip against itself moved, jittered by millimetres, and against another stretch of itself."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.generation.variation_likeness import (
    ALIKE_POSE,
    AlikeVariation,
    alike_note,
    alike_variations,
    takes_apart,
)


@pytest.fixture(scope="module")
def clip(humanml3d_fixture_dir) -> np.ndarray:
    return np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy").astype(np.float64)  # (170, 22, 3), y up


def test_the_same_motion_elsewhere_or_jittered_is_alike_and_another_stretch_is_not(clip):
    take = clip[:80]
    moved = take + np.array([1.0, 0.0, -2.0])           # the same motion two metres away
    jittered = take + np.random.default_rng(0).normal(0.0, 0.005, take.shape)  # 5 mm of noise per joint
    other = clip[80:160]                               # the same clip's next stretch: another motion
    assert takes_apart(take, moved) == pytest.approx((0.0, 0.0), abs=1e-6)  # float32, as takes are
    pose, _ = takes_apart(take, jittered)
    assert 0.005 < pose < ALIKE_POSE
    assert takes_apart(take, other)[0] > ALIKE_POSE
    found = alike_variations([take, other, moved, jittered])
    assert [(item.variation, item.like) for item in found] == [(2, 0), (3, 0)]  # each like the nearest earlier one
    assert alike_variations([take]) == [] and alike_variations([take, other]) == []


def test_the_note_names_the_takes_and_what_varies_a_motion_and_reads_the_worker_entries(clip):
    found = alike_variations([clip[:80], clip[:80] + 0.5])
    entries = [item.to_dict() for item in found]
    assert entries == [{"variation": 1, "like": 0, "pose_apart_m": 0.0, "path_apart_m": 0.0}]
    read = [AlikeVariation.from_dict(entry) for entry in entries]
    note = alike_note(read, ["walk seed 7", "walk seed 8"])
    assert note.startswith("1 of the 2 variations came out as the same motion as an earlier one")
    assert '"walk seed 8" like "walk seed 7"' in note and "add a style" in note and "kmm vocab" in note
    # What a newer or broken worker might send is left out, not raised on, and names beyond the takes too.
    assert AlikeVariation.from_dict({"variation": "x"}) is None and AlikeVariation.from_dict(None) is None
    assert alike_note([AlikeVariation(3, 0, 0.0, 0.0)], ["a", "b"]) is None and alike_note([], ["a"]) is None
