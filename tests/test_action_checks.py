# SPDX-License-Identifier: GPL-3.0-or-later
"""The geometric action checks (kmm_core/evaluation/action_checks.py) on real clips: HDM05 and DeepMimic clips of
each action pass their check, real walks (HDM05-free sources: DeepMimic, Bandai-Namco) do not.

Clips go through `kmm-train prepare` (as training and eval-actions see them) and back to joints from their 263-d
features, as eval-actions measures real clips."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.common.errors import InputTensorError
from kmm_core.evaluation.action_checks import (
    FOOT_OVER_HEAD_CHECKS,
    TURNING_CHECKS,
    action_words,
    checks_for_action,
    foot_over_head,
    held_at_least,
    held_at_most,
    label_side,
    run_check,
    torso_elevation_degrees,
    turns_over,
)
from kmm_core.motion.skeleton import JOINT_INDEX
from tests.real_action_clips import joints_by_content

# The checks of the original five pose words; locomotion checks (travel, run) are passed by walks by design.
POSE_CHECKS = ("jump", "squat", "lie", "crawl", "kick")


@pytest.fixture(scope="module")
def real_clips(real_action_clips) -> dict[str, list[np.ndarray]]:
    """dataset/content -> joints of each prepared window (no mirrors) of a few HDM05 and DeepMimic clips
    (`tests/real_action_clips.py`)."""
    return real_action_clips


def _passes(check: str, clips: list[np.ndarray]) -> list[bool]:
    assert clips
    return [run_check(check, joints).passed for joints in clips]


@pytest.mark.parametrize(("content", "check"), [
    ("hdm05/hopBothLegs1hops", "jump"), ("deepmimic/jump", "jump"),
    ("hdm05/squat1Reps", "squat"),
    ("hdm05/lieDownFloor", "lie"),
    ("deepmimic/crawl", "crawl"),
    ("hdm05/kickLFront1Reps", "kick"), ("deepmimic/kick", "kick"),
])
def test_real_clips_of_an_action_pass_its_check(real_clips, content, check):
    assert check in checks_for_action(content.split("/")[1])
    assert all(_passes(check, real_clips[content])), content


@pytest.mark.parametrize("content", ["deepmimic/walk", "deepmimic/run", "hdm05/sneak2StepsLStart"])
def test_real_walks_and_runs_pass_no_action_check(real_clips, content):
    for check in POSE_CHECKS + ("getup", "inverted", "ground", "hands_high", "reach_floor", "climb"):
        assert not any(_passes(check, real_clips[content])), (content, check)


def test_bending_to_the_floor_is_not_lying_down(real_clips):
    # depositFloor bends the torso horizontal with the pelvis high: the lie check also asks for a low pelvis.
    clips = real_clips["hdm05/depositFloorR"]
    assert not any(_passes("lie", clips))
    lying = [run_check("lie", joints).value for joints in real_clips["hdm05/lieDownFloor"]]
    assert max(lying) < 20.0


def test_real_squat_drops_the_pelvis_and_a_real_jump_is_not_a_kick(real_clips):
    squat = [run_check("squat", joints) for joints in real_clips["hdm05/squat1Reps"]]
    assert all(result.value >= 0.35 and result.threshold == 0.35 for result in squat)
    assert not any(_passes("kick", real_clips["hdm05/hopBothLegs1hops"]))
    assert not any(_passes("crawl", real_clips["hdm05/squat1Reps"]))


def test_a_body_lying_flat_is_no_squat(real_clips):
    # A real lie-down's own standing frames, then its frames flat on the floor (torso under 20 degrees, pelvis under
    # 0.35 m): the pelvis is far below its standing height, but a body lying down is not squatting or sitting.
    (joints,) = real_clips["hdm05/lieDownFloor"]
    flat = (torso_elevation_degrees(joints) < 20.0) & (joints[:, 0, 1] - joints[:, :, 1].min() < 0.35)
    assert flat.sum() >= 20
    standing = joints[:20]
    assert torso_elevation_degrees(standing).min() > 70.0
    lying = np.concatenate([standing, joints[flat]])
    result = run_check("squat", lying)
    assert not result.passed and result.value < 0.1
    # The same clip whole sits on the floor on its way down (torso up, pelvis low): that counts.
    assert run_check("squat", joints).passed


def test_a_jog_in_a_circle_turns_its_own_way_as_it_goes(real_clips):
    (circle,) = real_clips["hdm05/jogLeftCircle4StepsRstart"]
    assert checks_for_action("jogLeftCircle4StepsRstart") == ("circle",)
    assert label_side("jogLeftCircle4StepsRstart") == "left"
    toward_left = run_check("circle", circle, side="left")
    assert toward_left.passed and toward_left.value >= 20.0   # degrees a second
    assert not run_check("circle", circle, side="right").passed
    for straight in ("deepmimic/run", "deepmimic/walk", "hdm05/sneak2StepsLStart"):
        assert not any(_passes("circle", real_clips[straight])), straight


def test_bandai_namco_walks_pass_no_action_check(prepared_dataset):
    walks = [joints for key, clips in joints_by_content(prepared_dataset).items()
             if key.split("/")[1] in ("walk", "walk-back", "walk-left", "walk-right") for joints in clips]
    assert len(walks) >= 6
    for check in POSE_CHECKS:
        assert not any(_passes(check, walks)), check


def test_action_words_choose_the_checks():
    assert action_words("kickLFront1Reps") == ["kick", "l", "front", "reps"]
    assert checks_for_action("kickLFront1Reps") == ("kick",)
    assert checks_for_action("spinkick") == ("kick",)
    assert checks_for_action("hopBothLegs1hops") == ("jump",)
    assert checks_for_action("jumping") == ("jump",)
    assert checks_for_action("squat1Reps") == ("squat",)
    assert checks_for_action("lieDownFloor") == ("lie",)
    assert checks_for_action("crawl") == ("crawl",)
    expected = {"walk": "travel", "walk-turn-left": "turn", "walk-back": "backward", "walk-left": "sideways",
                "getup_faceup": "getup", "backflip": "inverted", "dance_spin": "spin", "raise-up-both-hands":
                "hands_high", "raise-up-left-hand": "hand_high", "wave-left-hand": "wave", "throwBasketball": "swing",
                "basketball_signal": "hand_up", "rotateArmsBothBackward1Reps": "hands_high", "climb": "climb",
                "steps up on a box": "climb", "sits down on a chair": "squat", "picks something up": "reach_floor"}
    for label, check in expected.items():
        assert checks_for_action(label) == (check,), label
    assert checks_for_action("shop") == ()
    assert (label_side("kickLFront1Reps"), label_side("grabHighR"), label_side("walk-right")) == ("left", "right",
                                                                                                  "right")
    assert label_side("wave-both-hands") is None and label_side("elbowToKnee1RepsLelbowStart") is None


@pytest.mark.parametrize(("content", "check", "other"), [
    ("deepmimic/backflip", "inverted", "deepmimic/walk"),
    ("deepmimic/getup_faceup", "getup", "hdm05/lieDownFloor"),
    ("deepmimic/roll", "ground", "hdm05/squat1Reps"),
    ("deepmimic/spin", "spin", "hdm05/squat1Reps"),
    ("deepmimic/dance_a", "dance", "deepmimic/walk"),
    ("hdm05/depositFloorR", "reach_floor", "hdm05/squat1Reps"),
    ("deepmimic/run", "run", "deepmimic/walk"),
    ("deepmimic/walk", "travel", "hdm05/squat1Reps"),
])
def test_a_words_check_passes_its_real_clips_and_fails_another_action(real_clips, content, check, other):
    assert all(_passes(check, real_clips[content])), content
    assert not any(_passes(check, real_clips[other])), other


def test_bandai_namco_sided_words_pass_with_their_side_only(prepared_dataset):
    clips = joints_by_content(prepared_dataset)
    for content, check, side in (("bandai-namco-2/raise-up-left-hand", "hand_high", "left"),
                                 ("bandai-namco-2/walk-turn-left", "turn", "left"),
                                 ("bandai-namco-2/walk-turn-right", "turn", "right"),
                                 ("bandai-namco-1/walk-back", "backward", None)):
        other = "right" if side == "left" else "left"
        assert sum(run_check(check, j, side=side).passed for j in clips[content]) >= 2, content
        if side is not None and check == "turn":
            assert not any(run_check(check, j, side=other).passed for j in clips[content]), content
        walks = clips["bandai-namco-2/walk"]
        assert not any(run_check(check, j, side=side).passed for j in walks), (content, "walk")


def test_going_to_a_side_counts_a_turned_walk_and_a_sidestep_but_not_a_straight_walk(prepared_dataset):
    clips = joints_by_content(prepared_dataset)
    assert checks_for_action("walk toward left") == ("toward",) and label_side("walk toward left") == "left"
    for content, side in (("bandai-namco-2/walk-turn-left", "left"), ("bandai-namco-2/walk-turn-right", "right"),
                          ("bandai-namco-1/walk-left", "left"), ("bandai-namco-1/walk-right", "right")):
        other = "right" if side == "left" else "left"
        measured = [run_check("toward", joints, side=side) for joints in clips[content]]
        assert sum(result.passed for result in measured) >= 2, content
        assert all(abs(result.value) <= 90.0 for result in measured)
        assert not any(run_check("toward", joints, side=other).passed for joints in clips[content]), content
    for content in ("bandai-namco-2/walk", "bandai-namco-1/walk-back"):
        for joints in clips[content]:
            result = run_check("toward", joints)
            assert not result.passed and abs(result.value) < 20.0, content
    standing = np.repeat(clips["bandai-namco-2/walk"][0][:1], 40, axis=0)
    assert run_check("toward", standing, side="left").value == 0.0   # no net displacement: no direction


def test_held_values_need_the_whole_window():
    values = np.array([0.0, 0.3, 0.0, 0.2, 0.2, 0.2, 0.0])
    assert held_at_least(values, 1) == pytest.approx(0.3)   # one frame: the peak
    assert held_at_least(values, 3) == pytest.approx(0.2)   # three frames: only the plateau lasts
    assert held_at_most(values, 2) == pytest.approx(0.2)
    assert held_at_least(values, 50) == pytest.approx(0.0)  # longer than the clip: the whole clip


def test_bad_inputs_give_clear_errors():
    with pytest.raises(InputTensorError, match="unknown action check 'juggle'"):
        run_check("juggle", np.zeros((10, 22, 3)))
    with pytest.raises(InputTensorError, match="side: expected 'left', 'right' or None"):
        run_check("kick", np.zeros((10, 22, 3)), side="up")
    with pytest.raises(InputTensorError, match=r"joints: expected shape \(frames, 22, 3\)"):
        run_check("jump", np.zeros((10, 21, 3)))


def test_only_flips_rolls_and_get_ups_turn_the_body_over(real_clips):
    """`turns_over` (both feet above the head): the real backflip, roll and kip-up do it, and none of the upright
    actions' real clips, a deep bend to the floor and lying flat among them; a real bend turned upside down does."""
    for content in ("deepmimic/backflip", "deepmimic/roll", "deepmimic/getup_faceup"):
        assert all(turns_over(joints) for joints in real_clips[content]), content
    upright = [content for content in real_clips
               if checks_for_action(content.split("/", 1)[1])[0] not in TURNING_CHECKS]
    assert "hdm05/depositFloorR" in upright and "hdm05/lieDownFloor" in upright and "deepmimic/crawl" in upright
    for content in upright:
        assert not any(turns_over(joints) for joints in real_clips[content]), content
    bend = real_clips["hdm05/depositFloorR"][0].copy()
    middle = len(bend) // 2
    bend[middle - 5:middle + 5, :, 1] *= -1.0  # a third of a second upside down about the floor
    assert turns_over(bend)


