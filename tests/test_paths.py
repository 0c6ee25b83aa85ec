# SPDX-License-Identifier: GPL-3.0-or-later
"""Root paths (kmm_core/generation/paths.py): the generated pelvis follows straight, curved and turning paths within
10 cm, facing along them (or keeping a sidestep's angle), with the action kept; timeline files, CLI and worker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.generation.paths import (
    PathError,
    RootPath,
    facing_and_travel_offset,
    follow_paths,
    path_spans,
)
from kmm_core.generation.timeline import Timeline, TimelineError
from kmm_core.humanml3d.features import forward_directions
from kmm_core.motion.motion_result import MotionResult

ARC = np.linspace(0.0, 1.0, 30)
PATHS = {
    "straight": [[0.0, 0.0], [0.0, 5.0]],
    "curved": [[float(3 * np.sin(a * np.pi / 2)), float(3 - 3 * np.cos(a * np.pi / 2))] for a in ARC],
    "turning": [[0.0, 0.0], [0.0, 2.5], [2.5, 2.5]],
}


def _heading(joints: np.ndarray) -> np.ndarray:
    forward = forward_directions(joints, (2, 17), (1, 16))
    return np.arctan2(forward[:, 0], forward[:, 2])


def _angle(a: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * a)))


def test_paths_in_timeline_files_round_trip_and_are_checked():
    data = {"fps": 30, "segments": [{"prompt": "walk", "seconds": 2, "path": {"points": [[0, 0], [0, 2]],
                                                                             "times": [0, 2]}},
                                    {"prompt": "wave", "seconds": 1}]}
    timeline = Timeline.from_dict(data)
    assert timeline.segments[0].path == RootPath(((0.0, 0.0), (0.0, 2.0)), (0.0, 2.0))
    assert Timeline.from_dict(timeline.to_dict()) == timeline
    assert path_spans(timeline) == [(0, 60, timeline.segments[0].path)]
    whole = Timeline.from_dict({"segments": [{"prompt": "walk", "seconds": 2}], "path": [[0, 0], [1, 1]]})
    assert path_spans(whole)[0][:2] == (0, 40)
    bad = [({"segments": [{"prompt": "a", "seconds": 1, "path": [[0, 0]]}]}, r"segments\[0\]\.path: points: a path needs"),
           ({"segments": [{"prompt": "a", "seconds": 1, "path": [[0, 0], [1, "x"]]}]}, r"points\[1\]: must be"),
           ({"segments": [{"prompt": "a", "seconds": 1}], "path": {"points": [[0, 0], [1, 1]], "times": [1, 0]}},
            "path: times: must start at 0"),
           ({"segments": [{"prompt": "a", "seconds": 1, "path": [[0, 0], [1, 1]]}], "path": [[0, 0], [1, 1]]},
            "path: give a path for the whole timeline or paths for segments"),
           ({"segments": [{"prompt": "a", "seconds": 1}], "loop": True, "path": [[0, 0], [1, 1]]},
            "loop: a loop cannot follow a path")]
    for value, words in bad:
        with pytest.raises(TimelineError, match=words):
            Timeline.from_dict(value)
    with pytest.raises(PathError, match="overlap"):
        follow_paths(np.zeros((10, 22, 3)), 20.0, [(0, 6, whole.path), (5, 10, whole.path)])


def test_path_timing_follows_its_times():
    path = RootPath(((0.0, 0.0), (0.0, 1.0), (0.0, 3.0)), (0.0, 2.0, 3.0))
    position, direction = path.sample(np.array([0.0, 1.0, 2.0, 2.5, 3.0]), 3.0)
    np.testing.assert_allclose(position[:, 1], [0.0, 0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(direction, [[0.0, 1.0]] * 5)


@pytest.mark.parametrize("name", list(PATHS))
def test_generated_walk_follows_the_path_and_faces_along_it(shipped_bundle, name):
    from kmm_core.generation.timeline_generator import generate_timeline

    timeline = Timeline.from_dict({"fps": 30, "segments": [
        {"prompt": "a person walks forward", "seconds": 5.0, "path": PATHS[name]},
        {"prompt": "a person waves with the right hand", "seconds": 2.0}]})
    (motion,) = generate_timeline(shipped_bundle, timeline, seed=2)
    (start, end, path), = path_spans(timeline)
    position, direction = path.sample(np.arange(end - start) / 30.0, (end - start) / 30.0)
    error = np.linalg.norm(motion.joints[start:end, 0, [0, 2]] - position, axis=-1)
    assert error.mean() <= 0.10
    heading = _heading(motion.joints.astype(np.float64))[start:end]
    along = np.arctan2(direction[:, 0], direction[:, 1])
    assert np.degrees(np.median(_angle(heading - along))) < 20
    # The segment after the path continues from its end without a jump, and feet stay held.
    step = np.linalg.norm(np.diff(motion.joints[:, 0, [0, 2]], axis=0), axis=-1)
    assert step[end - 1] < 0.1 and motion.foot_lock and motion.foot_contacts.any()


def test_a_sidestep_keeps_its_angle_to_the_path(shipped_bundle):
    from kmm_core.generation.timeline_generator import GenerationOptions, generate_timeline

    prompt = "a person walks to the left"
    free = Timeline.from_dict({"fps": 20, "segments": [{"prompt": prompt, "seconds": 4.0}]})
    raw = generate_timeline(shipped_bundle, free, seed=0, options=GenerationOptions(foot_lock=False))[0]
    keep = facing_and_travel_offset(raw.joints.astype(np.float64), 20.0)
    on_path = Timeline.from_dict({"fps": 20, "segments": [{"prompt": prompt, "seconds": 4.0,
                                                           "path": [[0.0, 0.0], [3.0, 3.0]]}]})
    motion = generate_timeline(shipped_bundle, on_path, seed=0, options=GenerationOptions(foot_lock=False))[0]
    heading = _heading(motion.joints.astype(np.float64))
    along = np.arctan2(3.0, 3.0)
    assert np.degrees(np.median(_angle(heading - along - keep))) < 20
    # The body still does what it did: poses relative to the pelvis are unchanged up to the turn about the vertical.
    own = raw.joints - raw.joints[:, :1]
    placed = motion.joints - motion.joints[:, :1]
    assert np.allclose(np.linalg.norm(own, axis=-1), np.linalg.norm(placed, axis=-1), atol=1e-4)
    assert np.allclose(own[..., 1], placed[..., 1], atol=1e-4)


def test_paths_reach_cli_and_worker_protocol(tmp_path):
    from kmm_core.cli import main
    from kmm_core.worker.protocol import Generate, decode, encode

    data = {"fps": 20, "segments": [{"prompt": "a person walks forward", "seconds": 3.0,
                                     "path": {"points": [[0, 0], [1, 2]], "times": [0, 3]}}]}
    path = tmp_path / "path.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "path.npz"
    assert main(["generate", "--timeline", str(path), "-o", str(out), "--seed", "0", "--device", "cpu",
                 "--quiet"]) == 0
    motion = MotionResult.load(out)
    np.testing.assert_allclose(motion.joints[-1, 0, [0, 2]], [1.0, 2.0], atol=0.1)
    sent = decode(encode(Generate(timeline=data, output_dir=str(tmp_path), id="g")))
    assert Timeline.from_dict(sent["timeline"]).segments[0].path.times == (0.0, 3.0)


# ---- issue 31: a huge path value is refused before any arithmetic (no NumPy warning, no NaN) ----------------------
@pytest.mark.parametrize(("path", "message"), [
    ([[0, 0], [1e308, 0]], r"points\[1\]: each coordinate must be within ±100000 metres"),
    ([[-1e300, 5], [0, 0]], r"points\[0\]: each coordinate must be within ±100000 metres"),
    ({"points": [[0, 0], [1, 0]], "times": [0, 1e308]}, r"times: each time must be within 600 seconds"),
])
def test_huge_path_values_are_refused_before_any_arithmetic(path, message):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow in the lengths) fails the test
        with pytest.raises(TimelineError, match=rf"segments\[0\]\.path: {message}"):
            Timeline.from_dict({"fps": 20, "segments": [{"prompt": "walk", "seconds": 3, "path": path}]})
        with pytest.raises(TimelineError, match=rf"path: {message}"):
            Timeline.from_dict({"fps": 20, "segments": [{"prompt": "walk", "seconds": 3}], "path": path})


def test_kmm_generate_refuses_a_huge_path_point_in_one_line_without_a_warning(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    timeline = tmp_path / "far.json"
    timeline.write_text(json.dumps({"fps": 20, "segments": [{"prompt": "a person walks", "seconds": 2,
                                                             "path": [[0, 0], [1e308, 0]]}]}))
    completed = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "--timeline", str(timeline),
                                "--device", "cpu", "--quiet", "-o", str(tmp_path / "out.npz")], capture_output=True,
                               text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"kmm: error: {timeline}: segments[0].path: points[1]: each coordinate must be within ±100000 metres, "
        "got [1e+308, 0]"]
    assert not (tmp_path / "out.npz").exists()


def test_a_path_at_the_coordinate_limit_samples_finitely():
    import warnings

    from kmm_core.common.limits import MAX_PATH_COORDINATE

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = RootPath.from_value([[-MAX_PATH_COORDINATE, MAX_PATH_COORDINATE], [MAX_PATH_COORDINATE, 0], [0, 0]])
        position, direction = path.sample(np.linspace(0, 10, 50), 10.0)
    assert np.isfinite(position).all() and np.isfinite(direction).all()
