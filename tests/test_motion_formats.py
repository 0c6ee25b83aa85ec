# SPDX-License-Identifier: GPL-3.0-or-later
"""CMU exp-map and DeepMimic converters, and the joint maps of the extra sources, on real files: each checked
against an independent version of the same motion where the data has one (the same CMU trial as BVH, DeepMimic's
own mirrored clips), plus errors naming file and line."""

from __future__ import annotations

import dataclasses
import re
import tarfile

import numpy as np
import pytest

from kmm_core.acclaim import read_asf
from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, parse_bvh, read_bvh
from kmm_core.common.errors import InputFileError
from kmm_core.motion.skeleton import JOINT_NAMES, mirror_positions
from kmm_core.motion_formats.cmu_expmap import EXPMAP_LAYOUT, parse_cmu_expmap, read_cmu_expmap
from kmm_core.motion_formats.deepmimic import (
    parse_deepmimic_character,
    parse_deepmimic_motion,
    read_deepmimic_character,
    read_deepmimic_motion,
)


def _angle(joints: np.ndarray, a: str, b: str, c: str) -> np.ndarray:
    """Angle (degrees) at joint b between a and c, per frame."""
    i = JOINT_NAMES.index
    u, v = joints[:, i(a)] - joints[:, i(b)], joints[:, i(c)] - joints[:, i(b)]
    cosine = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


@pytest.fixture(scope="module")
def cmu_02_01(cmu_archive) -> np.ndarray:
    """CMU trial 02_01 ("walk") from the project's BVH collection (Daz skeleton), canonical joints at 20 fps."""
    with tarfile.open(cmu_archive, "r:xz") as archive:
        text = archive.extractfile("data/02/02_01.bvh").read().decode("utf-8")
    motion = parse_bvh(text, "02_01.bvh")
    motion = dataclasses.replace(motion, frames=motion.frames[1:])   # frame 0 is a T-pose
    return bvh_to_canonical_joints(motion, builtin_joint_map("cmu_daz"))


@pytest.fixture(scope="module")
def hdm05_skeleton(hdm05_dir):
    return read_asf(hdm05_dir / "asf" / "HDM_bd.asf")


def _assert_same_walk(ours: np.ndarray, reference: np.ndarray, min_correlation: float = 0.95) -> None:
    frames = min(len(ours), len(reference))
    assert abs(len(ours) - len(reference)) <= 2
    for side in ("left", "right"):
        knee = _angle(ours[:frames], f"{side}_hip", f"{side}_knee", f"{side}_ankle")
        knee_reference = _angle(reference[:frames], f"{side}_hip", f"{side}_knee", f"{side}_ankle")
        assert np.corrcoef(knee, knee_reference)[0, 1] > min_correlation, side
        assert np.abs(knee - knee_reference).mean() < 12.0, side
    # Both walk the same way.
    travel, travel_reference = ours[frames - 1, 0] - ours[0, 0], reference[frames - 1, 0] - reference[0, 0]
    cosine = np.dot(travel[[0, 2]], travel_reference[[0, 2]]) / np.linalg.norm(travel[[0, 2]]) / np.linalg.norm(
        travel_reference[[0, 2]])
    assert cosine > 0.95


# ---------------------------------------------------------------------------------------------------------------
# CMU exp-map
# ---------------------------------------------------------------------------------------------------------------

def test_expmap_walking_1_is_cmu_02_01(extra_mocap_dir, hdm05_skeleton, cmu_02_01):
    """walking_1 of the exp-map subset is CMU trial 02_01: same knee angles and path as the project's BVH of it
    (only the proportions differ: the exp-map files carry no skeleton, HDM05's gives the bone geometry)."""
    path = extra_mocap_dir / "cmu-8action-expmap" / "cmu_mocap" / "train" / "walking" / "walking_1.txt"
    motion = read_cmu_expmap(path, hdm05_skeleton)
    assert motion.num_frames == 343 and motion.fps == 120.0   # the rest-pose frame 0 dropped
    joints = bvh_to_canonical_joints(motion, builtin_joint_map("acclaim_31"))
    _assert_same_walk(joints, cmu_02_01, min_correlation=0.97)
    # Root path in metres agrees too (same trial, same CMU units).
    frames = min(len(joints), len(cmu_02_01))
    np.testing.assert_allclose(joints[:frames, 0, [0, 2]] - joints[0, 0, [0, 2]],
                               cmu_02_01[:frames, 0, [0, 2]] - cmu_02_01[0, 0, [0, 2]], atol=0.15)


