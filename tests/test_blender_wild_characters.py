# SPDX-License-Identifier: GPL-3.0-or-later
"""Characters from the wild in real Blender (blender_scripts/wild_characters.py, one bpy process): downloaded ones
(tests/data/characters/README.md: Khronos' CesiumMan with unnamed glTF nodes facing +X, KayKit's mannequin with big
stylised feet and a skinned mesh, three.js' RobotExpressive with palms and IK feet under the root) imported with
Blender's glTF importer, and rigs built to imitate other families (Rigify metarig names without spine.006, the same
rig facing +Y, and with meaningless names facing +X).  One take of the shipped model, "walks forward" then "raises
the left hand", goes onto each with no bone map.  Every mapped character: its hips travel during the walk, its left
wrist (not its right) rises, no foot goes more than 2% of its height under its rest floor, and a foot planted in the
motion slides no more than 2 cm.  A character the mapper cannot map is refused with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from blender_scripts.runner import SCRIPTS

from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.retarget.quality import contact_mask

pytestmark = pytest.mark.blender

MAPPED = ("cesium_man", "kaykit_mannequin", "metarig_without_spine_006", "metarig_facing_plus_y",
          "unnamed_facing_plus_x")
WALK_SECONDS = 2.5


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
    from conftest import REPO_ROOT

    work = tmp_path_factory.mktemp("wild")
    timeline = work / "timeline.json"
    timeline.write_text(json.dumps({"fps": 30, "segments": [
        {"prompt": "a person walks forward", "start": 1, "end": 75},
        {"prompt": "a person raises the left hand", "start": 76, "end": 135}]}))
    take = work / "take.npz"
    done = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "--timeline", str(timeline), "--seed", "3",
                           "-o", str(take), "--quiet"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                               "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    completed = subprocess.run([sys.executable, str(SCRIPTS / "wild_characters.py"), str(take),
                                str(work / "result.json")], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads((work / "result.json").read_text()), MotionResult.load(take)


@pytest.mark.parametrize("name", MAPPED)
def test_a_downloaded_or_family_character_walks_raises_its_left_hand_and_keeps_its_feet_on_the_floor(characters,
                                                                                                        name):
    result, take = characters
    found = result[name]
    assert "map" in found, found
    height, fps = found["height"], found["fps"]
    pelvis, left, right = (np.array(found[k]) for k in ("pelvis", "left_wrist", "right_wrist"))
    walk_end = int(WALK_SECONDS * fps)
    assert np.linalg.norm(pelvis[walk_end, :2] - pelvis[0, :2]) > 0.25 * height, "hips travel during the walk"
    raised = left[walk_end:, 2].max() - left[:walk_end, 2].mean()
    assert raised > 0.15 * height, raised
    assert raised > 3 * (right[walk_end:, 2].max() - right[:walk_end, 2].mean())
    for side in ("left", "right"):
        lowest = np.array(found[f"{side}_foot"])
        assert lowest.min() >= -0.02 * height, (side, lowest.min(), height)
        # planted in the motion (its own ankle slow and low, at the scene's frames): the rig's ankle stays put
        motion_frames = np.minimum((np.arange(len(lowest)) * take.fps / fps).round().astype(int), len(take.joints) - 1)
        planted = contact_mask(take.joints[:, JOINT_INDEX[f"{side}_ankle"]], take.fps)[motion_frames]
        ankle = np.array(found[f"{side}_ankle"])[:, :2]
        runs = np.split(np.arange(len(planted)), np.flatnonzero(np.diff(planted.astype(int))) + 1)
        slides = [np.linalg.norm(ankle[r] - ankle[r[0]], axis=-1).max() for r in runs if planted[r[0]] and len(r) > 2]
        assert slides and max(slides) <= 0.02, (side, slides)


def test_the_maps_come_from_geometry_where_names_say_nothing(characters):
    result, _ = characters
    assert result["cesium_man"]["map_name"] == "auto"  # glTF nodes without names: Node_2, Node_7 ...
    assert result["cesium_man"]["map"]["left_hip"] == "Node_7"  # it faces +X: its left leg is on +Y
    assert result["metarig_without_spine_006"]["map"]["head"] == "spine.005"
    assert result["metarig_without_spine_006"]["map_name"] == "Rigify metarig + geometry (head)"
    assert result["kaykit_mannequin"]["map"]["left_wrist"] == "wrist.l"


def test_a_character_the_mapper_cannot_map_is_refused_with_the_reason(characters):
    result, _ = characters
    assert "IK foot bones under the root" in result["robot_expressive"]["refused"]
    assert "no left hand bone" in result["robot_expressive"]["refused"]
