# SPDX-License-Identifier: GPL-3.0-or-later
"""BVH reader: real files against Blender's own importer, hand-computed poses, malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from blender_scripts.bvh_import import blender_to_bvh_axes, run_blender_import

from kmm_core.bvh import parse_bvh, read_bvh
from kmm_core.bvh.reader import END_SITE_SUFFIX
from kmm_core.common.errors import InputFileError

FRAMES = [0, 17, 60]


@pytest.fixture(scope="module")
def real_clips(bandai_namco_dir, cmu_bvh_dir):
    return {
        "bandai_namco": bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-1" / "data"
        / "dataset-1_kick_normal_001.bvh",
        "cmu_daz": cmu_bvh_dir / "02" / "02_01.bvh",
        "cmu_31": cmu_bvh_dir / "16" / "16_01.bvh",
    }


@pytest.fixture(scope="module")
def blender_poses(real_clips, tmp_path_factory):
    """One Blender subprocess imports all three clips."""
    pytest.importorskip("bpy")
    jobs = [{"path": str(path), "frames": FRAMES} for path in real_clips.values()]
    result = run_blender_import(jobs, tmp_path_factory.mktemp("blender_reader"))
    return {key: (result[f"names_{k}"], result[f"heads_{k}"], result[f"tails_{k}"])
            for k, key in enumerate(real_clips)}


@pytest.mark.blender
@pytest.mark.parametrize("clip", ["bandai_namco", "cmu_daz", "cmu_31"])
def test_world_positions_match_blender_importer(clip, real_clips, blender_poses):
    motion = read_bvh(real_clips[clip])
    ours = motion.world_positions()[FRAMES]
    names, heads, tails = blender_poses[clip]
    assert sorted(names) == sorted(motion.names[i] for i in motion.joint_indices)
    index = [motion.index(name) for name in names]
    size = np.abs(ours).max()
    np.testing.assert_allclose(blender_to_bvh_axes(heads), ours[:, index], atol=1e-4 * size, rtol=0)
    # A bone whose only child is a non-degenerate End Site ends (tail) at that End Site.
    checked = 0
    for bone, name in enumerate(names):
        joint = motion.index(name)
        children = [c for c, p in enumerate(motion.parents) if p == joint]
        if len(children) == 1 and motion.is_end_site[children[0]] and np.linalg.norm(motion.offsets[children[0]]) > 0.01:
            np.testing.assert_allclose(blender_to_bvh_axes(tails[:, bone]), ours[:, children[0]], atol=1e-4 * size)
            checked += 1
    if clip != "bandai_namco":  # Bandai-Namco's End Sites all have zero offsets
        assert checked >= 4


def test_real_files_headers(real_clips):
    bandai = read_bvh(real_clips["bandai_namco"])
    assert len(bandai.joint_indices) == 22 and bandai.names[0] == "joint_Root" and bandai.fps == pytest.approx(30.0, rel=1e-5)
    assert all(len(bandai.channels[j]) == 6 for j in bandai.joint_indices)
    daz = read_bvh(real_clips["cmu_daz"])
    assert len(daz.joint_indices) == 43 and daz.fps == pytest.approx(120.0, rel=1e-5)
    assert "lFoot" + END_SITE_SUFFIX in daz.names
    cmu31 = read_bvh(real_clips["cmu_31"])
    assert len(cmu31.joint_indices) == 31 and cmu31.frames.shape == (cmu31.num_frames, 6 + 3 * 30)


TWO_JOINTS = """HIERARCHY
ROOT Hips
{
  OFFSET 1 2 3
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Upper Arm
  {
    OFFSET 0 10 0
    CHANNELS 2 Yposition Xrotation
    End Site
    {
      OFFSET 0 0 5
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.04
0 0 0 0 0 0 10 0
5 6 7 90 0 0 20 90
"""


def test_hand_computed_pose_with_channel_subset_and_scale():
    motion = parse_bvh(TWO_JOINTS, "two.bvh")
    assert motion.names == ("Hips", "Upper_Arm", "Upper_Arm" + END_SITE_SUFFIX)
    assert motion.parents == (-1, 0, 1) and motion.fps == pytest.approx(25.0)
    assert motion.channels[1] == ("Yposition", "Xrotation")
    positions = motion.world_positions(scale=0.5)
    # Frame 0: root at (0, 0, 0) (position channels replace the OFFSET), arm 10 up, End Site 5 forward.
    np.testing.assert_allclose(positions[0], 0.5 * np.array([[0, 0, 0], [0, 10, 0], [0, 10, 5]]), atol=1e-12)
    # Frame 1: root at (5, 6, 7) turned 90 degrees about Z; arm translation (0, 20, 0) becomes (-20, 0, 0);
    # the arm's 90 degrees about X turns the End Site offset (0, 0, 5) into (0, -5, 0), then the root's Z turn
    # makes it (5, 0, 0).
    expected = np.array([[5, 6, 7], [-15, 6, 7], [-10, 6, 7]])
    np.testing.assert_allclose(positions[1], 0.5 * expected, atol=1e-12)


def test_rotation_order_is_the_channel_order():
    """'Xrotation Yrotation' means R = Rx @ Ry: turning (0, 0, 1) by Ry(90) then Rx(90) gives (0, -1, 0)."""
    text = TWO_JOINTS.replace("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
                              "CHANNELS 5 Xposition Yposition Zposition Xrotation Yrotation")
    text = text.replace("CHANNELS 2 Yposition Xrotation", "CHANNELS 0").split("MOTION")[0]
    text += "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0 90 90\n"
    positions = parse_bvh(text).world_positions()
    # child offset (0, 10, 0): Ry(90) keeps it, Rx(90) makes it (0, 0, 10); End Site (0, 0, 5): Ry(90) -> (5, 0, 0),
    # Rx(90) keeps it.
    np.testing.assert_allclose(positions[0, 1], [0, 0, 10], atol=1e-12)
    np.testing.assert_allclose(positions[0, 2] - positions[0, 1], [5, 0, 0], atol=1e-12)


def test_several_roots():
    second = TWO_JOINTS.split("MOTION")[0].replace("ROOT Hips", "ROOT Other").replace("JOINT Upper Arm",
                                                                                     "JOINT Other_Arm")
    text = TWO_JOINTS.split("MOTION")[0] + second.replace("HIERARCHY\n", "")
    text += "MOTION\nFrames: 1\nFrame Time: 0.1\n" + " ".join(["1"] * 16) + "\n"
    motion = parse_bvh(text)
    assert motion.parents == (-1, 0, 1, -1, 3, 4)
    np.testing.assert_allclose(motion.world_positions()[0, 3], [1, 1, 1])


def _write(tmp_path, text):
    path = tmp_path / "broken.bvh"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (lambda t: t.replace("5 6 7 90 0 0 20 90\n", ""), 19, "truncated"),
        (lambda t: t.replace("5 6 7 90 0 0 20 90", "5 6 7 90 0 0 20"), 20, "7 values"),
        (lambda t: t.replace("5 6 7 90 0 0 20 90", "5 6 7 90 abc 0 20 90"), 20, "'abc'"),
        (lambda t: t.replace("OFFSET 0 10 0", "OFFSET 0 ten 0"), 8, "OFFSET y"),
        (lambda t: t.replace("    End Site\n", "    End Sight\n"), 10, "End Sight"),
        (lambda t: t.replace("CHANNELS 2 Yposition Xrotation", "CHANNELS 2 Yposition Wrotation"), 9, "Wrotation"),
        (lambda t: t.replace("  }\n}\nMOTION", "  }\nMOTION"), 15, "unexpected end"),
        (lambda t: t.replace("Frame Time: 0.04", "Frame Time: 0"), 18, "positive"),
        (lambda t: t.replace("Frames: 2", "Frames: x"), 17, "whole number"),
        (lambda t: t.split("MOTION")[0], 15, "no MOTION"),
        (lambda t: t.replace("ROOT Hips", "JOINT Hips"), 2, "ROOT"),
        (lambda t: t + "1 2 3 4 5 6 7 8\n", 21, "3 frame lines"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, edit, line, message):
    path = _write(tmp_path, edit(TWO_JOINTS))
    with pytest.raises(InputFileError, match=message) as caught:
        read_bvh(path)
    assert caught.value.path == str(path) and caught.value.line == line
    assert str(path) in str(caught.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot read"):
        read_bvh(tmp_path / "absent.bvh")
