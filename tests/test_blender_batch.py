# SPDX-License-Identifier: GPL-3.0-or-later
"""The headless batch script, run exactly as a user runs it (a separate Blender-as-a-module process), generating
through a real worker subprocess (the protocol-true stand-in until the torch server exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from blender_scripts.runner import SCRIPTS, run_blender_script

pytestmark = pytest.mark.blender
BATCH = Path(__file__).resolve().parents[1] / "kmm_blender" / "batch.py"
STANDIN = SCRIPTS.parent / "standin_worker.py"


def run_batch(tmp_path: Path, *args: str, mode: str = "ok") -> subprocess.CompletedProcess:
    temp = tmp_path / "temp"  # the run's system temp folder: what it leaves there is seen
    temp.mkdir(exist_ok=True)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), KMM_STANDIN_MODE=mode, TMPDIR=str(temp))
    return subprocess.run([sys.executable, str(BATCH), "--", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False, cwd=tmp_path)


@pytest.fixture(scope="module")
def scene_and_timeline(tmp_path_factory, humanml3d_fixture_dir):
    folder = tmp_path_factory.mktemp("batch")
    run_blender_script("batch_scene.py", "make", str(folder / "scene.blend"))
    timeline = folder / "timeline.json"
    timeline.write_text(json.dumps({"fps": 24, "segments": [{"prompt": "walk forward", "start": 1, "end": 48},
                                                            {"prompt": "turn left", "start": 49, "end": 96}]}))
    return folder


def test_batch_generates_renders_and_saves(scene_and_timeline, tmp_path):
    folder = scene_and_timeline
    completed = run_batch(tmp_path, "--blend", str(folder / "scene.blend"), "--timeline", str(folder / "timeline.json"),
                          "--python", sys.executable, "--worker-script", str(STANDIN), "--render", "frames",
                          "--render-step", "50", "--save", "out.blend", "--seed", "3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "1 take(s) on 'KMM Skeleton'" in completed.stdout
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0001.png", "frame_0051.png"]
    saved = run_blender_script("batch_scene.py", "inspect", str(tmp_path / "out.blend"))
    assert saved["armatures"] == ["KMM Skeleton"]
    assert saved["active_actions"] == ["KMM walk forward +1 seed 3"] and saved["actions"] == ["KMM walk forward +1 seed 3"]
    assert saved["frame_range"] == [1, 96]
    # the motion files went to a folder of the run, removed at its end (the saved takes carry their bytes)
    assert [path.name for path in (tmp_path / "temp").iterdir() if path.name.startswith("kmm")] == []
    assert sorted(tmp_path.rglob("*.npz")) == []


def test_batch_failure_exits_non_zero_with_the_reason_and_saves_nothing(scene_and_timeline, tmp_path):
    folder = scene_and_timeline
    completed = run_batch(tmp_path, "--blend", str(folder / "scene.blend"), "--timeline", str(folder / "timeline.json"),
                          "--python", sys.executable, "--worker-script", str(STANDIN), "--save", "out.blend",
                          mode="fail_load")
    assert completed.returncode == 1
    assert "KMM batch failed: the model could not be loaded" in completed.stderr
    assert not (tmp_path / "out.blend").exists()


def test_batch_rejects_an_invalid_timeline_before_starting_a_worker(scene_and_timeline, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fps": 24, "segments": [{"prompt": "walk", "start": 1, "end": 2}]}))
    completed = run_batch(tmp_path, "--timeline", str(bad), "--python", "/nonexistent/python")
    assert completed.returncode == 1
    assert "shortest segment" in completed.stderr and "/nonexistent" not in completed.stderr


def test_batch_bad_arguments_exit_2(tmp_path):
    completed = run_batch(tmp_path, "--variations", "many")
    assert completed.returncode == 2 and "invalid int value" in completed.stderr


def test_batch_retargets_onto_a_rigify_metarig_with_a_bone_map_and_exports(tmp_path):
    """--armature takes any rig; --bone-map is used as given (a fixed row stays fixed); --export writes the take with
    Blender's exporters."""
    from kmm_core.bvh import read_bvh
    from kmm_core.retarget.bone_map import preset, save_bone_map

    run_blender_script("batch_scene.py", "make_metarig", str(tmp_path / "rig.blend"))
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"fps": 24, "segments": [{"prompt": "walk forward", "start": 1, "end": 48}]}))
    bone_map, _ = preset("rigify_metarig").resolve(["spine", "spine.001", "spine.002", "spine.003", "spine.004",
                                                    "spine.006"] + [f"{b}.{s}" for s in "LR" for b in (
                                                        "thigh", "shin", "foot", "toe", "shoulder", "upper_arm",
                                                        "forearm", "hand")])
    save_bone_map(bone_map.with_bone("spine2", None), tmp_path / "map.json")
    for export in ("take.bvh", "take.fbx", "take.glb"):
        completed = run_batch(tmp_path, "--blend", str(tmp_path / "rig.blend"), "--timeline", str(timeline),
                              "--python", sys.executable, "--worker-script", str(STANDIN), "--armature", "metarig",
                              "--bone-map", str(tmp_path / "map.json"), "--export", export, "--save", "out.blend",
                                  "--seed", "3")
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert "1 take(s) on 'metarig'" in completed.stdout
        assert (tmp_path / export).stat().st_size > 1000
    exported = read_bvh(tmp_path / "take.bvh")
    import re

    first, last = (int(v) for v in re.search(r"KMM walk forward seed 3 \[(\d+)-(\d+)\]", completed.stdout).groups())
    assert {"spine", "thigh.L", "hand.R"} <= set(exported.names) and exported.num_frames == last - first + 1
    assert np.ptp(exported.frames, axis=0).max() > 1.0  # the take moves
    saved = run_blender_script("batch_scene.py", "inspect", str(tmp_path / "out.blend"))
    assert saved["armatures"] == ["metarig"] and saved["active_actions"] == ["KMM walk forward seed 3"]
    bad = tmp_path / "bad_map.json"
    bad.write_text(json.dumps({**bone_map.to_dict(), "bones": {**bone_map.bones, "left_wrist": "no_such_bone"}}))
    completed = run_batch(tmp_path, "--blend", str(tmp_path / "rig.blend"), "--timeline", str(timeline),
                          "--python", "/nonexistent/python", "--armature", "metarig", "--bone-map", str(bad))
    assert completed.returncode == 1 and "no_such_bone" in completed.stderr
