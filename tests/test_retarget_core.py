# SPDX-License-Identifier: GPL-3.0-or-later
"""The torch-free retargeting core on real skeletons: presets and automatic maps found on the Bandai-Namco, CMU
(Daz 43-joint and 31-joint) and Character Creator BVH rigs, the Bandai-Namco round trip through the KMM skeleton,
quality of real mocap and a generated take on every rig (incl. an A-pose rig), and `kmm retarget`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
from kmm_core.cli import main as kmm_main
from kmm_core.common.errors import InputFileError, KMMError
from kmm_core.motion import skeleton
from kmm_core.motion.kinematics import fit_rest_offsets
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.resample import resampled_frame_count
from kmm_core.retarget.bone_map import (
    BoneMapError,
    best_preset_map,
    bone_map_from_dict,
    load_bone_map,
    presets,
    save_bone_map,
)
from kmm_core.retarget.bvh_output import resample_source
from kmm_core.retarget.name_matching import auto_bone_map, detect_bone_map
from kmm_core.retarget.quality import measure
from kmm_core.retarget.target_skeleton import (
    TargetSkeleton,
    bvh_target_skeleton,
    canonical_target_skeleton,
)
from kmm_core.retarget.transfer import (
    retarget,
    source_from_motion_result,
    source_from_positions,
)

LIMB_JOINTS = [f"{side}_{part}" for side in ("left", "right")
               for part in ("hip", "knee", "ankle", "collar", "shoulder", "elbow", "wrist")]


@pytest.fixture(scope="module")
def rigs(bandai_namco_dir, cmu_bvh_dir, character_creator_dir):
    """(expected preset name, BVH path) of the real skeletons in ../shared/data."""
    return {
        "bandai_namco": ("Bandai-Namco Research Motion Dataset", bandai_namco_dir
                         / "Bandai-Namco-Research-Motiondataset-1" / "data" / "dataset-1_walk_normal_001.bvh"),
        "cmu_daz": ("CMU mocap (43-joint Daz-friendly BVH)", cmu_bvh_dir / "02" / "02_01.bvh"),
        "cmu_31": ("CMU mocap (31-joint ASF skeleton)", cmu_bvh_dir / "16" / "16_01.bvh"),
        "character_creator": ("Character Creator / iClone", character_creator_dir / "002" / "002_01.bvh"),
    }


def _target(path):
    motion = read_bvh(path)
    names = tuple(motion.names[j] for j in motion.joint_indices)
    found = best_preset_map(names)
    settings = found[1].bvh if found else {}
    return motion, bvh_target_skeleton(motion, scale_to_metres=settings.get("scale_to_metres")), found


def test_every_preset_loads_and_names_every_required_joint():
    loaded = presets()
    assert {p.file for p in loaded} >= {"mixamo", "rigify", "rigify_metarig", "ue5_mannequin", "auto_rig_pro",
                                        "character_creator", "daz_genesis8", "daz_genesis9", "vrm", "smpl",
                                        "bandai_namco", "cmu_daz", "cmu_31"}
    for preset in loaded:
        for joint in ("pelvis", "left_hip", "right_knee", "left_ankle", "right_shoulder", "left_elbow", "right_wrist"):
            assert preset.bones.get(joint), (preset.file, joint)


def test_presets_are_detected_on_the_real_skeletons(rigs):
    for expected, path in rigs.values():
        _, target, found = _target(path)
        assert found is not None and found[0].name == expected, path
        bone_map = detect_bone_map(target.bone_names, target.parents, target.rest_heads_metres())
        assert bone_map.kind == "preset" and bone_map.name == expected


def test_mixamo_preset_fits_with_and_without_the_namespace():
    names = [n for n in _mixamo_names()]
    for prefix in ("mixamorig:", "", "mixamorig7:"):
        found = best_preset_map([prefix + n for n in names])
        assert found is not None and found[1].file == "mixamo"
        assert found[0].bones["left_hip"] == prefix + "LeftUpLeg"


def _mixamo_names():
    return ["Hips", "Spine", "Spine1", "Spine2", "Neck", "Head", "HeadTop_End"] + [
        f"{side}{part}" for side in ("Left", "Right")
        for part in ("Shoulder", "Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot", "ToeBase", "Toe_End")]


def test_automatic_matching_finds_the_limbs_of_real_rigs_without_presets(rigs):
    """Names + hierarchy alone find the same limb bones as the hand-written presets, on every real rig."""
    for _, path in rigs.values():
        _, target, found = _target(path)
        auto = auto_bone_map(target.bone_names, target.parents, target.rest_heads_metres(), str(path))
        preset_map = found[0]
        for joint in LIMB_JOINTS:
            if preset_map.bones[joint]:
                assert auto.bones[joint] == preset_map.bones[joint], (path.name, joint, auto.bones[joint])
        assert auto.bones["pelvis"] == preset_map.bones["pelvis"], path.name
        assert auto.bones["head"] == preset_map.bones["head"], path.name


def test_automatic_matching_reads_other_side_conventions():
    """Side spellings .L/_l/left_/l_ and synonyms (upperleg, lowerarm, calf) on a renamed real CC rig."""
    styles = {"_l": lambda part, s: f"{part}_{s.lower()}", ".L": lambda part, s: f"{part}.{s}",
              "left_": lambda part, s: f"{'left' if s == 'L' else 'right'}_{part}",
              "l_": lambda part, s: f"{s.lower()}_{part}"}
    parts = {"Thigh": "upperleg", "Calf": "calf", "Foot": "foot", "Clavicle": "clavicle", "Upperarm": "upperarm",
             "Forearm": "lowerarm", "Hand": "hand"}
    base = canonical_target_skeleton()
    for style, name_of in styles.items():
        names = list(base.bone_names)
        for joint, part in (("hip", "Thigh"), ("knee", "Calf"), ("ankle", "Foot"), ("collar", "Clavicle"),
                            ("shoulder", "Upperarm"), ("elbow", "Forearm"), ("wrist", "Hand")):
            for side, letter in (("left", "L"), ("right", "R")):
                names[skeleton.JOINT_INDEX[f"{side}_{joint}"]] = name_of(parts[part], letter)
        auto = auto_bone_map(names, base.parents, base.rest_heads_metres())
        for joint in LIMB_JOINTS:
            assert auto.bones[joint] == names[skeleton.JOINT_INDEX[joint]], (style, joint)


def test_bone_map_json_round_trip_and_errors_name_the_bone(tmp_path, rigs):
    _, target, found = _target(rigs["bandai_namco"][1])
    path = save_bone_map(found[0].with_bone("left_collar", None), tmp_path / "map.json")
    loaded = load_bone_map(path)
    assert loaded.bones["left_collar"] is None and loaded.kind == "user"
    assert loaded.bones["left_wrist"] == "Hand_L"
    data = json.loads(path.read_text())
    data["bones"]["left_wrist"] = "Hand_Left"
    with pytest.raises(BoneMapError, match="'Hand_Left'.*left_wrist"):
        bone_map_from_dict(data).check(target.bone_names, "bandai")
    data["bones"]["left_wrist"] = None
    with pytest.raises(BoneMapError, match="left_wrist"):
        bone_map_from_dict(data).check(target.bone_names, "bandai")
    data["bones"]["left_thumb"] = "x"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(InputFileError, match="bad.json.*left_thumb"):
        load_bone_map(tmp_path / "bad.json")


def test_bandai_namco_round_trip_through_the_kmm_skeleton_within_1_cm(rigs):
    """A real Bandai-Namco clip -> the KMM armature built for it -> back onto the Bandai rig."""
    path = rigs["bandai_namco"][1]
    clip, target, found = _target(path)
    joints = bvh_to_canonical_joints(clip, builtin_joint_map("bandai_namco"), None)
    kmm = canonical_target_skeleton(fit_rest_offsets(joints))
    on_kmm = retarget(source_from_positions(joints, clip.fps), kmm,
                      detect_bone_map(kmm.bone_names, kmm.parents))
    back = retarget(source_from_positions(on_kmm.joint_points(), clip.fps), target, found[0])
    original = clip.world_positions(0.01)[:, list(clip.joint_indices)]
    compared = [i for i, name in enumerate(target.bone_names) if name != "joint_Root"]  # a ground projection
    error = np.linalg.norm(back.heads[:, compared] - original[:, compared], axis=-1)
    print(f"Bandai-Namco round trip through the KMM skeleton: max {error.max() * 100:.3f} cm, mean "
          f"{error.mean() * 100:.4f} cm over {error.shape[0]} frames x {error.shape[1]} joints")
    assert error.max() < 0.01, f"max {error.max() * 100:.2f} cm"
    assert error.mean() < 0.001


def _quality(motion, source):
    return measure(motion.joint_points(), source.positions, motion.plan.scale, source.rest_positions,
                   motion.local_rotations()[:, motion.driven_bones()], source.fps)


def proportion_floor(source, target, bone_map) -> float:
    """The mean error (fraction of the height) of the source's own rest pose, standing still, put on the rig: what
    the two skeletons' proportions alone cost."""
    from kmm_core.retarget.transfer import SourceMotion

    rest = source.rest_positions[None] + np.array([0.0, 1.0, 0.0])
    still = SourceMotion(positions=np.repeat(rest, 2, axis=0), rest_positions=source.rest_positions, fps=30.0,
                         global_rotations=np.broadcast_to(np.eye(3), (2, skeleton.NUM_JOINTS, 3, 3)).copy())
    return _quality(retarget(still, target, bone_map), still).mean_error_fraction