def test_expmap_keeps_the_rest_frame_when_asked(extra_mocap_dir, hdm05_skeleton):
    path = extra_mocap_dir / "cmu-8action-expmap" / "cmu_mocap" / "train" / "walking" / "walking_1.txt"
    motion = read_cmu_expmap(path, hdm05_skeleton, drop_rest_frame=False)
    assert motion.num_frames == 344
    positions = motion.world_positions()
    # Frame 0 is the rest pose: every joint at the root plus its chain of rest offsets.
    np.testing.assert_allclose(positions[0, motion.index("lfemur")] - positions[0, 0],
                               motion.offsets[motion.index("lfemur")], atol=1e-9)
    assert len(EXPMAP_LAYOUT) == 38 and motion.names[:3] == ("root", "lhipjoint", "lfemur")


@pytest.mark.parametrize("edit, message, line", [
    (lambda rows: rows.__setitem__(4, rows[4] + ",0.5"), "expected 117 comma-separated values", 5),
    (lambda rows: rows.__setitem__(7, rows[7].replace(",", ",x", 1)), "'x", 8),
    (lambda rows: rows.__setitem__(2, rows[2].replace(",", ",nan,", 1).rsplit(",", 1)[0]), "values must be finite", 3),
])
def test_expmap_errors_name_file_and_line(edit, message, line, extra_mocap_dir, hdm05_skeleton, tmp_path):
    source = extra_mocap_dir / "cmu-8action-expmap" / "cmu_mocap" / "test" / "running" / "running_1.txt"
    rows = source.read_text(encoding="utf-8").splitlines()[:20]
    edit(rows)
    broken = tmp_path / "running_1.txt"
    broken.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=re.escape(message)) as caught:
        read_cmu_expmap(broken, hdm05_skeleton)
    assert caught.value.path == str(broken) and caught.value.line == line


def test_expmap_needs_cmu_bone_names(extra_mocap_dir, hdm05_skeleton):
    skeleton = dataclasses.replace(hdm05_skeleton, bones=hdm05_skeleton.bones[:-1])
    source = extra_mocap_dir / "cmu-8action-expmap" / "cmu_mocap" / "test" / "running" / "running_1.txt"
    with pytest.raises(InputFileError, match="the skeleton has no bone"):
        parse_cmu_expmap(source.read_text(encoding="utf-8"), skeleton, "running_1.txt")


# ---------------------------------------------------------------------------------------------------------------
# Character Creator rig (iClone export of CMU)
# ---------------------------------------------------------------------------------------------------------------

def test_cc_base_map_on_the_iclone_02_01_matches_cmu_02_01(extra_mocap_dir, cmu_02_01):
    """The iClone re-export of trial 02_01 (CC_Base rig, 60 fps) through the cc_base map walks like the project's
    own BVH of 02_01 through cmu_daz."""
    path = extra_mocap_dir / "cmu-iclone-dragonforged" / "bvh" / "All_BVH" / "subjects" / "002" / "002_01.bvh"
    motion = read_bvh(path)
    assert len(motion.joint_indices) == 101 and motion.names[1] == "CC_Base_Hip" and round(motion.fps) == 60
    joints = bvh_to_canonical_joints(motion, builtin_joint_map("cc_base"))
    _assert_same_walk(joints, cmu_02_01)
    i = JOINT_NAMES.index
    # Upright adult proportions.
    floor = joints[0, :, 1].min()
    assert 1.4 < joints[0, i("head"), 1] - floor < 1.75
    assert 0.15 < np.linalg.norm(joints[0, i("left_hip")] - joints[0, i("right_hip")]) < 0.25


# ---------------------------------------------------------------------------------------------------------------
# DeepMimic
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deepmimic_dir(extra_mocap_dir):
    return extra_mocap_dir / "deepmimic-humanoid3d"


@pytest.fixture(scope="module")
def character(deepmimic_dir):
    return read_deepmimic_character(deepmimic_dir / "characters" / "humanoid3d.txt")


def test_deepmimic_character(character):
    assert len(character.joints) == 15 and character.values_per_frame == 44
    assert [j.name for j in character.joints][:4] == ["root", "chest", "neck", "right_hip"]
    kinds = {j.name: j.kind for j in character.joints}
    assert kinds["right_knee"] == "revolute" and kinds["left_wrist"] == "fixed"
    ends = {character.joints[i].name for i, _ in character.end_sites}
    assert ends == {"neck", "right_ankle", "left_ankle"}


def test_every_deepmimic_clip_converts(deepmimic_dir, character):
    joint_map = builtin_joint_map("deepmimic_humanoid3d")
    files = sorted((deepmimic_dir / "motions").rglob("*.txt"))
    assert len(files) == 29
    for file in files:
        motion = read_deepmimic_motion(file, character)
        joints = bvh_to_canonical_joints(motion, joint_map)
        assert np.all(np.isfinite(joints)), file.name
        # kmm_core/motion/resample.py's rule: T frames last T frame times, kept to within one 20 fps frame.
        assert abs(len(joints) / 20.0 - motion.num_frames * motion.frame_time) <= 0.05, file.name


