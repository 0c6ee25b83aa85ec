# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion files and the `kmm` command line under hostile input: every case is a real file written here and read by
the real reader or command, and ends in one line naming the file and what is wrong (or in correct output), before
any heavy work.  The limits are `kmm_core/common/limits.py`'s; their speed is measured in
benchmarks/bench_input_scaling.py, not here."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bvh import bvh_to_canonical_joints, load_joint_map, read_bvh
from kmm_core.bvh.writer import write_bvh
from kmm_core.common.atomic_write import OutputPathError, check_output_folder
from kmm_core.common.errors import InputFileError
from kmm_core.common.limits import (
    MAX_BVH_DEPTH,
    MAX_BVH_JOINTS,
    MAX_MOTION_RESULT_BYTES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
)
from kmm_core.generation.timeline import Timeline, TimelineError
from kmm_core.motion.kinematics import forward_kinematics
from kmm_core.motion.motion_result import MotionResult, MotionResultError
from kmm_core.motion.skeleton import JOINT_NAMES, NUM_JOINTS, tpose_offsets
from kmm_core.worker.protocol import ProtocolError, decode
from tests.motion_test_data import small_turns

REPO_ROOT = Path(__file__).resolve().parents[1]


def _kmm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmm_core.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


# ---- real files -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 22-joint BVH written by our writer (40 frames at 30 fps), the same motion as a MotionResult with segments
    and a timeline, and a joint map reading the BVH's joints as the canonical ones."""
    folder = tmp_path_factory.mktemp("motion")
    translation, rotations = small_turns(40)
    write_bvh(folder / "rig.bvh", translation, rotations, tpose_offsets(), fps=30.0)
    joints = forward_kinematics(translation, rotations, tpose_offsets())
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person walks", "frames": 20},
                                                          {"prompt": "a person waves", "frames": 20}]})
    MotionResult.from_joints(joints, 20.0, timeline=timeline).save(folder / "take.npz")
    (folder / "map.json").write_text(json.dumps({"up": "+Y", "forward": "+Z", "scale_to_metres": 1.0,
                                                 "joints": {name: name for name in JOINT_NAMES}}))
    return {"bvh": folder / "rig.bvh", "npz": folder / "take.npz", "map": folder / "map.json"}