def _a_pose_rig(longer_legs: bool = True) -> TargetSkeleton:
    """The KMM skeleton with its arms lowered 45 degrees in the rest pose (and 15% longer legs)."""
    offsets = skeleton.tpose_offsets().copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for joint in ("elbow", "wrist"):
            length = np.linalg.norm(offsets[skeleton.JOINT_INDEX[f"{side}_{joint}"]])
            offsets[skeleton.JOINT_INDEX[f"{side}_{joint}"]] = length * np.array([sign, -1.0, 0.0]) / np.sqrt(2)
        for joint in ("knee", "ankle"):
            offsets[skeleton.JOINT_INDEX[f"{side}_{joint}"]] *= 1.15 if longer_legs else 1.0
    return canonical_target_skeleton(offsets, name="A-pose")


@pytest.fixture(scope="module")
def mocap_sources(rigs):
    """A real clip of each skeleton as canonical motion at 30 fps."""
    sources = {}
    for name in ("bandai_namco", "cmu_daz", "cmu_31"):
        clip = read_bvh(rigs[name][1])
        joints = bvh_to_canonical_joints(clip, builtin_joint_map(name), None)
        if name == "cmu_daz":
            joints = joints[10:]  # these conversions start in a T-pose that snaps into the first real pose
        sources[name] = resample_source(source_from_positions(joints, clip.fps), 30.0)
    return sources


