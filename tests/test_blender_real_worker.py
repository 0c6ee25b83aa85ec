# SPDX-License-Identifier: GPL-3.0-or-later
"""The Blender extension end to end with the REAL worker (`python -m kmm_core.worker`) and a tiny really-trained
model bundle: the headless batch run as a user runs it, and regenerating one timeline segment in place.

(The stand-in worker stays in test_blender_workflow/test_blender_batch only for what a real worker cannot do on
demand: crash, run out of memory, be slow enough to cancel.)
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from blender_scripts.runner import run_blender_script

from kmm_core.motion.skeleton import JOINT_NAMES

pytestmark = pytest.mark.blender
BATCH = Path(__file__).resolve().parents[1] / "kmm_blender" / "batch.py"


def run_batch(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python kmm_blender/batch.py -- ...` in its own process, Blender's user folders isolated."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(workdir / "user"), OMP_NUM_THREADS="1",
               TMPDIR=str(workdir))  # the add-on keeps result files in the temp folder when not installed
    return subprocess.run([sys.executable, str(BATCH), "--", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False, cwd=workdir)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def scene_and_timeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_batch")
    run_blender_script("batch_scene.py", "make", str(folder / "scene.blend"))
    (folder / "timeline.json").write_text(json.dumps(
        {"fps": 24, "segments": [{"prompt": "walk forward", "start": 1, "end": 48},
                                 {"prompt": "turn left", "start": 49, "end": 96}]}))
    return folder


@pytest.fixture(scope="module")
def batch_generated(scene_and_timeline, tiny_bundle, tmp_path_factory):
    """One batch generation with the real worker: (its process, its folder holding frames/ and out.blend)."""
    folder = scene_and_timeline
    workdir = tmp_path_factory.mktemp("real_batch_run")
    completed = run_batch(workdir, "--blend", str(folder / "scene.blend"), "--timeline", str(folder / "timeline.json"),
                          "--python", sys.executable, "--checkpoint", str(tiny_bundle), "--device", "cpu",
                          "--seed", "5", "--render", "frames", "--render-step", "95", "--save", "out.blend")
    return completed, workdir


def test_batch_with_the_real_worker_saves_the_whole_take_and_renders(batch_generated):
    completed, workdir = batch_generated
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "KMM: 1 take(s) on 'KMM Skeleton': KMM walk forward +1 seed 5 [1-96]" in completed.stdout
    # Progress lines while it runs (a long batch is never silent), ending at 100 %.
    progress = [line for line in completed.stdout.splitlines() if line.startswith("KMM: [")]
    assert len(progress) >= 3 and progress[-1] == "KMM: [100%] Done", progress
    assert any("Loading the model" in line for line in progress)
    frames = sorted((workdir / "frames").iterdir())
    assert [p.name for p in frames] == ["frame_0001.png", "frame_0096.png"]
    assert all(png_size(p) == (64, 48) for p in frames)

    saved = run_blender_script("inspect_take.py", str(workdir / "out.blend"))
    take = saved["takes"]["KMM Skeleton"]
    assert take["action"] == "KMM walk forward +1 seed 5"
    curves = {name: np.array(keys) for name, keys in take["curves"].items()}
    expected = {f'pose.bones["{bone}"].rotation_quaternion[{c}]' for bone in JOINT_NAMES for c in range(4)}
    expected |= {f'pose.bones["pelvis"].location[{axis}]' for axis in range(3)}
    assert set(curves) == expected
    # One key per scene frame over the whole timeline on every channel, finite, and real motion (not a still pose).
    for name, keys in curves.items():
        assert np.array_equal(keys[:, 0], np.arange(1, 97)) and np.isfinite(keys).all(), name
    assert len(np.unique(curves['pose.bones["pelvis"].location[0]'][:, 1])) > 10
    assert take["markers"] == [[1, "walk forward"], [49, "turn left"]]
    assert take["properties"]["kmm_source"].endswith(".npz") and take["properties"]["kmm_scene_fps"] == 24.0


def test_batch_regenerates_a_segment_of_the_saved_take(batch_generated, tiny_bundle, tmp_path):
    _, workdir = batch_generated
    completed = run_batch(tmp_path, "--blend", str(workdir / "out.blend"), "--regenerate-segment", "2",
                          "--prompt", "jump up", "--python", sys.executable, "--checkpoint", str(tiny_bundle),
                          "--device", "cpu", "--seed", "9", "--save", "regenerated.blend")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "KMM: 1 take(s) on 'KMM Skeleton': KMM walk forward +1 seed 5 seg2 [1-96]" in completed.stdout
    before = run_blender_script("inspect_take.py", str(workdir / "out.blend"))["takes"]["KMM Skeleton"]
    saved = run_blender_script("inspect_take.py", str(tmp_path / "regenerated.blend"))
    after = saved["takes"]["KMM Skeleton"]
    assert after["action"] == "KMM walk forward +1 seed 5 seg2"
    assert saved["actions"] == ["KMM walk forward +1 seed 5", "KMM walk forward +1 seed 5 seg2"]  # the old take is kept
    assert after["markers"] == [[1, "walk forward"], [49, "jump up"]]
    assert after["properties"]["kmm_source"] != before["properties"]["kmm_source"]
    changed = 0
    for name, old_keys in before["curves"].items():
        old, new = np.array(old_keys, np.float32), np.array(after["curves"][name], np.float32)
        segment = old[:, 0] >= 49  # segment 2 = scene frames 49..96
        assert np.array_equal(new[~segment], old[~segment]), name
        changed += not np.array_equal(new[segment], old[segment])
    assert changed > len(before["curves"]) // 2


def test_batch_regenerate_arguments_are_checked(tmp_path):
    completed = run_batch(tmp_path, "--regenerate-segment", "0")
    assert completed.returncode == 2 and "N >= 1" in completed.stderr
    completed = run_batch(tmp_path, "--prompt", "jump")
    assert completed.returncode == 2 and "--prompt only goes with --regenerate-segment" in completed.stderr


def test_batch_with_a_missing_checkpoint_fails_shows_why_and_saves_nothing(scene_and_timeline, tmp_path):
    folder = scene_and_timeline
    missing = tmp_path / "no_such_bundle"
    completed = run_batch(tmp_path, "--blend", str(folder / "scene.blend"), "--timeline", str(folder / "timeline.json"),
                          "--python", sys.executable, "--checkpoint", str(missing), "--device", "cpu",
                          "--render", "frames", "--save", "out.blend")
    assert completed.returncode == 1
    assert "KMM batch failed: the model could not be loaded" in completed.stderr
    assert str(missing) in completed.stderr and "no such folder" in completed.stderr
    assert not (tmp_path / "out.blend").exists() and not (tmp_path / "frames").exists()


# ---- regenerate one segment in place -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def regenerated(tiny_bundle):
    return run_blender_script("regenerate_segment.py", str(tiny_bundle))


def _keys(take: dict) -> dict[str, np.ndarray]:
    return {name: np.array(keys, dtype=np.float32) for name, keys in take["keys"].items()}


def test_regenerating_a_segment_keeps_every_key_outside_it(regenerated):
    # 24 fps timeline on a 24 fps scene: segment 2 is motion frames [40, 80) = scene frames 41..80.
    assert regenerated["source_fps"] == 24.0 and regenerated["source_segments"] == [[0, 40], [40, 80], [80, 120]]
    old, new = _keys(regenerated["first"]), _keys(regenerated["second"])
    changed_curves = 0
    for name, before in old.items():
        after = new[name]
        assert np.array_equal(after[:, 0], np.arange(1, 121, dtype=np.float32)), name  # one key per frame
        inside = (before[:, 0] >= 41) & (before[:, 0] <= 80)
        assert np.array_equal(after[~inside], before[~inside]), f"{name}: a key outside the segment changed"
        changed_curves += not np.array_equal(after[inside], before[inside])
    assert changed_curves > len(old) // 2  # the segment itself was really remade


def test_the_new_keys_are_the_edited_motion_continuing_the_kept_ones(regenerated):
    new = _keys(regenerated["second"])
    fresh = regenerated["fresh"]
    inside = slice(40, 80)  # key indices of scene frames 41..80
    quaternions = np.array(fresh["quaternions"])[inside]
    for joint, bone in enumerate(JOINT_NAMES):
        written = np.stack([new[f'pose.bones["{bone}"].rotation_quaternion[{c}]'][:, 1] for c in range(4)], axis=-1)
        # The same rotations as a plain write of the edited file (the sign may be flipped to meet the kept keys).
        agreement = np.abs(np.sum(written[inside] * quaternions[:, joint], axis=-1))
        assert np.allclose(agreement, 1.0, atol=1e-5), bone
        assert float(np.dot(written[39], written[40])) > 0.0, f"{bone}: sign jump into the segment"
    locations = np.stack([new[f'pose.bones["pelvis"].location[{axis}]'][:, 1] for axis in range(3)], axis=-1)
    assert np.allclose(locations[inside], np.array(fresh["locations"])[inside], atol=1e-5)


def test_the_regenerated_take_is_a_new_active_action_that_remembers_its_file(regenerated):
    first, second = regenerated["first"], regenerated["second"]
    assert second["name"] == first["name"] + " seg2" and second["active"] == second["name"]
    assert second["actions_added"] == 1 and second["first_still_there"]
    assert second["source"] != first["source"] and second["source"].endswith(".npz")
    assert second["motion_outside_identical"] and second["motion_inside_changed"]  # the worker's promise
    assert second["prompts"] == ["walk forward", "wave the right hand", "sit down"]  # the row's edited prompt
    assert second["markers"] == [["sit down", 81], ["walk forward", 1], ["wave the right hand", 41]]
    assert first["provenance"] == {"kmm_source": first["source"], "kmm_start_frame": 1.0,
                                   "kmm_fps_mode": "RESAMPLE", "kmm_root_motion": "WORLD", "kmm_scene_fps": 24.0}
    assert regenerated["reopened"] == {"active": second["name"], "source": second["source"]}
    assert regenerated["poll_with_take"] is True


def test_regenerating_from_the_panel_runs_in_the_background_and_keeps_the_rest(regenerated):
    timer = regenerated["timer"]
    assert regenerated["timer_running_after_start"] is True
    assert timer["state"] == "done" and timer["error"] == "", timer["error"]
    assert timer["name"] == "KMM walk forward +2 seed 3 seg1" and timer["last_takes"] == timer["name"]
    second, third = _keys({"keys": regenerated["second_after_reopen"]}), _keys(timer)
    made = _keys(regenerated["second"])
    assert all(np.array_equal(second[name], made[name]) for name in made)  # what was saved is what was made
    for name, before in second.items():
        outside = before[:, 0] > 40  # segment 1 = scene frames 1..40
        assert np.array_equal(third[name][outside], before[outside]), name


def test_a_failed_regeneration_changes_nothing_and_says_why(regenerated):
    assert "the model could not be loaded" in regenerated["fail_load"] and "no_such_bundle" in regenerated["fail_load"]
    assert "motion file of take" in regenerated["gone_file"] and "is gone" in regenerated["gone_file"]
    assert "does not carry its own copy" in regenerated["gone_file"]  # a path-only take from an older add-on
    planned, recorded = regenerated["path_only_plan_source"]
    assert planned == recorded  # ... which keeps working while its file exists
    assert regenerated["no_such_segment"].startswith("segment 4: take") and "3 segment(s)" in \
        regenerated["no_such_segment"]
    for case in ("fail_load", "gone_file", "no_such_segment"):
        assert regenerated[f"{case}_unchanged"] is True, case
    assert regenerated["poll_without_kmm_take"] is False
    assert "'hand made' was not generated by KMM" in regenerated["not_a_take"]


# ---- the same merge when the take is resampled (no worker needed: runs on any Blender) -----------------------------
@pytest.fixture(scope="module")
def resampled(humanml3d_fixture_dir):
    return run_blender_script("regenerate_keys.py")


def test_a_resampled_take_keeps_every_key_that_does_not_depend_on_the_segment(resampled):
    # Motion frames [60, 110) at 20 fps; scene keys at 24 fps sit at motion time i * 20/24.  Key i depends on a
    # segment frame when 59 < i * 20/24 < 110, i.e. i = 71..131: scene frames 72..132 (the take starts at frame 1).
    assert resampled["plan"]["motion_range"] == [60, 110] and resampled["plan"]["prompt"] == "turn back"
    old, new = _keys({"keys": resampled["old"]}), _keys({"keys": resampled["new"]})
    changed = set()
    for name, before in old.items():
        after = new[name]
        assert np.array_equal(after[:, 0], before[:, 0]), name
        inside = (before[:, 0] >= 72) & (before[:, 0] <= 132)
        assert np.array_equal(after[~inside], before[~inside]), f"{name}: a key outside the segment changed"
        changed |= set(before[inside & (after[:, 1] != before[:, 1]), 0].tolist())
    assert min(changed) == 72 and max(changed) == 132

    fresh = resampled["fresh"]
    inside = slice(71, 132)
    quaternions = np.array(fresh["quaternions"])[inside]
    for joint, bone in enumerate(JOINT_NAMES):
        written = np.stack([new[f'pose.bones["{bone}"].rotation_quaternion[{c}]'][:, 1] for c in range(4)], axis=-1)
        assert np.allclose(np.abs(np.sum(written[inside] * quaternions[:, joint], axis=-1)), 1.0, atol=1e-5), bone
        assert float(np.dot(written[70], written[71])) > 0.0, f"{bone}: sign jump into the segment"
    assert resampled["new_markers"] == [[1, "walk"], [73, "turn back"], [133, "walk back"]]
    assert resampled["new_active"] and resampled["new_source"].endswith("edited.npz")


def test_a_broken_result_file_changes_nothing(resampled):
    assert "broken.npz" in resampled["broken"] and "not a readable .npz" in resampled["broken"]
    assert resampled["broken_unchanged"] == [True, True]
