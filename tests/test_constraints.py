# SPDX-License-Identifier: GPL-3.0-or-later
"""Timeline constraints (issue #28): the file format and its refusals, and generation with the shipped model meeting
key poses and end-effector targets taken from held-out real motion (a small run of
benchmarks/measure_constraints.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.generation.timeline import Timeline, TimelineError
from kmm_core.motion.skeleton import rest_positions, tpose_offsets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
STANDING = rest_positions(tpose_offsets()) + np.array([0.0, 0.93, 0.0])
BASE = {"fps": 30, "segments": [{"prompt": "a person walks", "start": 1, "end": 60},
                                {"prompt": "a person waves", "start": 61, "end": 120}]}


def timeline_with(*constraints) -> Timeline:
    return Timeline.from_dict({**BASE, "constraints": list(constraints)})


def test_constraints_round_trip_through_the_file_format():
    timeline = timeline_with({"type": "pose", "frame": 10, "positions": STANDING.tolist()},
                             {"type": "effector", "joint": "right_wrist", "start": 20, "end": 30,
                              "position": [0, 1.2, 0.3], "weight": 0.5},
                             {"type": "facing", "frame": 120, "direction": [2, 0]})
    assert Timeline.from_dict(timeline.to_dict()) == timeline
    pose, effector, facing = timeline.constraint_frames()
    assert (pose.frame, effector.start, effector.end, facing.frame) == (9, 19, 29, 119)
    assert not effector.hard and effector.weight == 0.5 and facing.direction == (1.0, 0.0)


@pytest.mark.parametrize(("constraint", "message"), [
    ({"type": "effector", "joint": "left_hand", "frame": 5, "position": [0, 1, 0]},
     "constraints[1].joint: unknown joint 'left_hand'"),
    ({"type": "facing", "frame": 121, "direction": [1, 0]},
     "constraints[1].frame: frame 121 is outside the timeline (frames 1 to 120)"),
    ({"type": "pose", "frame": 10, "positions": (STANDING * [1, 1.5, 1]).tolist()},
     "constraints[1].positions: the canonical skeleton cannot reach this pose"),
    ({"type": "pose", "frame": 10, "positions": STANDING.tolist()},
     "constraints[1].frame: conflicts with constraints[0]: both key the whole body at frame 10"),
    ({"type": "effector", "joint": "head", "frame": 10, "position": [0, 1, 0]},
     "constraints[1].position: conflicts with constraints[0]: the pose keyed at frame 10 puts the head"),
    ({"type": "effector", "joint": "right_wrist", "frame": 40, "position": [0, 3.5, 0]},
     "constraints[1].position: the right_wrist cannot reach 3.50 m above the floor"),
    ({"type": "effector", "joint": "left_foot", "frame": 40, "position": [0, 1, 0], "weight": 0},
     "constraints[1].weight: must be \"hard\" or a number in (0, 1]"),
])
def test_bad_constraints_are_refused_naming_the_constraint_and_field(constraint, message):
    with pytest.raises(TimelineError) as error:
        timeline_with({"type": "pose", "frame": 10, "positions": STANDING.tolist()}, constraint)
    assert message in str(error.value)


def test_generation_meets_constraints_from_held_out_real_motion(bandai_namco_archive):
    """Eight held-out test-split clips: their poses at 3 frames and wrist/ankle targets at 2 are met (poses within 3
    cm mean joint error, targets within 2 cm), and the motion around the constraints is no jerkier than 1.3x the
    rest of it on average (per clip the ratio ranges 0.5-1.6 with the default: two clips alone are too few to judge;
    over benchmarks/results/constraints.md's 32 the median is 1.17, the previous default's 1.20)."""
    import torch
    from measure_constraints import clip_timeline, held_out_clips, measure

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(1)
    bundle = ModelBundle.load(Path(__file__).resolve().parents[1] / "kmm_core" / "checkpoints" / "kmm-small",
                              device="cpu")
    clips = held_out_clips(bandai_namco_archive, 8, 4.0)
    assert len(clips) == 8 and all(len(clip.joints) == 80 for clip in clips)
    result = measure(bundle, clips, seed=0)
    assert len(result["pose_errors"]) == 24 and len(result["effector_errors"]) == 16
    assert result["pose_errors"].max() < 0.03 and result["effector_errors"].max() < 0.02
    assert result["ratios"].mean() <= 1.3
    # Without its constraints the same timeline misses the poses by far: the constraints did the work.
    from kmm_core.generation.constraint_solver import constraint_errors
    from kmm_core.generation.timeline_generator import generate_timeline

    keyed = clip_timeline(clips[0], True)
    plain = generate_timeline(bundle, clip_timeline(clips[0], False), seed=0)[0]
    misses = [error for _, kind, error in constraint_errors(plain.joints, keyed.constraint_frames()) if kind == "pose"]
    assert min(misses) > 0.05