def test_real_mocap_and_a_generated_take_on_every_real_rig(rigs, mocap_sources, generated_take):
    """Mean joint error <= 3% of body height, foot-contact drift <= 1 cm, no turn > 90 degrees per 30 fps frame."""
    sources = dict(mocap_sources)
    sources["generated"] = resample_source(source_from_motion_result(MotionResult.load(generated_take)), 30.0)
    targets = {name: _target(path)[1:] for name, (_, path) in rigs.items()}
    kmm = canonical_target_skeleton()
    targets["kmm"] = (kmm, (detect_bone_map(kmm.bone_names, kmm.parents), None))
    a_pose = _a_pose_rig()
    targets["a_pose"] = (a_pose, (detect_bone_map(a_pose.bone_names, a_pose.parents), None))
    for target_name, (target, found) in targets.items():
        for source_name, source in sources.items():
            motion = retarget(source, target, found[0])
            quality = _quality(motion, source)
            where = f"{source_name} -> {target_name}"
            # Only where the skeletons' proportions differ more than 3% of the height (HumanML3D's torso, the
            # generated take's, is 10-20 cm longer for its leg length than the mocap skeletons'), so that even the
            # source's own T-pose put on the rig misses by that much, may the motion add at most 1% to that floor.
            floor = proportion_floor(source, target, found[0])
            limit = 0.03 if floor <= 0.03 else floor + 0.01
            assert quality.mean_error_fraction <= limit, (where, floor, quality)
            assert quality.contact_drift <= 0.01, (where, quality)
            assert quality.largest_turn <= 90.0, (where, quality)
            assert quality.contact_frames > 10, where


