# SPDX-License-Identifier: GPL-3.0-or-later
"""Acclaim ASF/AMC reader on the real HDM05 files: what the labels say the body does, Blender's BVH importer on
the converted motion, the same pose from rewritten files (bone order, radians, length unit, root order), and
errors on broken copies naming file and line."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from blender_scripts.bvh_import import blender_to_bvh_axes, run_blender_import

from kmm_core.acclaim import (
    acclaim_to_bvh_motion,
    applied_rotation,
    forward_kinematics,
    parse_amc,
    parse_asf,
    read_amc,
    read_asf,
)
from kmm_core.bvh.writer import write_bvh
from kmm_core.common.errors import InputFileError
from kmm_core.motion.rotations import matrix_to_quat

ACTORS = ("bd", "bk", "dg", "mm", "tr")
CLIPS_PER_CLASS = 2


@pytest.fixture(scope="module")
def labels(hdm05_dir) -> list[dict[str, str]]:
    with (hdm05_dir / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def skeletons(hdm05_dir):
    return {actor: read_asf(hdm05_dir / "asf" / f"HDM_{actor}.asf") for actor in ACTORS}


def _clips_of(labels, prefix: str, count: int = CLIPS_PER_CLASS) -> list[dict[str, str]]:
    rows = [row for row in labels if row["hdm05_class"].startswith(prefix)]
    # Different actors where possible.
    rows.sort(key=lambda row: (row["take"], row["actor"]))
    chosen, actors = [], set()
    for row in rows:
        if row["actor"] not in actors:
            chosen.append(row)
            actors.add(row["actor"])
        if len(chosen) == count:
            break
    return chosen


class Body:
    """Bone start/end positions of one real clip in metres (HDM05's global axes: Y up)."""

    def __init__(self, hdm05_dir: Path, skeletons, row: dict[str, str]):
        skeleton = skeletons[row["actor"]]
        self.motion = read_amc(hdm05_dir / row["file"], skeleton)
        self.pose = forward_kinematics(skeleton, self.motion)
        self.scale = skeleton.scale_to_metres
        self.names = skeleton.bone_names

    def start(self, bone: str) -> np.ndarray:
        return self.pose.starts[:, self.names.index(bone)] * self.scale

    def end(self, bone: str) -> np.ndarray:
        return self.pose.ends[:, self.names.index(bone)] * self.scale

    @property
    def root(self) -> np.ndarray:
        return self.pose.root_position * self.scale


def test_every_hdm05_skeleton_reads(skeletons):
    for actor, skeleton in skeletons.items():
        assert len(skeleton.bones) == 30, actor
        assert skeleton.length_unit == 0.45 and skeleton.angle_unit == "deg"
        assert skeleton.scale_to_metres == pytest.approx(0.056444, abs=1e-6)
        assert skeleton.root_order == ("tx", "ty", "tz", "rx", "ry", "rz")
        tibia = skeleton.bones[skeleton.bone_index("ltibia")]
        assert tibia.dof == ("rx",) and tibia.limits[0] == pytest.approx((np.radians(-10), np.radians(170)))
        assert skeleton.bones[skeleton.bone_index("lhipjoint")].dof == ()
        # Parents come before children.
        assert all(bone.parent < index for index, bone in enumerate(skeleton.bones))
        assert skeleton.bones[skeleton.bone_index("lradius")].parent == skeleton.bone_index("lhumerus")


def test_frame_counts_match_the_labels(hdm05_dir, skeletons, labels):
    for row in labels[::40]:
        motion = read_amc(hdm05_dir / row["file"], skeletons[row["actor"]])
        assert motion.num_frames == int(row["frames_120fps"]), row["file"]
        assert motion.angle_unit == "deg" and motion.first_frame_number == 1


def test_standing_body_has_human_proportions(hdm05_dir, skeletons, labels):
    body = Body(hdm05_dir, skeletons, _clips_of(labels, "squat")[0])
    floor = min(body.start("ltoes")[0, 1], body.start("rtoes")[0, 1])
    assert -0.05 < floor < 0.1
    assert 1.4 < body.start("head")[0, 1] - floor < 1.8      # eyes-level head start of an adult
    assert 0.8 < body.root[0, 1] - floor < 1.1
    # Left bones are on the left: seen from behind, the body faces away; left hip to the left of the right hip
    # means (right hip -> left hip) x (up) points backwards, i.e. away from where the toes point.
    across = body.start("lfemur")[0] - body.start("rfemur")[0]
    forward = body.start("ltoes")[0] - body.start("lfoot")[0]
    assert np.dot(np.cross(np.array([0.0, 1.0, 0.0]), forward), across) > 0


@pytest.mark.parametrize("prefix", ["squat", "kickLFront", "elbowToKnee", "lieDownFloor", "hopBothLegs",
                                    "grabHighR", "depositFloorR"])
def test_what_the_label_says_happens(prefix, hdm05_dir, skeletons, labels):
    """Geometry a wrong rotation order, axis convention or side swap would break, on real clips of each class."""
    for row in _clips_of(labels, prefix):
        body = Body(hdm05_dir, skeletons, row)
        what = row["file"]
        if prefix == "squat":  # the pelvis drops by a third of a metre or more
            assert body.root[0, 1] - body.root[:, 1].min() > 0.3, what
        elif prefix == "kickLFront":  # the left ankle rises above the right knee; the right one does not
            assert (body.start("lfoot")[:, 1] - body.start("rtibia")[:, 1]).max() > 0.2, what
            assert (body.start("rfoot")[:, 1] - body.start("ltibia")[:, 1]).max() < 0.1, what
        elif prefix == "elbowToKnee":  # the left elbow meets the right knee
            assert np.linalg.norm(body.start("lradius") - body.start("rtibia"), axis=1).min() < 0.3, what
            assert np.linalg.norm(body.start("rradius") - body.start("ltibia"), axis=1).min() > 0.6, what
        elif prefix == "lieDownFloor":  # ends with the torso horizontal, low
            torso = body.start("lowerneck")[-1] - body.root[-1]
            assert abs(torso[1]) / np.linalg.norm(torso) < 0.35, what
            assert body.root[-1, 1] < 0.35, what
        elif prefix == "hopBothLegs":  # both feet leave the floor
            lowest = np.minimum(body.start("ltoes")[:, 1], body.start("rtoes")[:, 1])
            assert lowest.max() - lowest.min() > 0.08, what
        elif prefix == "grabHighR":  # the right hand goes far higher than the left
            assert body.end("rwrist")[:, 1].max() > body.end("lwrist")[:, 1].max() + 0.3, what
        elif prefix == "depositFloorR":  # the right hand goes lower than the left
            assert body.end("rwrist")[:, 1].min() < body.end("lwrist")[:, 1].min() - 0.02, what


def test_bvh_motion_has_the_same_pose(hdm05_dir, skeletons, labels):
    row = _clips_of(labels, "kickLFront")[0]
    skeleton = skeletons[row["actor"]]
    body = Body(hdm05_dir, skeletons, row)
    motion = acclaim_to_bvh_motion(skeleton, body.motion)
    assert motion.fps == 120.0 and motion.num_frames == body.motion.num_frames
    positions = motion.world_positions()
    for name in skeleton.bone_names:
        np.testing.assert_allclose(positions[:, motion.index(name)], body.start(name), atol=1e-9)
    np.testing.assert_allclose(positions[:, motion.index("lthumb/End Site")], body.end("lthumb"), atol=1e-9)


@pytest.mark.blender
def test_blender_bvh_importer_agrees(hdm05_dir, skeletons, labels, tmp_path):
    """The converted motion written as BVH and read back by Blender's importer puts every bone where our
    forward kinematics does (an independent reading of the rotations and offsets)."""
    pytest.importorskip("bpy")
    frames = [0, 25, 61]
    jobs, bodies = [], []
    for prefix in ("kickLFront", "lieDownFloor"):
        row = _clips_of(labels, prefix, 1)[0]
        skeleton = skeletons[row["actor"]]
        body = Body(hdm05_dir, skeletons, row)
        motion = acclaim_to_bvh_motion(skeleton, body.motion)
        names = [motion.names[i] for i in motion.joint_indices]
        parents = [motion.parents[i] for i in motion.joint_indices]
        pose = body.pose
        local = np.concatenate([pose.root_rotation[:, None], pose.local_rotations], axis=1)
        path = write_bvh(tmp_path / f"{prefix}.bvh", body.root, matrix_to_quat(local),
                         motion.offsets[list(motion.joint_indices)], 120.0, names, parents)
        jobs.append({"path": str(path), "frames": frames})
        bodies.append((names, body))
    result = run_blender_import(jobs, tmp_path)
    for k, (names, body) in enumerate(bodies):
        blender_names = list(result[f"names_{k}"])
        heads = blender_to_bvh_axes(result[f"heads_{k}"])
        for bone in body.names:
            np.testing.assert_allclose(heads[:, blender_names.index(bone)], body.start(bone)[frames], atol=2e-5)
        assert sorted(blender_names) == sorted(names)


# ---------------------------------------------------------------------------------------------------------------
# The same motion written differently gives the same pose
# ---------------------------------------------------------------------------------------------------------------

def _real_pair(hdm05_dir, labels) -> tuple[str, str, dict[str, str]]:
    row = _clips_of(labels, "elbowToKnee", 1)[0]
    asf = (hdm05_dir / "asf" / f"HDM_{row['actor']}.asf").read_text(encoding="utf-8", errors="replace")
    amc = (hdm05_dir / row["file"]).read_text(encoding="utf-8", errors="replace")
    return asf, amc, row


def _positions(asf_text: str, amc_text: str) -> np.ndarray:
    skeleton = parse_asf(asf_text, "x.asf")
    motion = acclaim_to_bvh_motion(skeleton, parse_amc(amc_text, skeleton, "x.amc"))
    return motion.world_positions()[:, [motion.index(n) for n in sorted(skeleton.bone_names)]]


def _bone_blocks(asf_text: str) -> tuple[str, list[str], str]:
    head, rest = asf_text.split(":bonedata", 1)
    body, tail = rest.split(":hierarchy", 1)
    blocks = re.findall(r"\s*begin.*?\n\s*end[^\n]*", body, flags=re.S)
    return head, blocks, tail


def test_bone_order_and_amc_line_order_do_not_matter(hdm05_dir, labels):
    asf, amc, _ = _real_pair(hdm05_dir, labels)
    head, blocks, tail = _bone_blocks(asf)
    shuffled_asf = head + ":bonedata\n" + "\n".join(reversed(blocks)) + "\n:hierarchy" + tail
    # Reverse the bone lines inside every frame.
    out, frame = [], []
    for line in amc.splitlines():
        if line.strip().isdigit():
            out += reversed(frame)
            frame = []
            out.append(line)
        elif frame or (out and out[-1].strip().isdigit()) or line.split()[0] in ("root",):
            frame.append(line)
        else:
            out.append(line)
    out += reversed(frame)
    np.testing.assert_allclose(_positions(shuffled_asf, "\n".join(out)), _positions(asf, amc), atol=1e-9)


def test_radians_and_length_unit_and_root_order(hdm05_dir, labels):
    asf, amc, _ = _real_pair(hdm05_dir, labels)
    reference = _positions(asf, amc)

    def numbers(line: str, factor: float, count: int, skip: int = 1) -> str:
        words = line.split()
        for i in range(skip, skip + count):
            words[i] = repr(float(words[i]) * factor)
        return "    " + " ".join(words)

    # ASF: angles in radians, lengths in units of 'length 1.0' (inches): every length * (1 / 0.45).
    scale, rad = 1.0 / 0.45, np.pi / 180.0
    lines = []
    for line in asf.splitlines():
        key = line.split()[0] if line.split() else ""
        if key == "length" and "0.45" in line:
            line = "  length 1.0"
        elif key == "angle":
            line = "  angle rad"
        elif key == "length":
            line = numbers(line, scale, 1)
        elif key in ("axis",) and len(line.split()) >= 4:
            line = numbers(line, rad, 3)
        elif key == "limits" or key.startswith("("):
            line = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", lambda m: repr(float(m.group()) * rad), line)
        elif key == "order":
            line = "   order RX RY RZ TX TY TZ"
        lines.append(line)
    radians_asf = "\n".join(lines)
    # AMC: :RADIANS, root translation * scale and moved behind the rotations, every angle in radians.
    out = []
    for line in amc.splitlines():
        words = line.split()
        if line.strip() == ":DEGREES":
            out.append(":RADIANS")
        elif words and words[0] == "root":
            t = [float(w) * scale for w in words[1:4]]
            r = [float(w) * rad for w in words[4:7]]
            out.append("root " + " ".join(map(repr, r + t)))
        elif words and not words[0].isdigit() and not line.startswith((":", "#")):
            out.append(numbers(line, rad, len(words) - 1).strip())
        else:
            out.append(line)
    np.testing.assert_allclose(_positions(radians_asf, "\n".join(out)), reference, atol=1e-7)


def test_applied_rotation_order():
    # Rotating +X about x does nothing, then about z by 90 degrees gives +Y; the other order gives +Y too,
    # but +Y goes to -X first about z then to (-X) about x: the order is visible on +Y.
    y = np.array([0.0, 1.0, 0.0])
    first_x_then_z = applied_rotation(("rx", "rz"), np.radians([90.0, 90.0])) @ y
    np.testing.assert_allclose(first_x_then_z, [0.0, 0.0, 1.0], atol=1e-12)  # y -x-> z -z-> z
    first_z_then_x = applied_rotation(("rz", "rx"), np.radians([90.0, 90.0])) @ y
    np.testing.assert_allclose(first_z_then_x, [-1.0, 0.0, 0.0], atol=1e-12)  # y -z-> -x -x-> -x


# ---------------------------------------------------------------------------------------------------------------
# Broken copies
# ---------------------------------------------------------------------------------------------------------------

def _asf_line(asf: str, pattern: str) -> int:
    for number, line in enumerate(asf.splitlines(), start=1):
        if re.search(pattern, line):
            return number
    raise AssertionError(pattern)


@pytest.mark.parametrize("edit, pattern, message", [
    (lambda s: s.replace("dof rx ry rz", "dof rx ry rq", 1), r"dof rx ry rq", "unknown dof 'rq'"),
    (lambda s: s.replace("name ltibia", "name ltibia\n     dof rx ry", 1), r"^\s+dof rx\s*$", "bone has 'dof' twice"),
    (lambda s: s.replace("length 6.9833", "length six", 1), r"length six", "must be a number, found 'six'"),
    (lambda s: s.replace("lfoot ltoes", "lfoot ltoes lnose", 1), r"lnose", "unknown bone 'lnose'"),
    (lambda s: s.replace("    lfemur ltibia\n", "    lfemur ltibia\n    rfemur ltibia\n", 1), r"rfemur ltibia",
     "bone 'ltibia' has two parents"),
    (lambda s: s.replace("   axis XYZ", "   axis XYQ", 1), r"axis XYQ", "permutation of XYZ"),
    (lambda s: s.replace("direction 0.34202 -0.939693 0  ", "direction 0 0 0", 1), r"direction 0 0 0$",
     "zero vector"),
])
def test_broken_asf_names_file_and_line(edit, pattern, message, hdm05_dir, tmp_path):
    text = edit((hdm05_dir / "asf" / "HDM_bd.asf").read_text(encoding="utf-8", errors="replace"))
    path = tmp_path / "broken.asf"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputFileError, match=re.escape(message)) as caught:
        read_asf(path)
    assert caught.value.path == str(path)
    assert caught.value.line == _asf_line(text, pattern)


