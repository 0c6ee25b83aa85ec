# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared output writer: files get the umask's mode (npz like bvh), a failing writer leaves the old file and no
temporary file, folders are built whole, and unwritable outputs are named before any work."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from kmm_core.bvh.writer import write_bvh
from kmm_core.common.atomic_write import (
    OutputPathError,
    atomic_directory,
    atomic_open,
    check_output_file,
    current_umask,
    write_text_atomic,
)
from kmm_core.generation.timeline import Timeline
from kmm_core.motion.motion_result import MotionResult


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_outputs_follow_the_umask_npz_like_bvh(umask_027, humanml3d_fixture_dir, tmp_path):
    assert current_umask() == 0o027
    joints = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy")[:20]
    motion = MotionResult.from_joints(joints, 20.0, timeline=Timeline.single("a person walks", 1.0))
    npz = motion.save(tmp_path / "take.npz")
    bvh = write_bvh(tmp_path / "take.bvh", motion.root_translation, motion.local_rotations, motion.rest_offsets, 20.0)
    assert stat.S_IMODE(os.stat(npz).st_mode) == stat.S_IMODE(os.stat(bvh).st_mode) == 0o640
    with atomic_directory(tmp_path / "dataset") as building:
        (building / "a.txt").write_text("a")
    assert stat.S_IMODE(os.stat(tmp_path / "dataset").st_mode) == 0o750


def test_a_failing_writer_leaves_the_old_file_and_no_debris(tmp_path):
    target = write_text_atomic(tmp_path / "take.bvh", "good\n")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as stream:
        stream.write("half of a new fi")
        raise RuntimeError("the writer failed half way")
    assert target.read_text() == "good\n" and os.listdir(tmp_path) == ["take.bvh"]


def test_a_folder_is_renamed_into_place_only_when_complete(tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(RuntimeError), atomic_directory(out) as building:
        (building / "Mean.npy").write_bytes(b"x")
        raise RuntimeError("killed half way")
    assert os.listdir(tmp_path) == []  # no half dataset and no temporary folder
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "old.txt").write_text("old output")
    with atomic_directory(out, replace=True, owned_names=("old.txt",)) as building:
        (building / "Mean.npy").write_bytes(b"new")
    assert sorted(os.listdir(out)) == ["Mean.npy", "notes.txt"] and os.listdir(tmp_path) == ["dataset"]
    with pytest.raises(OutputPathError, match="not empty"), atomic_directory(out):
        pass


def test_unwritable_outputs_are_named_before_any_work(tmp_path):
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_file(tmp_path / "missing" / "take.bvh")
    assert check_output_file(tmp_path / "take.bvh") == tmp_path / "take.bvh"
    assert os.listdir(tmp_path) == []  # the probe file is gone again
