# SPDX-License-Identifier: GPL-3.0-or-later
"""Odd rigs in real Blender (blender_scripts/rig_inputs.py): an object scale a hair off uniform, a non-uniform one and
a mirror are taken (the motion is made in the armature's own space, so the keys are the unscaled rig's); a mirror
that turns the rig upside down and a zero scale are refused with that reason; a NaN key names its bone and frame;
a bone map with the knee and the ankle swapped is refused naming both bones; an armature linked from a library is
refused by the batch before anything is generated (its keys would be lost on reopening).  And without Blender: the
same swapped map refused by the retargeting itself (`kmm retarget`'s path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from blender_scripts.runner import SCRIPTS, run_blender_script

from kmm_core.retarget.bone_map import BoneMap
from kmm_core.retarget.target_skeleton import canonical_target_skeleton
from kmm_core.retarget.transfer import RetargetError, plan_retarget

BATCH = Path(__file__).resolve().parents[1] / "kmm_blender" / "batch.py"


@pytest.fixture(scope="module")
def checked(generated_take):
    """The checks on one take of the shipped model (conftest's `generated_take`)."""
    return run_blender_script("rig_inputs.py", "checks", str(generated_take))


@pytest.mark.blender
@pytest.mark.parametrize("label", ["stretched_z", "non_uniform", "mirrored_x"])
def test_a_scaled_or_mirrored_rig_takes_the_unscaled_rigs_keys(checked, label):
    """(1, 1, 1.001), (0.87, 1, 1) and (-1, 1, 1): accepted, and the keys are the same rig's unscaled keys (the object's
    transform shows on top of the motion as it does on the mesh)."""
    case = checked[label]
    assert case["problem"] is None
    rotations, travel = (np.array(v) for v in case["keys"])
    plain_rotations, plain_travel = (np.array(v) for v in checked["plain_keys"])
    assert np.abs(rotations - plain_rotations).max() < 1e-6
    assert np.abs(travel - plain_travel).max() < 1e-6  # the rig's own units: its legs set the motion's size
    # It moves, so the comparisons above are not of still keys (the take is read as a wave: the hips travel 2 cm).
    assert np.ptp(plain_rotations, axis=0).max() > 0.5 and np.ptp(plain_travel, axis=0).max() > 0.01


@pytest.mark.blender
def test_a_rig_mirrored_upside_down_or_scaled_to_zero_is_refused_with_its_real_reason(checked):
    upside_down = checked["mirrored_all"]["problem"]
    assert "upside down" in upside_down and "(-1.0, -1.0, -1.0)" in upside_down and "(-1, 1, 1)" in upside_down
    assert "uniform" not in upside_down
    flat = checked["flat_y"]["problem"]
    assert "scaled to zero" in flat and "(1.0, 0.0, 1.0)" in flat


@pytest.mark.blender
def test_a_nan_key_names_its_bone_and_frame(checked):
    for message in (checked["nan_key"], checked["nan_key_poses"]):
        assert "'forearm.L'" in message and "frame 5" in message and "NaN" in message
        assert "gives no bone" not in message


@pytest.mark.blender
def test_a_map_with_knee_and_ankle_swapped_is_refused_naming_both_bones(checked):
    message = checked["swapped_map"]
    assert "'shin.L'" in message and "'foot.L'" in message and "does not hang below" in message


def test_the_retargeting_refuses_a_swapped_leg_map_without_blender():
    skeleton = canonical_target_skeleton()
    bones = {name: name for name in skeleton.bone_names}
    bones["left_knee"], bones["left_ankle"] = "left_ankle", "left_knee"
    with pytest.raises(RetargetError, match="left_ankle's bone 'left_knee' does not hang below left_knee's bone "
                                            "'left_ankle'"):
        plan_retarget(skeleton, BoneMap(name="swapped", kind="user", bones=bones), skeleton.rest_heads)


@pytest.mark.blender
def test_batch_refuses_an_armature_linked_from_a_library(tmp_path):
    """The take would be an orphan after saving and reopening: the batch says so and how to fix it, exits non-zero
    and saves nothing."""
    made = run_blender_script("rig_inputs.py", "make_linked", str(tmp_path / "library.blend"),
                              str(tmp_path / "scene.blend"))
    assert made["library"] and "Make Local" in made["linked_problem"]
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"fps": 24, "segments": [{"prompt": "walk forward", "start": 1, "end": 48}]}))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), KMM_STANDIN_MODE="ok")
    completed = subprocess.run([sys.executable, str(BATCH), "--", "--blend", str(tmp_path / "scene.blend"),
                                "--timeline", str(timeline), "--python", sys.executable, "--worker-script",
                                str(SCRIPTS.parent / "standin_worker.py"), "--armature", "LinkedRig", "--save",
                                "out.blend"], capture_output=True, text=True, env=env, timeout=300, check=False,
                               cwd=tmp_path)
    assert completed.returncode != 0
    output = completed.stdout + completed.stderr
    assert "linked from the library" in output and "Library Override" in output
    assert "Traceback" not in output
    assert not (tmp_path / "out.blend").exists()
