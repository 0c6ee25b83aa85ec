# SPDX-License-Identifier: GPL-3.0-or-later
"""MotionResult on the real HumanML3D sample: inverse kinematics, the .npz file, its validation, and resampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.generation.timeline import Timeline
from kmm_core.motion.kinematics import fit_rest_offsets, forward_kinematics
from kmm_core.motion.motion_result import FORMAT_VERSION, MotionResult, MotionResultError
from kmm_core.motion.rotations import qinv, qmul
from kmm_core.motion.skeleton import JOINT_NAMES, PARENTS, tpose_offsets

PROMPTS = ("a person walks forward", "turns to the left", "stops and waves")


@pytest.fixture(scope="session")
def sample_joints(humanml3d_fixture_dir) -> np.ndarray:
    return np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy")  # (170, 22, 3) at 20 fps


@pytest.fixture(scope="session")
def timeline() -> Timeline:
    # 170 frames at 20 fps, split unevenly.
    return Timeline.from_dict({"fps": 20, "segments": [{"prompt": PROMPTS[0], "frames": 63},
                                                       {"prompt": PROMPTS[1], "seconds": 2.35},
                                                       {"prompt": PROMPTS[2], "frames": 60}]})


@pytest.fixture(scope="session")
def result(sample_joints, timeline) -> MotionResult:
    return MotionResult.from_joints(sample_joints, 20.0, timeline=timeline)


def _rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation between unit quaternions a and b."""
    relative = qmul(qinv(a), b)
    return 2.0 * np.arctan2(np.linalg.norm(relative[..., 1:], axis=-1), np.abs(relative[..., 0]))


def test_from_joints_fills_every_array(result, sample_joints, timeline):
    assert result.num_frames == 170 and result.duration == pytest.approx(8.5)
    assert result.joints.dtype == result.root_translation.dtype == result.local_rotations.dtype == np.float32
    assert result.local_rotations.shape == (170, 22, 4)
    np.testing.assert_allclose(np.linalg.norm(result.local_rotations, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.root_translation, sample_joints[:, 0], atol=1e-6)
    np.testing.assert_allclose(result.rest_offsets, tpose_offsets(), atol=1e-6)
    assert result.joint_names == JOINT_NAMES
    assert result.segment_frames.tolist() == [[0, 63], [63, 110], [110, 170]]
    assert result.segment_prompts == PROMPTS
    assert Timeline.from_dict(json.loads(result.timeline_json)) == timeline


def test_rotations_pose_the_rest_skeleton_like_the_joints(result, sample_joints):
    posed = forward_kinematics(result.root_translation, result.local_rotations, result.rest_offsets)
    # Every bone below a single-child joint points where the recorded bone points.
    for joint, parent in enumerate(PARENTS):
        if parent < 0 or sum(p == parent for p in PARENTS) != 1:
            continue
        recorded = sample_joints[:, joint] - sample_joints[:, parent]
        aimed = posed[:, joint] - posed[:, parent]
        cosine = np.sum(recorded * aimed, -1) / (np.linalg.norm(recorded, axis=-1) * np.linalg.norm(aimed, axis=-1))
        assert cosine.min() > np.cos(np.radians(1.0)), JOINT_NAMES[joint]
    # The standard T-pose's branch angles (hips, collars) are not HumanML3D's, so positions drift down the limbs
    # (measured: up to 0.14 m at the wrists of this clip; see kinematics.py).
    assert np.linalg.norm(posed - sample_joints, axis=-1).max() < 0.2
    # With a rest pose fitted to the motion the rotations reproduce the joints.
    offsets = fit_rest_offsets(sample_joints)
    exact = MotionResult.from_joints(sample_joints, 20.0, rest_offsets=offsets)
    posed = forward_kinematics(exact.root_translation, exact.local_rotations, exact.rest_offsets)
    assert np.abs(posed - sample_joints).max() < 2e-3
    assert exact.segment_frames.shape == (0, 2) and exact.segment_prompts == () and exact.timeline_json == ""


def test_from_joints_refuses_a_timeline_of_another_length(sample_joints, timeline):
    with pytest.raises(MotionResultError, match="170 frames at 20 fps but the motion has 100"):
        MotionResult.from_joints(sample_joints[:100], 20.0, timeline=timeline)
    with pytest.raises(MotionResultError, match=r"joints: expected shape \(T, 22, 3\)"):
        MotionResult.from_joints(sample_joints[:, :21], 20.0)


def test_save_load_round_trip_is_exact_and_atomic(result, tmp_path):
    target = tmp_path / "take_1.npz"
    assert result.save(target) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take_1.npz"]  # no temporary file left behind
    loaded = MotionResult.load(target)
    for key, array in result.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], array, err_msg=key)
    assert loaded.segment_prompts == PROMPTS and loaded.fps == 20.0
    # The name is kept as given, and saving again replaces the file.
    other = tmp_path / "take_2.motion"
    result.resample(30).save(other)
    result.save(other)
    assert MotionResult.load(other).num_frames == 170
    with np.load(target, allow_pickle=False) as raw:
        assert sorted(raw.files) == sorted(result.to_arrays())
        assert raw["format_version"] == FORMAT_VERSION and raw["joint_names"].dtype.kind == "U"


def test_save_into_a_missing_folder_names_it(result, tmp_path):
    with pytest.raises(MotionResultError, match="folder does not exist"):
        result.save(tmp_path / "no_such_dir" / "x.npz")


def _write(path, arrays):
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)
    return path