def test_a_pose_rest_gives_the_same_motion_as_a_t_pose_rest(mocap_sources):
    """Rest pose differences are aligned away: on an A-pose rig the arms point where they point on a T-pose rig."""
    source = mocap_sources["cmu_daz"]
    t_pose = canonical_target_skeleton()
    a_pose = _a_pose_rig(longer_legs=False)
    on_t = retarget(source, t_pose, detect_bone_map(t_pose.bone_names, t_pose.parents))
    on_a = retarget(source, a_pose, detect_bone_map(a_pose.bone_names, a_pose.parents))
    for elbow, wrist in (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")):
        e, w = skeleton.JOINT_INDEX[elbow], skeleton.JOINT_INDEX[wrist]
        forearm_t = on_t.heads[:, w] - on_t.heads[:, e]
        forearm_a = on_a.heads[:, w] - on_a.heads[:, e]
        cosine = np.sum(forearm_t * forearm_a, -1) / np.linalg.norm(forearm_t, axis=-1) / np.linalg.norm(
            forearm_a, axis=-1)
        assert cosine.min() > 0.999


def test_knees_never_flip_under_leg_ik(mocap_sources):
    """The knee bends to the same side as the source's on every bent frame, also where IK bends it more."""
    source = mocap_sources["cmu_31"]
    rig = _a_pose_rig()  # 15% longer shins: IK bends the knees more
    motion = retarget(source, rig, detect_bone_map(rig.bone_names, rig.parents))

    def bend_side(positions, side):
        hip, knee, ankle = (skeleton.JOINT_INDEX[f"{side}_{n}"] for n in ("hip", "knee", "ankle"))
        bend = np.cross(positions[:, knee] - positions[:, hip], positions[:, ankle] - positions[:, knee])
        lateral = positions[:, skeleton.JOINT_INDEX["left_hip"]] - positions[:, skeleton.JOINT_INDEX["right_hip"]]
        return np.sum(bend * lateral, axis=-1) / np.linalg.norm(lateral, axis=-1), np.linalg.norm(bend, axis=-1)

    for side in ("left", "right"):
        rig_side, rig_bend = bend_side(motion.heads, side)
        source_side, source_bend = bend_side(source.positions, side)
        bent = (rig_bend > 0.02) & (source_bend > 0.02)
        assert bent.sum() > 10
        assert np.all(np.sign(rig_side[bent]) == np.sign(source_side[bent])), side


def test_kmm_retarget_cli_writes_on_the_target_hierarchy(tmp_path, rigs, generated_take):
    target_path = rigs["character_creator"][1]
    target = read_bvh(target_path)
    out = tmp_path / "out.bvh"
    map_file = tmp_path / "map.json"
    assert kmm_main(["retarget", str(generated_take), "--to", str(target_path), "-o", str(out),
                     "--save-map", str(map_file)]) == 0
    written = read_bvh(out)
    assert written.names == target.names and written.channels == target.channels
    np.testing.assert_allclose(written.offsets, target.offsets)
    assert written.frame_time == pytest.approx(target.frame_time, rel=1e-6)
    generated = MotionResult.load(generated_take)
    # kmm_core.motion.resample's one frame-count rule: the same duration at the file's frame rate.
    assert written.num_frames == resampled_frame_count(len(generated.joints), generated.fps, target.fps)
    # The file's own FK reproduces the retargeted joints: channels, orders and the root translation are right.
    from kmm_core.retarget.command import load_source
    from kmm_core.retarget.transfer import retarget as run

    bone_map = load_bone_map(map_file)
    _, skeleton_cc, _ = _target(target_path)
    motion = run(resample_source(load_source(str(generated_take), "bandai_namco"), target.fps), skeleton_cc,
                 bone_map)
    positions = written.world_positions(0.01)[:, list(written.joint_indices)]
    # RL_BoneRoot (joint 0) has the only position channels above CC_Base_Hip, so it carries the travel in the file.
    np.testing.assert_allclose(positions[:, 1:], motion.heads[:, 1:], atol=1e-4)
    # A fixed map (one row changed) is used as given.
    fixed = bone_map.with_bone("left_collar", None)
    save_bone_map(fixed, map_file)
    assert kmm_main(["retarget", str(generated_take), "--to", str(target_path), "-o", str(out), "--bone-map",
                     str(map_file)]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**fixed.to_dict(), "bones": {**fixed.bones, "left_wrist": "NoSuchBone"}}))
    assert kmm_main(["retarget", str(generated_take), "--to", str(target_path), "-o", str(out), "--bone-map",
                     str(bad)]) == 2


