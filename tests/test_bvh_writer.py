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
