# SPDX-License-Identifier: GPL-3.0-or-later
"""Nothing non-finite is ever written, and degenerate targets are refused before any work: `kmm retarget` onto a
real BVH skeleton whose OFFSETs were all zeroed (a rig with no size), a target whose axes are not a rotation (an
object scaled to zero), and every motion writer (MotionResult .npz, BVH, retargeted BVH) handed NaN: each raises an
error naming the file and field, and leaves the file that was there."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kmm_core.bvh.reader import read_bvh
from kmm_core.bvh.writer import write_bvh
from kmm_core.cli import main as kmm_main
from kmm_core.common.finite_values import NonFiniteError, require_finite
from kmm_core.motion import skeleton
from kmm_core.motion.motion_result import MotionResult
from kmm_core.retarget.target_skeleton import TargetSkeletonError, bvh_target_skeleton, canonical_target_skeleton


@pytest.fixture()
def cc_bvh(character_creator_dir):
    return character_creator_dir / "002" / "002_01.bvh"


def _zero_offsets(text: str) -> str:
    return re.sub(r"(OFFSET)\s+[-\d.eE+]+\s+[-\d.eE+]+\s+[-\d.eE+]+", r"\1 0 0 0", text)


def test_kmm_retarget_onto_a_skeleton_with_all_offsets_zero_is_refused_and_writes_nothing(
        tmp_path, cc_bvh, generated_take, capsys):
    flat = tmp_path / "flat.bvh"
    flat.write_text(_zero_offsets(cc_bvh.read_text(encoding="utf-8")), encoding="utf-8")
    out = tmp_path / "out.bvh"
    out.write_text("the user's earlier file\n")
    assert kmm_main(["retarget", str(generated_take), "--to", str(flat), "-o", str(out)]) != 0
    message = capsys.readouterr().err
    assert "one point" in message and "flat.bvh" in message, message
    assert out.read_text() == "the user's earlier file\n"


def test_a_target_skeleton_needs_size_and_a_rotation_to_humanml3d(cc_bvh):
    motion = read_bvh(cc_bvh)
    assert bvh_target_skeleton(motion).rest_heads_metres().ptp(axis=0).max() > 1.0  # the real rig is fine
    motion.offsets[:] = 0.0
    with pytest.raises(TargetSkeletonError, match="within 0.00 cm of one point"):
        bvh_target_skeleton(motion)
    rig = canonical_target_skeleton()
    with pytest.raises(TargetSkeletonError, match="scaled to zero"):
        type(rig)(**{**rig.__dict__, "to_humanml3d": np.zeros((3, 3))})
    with pytest.raises(TargetSkeletonError, match="positive number"):
        type(rig)(**{**rig.__dict__, "scale_to_metres": float("nan")})


def test_require_finite_names_the_field_and_the_first_bad_index():
    require_finite("ok.bvh", values=np.ones((3, 2)))
    values = np.zeros((4, 3))
    values[2, 1] = np.inf
    with pytest.raises(NonFiniteError, match=r"out\.bvh: rows holds 1 NaN or infinite value\(s\) .*index \(2, 1\)"):
        require_finite("out.bvh", rows=values)


def test_motion_writers_refuse_nan_and_keep_the_old_file(tmp_path, generated_take):
    motion = MotionResult.load(generated_take)
    npz = tmp_path / "take.npz"
    motion.save(npz)
    before = npz.read_bytes()
    motion.root_translation[5, 1] = np.nan  # changed after the checks of construction
    with pytest.raises(NonFiniteError, match="root_translation"):
        motion.save(npz)
    assert npz.read_bytes() == before

    bvh = tmp_path / "take.bvh"
    bvh.write_text("old\n")
    rotations = np.array(motion.local_rotations, dtype=np.float64)
    rotations[3, 4, 0] = np.nan
    with pytest.raises(NonFiniteError, match="local_rotations"):
        write_bvh(bvh, np.zeros((len(rotations), 3)), rotations, skeleton.tpose_offsets(), motion.fps)
    assert bvh.read_text() == "old\n"