def test_a_rig_without_hands_is_refused_naming_what_is_missing():
    rig = canonical_target_skeleton()
    names = [n if "wrist" not in n else f"stub{i}" for i, n in enumerate(rig.bone_names)]
    with pytest.raises(KMMError, match="no left hand bone"):
        auto_bone_map(names, rig.parents)


def test_only_the_needed_bones_give_the_same_pose(rigs, mocap_sources):
    """Cutting a rig down to the mapped bones and their ancestors (what Blender keys) changes no kept bone."""
    _, target, found = _target(rigs["character_creator"][1])
    full = retarget(mocap_sources["bandai_namco"], target, found[0])
    cut = retarget(mocap_sources["bandai_namco"], target, found[0], only_needed_bones=True)
    assert len(cut.skeleton.bone_names) < len(target.bone_names) // 2
    kept = [target.index[name] for name in cut.skeleton.bone_names]
    np.testing.assert_allclose(cut.heads, full.heads[:, kept], atol=1e-9)
    np.testing.assert_allclose(cut.local_rotations(), full.local_rotations()[:, kept], atol=1e-9)


def test_proportion_neutral_reference_replays_the_source_on_the_rigs_bone_lengths(mocap_sources):
    """The table's reference (kmm_core.retarget.quality.proportion_neutral_reference): on a rig with the source's own
    skeleton it is the source itself; on an A-pose rig with 15% longer legs every canonical bone has the rig's length
    and points where the source's bone points, at every frame (the A-pose rest plays no part)."""
    from kmm_core.retarget.quality import proportion_neutral_reference

    source = mocap_sources["bandai_namco"]
    same = proportion_neutral_reference(source.positions, source.global_rotations, source.rest_positions,
                                        source.rest_positions, 1.0)
    # (positions and rotations of the 30 fps source are resampled separately: they agree to a tenth of a millimetre)
    np.testing.assert_allclose(same, source.positions, atol=1e-4)
    rig = _a_pose_rig()
    bone_map = detect_bone_map(rig.bone_names, rig.parents)
    motion = retarget(source, rig, bone_map)
    rest_points = motion.plan.rest_points()
    rig_rest = np.array([rest_points[j] for j in range(skeleton.NUM_JOINTS)])
    reference = proportion_neutral_reference(source.positions, source.global_rotations, source.rest_positions,
                                             rig_rest, motion.plan.scale)
    np.testing.assert_allclose(reference[:, 0], source.positions[:, 0] * motion.plan.scale)
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            continue
        bone = reference[:, joint] - reference[:, parent]
        np.testing.assert_allclose(np.linalg.norm(bone, axis=-1), np.linalg.norm(rig_rest[joint] - rig_rest[parent]),
                                   rtol=1e-9)
        wanted = same[:, joint] - same[:, parent]  # the source's own bone, posed by its rotations
        cosine = np.sum(bone * wanted, -1) / np.linalg.norm(bone, axis=-1) / np.linalg.norm(wanted, axis=-1)
        assert cosine.min() > 1 - 1e-9, skeleton.JOINT_NAMES[joint]
