# SPDX-License-Identifier: GPL-3.0-or-later
"""The transfer depends on where a character's joints are, never on which way its bones point
(blender_scripts/bone_directions.py, one bpy process): a real skinned glTF of the Mixamo skeleton whose joint nodes
have random local axes (tests/gltf_test_rig.py), imported with Blender's glTF importer under each bone heuristic
(its default "Blender", "Temperance", "Fortune"), through FBX with and without automatic bone orientation, and with
random bone rolls and tails.  One walk-then-raise take on each, no bone map: every mapped joint lands at the same
world position in every import (to a millimetre), and the walk walks: the ankles stay low, the leading foot
alternates, the knees bend forward, no foot goes under the floor.  Two more characters of the same skeleton: legs
hanging from a spine bone below a root that carries a skirt and a tail, a prop rigged as a second root, a robot
on wheels with no foot bones (it walks on its shins' ends); a quadruped and a lone arm are refused, saying what
they are and what was found."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from blender_scripts.runner import SCRIPTS, WALK_THEN_RAISE, walk_then_raise_take

pytestmark = pytest.mark.blender

VARIANTS = ("gltf_blender", "gltf_temperance", "gltf_fortune", "fbx_automatic_orientation", "fbx_as_written",
            "random_rolls_and_tails")
WALK_FRAMES = WALK_THEN_RAISE["segments"][0]["end"]  # the take's walk: frames 1-75 at 30 fps


@pytest.fixture(scope="module")
def imports(tmp_path_factory):
    work = tmp_path_factory.mktemp("bone_directions")
    take = walk_then_raise_take(work)
    completed = subprocess.run([sys.executable, str(SCRIPTS / "bone_directions.py"), str(take), str(work),
                                str(work / "result.json")], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads((work / "result.json").read_text())


def _points(found: dict) -> tuple[list[str], np.ndarray]:
    names = sorted(found["points"][0])
    return names, np.array([[frame[name] for name in names] for frame in found["points"]])


def test_the_imports_really_point_their_bones_differently(imports):
    """The check means something: most mapped bones point another way (their rest Y axes over 25 degrees apart)
    under each importer option than under the default one (FBX without automatic orientation keeps the axes the
    default import wrote into it)."""
    default = imports["gltf_blender"]
    for name in ("gltf_temperance", "gltf_fortune", "fbx_automatic_orientation", "random_rolls_and_tails"):
        turned = [bone for bone in default["map"].values()
                  if float(np.dot(default["bone_axes"][bone], imports[name]["bone_axes"][bone])) < np.cos(np.radians(25))]
        assert len(turned) >= 10, (name, turned)


@pytest.mark.parametrize("name", VARIANTS[1:])
def test_every_import_puts_every_joint_where_the_default_import_does(imports, name):
    found = imports[name]
    assert "points" in found, found
    assert found["map"] == imports["gltf_blender"]["map"]
    names, points = _points(found)
    reference_names, reference = _points(imports["gltf_blender"])
    assert names == reference_names and points.shape == reference.shape
    error = np.abs(points - reference).max(axis=(0, 2))
    assert error.max() < 1e-3, dict(zip(names, error.round(4), strict=True))


DOWNLOADED = ("cesium_man", "kaykit_mannequin", "robot_expressive")
DOWNLOADED_VARIANTS = tuple(f"{character}__{option}" for character in DOWNLOADED
                            for option in ("blender", "temperance", "fortune", "random_rolls")) + tuple(
    f"{character}__{option}" for character in DOWNLOADED[:2] for option in ("fbx_automatic_orientation",
                                                                            "fbx_as_written"))
# Blender's glTF importer hangs RobotExpressive's rigid parts (meshes parented to bones) from where it puts each
# bone's tail: under Temperance and Fortune its feet sit 64 cm behind its legs, another character than under the
# default option, so those two imports are not compared with it (its random rolls, the meshes kept in place, are);
# they are still checked to walk.
NOT_COMPARED = ("robot_expressive__temperance", "robot_expressive__fortune")


@pytest.mark.parametrize("name", [v for v in DOWNLOADED_VARIANTS if not v.endswith("__blender")
                                  and v not in NOT_COMPARED])
def test_every_import_of_a_downloaded_character_puts_every_joint_where_its_default_import_does(imports, name):
    """The downloaded characters (skinned Cesium Man and KayKit mannequin, RobotExpressive's rigid parts) under
    every importer option, through FBX with and without automatic bone orientation (the skinned two) and with random
    rolls and tails: the same world joints as their default import, within 4 mm (Cesium Man's random rolls: 3.6 mm
    at its wrists, every other import within 0.1 mm)."""
    found, reference = imports[name], imports[name.split("__")[0] + "__blender"]
    assert "points" in found, found
    assert found["map"] == reference["map"]
    names, points = _points(found)
    _, expected = _points(reference)
    error = np.abs(points - expected).max(axis=(0, 2))
    assert error.max() < 0.004, dict(zip(names, error.round(4), strict=True))


@pytest.mark.parametrize("name", VARIANTS + ("legs_on_the_spine", "loose_prop", "wheeled_robot") + DOWNLOADED_VARIANTS)
def test_the_walk_walks_on_every_import(imports, name):
    found = imports[name]
    names, points = _points(found)
    height = found["height"]
    walk = points[:WALK_FRAMES]
    pelvis = walk[:, names.index("pelvis")]
    travel = pelvis[-1] - pelvis[0]
    travel[2] = 0.0
    assert np.linalg.norm(travel) > 0.25 * height, "the hips travel"
    forward = travel / np.linalg.norm(travel)
    floor = min(min(found["left_foot"]), min(found["right_foot"]))
    assert floor >= -0.01, floor  # nothing under the floor (the feet's bones and skin)
    rest_floor = found["rest_floor"]  # world height of the lowest foot point at rest
    for side in ("left", "right"):
        ankle = walk[:, names.index(f"{side}_ankle")]
        # no ankle above the band a real walk reaches (about 0.15 of the height over where it stands: a leg flipped
        # over the hips put it 1.3-1.8 heights up), nor under the floor
        assert np.ptp(ankle[:, 2]) < 0.25 * height, (side, np.ptp(ankle[:, 2]) / height)
        assert ankle[:, 2].min() > rest_floor - 0.01, (side, ankle[:, 2].min(), rest_floor)
        hip, knee = walk[:, names.index(f"{side}_hip")], walk[:, names.index(f"{side}_knee")]
        # the knee bends forward: ahead of the hip-ankle line wherever the leg bends by more than a few centimetres
        # (a flipped leg puts it a tenth of the height behind); a real stride turns the swinging knee out to the side
        # for a frame or two, where it may sit a centimetre behind
        line = ankle - hip
        along = np.sum((knee - hip) * line, axis=1) / np.sum(line * line, axis=1)
        off_line = knee - hip - along[:, None] * line
        bent = np.linalg.norm(off_line, axis=1) > 0.02 * height
        assert bent.sum() > 5
        ahead = off_line[bent] @ forward
        assert np.mean(ahead > 0) > 0.9 and ahead.min() > -0.02 * height, (np.mean(ahead > 0), ahead.min() / height)
    lead = (walk[:, names.index("left_ankle")] - walk[:, names.index("right_ankle")]) @ forward
    swaps = np.flatnonzero(np.diff(np.sign(lead[np.abs(lead) > 0.05 * height])))
    assert len(swaps) >= 2, "the leading foot alternates"


def test_legs_hanging_from_a_spine_bone_the_whole_body_travels(imports):
    """The thighs hang from `Spine` while the root above it (`Root`) carries 24 skirt bones and a tail: the map takes
    `Spine` as the pelvis (both legs and the spine branch from it), and the travel is keyed on `Root`, the topmost
    bone carrying skin, so the skirt and the tail walk with the body instead of staying at the origin."""
    found = imports["legs_on_the_spine"]
    assert found["map"]["pelvis"] == "Spine" and found["location_bone"] == ["Root"]
    assert not found["warnings"]
    names, points = _points(found)
    pelvis = points[:, names.index("pelvis")]
    assert np.linalg.norm(pelvis[WALK_FRAMES - 1, :2] - pelvis[0, :2]) > 0.25 * found["height"]
    for bone in ("Skirt00", "Skirt12", "Tail2"):
        carried = np.array([frame[bone] for frame in found["extra"]])
        distance = np.linalg.norm(carried - pelvis, axis=1)
        assert np.ptp(distance) < 0.02, (bone, distance.min(), distance.max())


def test_a_deforming_bone_left_behind_is_named_in_a_warning(imports):
    """A prop rigged as a second root beside the body moves skin but follows no keyed bone: the take is made, and a
    warning names the bones left behind."""
    found = imports["loose_prop"]
    assert "points" in found
    assert len(found["warnings"]) == 1 and "Lantern, Lantern_Handle" in found["warnings"][0]
    assert not imports["gltf_blender"]["warnings"]


def test_a_robot_without_feet_walks_on_its_shins_ends(imports):
    """Mixamo names without the prefix, no foot bones (the shins end at wheels that are mesh only), a knee cap
    `LeftKnee` on each shin, wings and claws: the shins' ends stand in for the feet (the map's `tips`, where the
    shins' skin ends), and the walk test above passes on it."""
    robot = imports["wheeled_robot"]
    assert "points" in robot, robot
    assert robot["map"]["left_knee"] == "LeftLeg" and robot["map"]["left_hip"] == "LeftUpLeg"
    assert "left_ankle" not in robot["map"] and robot["map"]["left_wrist"] == "LeftHand"


def test_a_quadruped_and_a_lone_arm_are_refused_saying_what_they_are_and_what_was_found(imports):
    animal = imports["quadruped"]["refused"]
    assert "is not a two-legged character: it looks like a 4-legged rig" in animal, animal
    assert "left hand 'b_LeftHand_011'" in animal and "left foot 'b_LeftFoot01_017'" in animal  # found, named
    assert "no left hand bone" not in animal
    arm = imports["lone_arm"]["refused"]
    assert "is not a two-legged character: it looks like one limb on its own" in arm, arm
    assert "Missing: " in arm and "foot" in arm
    for message in (animal, arm):  # one piece of advice, said once
        assert message.count("Target Rig panel") == 1 and "bone map" in message


@pytest.mark.parametrize("name", VARIANTS + ("legs_on_the_spine", "loose_prop", "wheeled_robot") + DOWNLOADED_VARIANTS)
def test_a_hips_key_is_read_where_it_was_keyed_on_every_import(imports, name):
    """A key on the hips bone, moved 1.2 m forward (on a default glTF import it was read 6.7 m up in the air), is read
    by "Use My Keys as Constraints" as the canonical pelvis 1.2 m / the rig's scale forward at the height the rest
    key gives it, on every import of every character; rigs without collars, a neck, a middle spine bone or toes
    (Cesium Man, KayKit, RobotExpressive) are keyed too, their missing joints placed from the mapped ones."""
    keyed = imports[name]["hips_key"]
    assert keyed is not None and keyed["frames"] == [10, 20]
    assert keyed["travel"] == pytest.approx(keyed["expected_travel"], rel=0.02)
    low, high = keyed["pelvis_heights"]
    assert abs(high - low) < 0.01 and 0.4 < low < 1.2, keyed  # canonical metres: a standing pelvis, on the ground
