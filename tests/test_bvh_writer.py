# SPDX-License-Identifier: GPL-3.0-or-later
"""BVH writer: real motion -> IK -> BVH -> Blender's importer and our reader give the same joints back."""

from __future__ import annotations

import numpy as np
import pytest
from blender_scripts.bvh_import import blender_to_bvh_axes, run_blender_import

from kmm_core.bvh import read_bvh, write_bvh
from kmm_core.bvh.reader import END_SITE_SUFFIX
from kmm_core.common.errors import KMMError
from kmm_core.motion import skeleton
from kmm_core.motion.kinematics import fit_rest_offsets, inverse_kinematics

FRAMES = [0, 27, 28, 29, 100, 169]


@pytest.fixture(scope="module")
def posed(humanml3d_fixture_dir):
    joints = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy").astype(np.float64)
    offsets = fit_rest_offsets(joints)
    root, rotations = inverse_kinematics(joints, offsets)
    return joints, root, rotations, offsets


def _canonical(motion, positions):
    return positions[:, [motion.index(name) for name in skeleton.JOINT_NAMES]]


@pytest.mark.parametrize("order", ["ZYX", "XYZ", "ZXY"])
def test_our_reader_reads_back_the_joints(posed, tmp_path, order):
    joints, root, rotations, offsets = posed
    path = write_bvh(tmp_path / "motion.bvh", root, rotations, offsets, fps=20.0, rotation_order=order)
    motion = read_bvh(path)
    assert motion.fps == pytest.approx(20.0) and motion.num_frames == len(joints)
    assert motion.channels[0] == ("Xposition", "Yposition", "Zposition") + tuple(f"{a}rotation" for a in order)
    assert all(len(motion.channels[motion.index(n)]) == 3 for n in skeleton.JOINT_NAMES[1:])
    leaves = {motion.names[motion.parents[i]] for i, end in enumerate(motion.is_end_site) if end}
    assert leaves == {"left_foot", "right_foot", "head", "left_wrist", "right_wrist"}
    assert motion.names[-1].endswith(END_SITE_SUFFIX)
    error = np.linalg.norm(_canonical(motion, motion.world_positions()) - joints, axis=-1)
    assert error.max() < 1e-3


@pytest.mark.blender
def test_blender_importer_reads_back_the_joints(posed, tmp_path):
    pytest.importorskip("bpy")
    joints, root, rotations, offsets = posed
    path = write_bvh(tmp_path / "motion.bvh", root, rotations, offsets, fps=20.0)
    result = run_blender_import([{"path": str(path), "frames": FRAMES}], tmp_path)
    names = list(result["names_0"])
    assert sorted(names) == sorted(skeleton.JOINT_NAMES)
    heads = blender_to_bvh_axes(result["heads_0"])[:, [names.index(n) for n in skeleton.JOINT_NAMES]]
    error = np.linalg.norm(heads - joints[FRAMES], axis=-1)
    assert error.max() < 1e-3


def test_bad_inputs_raise(posed, tmp_path):
    _, root, rotations, offsets = posed
    with pytest.raises(KMMError, match="rotation_order"):
        write_bvh(tmp_path / "a.bvh", root, rotations, offsets, 20.0, rotation_order="ZZX")
    with pytest.raises(KMMError, match="local rotations"):
        write_bvh(tmp_path / "a.bvh", root, rotations[:, :21], offsets, 20.0)
    with pytest.raises(KMMError, match="root translation"):
        write_bvh(tmp_path / "a.bvh", root[:-1], rotations, offsets, 20.0)
    with pytest.raises(KMMError, match="fps"):
        write_bvh(tmp_path / "a.bvh", root, rotations, offsets, 0.0)
    bad = rotations.copy()
    bad[3, 4, 0] = np.nan
    with pytest.raises(KMMError, match="NaN"):
        write_bvh(tmp_path / "a.bvh", root, bad, offsets, 20.0)
    names = list(skeleton.JOINT_NAMES)
    names[3] = "spine 1"
    with pytest.raises(KMMError, match="whitespace"):
        write_bvh(tmp_path / "a.bvh", root, rotations, offsets, 20.0, joint_names=names)


def test_toe_end_sites_lie_level_at_the_toe_never_under_the_floor(posed, tmp_path):
    """A written foot's End Site (the toe tip an importer draws) lies level along the foot in every frame, at the toe
    joint's height: on a real take whose toes touch the floor no End Site goes under it (continuing the
    ankle -> toe bone, as the writer once did, put the tip 4-7 cm under the floor on most frames of a walk).  The
    head's and hands' End Sites go straight on along their bones, and no joint moves."""
    joints, root, rotations, offsets = posed
    motion = read_bvh(write_bvh(tmp_path / "motion.bvh", root, rotations, offsets, fps=20.0))
    positions = motion.world_positions()
    floor = joints[..., 1].min()
    for foot in ("left_foot", "right_foot"):
        tip = positions[:, motion.index(foot + END_SITE_SUFFIX)]
        toe = positions[:, motion.index(foot)]
        assert np.abs(tip[:, 1] - toe[:, 1]).max() < 1e-5
        assert tip[:, 1].min() >= floor - 0.01
        bone = toe - positions[:, motion.index(foot.replace("foot", "ankle"))]
        level = bone * np.array([1.0, 0.0, 1.0])
        assert np.all(np.sum((tip - toe) * level, axis=-1) > 0)  # along the foot, not back towards the heel
    continued = 0.5 * (joints[:, skeleton.JOINT_INDEX["head"]] - joints[:, skeleton.JOINT_INDEX["neck"]])
    head_tip = positions[:, motion.index("head" + END_SITE_SUFFIX)] - joints[:, skeleton.JOINT_INDEX["head"]]
    assert np.abs(head_tip - continued).max() < 1e-3
    assert np.linalg.norm(_canonical(motion, positions) - joints, axis=-1).max() < 1e-3
