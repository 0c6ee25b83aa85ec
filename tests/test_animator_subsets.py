# SPDX-License-Identifier: GPL-3.0-or-later
"""The animator's subsets of `kmm-train eval` (kmm_core/evaluation/animator_subsets.py) on real Bandai-Namco takes:
which items count as calm standing and as walking, what each measure says of a real walk and a real wave, and the
short-action-after-a-walk check on a real walk followed by a real raised hand.  The end-to-end rows are in
test_evaluate.py (test_animator_subsets_sit_beside_the_split)."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.bvh.joint_map import builtin_joint_map
from kmm_core.bvh.reader import read_bvh
from kmm_core.bvh.retarget import bvh_to_canonical_joints
from kmm_core.evaluation import animator_subsets
from kmm_core.evaluation.split_data import EvalItem
from kmm_core.motion.model_timing import MODEL_FPS

DATA = "Bandai-Namco-Research-Motiondataset-2/data"


@pytest.fixture(scope="module")
def real(bandai_namco_dir):
    joint_map = builtin_joint_map("bandai_namco")

    def take(name: str) -> np.ndarray:
        return bvh_to_canonical_joints(read_bvh(bandai_namco_dir / DATA / f"dataset-2_{name}.bvh"), joint_map,
                                       MODEL_FPS)

    return {name: take(name) for name in ("walk_normal_001", "wave-right-hand_normal_001",
                                          "raise-up-left-hand_normal_001", "raise-up-right-hand_normal_001")}


def _item(content: str, style: str = "", captions: tuple[str, ...] = ("a person moves",)) -> EvalItem:
    return EvalItem(f"{content}_{style}", captions, 0, 80, content, style)


def test_which_items_each_subset_takes():
    items = [_item("wave-right-hand", "normal"), _item("raise-up-left-hand", "normal"), _item("wave-left-hand", "angry"),
             _item("walk", "normal"), _item("walk", "exhausted"), _item("walk-left", "normal"),
             _item("walk-turn-left", "normal"), _item("walk-back", "normal"), _item("run", "normal"), _item("walk")]
    chosen = animator_subsets.select(items)
    assert [i.name for i in chosen["calm_standing"]] == ["wave-right-hand_normal", "raise-up-left-hand_normal"]
    assert [i.name for i in chosen["walking"]] == ["walk_normal", "walk_exhausted", "walk_"]
    assert len(animator_subsets.select(items * 10, limit=4)["walking"]) == 4


def test_real_walk_and_wave_measures(real):
    walk, wave = real["walk_normal_001"], real["wave-right-hand_normal_001"]
    walking = animator_subsets.measures([walk], MODEL_FPS, "walking")
    assert set(walking) == {"jerk_pelvis", "jerk_head", "stride_regularity", "pelvis_rhythm", "leg_alternation",
                            "pelvis_bob", "foot_swing"}
    assert walking["stride_regularity"] > 0.6 and walking["foot_swing"] > 0.05 and walking["pelvis_bob"] > 0.005
    calm = animator_subsets.measures([wave], MODEL_FPS, "calm_standing")
    assert set(calm) == {"jerk_pelvis", "jerk_head", "drift", "pelvis_bob"}
    assert calm["drift"] < 0.2 and calm["jerk_pelvis"] < walking["jerk_pelvis"]
    assert calm["pelvis_bob"] < 0.1 * walking["pelvis_bob"]  # a calm real body holds its hips' height
    # real against itself is 1.0; a motion shaken at the pelvis reads above 1
    assert all(v == pytest.approx(1.0) for v in animator_subsets.ratios("calm_standing", calm, calm).values())
    shaken = wave.copy()
    shaken[:, :, :] += np.random.default_rng(0).normal(0, 0.004, size=(len(wave), 1, 3))
    ratio = animator_subsets.ratios("calm_standing", animator_subsets.measures([shaken], MODEL_FPS, "calm_standing"),
                                    calm)
    assert ratio["animator_calm_standing_jerk_pelvis_ratio"] > 2
    # a body whose hips rise and fall 1 cm once a second is as smooth as the real one but bobs: only the bob sees it
    pumped = wave.copy()
    pumped[:, :, 1] += 0.01 * np.sin(2 * np.pi * np.arange(len(wave)) / MODEL_FPS)[:, None]
    ratio = animator_subsets.ratios("calm_standing", animator_subsets.measures([pumped], MODEL_FPS, "calm_standing"),
                                    calm)
    assert ratio["animator_calm_standing_pelvis_bob_ratio"] > 5
    assert ratio["animator_calm_standing_jerk_pelvis_ratio"] < 1.5
    split = animator_subsets.measures([walk, wave], MODEL_FPS, "split", ["locomotion", "standing"])
    assert split["drift"] == pytest.approx(calm["drift"]) and split["pelvis_bob"] == pytest.approx(walking["pelvis_bob"])


def test_short_action_after_a_real_walk(real):
    walk = real["walk_normal_001"][:50]
    left = np.concatenate([walk, real["raise-up-left-hand_normal_001"][:40]])
    right = np.concatenate([walk, real["raise-up-right-hand_normal_001"][:40]])
    raised = animator_subsets.short_action(left, 50)
    assert raised.performed and raised.left_rise > 0.2
    assert not animator_subsets.short_action(right, 50).performed
    assert not animator_subsets.short_action(np.concatenate([walk, walk[:40]]), 50).performed