def _edited_bvh(files, tmp_path, edit, name="edited.bvh") -> Path:
    path = tmp_path / name
    path.write_text(edit(files["bvh"].read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _refused(path: Path, *words: str, line: int | None = None) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        read_bvh(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and all(word in message for word in words), message
    if line is not None:
        assert caught.value.line == line, message
    return caught.value


def _line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ---- BVH hierarchies: size, depth, names ---------------------------------------------------------------------------
def _fan(joints: int, frames: int = 1) -> str:
    """A root with `joints - 1` children, each with an End Site."""
    lines = ["HIERARCHY", "ROOT j0", "{", "OFFSET 0 0 0", "CHANNELS 6 Xposition Yposition Zposition Zrotation "
             "Xrotation Yrotation"]
    for i in range(1, joints):
        lines += [f"JOINT j{i}", "{", f"OFFSET {i % 7} 1 0", "CHANNELS 3 Zrotation Xrotation Yrotation", "End Site",
                  "{", "OFFSET 0 1 0", "}", "}"]
    lines += ["}", "MOTION", f"Frames: {frames}", "Frame Time: 0.05"]
    lines += [" ".join(["0"] * (6 + 3 * (joints - 1)))] * frames
    return "\n".join(lines) + "\n"


def _chain(depth: int) -> str:
    """`depth` joints, each the child of the one before, 10 units apart."""
    lines = ["HIERARCHY", "ROOT j0", "{", "OFFSET 0 0 0", "CHANNELS 6 Xposition Yposition Zposition Zrotation "
             "Xrotation Yrotation"]
    for i in range(1, depth):
        lines += [f"JOINT j{i}", "{", "OFFSET 0 10 0", "CHANNELS 3 Zrotation Xrotation Yrotation"]
    lines += ["End Site", "{", "OFFSET 0 10 0", "}"] + ["}"] * depth
    lines += ["MOTION", "Frames: 1", "Frame Time: 0.05", " ".join(["1"] * (6 + 3 * (depth - 1)))]
    return "\n".join(lines) + "\n"


def test_the_joint_limit_is_reached_and_the_next_joint_refused_by_line(tmp_path):
    at_limit = tmp_path / "at_limit.bvh"
    at_limit.write_text(_fan(MAX_BVH_JOINTS))
    assert len(read_bvh(at_limit).joint_indices) == MAX_BVH_JOINTS
    beyond = tmp_path / "beyond.bvh"
    beyond.write_text(_fan(MAX_BVH_JOINTS + 1))
    _refused(beyond, f"more than {MAX_BVH_JOINTS:,} joints", line=_line_of(beyond, f"JOINT j{MAX_BVH_JOINTS}"))


def test_a_chain_as_deep_as_allowed_reads_and_one_deeper_is_refused(tmp_path):
    deepest = tmp_path / "deepest.bvh"
    deepest.write_text(_chain(MAX_BVH_DEPTH))  # the recursive reader ended in RecursionError near 1,000
    motion = read_bvh(deepest)
    assert len(motion.joint_indices) == MAX_BVH_DEPTH
    positions = motion.world_positions()
    assert np.isfinite(positions).all() and positions.shape == (1, MAX_BVH_DEPTH + 1, 3)
    for depth in (MAX_BVH_DEPTH + 1, 5_000):
        deeper = tmp_path / f"deeper_{depth}.bvh"
        deeper.write_text(_chain(depth))
        _refused(deeper, f"nest more than {MAX_BVH_DEPTH:,} deep", line=_line_of(deeper, f"JOINT j{MAX_BVH_DEPTH}"))


def test_a_duplicate_joint_name_among_thousands_is_found(tmp_path):
    path = tmp_path / "duplicate.bvh"
    path.write_text(_fan(3_000).replace("JOINT j2999\n", "JOINT j17\n"))
    second = [number for number, line in enumerate(path.read_text().splitlines(), 1) if line == "JOINT j17"][1]
    _refused(path, "duplicate joint name 'j17'", line=second)


def test_a_non_utf8_byte_in_a_joint_name_names_the_file_line_and_byte(files, tmp_path):
    text = files["bvh"].read_text(encoding="utf-8")
    path = tmp_path / "latin1.bvh"
    path.write_bytes(text.replace("JOINT left_knee", "JOINT left_kn\xe9e").encode("latin-1"))
    line = _line_of(files["bvh"], "JOINT left_knee")
    column = text.splitlines()[line - 1].index("JOINT left_knee") + len("JOINT left_kn") + 1
    _refused(path, f"byte 0xE9 (column {column}) is not UTF-8", line=line)


# ---- BVH numbers --------------------------------------------------------------------------------------------------
def test_huge_channel_values_name_the_joint_channel_and_line(files, tmp_path):
    def edit(text):
        lines = text.splitlines()
        first = lines.index("MOTION") + 3
        values = lines[first + 5].split()
        values[7] = "1e308"  # column 7: the second joint's second channel
        lines[first + 5] = " ".join(values)
        return "\n".join(lines) + "\n"

    path = _edited_bvh(files, tmp_path, edit)
    motion = read_bvh(files["bvh"])
    joint, channel = motion.names[1], motion.channels[1][1]
    _refused(path, "value 1e308", f"{channel} of joint {joint!r}", line=_line_of(files["bvh"], "MOTION") + 8)


@pytest.mark.parametrize("frame_time", ["1e-300", "1e300", "0.0001", "5"])
def test_a_frame_time_outside_the_range_names_the_file_and_line(files, tmp_path, frame_time):
    path = _edited_bvh(files, tmp_path, lambda text: text.replace("Frame Time: 0.03333333", f"Frame Time: {frame_time}"))
    _refused(path, f"the frame time {frame_time} s is outside 0.0005 to 1 s", line=_line_of(path, "Frame Time"))


@pytest.mark.parametrize("value", ["nan", "1e308", "-inf"])
def test_an_offset_that_is_not_a_sane_number_names_the_joint_and_line(files, tmp_path, value):
    def edit(text):
        lines = text.splitlines()
        at = lines.index("  JOINT left_hip") + 2
        lines[at] = f"    OFFSET 0.1 {value} 0"
        return "\n".join(lines) + "\n"

    path = _edited_bvh(files, tmp_path, edit)
    _refused(path, f"OFFSET y of joint 'left_hip' is {value}", line=_line_of(path, f"OFFSET 0.1 {value} 0"))


def test_a_clip_of_no_frames_is_a_skeleton_but_no_motion(files, tmp_path):
    def edit(text):
        return text.split("MOTION")[0] + "MOTION\nFrames: 0\nFrame Time: 0.03333333\n"

    path = _edited_bvh(files, tmp_path, edit)
    motion = read_bvh(path)  # a target rig may come without frames
    assert motion.num_frames == 0 and len(motion.names) == len(read_bvh(files["bvh"]).names)
    with pytest.raises(InputFileError, match=r"no frames \('Frames: 0'\)") as caught:
        bvh_to_canonical_joints(motion, load_joint_map(files["map"]))
    assert caught.value.path == str(path)


# ---- kmm retarget -------------------------------------------------------------------------------------------------
def _zero_offsets(text: str) -> str:
    return "\n".join(line.split("OFFSET")[0] + "OFFSET 0 0 0" if "OFFSET" in line else line
                     for line in text.splitlines()) + "\n"


def test_retargeting_from_a_source_whose_offsets_are_all_zero_is_refused_by_name(files, tmp_path):
    source = _edited_bvh(files, tmp_path, _zero_offsets, "rotations_only.bvh")
    out = tmp_path / "out.bvh"
    result = _kmm("retarget", str(source), "--source-map", str(files["map"]), "--to", str(files["bvh"]), "-o",
                  str(out))  # once: exit 0 and the pelvis 7.5e8 m away
    line = _one_line(result)
    assert result.returncode == 2 and str(source) in line and "are its OFFSETs all zero?" in line, line
    assert not out.exists()
    good = _kmm("retarget", str(files["bvh"]), "--source-map", str(files["map"]), "--to", str(files["bvh"]), "-o",
                str(out))
    assert good.returncode == 0, good.stderr[-2000:]
    written = read_bvh(out)
    assert np.abs(written.world_positions()).max() < 5.0  # metres: the person, not 7.5e8 m


@pytest.mark.parametrize("value", ["nan", "1e308"])
def test_a_target_offset_that_is_not_a_sane_number_is_refused_by_joint(files, tmp_path, value):
    target = _edited_bvh(files, tmp_path, lambda text: text.replace("OFFSET 0.054300", f"OFFSET {value}", 1))
    result = _kmm("retarget", str(files["npz"]), "--to", str(target), "-o", str(tmp_path / "out.bvh"))
    line = _one_line(result)
    assert result.returncode == 2 and f"{target}, line" in line and "OFFSET x of joint 'left_hip'" in line, line


@pytest.fixture()
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        folder.chmod(0o555)  # not root: the permission bits stop us
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_save_map_into_a_read_only_folder_fails_before_the_work(files, tmp_path, read_only_folder):
    out = tmp_path / "out.bvh"
    result = _kmm("retarget", str(files["npz"]), "--to", str(files["bvh"]), "-o", str(out), "--save-map",
                  str(read_only_folder / "map.json"))
    line = _one_line(result)
    assert result.returncode == 4 and f"{read_only_folder}: cannot write" in line, line
    assert not out.exists()  # nothing was retargeted first


# ---- MotionResult files (kmm edit, Regenerate) ---------------------------------------------------------------------
def _result_with(files, tmp_path, name, **changes) -> Path:
    arrays = MotionResult.load(files["npz"]).to_arrays()
    arrays.update(changes)
    path = tmp_path / name
    np.savez_compressed(path, **arrays)
    return path


def _zlib_bomb(files, path: Path, inflated: int) -> None:
    """A result whose joints entry declares `inflated` bytes of zeros (a few hundred kB compressed)."""
    arrays = MotionResult.load(files["npz"]).to_arrays()
    frames = inflated // (NUM_JOINTS * 3 * 4)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            if key == "joints":
                with archive.open("joints.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array_header_1_0(entry, {"descr": "<f4", "fortran_order": False,
                                                                 "shape": (frames, NUM_JOINTS, 3)})
                    for _ in range(frames * NUM_JOINTS * 3 * 4 // 2**20):
                        entry.write(bytes(2**20))
                continue
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())


def test_a_zlib_bomb_is_refused_before_it_is_inflated(files, tmp_path):
    bomb = tmp_path / "bomb.npz"
    _zlib_bomb(files, bomb, MAX_MOTION_RESULT_BYTES + 2**20)
    assert bomb.stat().st_size < 2**20
    with pytest.raises(MotionResultError, match=f"more than the {MAX_MOTION_RESULT_BYTES // 2**20} MiB") as caught:
        MotionResult.load(bomb)
    assert caught.value.path == str(bomb)


@pytest.mark.parametrize("case, words", [
    ("prompt", f"segment_prompts: holds a prompt of 10000000 characters; the limit is {MAX_PROMPT_CHARS}"),
    ("fps-huge", "fps: must be between 0.1 and 240 frames per second, got 1e+308"),
    ("fps-tiny", "fps: must be between 0.1 and 240 frames per second, got 1e-300"),
    ("zero-rest", "rest_offsets: the rest pose's 22 joints lie within 0.00 cm of one point"),
    ("control", "the prompt holds the control character U+001B at character 4"),
])
def test_kmm_edit_refuses_a_bad_result_in_one_line_naming_the_file(files, tmp_path, case, words):
    changes = {"prompt": {"segment_prompts": np.array(["walk " * 2_000_000, "wave"])},
               "fps-huge": {"fps": np.array(1e308)}, "fps-tiny": {"fps": np.array(1e-300)},
               "zero-rest": {"rest_offsets": np.zeros((NUM_JOINTS, 3), np.float32)},
               "control": {"segment_prompts": np.array(["walk\x1b[31m red\x07", "wave"])}}[case]
    source = _result_with(files, tmp_path, f"{case}.npz", **changes)
    result = _kmm("edit", str(source), "--segment", "0", "-o", str(tmp_path / "edited.npz"), "--checkpoint",
                  str(tmp_path / "no-model"))  # refused before the (missing) model: not exit 3
    line = _one_line(result)
    assert result.returncode == 2 and line.startswith(f"kmm: error: {source}: ") and words in line, line
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


def test_a_huge_prompt_in_the_stored_timeline_is_refused_before_the_model(files, tmp_path):
    timeline = json.loads(str(MotionResult.load(files["npz"]).timeline_json))
    timeline["segments"][1]["prompt"] = "wave " * 2_000_000
    source = _result_with(files, tmp_path, "huge_timeline.npz", timeline_json=np.array(json.dumps(timeline)))
    result = _kmm("edit", str(source), "--segment", "0", "-o", str(tmp_path / "edited.npz"), "--checkpoint",
                  str(tmp_path / "no-model"))
    line = _one_line(result)
    assert result.returncode == 2 and f"{source}: timeline_json: segments[1].prompt" in line, line
    assert f"the limit is {MAX_PROMPT_CHARS}" in line


def test_regenerate_inflates_a_takes_stored_motion_with_a_limit(files, tmp_path):
    """Real bpy: a take whose stored motion is a zlib bomb is refused; the real stored motion is restored."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    script = f"""
import hashlib, zlib, bpy
from pathlib import Path
from kmm_motion.kmm_blender.takes import provenance
from kmm_motion.kmm_core.common.errors import KMMError
data = Path({str(files["npz"])!r}).read_bytes()
bomb = zlib.compress(bytes({MAX_MOTION_RESULT_BYTES} + 1), 9)
action = bpy.data.actions.new("take")
for key, value in ((provenance.SOURCE, "/gone/take.npz"), (provenance.START_FRAME, 1.0),
                   (provenance.FPS_MODE, "resample"), (provenance.ROOT_MOTION, "keep"), (provenance.SCENE_FPS, 20.0)):
    action[key] = value
read = provenance.read(action)
action[provenance.MOTION] = zlib.compress(data)
action[provenance.MOTION_SHA256] = hashlib.sha256(data).hexdigest()
restored = provenance.motion_file(action, read, Path({str(tmp_path)!r}) / "restored")
assert Path(restored).read_bytes() == data
del action[provenance.MOTION]
action[provenance.MOTION] = bomb
action[provenance.MOTION_SHA256] = hashlib.sha256(bytes({MAX_MOTION_RESULT_BYTES} + 1)).hexdigest()
try:
    provenance.motion_file(action, read, Path({str(tmp_path)!r}) / "restored")
except KMMError as error:
    print("REFUSED", error)
print("BOMB", len(bomb))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(package)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"REFUSED take 'take': its stored motion inflates to more than the " \
           f"{MAX_MOTION_RESULT_BYTES // 2**20} MiB" in result.stdout, result.stdout


# ---- command line and request values ------------------------------------------------------------------------------
def test_a_seed_of_5001_digits_gets_the_allowed_range(tmp_path):
    result = _kmm("generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--seed", "9" * 5001)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"argument --seed: must be between 0 and {MAX_SEED}, got a 5001-digit number")
    assert "set_int_max_str_digits" not in result.stderr
    with pytest.raises(ProtocolError, match=f"generate.seed: must be between 0 and {MAX_SEED}, got a 5001-digit"):
        decode('{"type": "generate", "id": "a", "timeline": {"segments": [{"prompt": "walk", "seconds": 2}]}, '
               '"output_dir": "/tmp", "seed": %s}' % ("9" * 5001))


def test_a_request_value_is_shown_as_given():
    with pytest.raises(ProtocolError, match=r"guidance: must be a finite number between 0 and 100, got 100\.0001$"):
        decode('{"type": "generate", "id": "a", "timeline": {"segments": [{"prompt": "walk", "seconds": 2}]}, '
               '"output_dir": "/tmp", "guidance": 100.0001}')


def test_an_output_folder_that_is_a_file_is_called_a_file(tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("")
    with pytest.raises(OutputPathError, match="results: is a file, not a folder"):
        check_output_folder(a_file)


def test_an_mp4_preview_without_ffmpeg_fails_before_the_model(tmp_path):
    bin_folder = tmp_path / "bin"  # a PATH holding only Python: no ffmpeg
    bin_folder.mkdir()
    (bin_folder / "python").symlink_to(sys.executable)
    result = _kmm("generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--preview",
                  str(tmp_path / "a.mp4"), "--checkpoint", str(tmp_path / "no-model"), env={"PATH": str(bin_folder)})
    line = _one_line(result)
    assert result.returncode == 2 and "writing MP4 needs ffmpeg on PATH" in line, line  # not 3: before the model


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x07", "\n", "\x7f"])
def test_control_characters_in_a_prompt_are_refused_and_never_echoed(tmp_path, character):
    prompt = f"a person{character}[31m walks"
    if character != "\x00":  # a command line cannot carry NUL: the timeline refuses it below
        result = _kmm("generate", prompt, "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--checkpoint",
                      str(tmp_path / "no-model"))
        line = _one_line(result)
        assert result.returncode == 2 and f"control character U+{ord(character):04X} at character 8" in line, line
        assert character not in line
    with pytest.raises(TimelineError, match=f"segments\\[0\\].prompt: the prompt holds the control character "
                                            f"U\\+{ord(character):04X}"):
        Timeline.from_dict({"segments": [{"prompt": prompt, "seconds": 1}]})
    request = {"type": "edit", "id": "e", "mode": "regenerate", "source": "/tmp/a.npz", "output_dir": "/tmp",
               "segment": 0, "prompt": prompt}  # Regenerate Segment's new prompt: refused as the request is read
    with pytest.raises(ProtocolError, match=f"edit.prompt: the prompt holds the control character "
                                            f"U\\+{ord(character):04X}"):
        decode(json.dumps(request))


def test_a_scene_at_another_fps_refuses_a_timeline_it_cannot_hold(addon_module, tmp_path):
    table = addon_module("kmm_blender.timeline.segment_table")
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"fps": 20, "segments": [{"prompt": "walk", "frames": 4}] * 3000}))
    rows = table.import_rows(path, 20, 1)  # valid as it is: 3,000 rows of 0.2 s at 20 fps
    assert len(rows) == 3000 and table.row_problems(rows, 20) == {}
    with pytest.raises(table.TimelineError) as caught:
        table.import_rows(path, 24, 1)  # 4 frames at 20 fps round to 4 or 5 at 24: some rows too short
    message = str(caught.value)
    assert message.startswith(f"{path}: segments[2]") and "at the scene's 24 fps (the file's is 20)" in message
    assert "set the scene's frame rate to 20 fps" in message
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"fps": 20, "segments": [{"prompt": "walk", "frames": 40}] * 300}))
    converted = table.import_rows(fine, 24, 1)
    assert table.row_problems(converted, 24) == {} and converted[-1].end == 300 * 48