@pytest.mark.parametrize("change, key, words", [
    (lambda a: a.pop("local_rotations"), "local_rotations", "missing"),
    (lambda a: a.update(extra=np.zeros(3)), "extra", "unknown key"),
    (lambda a: a.update(joints=a["joints"][:, :21]), "joints", "expected shape (T, 22, 3)"),
    (lambda a: a.update(root_translation=a["root_translation"][:-1]), "root_translation", "expected shape (170, 3)"),
    (lambda a: a.update(joints=a["joints"].astype(str)), "joints", "must hold numbers"),
    (lambda a: a.update(segment_frames=a["segment_frames"].astype(np.float64)), "segment_frames", "integer"),
    (lambda a: a.update(segment_frames=np.array([[0, 100], [90, 170]])), "segment_frames", "before segment 0 ends"),
    (lambda a: a.update(segment_frames=np.array([[0, 100], [100, 171]])), "segment_frames", "outside"),
    (lambda a: a.update(segment_prompts=a["segment_prompts"][:2]), "segment_prompts", "one prompt per segment"),
    (lambda a: a.update(format_version=np.array(FORMAT_VERSION + 1)), "format_version", "newer version"),
    (lambda a: a.update(format_version=np.array(1.0)), "format_version", "integer"),
    (lambda a: a.update(fps=np.array(-20.0)), "fps", "positive"),
    (lambda a: a.update(fps=np.array([20.0])), "fps", "scalar"),
    (lambda a: a.update(joint_names=np.array([f"j{i}" for i in range(22)])), "joint_names", "HumanML3D joint names"),
    (lambda a: a.update(joint_names=np.arange(22)), "joint_names", "unicode"),
    (lambda a: a.update(local_rotations=a["local_rotations"] * 2.0), "local_rotations", "unit length"),
    (lambda a: a.update(joints=np.full_like(a["joints"], np.nan)), "joints", "NaN"),
    (lambda a: a.update(timeline_json=np.array("{not json")), "timeline_json", "not valid JSON"),
    (lambda a: a.update(segment_prompts=np.array(PROMPTS, dtype=object)), "segment_prompts", "without pickle"),
])
def test_load_names_file_and_key_of_every_problem(result, tmp_path, change, key, words):
    arrays = dict(result.to_arrays())
    change(arrays)
    path = _write(tmp_path / "bad.npz", arrays)
    with pytest.raises(MotionResultError) as caught:
        MotionResult.load(path)
    assert caught.value.key == key and caught.value.path == str(path)
    assert words in caught.value.reason
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_load_refuses_files_that_are_not_results(tmp_path):
    with pytest.raises(MotionResultError, match="file not found"):
        MotionResult.load(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(MotionResultError, match="not a readable .npz"):
        MotionResult.load(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(MotionResultError, match="not a .npz archive"):
        MotionResult.load(single)


def test_segment_at(result):
    assert [result.segment_at(f) for f in (0, 62, 63, 109, 110, 169)] == [0, 0, 1, 1, 2, 2]
    assert result.segment_at(170) is None and result.segment_at(-1) is None


def test_resample_keeps_duration_and_matches_timeline_ranges(result, timeline):
    up = result.resample(30.0)
    assert up.num_frames == 255 and up.duration == pytest.approx(result.duration)
    assert [tuple(r) for r in up.segment_frames.tolist()] == timeline.segment_ranges(30.0)
    assert up.segment_prompts == result.segment_prompts and up.timeline_json == result.timeline_json
    # Every third frame at 30 fps is every second frame at 20 fps: there the samples are the originals.
    np.testing.assert_allclose(up.joints[::3], result.joints[::2][:85], atol=1e-6)
    np.testing.assert_allclose(_rotation_angle(up.local_rotations[::3], result.local_rotations[::2][:85]), 0.0,
                               atol=1e-3)
    # In between (30 fps frame 3k + 2 is 20 fps frame 2k + 1 1/3), positions are linear and rotations move a third
    # of the way along the arc (slerp), not along a chord.
    np.testing.assert_allclose(up.joints[2], result.joints[1] * 2 / 3 + result.joints[2] / 3, atol=1e-6)
    whole = _rotation_angle(result.local_rotations[11], result.local_rotations[12])
    third = _rotation_angle(result.local_rotations[11], up.local_rotations[17])
    rest = _rotation_angle(up.local_rotations[17], result.local_rotations[12])
    moving = whole > 0.02
    assert moving.sum() >= 3
    np.testing.assert_allclose(third[moving], whole[moving] / 3, rtol=5e-3)
    np.testing.assert_allclose(rest[moving], whole[moving] * 2 / 3, rtol=5e-3)
    # And back down: same frames and segments; the frames that were sampled exactly come back unchanged.
    down = up.resample(20.0)
    assert down.num_frames == 170 and down.segment_frames.tolist() == result.segment_frames.tolist()
    np.testing.assert_allclose(down.joints[::2], result.joints[::2], atol=1e-5)


def test_resample_refuses_an_fps_that_empties_a_segment(result):
    with pytest.raises(MotionResultError, match="segment_frames: at 0.2 fps segment 1 would have no frames"):
        result.resample(0.2)
    with pytest.raises(MotionResultError, match="fps"):
        result.resample(0)


def test_constructor_validates(result):
    base = dict(fps=20.0, joints=result.joints, root_translation=result.root_translation,
                local_rotations=result.local_rotations)
    with pytest.raises(MotionResultError, match="segment_prompts"):
        MotionResult(**base, segment_frames=[[0, 170]], segment_prompts=("a", "b"))
    with pytest.raises(MotionResultError, match="fps"):
        MotionResult(**{**base, "fps": float("inf")})
    with pytest.raises(MotionResultError, match="format_version"):
        MotionResult(**base, format_version=FORMAT_VERSION + 1)
    plain = MotionResult(**base, segment_frames=[[0, 170]], segment_prompts=["all"])
    assert plain.segment_frames.dtype == np.int64 and plain.segment_prompts == ("all",)
