# SPDX-License-Identifier: GPL-3.0-or-later
"""The three everyday-phrasing suites of benchmarks/measure_everyday_phrasings.py: every label names a geometric check
(a side where the phrasing names one), no phrasing is in two, and the held-out and styled sets are the sizes
docs/results.md reports; "a person walks to the left" is judged by where the take goes, as a turned walk or a sidestep gets there."""

from __future__ import annotations

import sys

import numpy as np
from conftest import REPO_ROOT

from kmm_core.evaluation.action_checks import checks_for_action, label_side, prompt_side


def _suites():
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.measure_everyday_phrasings import HELD_OUT_SUITE, STYLED_SUITE, SUITE

    return SUITE, HELD_OUT_SUITE, STYLED_SUITE


def test_every_label_has_a_check_and_the_side_its_phrasing_names():
    suite, held_out, styled = _suites()
    assert len(suite) == 66 and len(held_out) == 44 and len(styled) == 16
    for phrasing, label in (*suite, *held_out, *styled):
        assert label.endswith("box") or checks_for_action(label), label
        named = prompt_side(phrasing, None)
        if named is not None and not label.endswith("box"):
            assert label_side(label) in (named, None), (phrasing, label)


def test_no_phrasing_is_in_two_suites():
    phrasings = [phrasing for suite in _suites() for phrasing, _ in suite]
    assert len(set(phrasings)) == len(phrasings)


def test_walking_to_the_left_is_judged_by_where_the_take_goes():
    suite, *_ = _suites()
    from benchmarks.measure_everyday_phrasings import judge

    (label,) = [label for phrasing, label in suite if phrasing == "a person walks to the left"]
    frames = np.arange(100) / 20.0
    # a body facing +Z (its left +X) that turns 90 degrees to its left over the first second, then walks on
    heading = np.radians(np.clip(frames, 0.0, 1.0) * 90.0)
    speed = 1.2
    travel = np.cumsum(speed / 20.0 * np.stack([np.sin(heading), np.cos(heading)], axis=1), axis=0)
    turned = _walker(travel, heading)
    straight = _walker(np.cumsum(np.tile([[0.0, speed / 20.0]], (100, 1)), axis=0), np.zeros(100))
    assert judge(label, turned)
    assert not judge(label, straight)
    right = -heading   # the same walk turning right
    turned_right = _walker(np.cumsum(speed / 20.0 * np.stack([np.sin(right), np.cos(right)], axis=1), axis=0), right)
    assert not judge(label, turned_right)


def _walker(path_xz: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """(T, 22, 3) joints of a rigid standing skeleton carried along `path_xz`, facing `heading` (radians, 0 = +Z,
    growing toward the left, +X): enough for checks that read the pelvis path and the hips/shoulders' facing."""
    from kmm_core.motion.skeleton import JOINT_INDEX

    rest = np.zeros((22, 3))
    rest[:, 1] = 0.9
    for name, x, y in (("left_hip", 0.1, 0.9), ("right_hip", -0.1, 0.9), ("left_shoulder", 0.18, 1.4),
                       ("right_shoulder", -0.18, 1.4), ("head", 0.0, 1.65), ("neck", 0.0, 1.5),
                       ("left_ankle", 0.1, 0.08), ("right_ankle", -0.1, 0.08), ("left_foot", 0.1, 0.02),
                       ("right_foot", -0.1, 0.02), ("left_knee", 0.1, 0.5), ("right_knee", -0.1, 0.5),
                       ("left_wrist", 0.25, 0.9), ("right_wrist", -0.25, 0.9)):
        rest[JOINT_INDEX[name]] = (x, y, 0.0)
    cos, sin = np.cos(heading), np.sin(heading)
    # yaw about +Y: a body's +X (its left at heading 0) turns with it
    x = rest[None, :, 0] * cos[:, None] + rest[None, :, 2] * sin[:, None]
    z = -rest[None, :, 0] * sin[:, None] + rest[None, :, 2] * cos[:, None]
    joints = np.stack([x, np.broadcast_to(rest[None, :, 1], x.shape), z], axis=-1)
    joints[:, :, 0] += path_xz[:, None, 0]
    joints[:, :, 2] += path_xz[:, None, 1]
    return joints