def test_asf_without_bonedata_and_unreachable_bone(hdm05_dir, tmp_path):
    asf = (hdm05_dir / "asf" / "HDM_bd.asf").read_text(encoding="utf-8", errors="replace")
    path = tmp_path / "no_bones.asf"
    path.write_text(asf.split(":bonedata")[0], encoding="utf-8")
    with pytest.raises(InputFileError, match="':bonedata' is missing") as caught:
        read_asf(path)
    assert str(path) in str(caught.value)
    path.write_text(asf.replace("    rfoot rtoes\n", ""), encoding="utf-8")
    with pytest.raises(InputFileError, match="bone 'rtoes' is not in the hierarchy") as caught:
        read_asf(path)
    assert caught.value.line == _asf_line(asf, r"name rtoes") - 2  # its 'begin'


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines.__setitem__(13, "rradius 36.9x"), "frame 1: bone 'rradius': '36.9x' is not a number"),
    (lambda lines: lines.__setitem__(13, "rradius 1 2"), "frame 1: bone 'rradius' has 2 values, its dof need 1"),
    (lambda lines: lines.__setitem__(13, "rnose 1"), "frame 1: bone 'rnose' is not a bone of"),
    (lambda lines: lines.__setitem__(13, "lhipjoint 1"), "bone 'lhipjoint' has no dof in the skeleton"),
    (lambda lines: lines.__setitem__(13, "head 1 2 3"), "frame 1: bone 'head' appears twice"),
    (lambda lines: lines.__setitem__(33, "3"), "frame number 3 does not follow frame 1"),
])
def test_broken_amc_names_file_line_frame_and_bone(edit, message, hdm05_dir, skeletons, labels, tmp_path):
    row = _clips_of(labels, "squat", 1)[0]
    lines = (hdm05_dir / row["file"]).read_text(encoding="utf-8", errors="replace").splitlines()
    assert lines[3] == "1" and lines[33] == "2"   # the layout the edits rely on
    edit(lines)
    path = tmp_path / "broken.amc"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=re.escape(message)) as caught:
        read_amc(path, skeletons[row["actor"]])
    assert caught.value.path == str(path)
    assert caught.value.line in (14, 34)