def test_a_foot_over_the_head_is_only_in_the_actions_that_do_it(real_clips):
    """`foot_over_head`: a real kick does; a reach to the floor, a walk, a jump and the other actions whose checks are
    outside FOOT_OVER_HEAD_CHECKS never do; the same reach with one ankle and toe lifted over the head for
    0.15 s does, for 0.05 s does not (held 0.1 s), and anything that turns over has a foot over the head."""
    assert set(TURNING_CHECKS) <= set(FOOT_OVER_HEAD_CHECKS)
    assert any(foot_over_head(joints) for joints in real_clips["deepmimic/kick"])
    upright = [content for content in real_clips
               if checks_for_action(content.split("/", 1)[1])[0] not in FOOT_OVER_HEAD_CHECKS]
    assert {"hdm05/depositFloorR", "deepmimic/jump", "deepmimic/walk"} <= set(upright)
    for content in upright:
        assert not any(foot_over_head(joints) for joints in real_clips[content]), content
    for content in real_clips:
        assert all(foot_over_head(joints) for joints in real_clips[content] if turns_over(joints)), content
    reach = real_clips["hdm05/depositFloorR"][0]
    middle = len(reach) // 2
    for frames, flung in ((3, True), (1, False)):
        kicked = reach.copy()
        right_leg = [JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"]]
        kicked[middle:middle + frames, right_leg, 1] = kicked[middle, JOINT_INDEX["head"], 1] + 0.2  # 20 fps
        assert foot_over_head(kicked) is flung
