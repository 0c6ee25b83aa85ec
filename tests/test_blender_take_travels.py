# SPDX-License-Identifier: GPL-3.0-or-later
"""Takes a studio can rely on (real bpy, real worker, tiny real model): a take carries its motion inside the .blend,
so a moved .blend whose temporary motion files were deleted still regenerates a segment; the frame range covers a
longer take; take names say prompt and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from blender_scripts.runner import RESULT_PREFIX, SCRIPTS

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def travelled(tiny_bundle, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("take_travels")
    (work / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(work / "tmp"), OMP_NUM_THREADS="1")
    completed = subprocess.run([sys.executable, str(SCRIPTS / "take_travels.py"), str(tiny_bundle), str(work)],
                               capture_output=True, text=True, timeout=900, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise AssertionError(f"take_travels.py failed (exit {completed.returncode})\n--- stdout ---\n"
                             f"{completed.stdout[-4000:]}\n--- stderr ---\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def test_a_moved_blend_without_its_motion_files_regenerates_a_segment(travelled):
    assert travelled["motion_files_left"] == []  # every temporary motion file was deleted
    assert travelled["reopened"] == {"active": "KMM walk forward +1 seed 5", "source_exists": False}
    assert travelled["regenerated"] == "KMM walk forward +1 seed 5 seg2"
    assert travelled["regenerated_markers"] == [[1, "walk forward"], [49, "jump up"]]
    old, new = travelled["old_keys"], travelled["new_keys"]
    assert set(old) == set(new) and len(old) == 22 * 4 + 3
    changed = 0
    for name, before in old.items():
        before, after = np.array(before, np.float32), np.array(new[name], np.float32)
        segment = before[:, 0] >= 49
        assert np.array_equal(after[~segment], before[~segment]), name  # segment 1 untouched
        changed += not np.array_equal(after[segment], before[segment])
    assert changed > len(old) // 2


def test_the_take_carries_its_motion_compressed(travelled):
    assert travelled["source_in_results"]
    assert 0 < travelled["stored_bytes"] < travelled["file_bytes"]


def test_the_frame_range_grows_to_cover_a_longer_take_unless_turned_off(travelled):
    assert travelled["frame_range_after_first"] == [1, 96]  # the scene was 1-50
    name, end = travelled["longer"]
    assert end == 120.0 and travelled["frame_range_when_off"] == [1, 96]


def test_take_names_say_prompt_and_seed_without_blender_suffixes(travelled):
    assert travelled["first"] == "KMM walk forward +1 seed 5"
    assert travelled["same_again"] == "KMM walk forward +1 seed 5 #2"
    assert travelled["longer"][0] == "KMM walk forward +1 seed 6"
