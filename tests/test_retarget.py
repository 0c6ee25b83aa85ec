# SPDX-License-Identifier: GPL-3.0-or-later
"""Retargeting real Bandai-Namco and CMU clips onto the canonical 22 joints, joint maps, resampling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kmm_core.bvh import (
    builtin_joint_map,
    bvh_to_canonical_joints,
    joint_map_from_dict,
    load_bvh_folder,
    load_joint_map,
    read_bvh,
)
from kmm_core.bvh.joint_map import BUILTIN_MAP_DIR
from kmm_core.common.errors import InputFileError, KMMError
from kmm_core.motion import skeleton
from kmm_core.motion.resample import (
    make_quaternions_continuous,
    resample_positions,
    resample_rotations,
    resampled_frame_count,
    rescale_frame_numbers,
)
from kmm_core.motion.rotations import axis_angle_to_quat, quat_to_axis_angle

J = skeleton.JOINT_INDEX


@pytest.fixture(scope="module")
def clips(bandai_namco_dir, cmu_bvh_dir):
    """(map name, path, source fps) of real walking clips of each skeleton, and CMU-31 jumping."""
    return [
        ("bandai_namco", bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-1" / "data"
         / "dataset-1_walk_normal_001.bvh", 30.0),
        ("bandai_namco", bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data"
         / "dataset-2_walk_normal_001.bvh", 30.0),
        ("cmu_daz", cmu_bvh_dir / "02" / "02_01.bvh", 120.0),
        ("cmu_31", cmu_bvh_dir / "16" / "16_01.bvh", 30.0),
    ]


def test_real_clips_become_plausible_canonical_motion(clips):
    for map_name, path, fps in clips:
        motion = read_bvh(path)
        joints = bvh_to_canonical_joints(motion, builtin_joint_map(map_name))
        assert motion.fps == pytest.approx(fps, rel=1e-4)
        expected_frames = int(np.floor(motion.num_frames * 20.0 / motion.fps + 0.5))  # duration kept, rounded
        assert joints.shape == (expected_frames, 22, 3), path.name
        # Metres, Y up: head above pelvis above ankles, a standing adult's proportions.
        assert np.all(joints[:, J["head"], 1] > joints[:, J["pelvis"], 1])
        assert np.all(joints[:, J["pelvis"], 1] > joints[:, J["left_ankle"], 1])
        lengths = np.linalg.norm(joints[:, 1:] - joints[:, list(skeleton.PARENTS[1:])], axis=-1)
        assert 0.3 < lengths[:, J["left_knee"] - 1].mean() < 0.55, path.name  # thigh
        lowest_ankle = np.minimum(joints[:, J["left_ankle"], 1], joints[:, J["right_ankle"], 1])
        head_above_ankles = np.median(joints[:, J["head"], 1] - lowest_ankle)
        assert 1.1 < head_above_ankles < 1.8, (path.name, head_above_ankles)
        # Joints taken from (or between points of) one source bone keep their distances.
        assert lengths.std(axis=0).max() < 3e-3, path.name
        # Handedness: left is +X when facing +Z, i.e. left = up x forward, forward from the feet.
        forward = (joints[:, J["left_foot"]] - joints[:, J["left_ankle"]]) + (
            joints[:, J["right_foot"]] - joints[:, J["right_ankle"]])
        left = np.cross([0.0, 1.0, 0.0], forward)
        for left_joint, right_joint in ((J["left_hip"], J["right_hip"]), (J["left_shoulder"], J["right_shoulder"])):
            side = np.sum((joints[:, left_joint] - joints[:, right_joint]) * left, axis=-1)
            assert np.mean(side > 0) > 0.95, path.name


def test_walking_speed_is_a_walk(clips):
    for map_name, path, _ in clips[:3]:
        joints = bvh_to_canonical_joints(read_bvh(path), builtin_joint_map(map_name))
        step = np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1) * 20.0
        assert 0.5 < np.median(step) < 2.5, path.name


def test_keeping_the_source_frame_rate(clips):
    _, path, _ = clips[2]
    motion = read_bvh(path)
    joints = bvh_to_canonical_joints(motion, builtin_joint_map("cmu_daz"), target_fps=None)
    assert joints.shape[0] == motion.num_frames
    np.testing.assert_allclose(joints[:, J["left_knee"]], motion.world_positions(0.01)[:, motion.index("lShin")])


def test_load_folder_skips_and_reports_malformed_files(clips, tmp_path):
    _, good, _ = clips[0]
    truncated = tmp_path / "truncated.bvh"
    truncated.write_text("\n".join(good.read_text().splitlines()[:-5]) + "\n")
    garbage = tmp_path / "garbage.bvh"
    garbage.write_text(good.read_text().replace("OFFSET", "OFSET", 1))
    cmu = tmp_path / "cmu.bvh"  # a valid file the map does not fit
    shutil.copy(clips[2][1], cmu)
    ok, failures = load_bvh_folder([good, truncated, garbage, cmu], builtin_joint_map("bandai_namco"))
    assert [path for path, _ in ok] == [good] and ok[0][1].shape[1:] == (22, 3)
    assert [path for path, _ in failures] == [truncated, garbage, cmu]
    assert all(isinstance(error, KMMError) for _, error in failures)
    assert "truncated" in str(failures[0][1]) and "line" in str(failures[1][1])
    assert "Hips" in str(failures[2][1]) or "Spine" in str(failures[2][1])


def test_unknown_source_joint_names_the_map_and_the_joint(clips, tmp_path):
    data = json.loads((BUILTIN_MAP_DIR / "bandai_namco.json").read_text())
    data["joints"]["left_elbow"] = "LowerArm_Left"
    path = tmp_path / "my_rig.json"
    path.write_text(json.dumps(data))
    joint_map = load_joint_map(path)
    with pytest.raises(InputFileError, match="LowerArm_Left") as caught:
        bvh_to_canonical_joints(read_bvh(clips[0][1]), joint_map)
    assert str(path) in str(caught.value) and "left_elbow" in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["joints"].pop("neck"), "'neck' is not mapped"),
        (lambda d: d["joints"].update(tail="Tail"), "unknown canonical joint 'tail'"),
        (lambda d: d.update(up="Y"), "'up'"),
        (lambda d: d.update(forward="+Y"), "perpendicular"),
        (lambda d: d.update(scale_to_metres=0), "scale_to_metres"),
        (lambda d: d["joints"].update(spine2={"between": ["Spine"], "t": 0.5}), "'spine2'"),
        (lambda d: d["joints"].update(spine2={"between": ["Spine", "Chest"], "t": 1.5}), "'t'"),
        (lambda d: d.update(units="cm"), "unknown key 'units'"),
    ],
)
def test_malformed_maps_are_rejected(edit, message):
    data = json.loads((BUILTIN_MAP_DIR / "bandai_namco.json").read_text())
    edit(data)
    with pytest.raises(InputFileError, match=message):
        joint_map_from_dict(data, "my_map.json")


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "up": "+Y",\n  "forward" "+Z"\n}\n')
    with pytest.raises(InputFileError) as caught:
        load_joint_map(path)
    assert caught.value.line == 3


def test_axis_conversion_of_a_z_up_source():
    data = json.loads((BUILTIN_MAP_DIR / "cmu_31.json").read_text())
    data.update(up="+Z", forward="-Y", scale_to_metres=1.0)  # Blender's convention
    joint_map = joint_map_from_dict(data)
    np.testing.assert_allclose(joint_map.axis_matrix() @ [0, 0, 1], [0, 1, 0])  # up -> +Y
    np.testing.assert_allclose(joint_map.axis_matrix() @ [0, -1, 0], [0, 0, 1])  # forward -> +Z
    np.testing.assert_allclose(joint_map.axis_matrix() @ [1, 0, 0], [1, 0, 0])  # Blender's left (+X) stays left
    assert np.linalg.det(joint_map.axis_matrix()) == pytest.approx(1.0)


def test_resample_positions_is_linear_and_keeps_the_ends():
    times = np.arange(31) / 30.0
    values = np.stack([2.0 * times, -times + 1.0, 0.5 * times], axis=-1)[:, None, :]  # (31, 1, 3)
    resampled = resample_positions(values, 30.0, 20.0)
    assert resampled.shape == (21, 1, 3)
    new_times = np.arange(21) / 20.0
    np.testing.assert_allclose(resampled[:, 0, 0], 2.0 * new_times, atol=1e-12)
    np.testing.assert_allclose(resampled[-1], values[-1], atol=1e-12)
    assert resample_positions(values, 30.0, 30.0).shape == values.shape
    assert resample_positions(values[:1], 30.0, 20.0).shape == (1, 1, 3)
    with pytest.raises(KMMError):
        resample_positions(values, 0.0, 20.0)


def test_resample_rotations_follows_a_constant_spin():
    axis = np.array([0.3, 0.8, -0.52])
    axis /= np.linalg.norm(axis)
    times = np.arange(13) / 12.0
    quaternions = axis_angle_to_quat(times[:, None, None] * 2.5 * axis)  # (13, 1, 4), 2.5 rad/s
    quaternions[1::2] *= -1.0  # same rotations, alternating hemispheres
    resampled = resample_rotations(quaternions, 12.0, 20.0)
    assert resampled.shape == (22, 1, 4)  # 13 frames at 12 fps last 13/12 s: 21.67 frames at 20 fps, rounded
    new_times = np.minimum(np.arange(22) / 20.0, 1.0)  # the last sample is clamped to the last source frame
    expected = axis_angle_to_quat(new_times[:, None, None] * 2.5 * axis)
    np.testing.assert_allclose(np.abs(np.sum(resampled * expected, axis=-1)), 1.0, atol=1e-12)
    continuous = make_quaternions_continuous(resampled)
    assert np.all(np.sum(continuous[1:] * continuous[:-1], axis=-1) > 0)  # one hemisphere after the sign pass
    np.testing.assert_allclose(np.linalg.norm(quat_to_axis_angle(resampled[-1]), axis=-1), 2.5, atol=1e-9)


def test_one_frame_count_rule_for_motions_and_frame_numbers():
    assert resampled_frame_count(31, 30.0, 20.0) == 21
    assert resampled_frame_count(100, 20.0, 30.0) == 150  # duration kept: 5 s
    assert resampled_frame_count(1, 20.0, 0.5) == 1  # at least one frame
    np.testing.assert_array_equal(rescale_frame_numbers(np.array([0, 15, 61]), 30.0, 20.0), [0, 10, 41])
    with pytest.raises(KMMError):
        resampled_frame_count(10, 20.0, 0.0)
