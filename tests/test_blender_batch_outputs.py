# SPDX-License-Identifier: GPL-3.0-or-later
"""The headless batch checks every output before it generates anything (a separate Blender-as-a-module process, as a
user runs it): `--save`, `--export` and `--render` into a read-only folder (a real read-only tmpfs) fail at once with
one line naming the option and the folder, and no worker is ever started; a missing folder is created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from blender_scripts.runner import SCRIPTS, run_blender_script

pytestmark = pytest.mark.blender
BATCH = Path(__file__).resolve().parents[1] / "kmm_blender" / "batch.py"
STANDIN = SCRIPTS.parent / "standin_worker.py"


def run_batch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), KMM_STANDIN_MODE="ok")
    return subprocess.run([sys.executable, str(BATCH), "--", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False, cwd=tmp_path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch-outputs")
    run_blender_script("batch_scene.py", "make", str(folder / "scene.blend"))
    (folder / "timeline.json").write_text(json.dumps({"fps": 24, "segments": [
        {"prompt": "walk forward", "start": 1, "end": 48}]}))
    return folder


@pytest.fixture
def read_only_folder(tmp_path) -> Iterator[Path]:
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root without mount: permission bits cannot make a folder read-only")
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.mark.parametrize("output", [["--save", "{ro}/out.blend"], ["--export", "{ro}/take.fbx"],
                                    ["--render", "{ro}/frames"], ["--render", "{ro}"]],
                         ids=["save", "export", "render-subfolder", "render"])
def test_a_read_only_output_fails_before_generating_in_one_line(output, scene, tmp_path, read_only_folder):
    option, value = output[0], output[1].format(ro=read_only_folder)
    completed = run_batch(tmp_path, "--blend", str(scene / "scene.blend"), "--timeline", str(scene / "timeline.json"),
                          "--python", "/nonexistent/python", option, value)
    assert completed.returncode == 1, completed.stderr[-3000:]
    failures = [line for line in completed.stderr.splitlines() if line.startswith("KMM batch failed")]
    assert len(failures) == 1 and "Traceback" not in completed.stderr, completed.stderr[-3000:]
    assert failures[0].startswith(f"KMM batch failed: {option}: {read_only_folder}") and "cannot write" in failures[0]
    assert "/nonexistent" not in completed.stderr  # no worker was started: nothing was generated
    assert list(read_only_folder.iterdir()) == []


def test_save_into_a_folder_that_is_a_file_or_names_a_folder_fails_first(scene, tmp_path):
    (tmp_path / "a-file").write_text("mine\n")
    for value, expected in ((str(tmp_path / "a-file" / "out.blend"), f"--save: {tmp_path / 'a-file'}: "),
                            (str(tmp_path), f"--save {tmp_path}: is a folder")):
        completed = run_batch(tmp_path, "--blend", str(scene / "scene.blend"), "--timeline",
                              str(scene / "timeline.json"), "--python", "/nonexistent/python", "--save", value)
        assert completed.returncode == 1 and f"KMM batch failed: {expected}" in completed.stderr, completed.stderr
        assert "/nonexistent" not in completed.stderr
    assert (tmp_path / "a-file").read_text() == "mine\n"


def test_missing_output_folders_are_made_and_written(scene, tmp_path):
    completed = run_batch(tmp_path, "--blend", str(scene / "scene.blend"), "--timeline", str(scene / "timeline.json"),
                          "--python", sys.executable, "--worker-script", str(STANDIN), "--seed", "3",
                          "--save", "new/blends/out.blend", "--export", "new/exports/take.bvh")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "new" / "blends" / "out.blend").stat().st_size > 1000
    assert (tmp_path / "new" / "exports" / "take.bvh").stat().st_size > 1000