def test_deepmimic_walk_faces_forward_with_left_on_the_left(deepmimic_dir, character):
    joints = bvh_to_canonical_joints(read_deepmimic_motion(deepmimic_dir / "motions" / "humanoid3d_walk.txt",
                                                           character), builtin_joint_map("deepmimic_humanoid3d"))
    i = JOINT_NAMES.index
    travel = joints[-1, 0] - joints[0, 0]
    assert travel[2] > 1.0 and abs(travel[0]) < 0.2           # walks toward +Z (HumanML3D forward)
    assert np.all(joints[:, i("left_hip"), 0] > joints[:, i("right_hip"), 0])   # left is +X
    toes = joints[:, i("left_foot")] - joints[:, i("left_ankle")]
    assert np.median(toes[:, 2]) > 0.05                        # toes point forward
    floor = joints[:, [i("left_foot"), i("right_foot")], 1].min()
    assert 1.35 < np.median(joints[:, i("head"), 1]) - floor < 1.7


def test_deepmimic_mirrored_clip_is_our_mirror(deepmimic_dir, character):
    """DeepMimic ships long_walk1 and its mirrored copy: our mirror of the first must be the second."""
    joint_map = builtin_joint_map("deepmimic_humanoid3d")
    folder = deepmimic_dir / "motions" / "long"
    original = bvh_to_canonical_joints(read_deepmimic_motion(folder / "humanoid3d_long_walk1.txt", character),
                                       joint_map)[:400]
    mirrored = bvh_to_canonical_joints(read_deepmimic_motion(folder / "humanoid3d_long_walk1_mirror.txt",
                                                             character), joint_map)[:400]
    assert np.abs(original - mirrored).max() > 0.3
    np.testing.assert_allclose(mirror_positions(original), mirrored, atol=1e-4)


def test_deepmimic_uneven_frame_durations_are_resampled(deepmimic_dir, character):
    path = deepmimic_dir / "motions" / "humanoid3d_roll.txt"
    data = __import__("json").loads(path.read_text(encoding="utf-8"))
    durations = np.array([frame[0] for frame in data["Frames"]])
    assert len(np.unique(durations.round(4))) > 1      # the file really has uneven durations
    motion = read_deepmimic_motion(path, character)
    assert motion.frame_time == pytest.approx(np.median(durations[:-1]))
    assert motion.num_frames * motion.frame_time == pytest.approx(durations[:-1].sum(), abs=motion.frame_time)


def test_deepmimic_errors_name_file_frame_and_line(deepmimic_dir, character, tmp_path):
    text = (deepmimic_dir / "motions" / "humanoid3d_jump.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    rows = [n for n, line in enumerate(lines) if line.lstrip().startswith("[") and any(c.isdigit() for c in line)]
    lines[rows[3]] = lines[rows[3]].replace("[", "[0.5, ", 1)
    with pytest.raises(InputFileError, match="frame 3: expected 44 values") as caught:
        parse_deepmimic_motion("\n".join(lines), character, "jump.txt")
    assert caught.value.line == rows[3] + 1 and caught.value.path == "jump.txt"
    with pytest.raises(InputFileError, match="not valid JSON"):
        parse_deepmimic_motion(text[:-40], character, "jump.txt")
    character_text = (deepmimic_dir / "characters" / "humanoid3d.txt").read_text(encoding="utf-8")
    with pytest.raises(InputFileError, match="joint 'right_knee': unknown 'Type' 'hinge'"):
        parse_deepmimic_character(character_text.replace('"revolute"', '"hinge"', 1), "humanoid3d.txt")


def test_short_deepmimic_loops_are_repeated_stride_after_stride(deepmimic_dir, character):
    joint_map = builtin_joint_map("deepmimic_humanoid3d")
    path = deepmimic_dir / "motions" / "humanoid3d_jog.txt"
    single = read_deepmimic_motion(path, character)
    looped = read_deepmimic_motion(path, character, loop_to_seconds=2.0)
    assert (single.num_frames - 1) * single.frame_time < 1.0
    assert 2.0 <= (looped.num_frames - 1) * looped.frame_time < 2.0 + (single.num_frames - 1) * single.frame_time
    np.testing.assert_array_equal(looped.frames[:single.num_frames], single.frames)
    joints = bvh_to_canonical_joints(looped, joint_map, None)
    steps = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=1)
    seam = single.num_frames - 1
    assert steps[seam - 1: seam + 1].max() < 2.0 * np.median(steps)      # no jump where a stride repeats
    travel = joints[-1, 0] - joints[0, 0]
    assert travel[2] > 2.0 * (joints[seam, 0, 2] - joints[0, 0, 2]) * 0.9  # keeps jogging forward
    # A clip that does not loop is left alone.
    kick = deepmimic_dir / "motions" / "humanoid3d_kick.txt"
    assert read_deepmimic_motion(kick, character, loop_to_seconds=5.0).num_frames == \
        read_deepmimic_motion(kick, character).num_frames
