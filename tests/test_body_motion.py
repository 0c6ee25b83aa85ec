# SPDX-License-Identifier: GPL-3.0-or-later
"""The body-part measures of kmm_core/evaluation/body_motion.py on real Bandai-Namco clips: a real walk is regular
and bobs, a real wave stands without drift and with a calm pelvis, real feet are never frozen while a motion with a
clamped ankle is caught, and the ratios of a set to itself are 1."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
from kmm_core.common.errors import InputTensorError
from kmm_core.evaluation import body_motion
from kmm_core.motion.skeleton import JOINT_INDEX

FPS = 20.0


@pytest.fixture(scope="module")
def clips(bandai_namco_dir) -> dict[str, list[np.ndarray]]:
    """Two real clips of each kind, as canonical joints at 20 fps."""
    folder = bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data"
    joint_map = builtin_joint_map("bandai_namco")

    def load(content: str) -> list[np.ndarray]:
        paths = sorted(folder.glob(f"dataset-2_{content}_normal_0*.bvh"))[:2]
        return [bvh_to_canonical_joints(read_bvh(path), joint_map) for path in paths]

    return {"walk": load("walk"), "run": load("run"), "wave": load("wave-left-hand"),
            "raise": load("raise-up-right-hand")}


def test_captions_sort_items_into_walking_standing_and_other():
    assert body_motion.kind_of(["a person walks forward slowly"]) == "locomotion"
    assert body_motion.kind_of(["someone is jogging in a circle"]) == "locomotion"
    assert body_motion.kind_of(["a person waves with the left hand", "raises the right arm"]) == "standing"
    assert body_motion.kind_of(["a person jumps up"]) == "other"
    assert body_motion.kind_of(["a person turns to the left"]) == "other"


def test_a_real_walk_and_run_are_regular_and_bob(clips):
    for clip in clips["walk"] + clips["run"]:
        assert body_motion.gait_regularity(clip, FPS) > 0.85
        assert body_motion.pelvis_bob(clip) > 0.008 and body_motion.foot_swing(clip) > 0.08
    # standing clips have no gait: their pelvis height has no step period
    for clip in clips["raise"]:
        assert body_motion.gait_regularity(clip, FPS) < 0.5 and body_motion.foot_swing(clip) < 0.01


def test_a_wandering_walk_loses_its_regularity(clips):
    walk = clips["walk"][0].copy()
    rng = np.random.default_rng(0)
    wander = np.cumsum(rng.normal(0.0, 0.01, size=len(walk)))  # a height that drifts with no period
    walk[:, :, 1] += (wander - wander.mean())[:, None] * 3.0
    walk[:, JOINT_INDEX["left_ankle"], 1] = walk[:, JOINT_INDEX["right_ankle"], 1] + rng.normal(0, 0.03, len(walk))
    assert body_motion.gait_regularity(walk, FPS) < 0.6 < body_motion.gait_regularity(clips["walk"][0], FPS)


def test_a_real_standing_clip_has_low_drift_and_a_calm_core(clips):
    for clip in clips["wave"] + clips["raise"]:
        assert body_motion.standing_drift(clip, FPS) < 0.05  # m/s; a walk is over 1 m/s
        jerk = body_motion.part_jerk(clip, FPS)
        assert jerk["pelvis"] < 6.0 and jerk["spine_head"] < 6.0
    assert body_motion.standing_drift(clips["walk"][0], FPS) > 0.8
    # waving: the waving hand jerks far more than the body core
    wave = body_motion.part_jerk(clips["wave"][0], FPS)
    assert wave["left_hand"] > 10 * wave["pelvis"]


def test_real_feet_are_never_frozen_but_a_clamped_ankle_is_caught(clips):
    for clip in clips["walk"] + clips["wave"] + clips["raise"]:
        assert body_motion.frozen_share(clip) == 0.0
    clamped = clips["walk"][0].copy()
    ankle = JOINT_INDEX["left_ankle"]
    clamped[40:80, ankle] = clamped[40, ankle]  # held exactly still for 2 s, as a hard foot lock does
    share = body_motion.frozen_share(clamped)
    assert share == pytest.approx(39 / ((len(clamped) - 1) * 4), abs=1e-9)


def test_summaries_and_ratios(clips):
    motions = clips["walk"] + clips["wave"]
    kinds = ["locomotion", "locomotion", "standing", "standing"]
    summary = body_motion.summarize(motions, kinds, FPS)
    assert {"jerk_pelvis_standing", "jerk_pelvis_locomotion", "gait_regularity", "standing_drift",
            "frozen_feet"} <= set(summary)
    ratios = body_motion.ratios(summary, summary)
    assert ratios and all(value == pytest.approx(1.0) for value in ratios.values())
    assert "frozen_feet_ratio" not in ratios
    shaky = [m + np.random.default_rng(1).normal(0, 0.002, m.shape) for m in motions]
    shaky_ratios = body_motion.ratios(body_motion.summarize(shaky, kinds, FPS), summary)
    assert shaky_ratios["jerk_pelvis_standing_ratio"] > 3.0  # 2 mm of jitter shows at once on a standing pelvis
    with pytest.raises(InputTensorError, match="2 motions but 1 kinds"):
        body_motion.summarize(motions[:2], kinds[:1], FPS)
