# SPDX-License-Identifier: GPL-3.0-or-later
"""The gait measures (kmm_core/evaluation/gait.py) on real walks and runs: real Bandai-Namco walks come out in the
textbook ranges of healthy walking (Perry and Burnfield, Winter: cadence 100-120 steps a minute, each foot down
about 60% of a stride, double support about 20%, two pelvis rises a stride, left and right steps alike, a stride
repeating the last); a real run has no double support; the same walk with one pelvis rise a stride is measured as a
limp, and with its right steps slowed as asymmetric."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.bvh import builtin_joint_map, read_bvh
from kmm_core.bvh.retarget import bvh_to_canonical_joints
from kmm_core.evaluation.gait import RUN_WINDOW_SECONDS, measure_gait, steady_windows, take_gaits
from kmm_core.motion.model_timing import MODEL_FPS


def _joints(bandai_namco_dir, pattern: str) -> list[np.ndarray]:
    files = sorted(bandai_namco_dir.rglob(pattern))[:6]
    assert files, pattern
    joint_map = builtin_joint_map("bandai_namco")
    return [bvh_to_canonical_joints(read_bvh(f), joint_map, MODEL_FPS) for f in files]


@pytest.fixture(scope="module")
def walks(bandai_namco_dir):
    return _joints(bandai_namco_dir, "dataset-2_walk_normal_*.bvh")


def test_real_walks_have_a_textbook_gait(walks):
    gaits = [g for joints in walks for g in take_gaits(joints, MODEL_FPS)]
    assert len(gaits) >= 6
    median = {name: float(np.median([getattr(g, name) for g in gaits]))
              for name in ("cadence", "stride_length", "stance", "double_support", "step_asymmetry", "pelvis_bob",
                           "regularity")}
    assert 95 <= median["cadence"] <= 125, median
    assert 1.2 <= median["stride_length"] <= 1.9, median  # leg lengths
    assert 0.55 <= median["stance"] <= 0.68 and 0.12 <= median["double_support"] <= 0.3, median
    assert median["step_asymmetry"] < 0.1 and median["pelvis_bob"] > 0.7 and median["regularity"] > 0.9, median


def test_a_real_run_has_no_double_support(bandai_namco_dir):
    runs = _joints(bandai_namco_dir, "dataset-2_run_normal_*.bvh")
    gaits = [g for joints in runs for g in take_gaits(joints, MODEL_FPS, RUN_WINDOW_SECONDS)]
    assert gaits
    assert np.median([g.double_support for g in gaits]) < 0.05
    assert np.median([g.cadence for g in gaits]) > 130


def test_step_times_are_read_between_frames(bandai_namco_dir):
    """A real run's steps last about 7 frames at 20 fps: whole frames alone make one step of each stride a frame
    (0.13 of a step) longer than the other.  Each heel strike is placed between its frame and the one before, and the
    same run sampled half a frame later keeps its step times (whole frames: moved by up to a frame)."""
    from kmm_core.evaluation.gait import foot_down, heel_strike_times, heel_strikes, leg_length

    run = _joints(bandai_namco_dir, "dataset-2_run_normal_*.bvh")[0]
    later = (run[:-1] + run[1:]) / 2.0   # half a frame later, linearly
    legs = leg_length(run)
    for side in ("left", "right"):
        frames = heel_strikes(foot_down(run, MODEL_FPS, side, legs))
        times = heel_strike_times(run, MODEL_FPS, side, legs)
        assert len(times) == len(frames) >= 2
        assert np.all((times > frames - 1) & (times <= frames))
        shifted = heel_strike_times(later, MODEL_FPS, side, legs) + 0.5
        both = min(len(shifted), len(times))   # the resampled run is a frame shorter
        assert both >= 2 and np.abs(shifted[:both] - times[:both]).max() < 0.35, (shifted, times)


def test_one_pelvis_rise_a_stride_is_a_limp_and_slowed_right_steps_are_asymmetric(walks):
    joints = walks[0][steady_windows(walks[0], MODEL_FPS)[0]].copy()
    real = measure_gait(joints, MODEL_FPS)
    stride = 120.0 / real.cadence  # seconds
    t = np.arange(len(joints)) / MODEL_FPS
    limping = joints.copy()
    limping[:, :, 1] += 0.03 * np.sin(2 * np.pi * t / stride)[:, None]  # a rise and fall once a stride
    assert measure_gait(limping, MODEL_FPS).pelvis_bob < 0.5 < real.pelvis_bob
    # the same walk with every step that starts on the left foot slowed to 1.5 times its time (frames repeated)
    from kmm_core.evaluation.gait import foot_down, leg_length

    legs = leg_length(joints)
    down = foot_down(joints, MODEL_FPS, "left", legs)
    strikes = np.flatnonzero(down[1:] & ~down[:-1]) + 1
    right = np.flatnonzero((d := foot_down(joints, MODEL_FPS, "right", legs))[1:] & ~d[:-1]) + 1
    frames = []
    for frame in range(len(joints)):
        frames.append(frame)
        after_left = strikes[strikes <= frame]
        after_right = right[right <= frame]
        if len(after_left) and (not len(after_right) or after_left[-1] > after_right[-1]) and frame % 2 == 0:
            frames.append(frame)  # inside a left -> right step: every other frame shown twice
    uneven = measure_gait(joints[frames], MODEL_FPS)
    assert real.step_asymmetry < 0.15 < 0.25 < uneven.step_asymmetry, (real.step_asymmetry, uneven.step_asymmetry)


def test_real_standing_takes_stand_on_nearly_straight_knees(bandai_namco_dir):
    """Real standing takes (a raised hand) measured by `posture.standing_knee_angle`: the knees nearly straight
    (164 degrees on these takes through the canonical skeleton's joints), and a body lowered into a crouch is
    measured bent."""
    from kmm_core.evaluation.posture import knee_angles, standing_knee_angle

    takes = _joints(bandai_namco_dir, "dataset-2_raise-up-left-hand_normal_*.bvh")
    angles = [a for a in (standing_knee_angle(j, MODEL_FPS) for j in takes) if a is not None]
    assert angles and np.median(angles) > 160, angles
    # A take standing less than a second in all (a pick-up passes through standing on its way down) does not stand.
    assert standing_knee_angle(takes[0][:19], MODEL_FPS) is None
    assert standing_knee_angle(takes[0][:40], MODEL_FPS) > 150
    straight = knee_angles(takes[0][:1])[0]
    bent = takes[0][:1].copy()
    bent[:, [0, 1, 2, 3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], 1] -= 0.15  # the hips 15 cm lower
    bent[:, [4, 5], 2] += 0.12  # the knees forward
    assert np.all(knee_angles(bent)[0] < straight - 20)