def test_amc_with_a_bone_missing_names_its_frame(hdm05_dir, skeletons, labels, tmp_path):
    row = _clips_of(labels, "squat", 1)[0]
    lines = (hdm05_dir / row["file"]).read_text(encoding="utf-8", errors="replace").splitlines()
    del lines[38]   # a bone line of frame 2 (frame 2 starts at line 34)
    path = tmp_path / "missing.amc"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"frame 2: bone '\w+' is missing") as caught:
        read_amc(path, skeletons[row["actor"]])
    assert caught.value.line == 34
    path.write_text(":DEGREES\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="no frames"):
        read_amc(path, skeletons[row["actor"]])


@pytest.mark.parametrize("edit", ["huge bone lengths", "huge root values"])
def test_huge_lengths_or_root_values_are_named_as_huge(edit, hdm05_dir, labels):
    """An ASF whose bone lengths are 1e30, or an AMC whose root moves 1e30 units, got hints about "zero length" or
    "OFFSETs all zero" further down; it is refused as huge (or in other units), naming the file and frame."""
    import re

    from kmm_core.bvh import builtin_joint_map
    from kmm_core.bvh.retarget import bvh_to_canonical_joints

    asf, amc, _ = _real_pair(hdm05_dir, labels)
    if edit == "huge bone lengths":  # the bones' lengths, not the ':units length'
        head, bones = asf.split(":bonedata", 1)
        asf = head + ":bonedata" + re.sub(r"(?m)^(\s*length\s+)\S+", r"\g<1>1e30", bones)
    else:
        lines = amc.splitlines()
        root = next(i for i, line in enumerate(lines) if line.split()[:1] == ["root"])
        values = lines[root].split()
        lines[root] = " ".join(["root", "1e30", *values[2:]])
        amc = "\n".join(lines)
    skeleton = parse_asf(asf, "x.asf")
    motion = acclaim_to_bvh_motion(skeleton, parse_amc(amc, skeleton, "x.amc"))
    with pytest.raises(InputFileError, match=r"in frame \d+ .*((is not a finite size|span .* m) \(at most 100 m\): "
                                             r"are its bone lengths, OFFSETs or root positions huge|lies .* m from the "
                                             r"origin \(at most 100000 m\): are its root positions huge)") as caught:
        bvh_to_canonical_joints(motion, builtin_joint_map("acclaim_31"))
    assert "all zero" not in str(caught.value) and "zero length" not in str(caught.value)
