# SPDX-License-Identifier: GPL-3.0-or-later
"""Rigs BUILT in bpy (not downloaded) with the published bone names and hierarchy of rig families whose files cannot
ship with the tests: Auto-Rig Pro's exported skeleton, Daz Genesis 8 and 9, a VRoid VRM avatar (and the same avatar
with the VRM humanoid bone names), the SMPL FBX skeleton and the SMPL-X Blender add-on's armature.

The names and parent/child structure follow the families' published names (VRM: the VRMC_vrm humanoid specification
and VRoid Studio's J_Bip_* export; Daz: the Genesis 8 bend/twist and Genesis 9 skeletons as Daz Studio and the
Diffeomorphic importer name them; SMPL: the m_avg_* joints of the SMPL FBX model; SMPL-X: the lower-case joint names
of the SMPL-X Blender add-on; Auto-Rig Pro: the deform skeleton of its Game Engine export, `root.x`,
`thigh_stretch.l`, `arm_stretch.l` ...).  The rest geometry is plausible, not measured from a product file: a
~1.6-1.8 m body, the family's units and axes, arms in an A-pose where the family's default figure stands in one
(Daz Genesis 8 and 9), T-pose elsewhere (VRM requires it; SMPL's template stands in one), twist and metatarsal bones
in or beside the chains as in the real rigs, and bone rolls that differ from KMM's.

Auto-Rig Pro: the exported deform skeleton, not the rig's `c_*_fk` controllers, because in the control rig those
controllers move the deform bones through constraints and helper bones (`arm_fk_pole`, `c_arm_twist_offset` ...)
that a hand-built armature cannot reproduce faithfully; the export is what reaches other scenes and engines.

`rigify_named_bones` is the bone list of a plain humanoid with Rigify metarig names, for scripts that build their
own variants of it (odd scales, linked rigs, base meshes without a head bone).
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix, Vector

Bone = tuple  # (name, parent or None, head, tail, roll degrees), armature space


def armature(context, name: str, bones: list[Bone], matrix: Matrix) -> bpy.types.Object:
    """An armature object from (name, parent, head, tail, roll degrees) in armature space."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    context.scene.collection.objects.link(obj)
    obj.matrix_world = matrix
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for bone_name, parent, head, tail, roll in bones:
        edit = data.edit_bones.new(bone_name)
        edit.head, edit.tail, edit.roll = Vector(head), Vector(tail), np.radians(roll)
        if parent:
            edit.parent = data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def _arm_points(shoulder, lengths, down_degrees: float, sign: float) -> list[tuple]:
    """Points along an arm from `shoulder` (Z up, character facing -Y, its left = +X), lowered by `down_degrees`."""
    down = np.radians(down_degrees)
    direction = np.array([sign * np.cos(down), 0.02, -np.sin(down)])
    points, distance = [], 0.0
    for length in (0.0, *lengths):
        distance += length
        points.append(tuple(np.array(shoulder) + distance * direction))
    return points


def _mirror(point, sign):
    return (sign * point[0], point[1], point[2])


def build_auto_rig_pro(context) -> bpy.types.Object:
    """Auto-Rig Pro's exported deform skeleton (Game Engine export, humanoid): metres, Z up, T-pose, twist bones
    beside the arm and leg bones."""
    bones: list[Bone] = [("root.x", None, (0, 0.01, 0.98), (0, 0.01, 1.08), 0),
                         ("spine_01.x", "root.x", (0, 0.01, 1.08), (0, 0.02, 1.20), 0),
                         ("spine_02.x", "spine_01.x", (0, 0.02, 1.20), (0, 0.01, 1.35), 0),
                         ("spine_03.x", "spine_02.x", (0, 0.01, 1.35), (0, 0.0, 1.46), 0),
                         ("neck.x", "spine_03.x", (0, 0.0, 1.46), (0, -0.01, 1.56), 0),
                         ("head.x", "neck.x", (0, -0.01, 1.56), (0, -0.01, 1.78), 0)]
    for side, sign in (("l", 1.0), ("r", -1.0)):
        shoulder, elbow, wrist, hand_end = _arm_points((0.17 * sign, 0.02, 1.43), (0.27, 0.25, 0.09), 3.0, sign)
        roll = 90 * sign
        bones += [(f"shoulder.{side}", "spine_03.x", (0.02 * sign, 0.0, 1.42), shoulder, 0),
                  (f"arm_stretch.{side}", f"shoulder.{side}", shoulder, elbow, roll),
                  (f"arm_twist.{side}", f"arm_stretch.{side}", shoulder, tuple((np.add(shoulder, elbow)) / 2), roll),
                  (f"forearm_stretch.{side}", f"arm_stretch.{side}", elbow, wrist, roll),
                  (f"forearm_twist.{side}", f"forearm_stretch.{side}", tuple(np.add(elbow, wrist) / 2), wrist, roll),
                  (f"hand.{side}", f"forearm_stretch.{side}", wrist, hand_end, roll),
                  (f"thigh_stretch.{side}", "root.x", _mirror((0.09, 0.0, 0.95), sign),
                   _mirror((0.09, -0.01, 0.52), sign), 0),
                  (f"thigh_twist.{side}", f"thigh_stretch.{side}", _mirror((0.09, 0.0, 0.95), sign),
                   _mirror((0.09, -0.005, 0.73), sign), 0),
                  (f"leg_stretch.{side}", f"thigh_stretch.{side}", _mirror((0.09, -0.01, 0.52), sign),
                   _mirror((0.09, 0.02, 0.09), sign), 0),
                  (f"leg_twist.{side}", f"leg_stretch.{side}", _mirror((0.09, 0.0, 0.30), sign),
                   _mirror((0.09, 0.02, 0.09), sign), 0),
                  (f"foot.{side}", f"leg_stretch.{side}", _mirror((0.09, 0.02, 0.09), sign),
                   _mirror((0.09, -0.11, 0.02), sign), 0),
                  (f"toes_01.{side}", f"foot.{side}", _mirror((0.09, -0.11, 0.02), sign),
                   _mirror((0.09, -0.18, 0.02), sign), 0)]
    return armature(context, "Auto-Rig Pro export", bones, Matrix())


def build_daz_genesis8(context) -> bpy.types.Object:
    """Daz Genesis 8 (female proportions, 1.68 m) as the Diffeomorphic importer brings it in: decimetres (object
    scale 0.1), Z up, arms in Genesis 8's A-pose (45 degrees down), bend and twist bones in the limb chains, hip >
    pelvis > thighs, hip > abdomenLower ... chestUpper > neckLower > neckUpper > head, metatarsals before the toes."""
    def dm(point):
        return tuple(10.0 * np.array(point))

    spine = [("hip", None, (0, 0.01, 0.99), (0, 0.01, 1.06)), ("pelvis", "hip", (0, 0.01, 0.99), (0, 0.01, 0.88)),
             ("abdomenLower", "hip", (0, 0.01, 1.02), (0, 0.02, 1.09)),
             ("abdomenUpper", "abdomenLower", (0, 0.02, 1.09), (0, 0.02, 1.18)),
             ("chestLower", "abdomenUpper", (0, 0.02, 1.18), (0, 0.01, 1.31)),
             ("chestUpper", "chestLower", (0, 0.01, 1.31), (0, 0.01, 1.40)),
             ("neckLower", "chestUpper", (0, 0.01, 1.41), (0, 0.0, 1.47)),
             ("neckUpper", "neckLower", (0, 0.0, 1.47), (0, -0.005, 1.53)),
             ("head", "neckUpper", (0, -0.005, 1.53), (0, -0.005, 1.70))]
    bones: list[Bone] = [(n, p, dm(h), dm(t), 0) for n, p, h, t in spine]
    for side, sign in (("l", 1.0), ("r", -1.0)):
        shoulder, upper_mid, elbow, fore_mid, wrist, hand_end = _arm_points(
            (0.15 * sign, 0.02, 1.39), (0.13, 0.13, 0.12, 0.12, 0.09), 45.0, sign)
        roll = -90 * sign
        limb = [(f"{side}Collar", "chestUpper", (0.02 * sign, 0.0, 1.38), shoulder, 180),
                (f"{side}ShldrBend", f"{side}Collar", shoulder, upper_mid, roll),
                (f"{side}ShldrTwist", f"{side}ShldrBend", upper_mid, elbow, roll),
                (f"{side}ForearmBend", f"{side}ShldrTwist", elbow, fore_mid, roll),
                (f"{side}ForearmTwist", f"{side}ForearmBend", fore_mid, wrist, roll),
                (f"{side}Hand", f"{side}ForearmTwist", wrist, hand_end, roll),
                (f"{side}ThighBend", "pelvis", _mirror((0.08, 0.0, 0.92), sign), _mirror((0.085, 0.0, 0.72), sign), 0),
                (f"{side}ThighTwist", f"{side}ThighBend", _mirror((0.085, 0.0, 0.72), sign),
                 _mirror((0.09, -0.01, 0.50), sign), 0),
                (f"{side}Shin", f"{side}ThighTwist", _mirror((0.09, -0.01, 0.50), sign),
                 _mirror((0.09, 0.02, 0.08), sign), 0),
                (f"{side}Foot", f"{side}Shin", _mirror((0.09, 0.02, 0.08), sign), _mirror((0.09, -0.05, 0.03), sign), 0),
                (f"{side}Metatarsals", f"{side}Foot", _mirror((0.09, -0.05, 0.03), sign),
                 _mirror((0.09, -0.11, 0.01), sign), 0),
                (f"{side}Toe", f"{side}Metatarsals", _mirror((0.09, -0.11, 0.01), sign),
                 _mirror((0.09, -0.16, 0.01), sign), 0)]
        bones += [(n, p, dm(h), dm(t), r) for n, p, h, t, r in limb]
    return armature(context, "Genesis 8 Female", bones, Matrix.Scale(0.1, 4))


def build_daz_genesis9(context) -> bpy.types.Object:
    """Daz Genesis 9 (1.75 m), centimetres (object scale 0.01), Z up, arms in an A-pose (40 degrees down): hip >
    pelvis > l_thigh > l_shin > l_foot > l_metatarsals > l_toes; hip > spine1..spine4 > neck1 > neck2 > head;
    spine4 > l_shoulder > l_upperarm > l_forearm > l_hand; twist bones hang beside the arm and thigh bones."""
    def cm(point):
        return tuple(100.0 * np.array(point))

    spine = [("hip", None, (0, 0.01, 1.02), (0, 0.01, 1.10)), ("pelvis", "hip", (0, 0.01, 1.02), (0, 0.01, 0.90)),
             ("spine1", "hip", (0, 0.01, 1.05), (0, 0.02, 1.14)), ("spine2", "spine1", (0, 0.02, 1.14), (0, 0.02, 1.24)),
             ("spine3", "spine2", (0, 0.02, 1.24), (0, 0.01, 1.36)), ("spine4", "spine3", (0, 0.01, 1.36), (0, 0.01, 1.46)),
             ("neck1", "spine4", (0, 0.01, 1.47), (0, 0.0, 1.53)), ("neck2", "neck1", (0, 0.0, 1.53), (0, -0.005, 1.59)),
             ("head", "neck2", (0, -0.005, 1.59), (0, -0.005, 1.77))]
    bones: list[Bone] = [(n, p, cm(h), cm(t), 0) for n, p, h, t in spine]
    for side, sign in (("l", 1.0), ("r", -1.0)):
        shoulder, elbow, wrist, hand_end = _arm_points((0.16 * sign, 0.02, 1.45), (0.28, 0.25, 0.09), 40.0, sign)
        roll = -90 * sign
        limb = [(f"{side}_shoulder", "spine4", (0.02 * sign, 0.0, 1.44), shoulder, 180),
                (f"{side}_upperarm", f"{side}_shoulder", shoulder, elbow, roll),
                (f"{side}_upperarmtwist1", f"{side}_upperarm", tuple(np.add(shoulder, elbow) / 2), elbow, roll),
                (f"{side}_upperarmtwist2", f"{side}_upperarm", tuple(np.add(shoulder, 3 * np.array(elbow)) / 4),
                 elbow, roll),
                (f"{side}_forearm", f"{side}_upperarm", elbow, wrist, roll),
                (f"{side}_forearmtwist1", f"{side}_forearm", tuple(np.add(elbow, wrist) / 2), wrist, roll),
                (f"{side}_forearmtwist2", f"{side}_forearm", tuple(np.add(elbow, 3 * np.array(wrist)) / 4), wrist, roll),
                (f"{side}_hand", f"{side}_forearm", wrist, hand_end, roll),
                (f"{side}_thigh", "pelvis", _mirror((0.085, 0.0, 0.95), sign), _mirror((0.09, -0.01, 0.53), sign), 0),
                (f"{side}_thightwist1", f"{side}_thigh", _mirror((0.087, 0.0, 0.80), sign),
                 _mirror((0.09, -0.01, 0.53), sign), 0),
                (f"{side}_shin", f"{side}_thigh", _mirror((0.09, -0.01, 0.53), sign), _mirror((0.09, 0.02, 0.09), sign), 0),
                (f"{side}_foot", f"{side}_shin", _mirror((0.09, 0.02, 0.09), sign), _mirror((0.09, -0.05, 0.03), sign), 0),
                (f"{side}_metatarsals", f"{side}_foot", _mirror((0.09, -0.05, 0.03), sign),
                 _mirror((0.09, -0.12, 0.01), sign), 0),
                (f"{side}_toes", f"{side}_metatarsals", _mirror((0.09, -0.12, 0.01), sign),
                 _mirror((0.09, -0.17, 0.01), sign), 0)]
        bones += [(n, p, cm(h), cm(t), r) for n, p, h, t, r in limb]
    return armature(context, "Genesis 9", bones, Matrix.Scale(0.01, 4))


VRM_HUMANOID_NAMES = {
    "J_Bip_C_Hips": "hips", "J_Bip_C_Spine": "spine", "J_Bip_C_Chest": "chest", "J_Bip_C_UpperChest": "upperChest",
    "J_Bip_C_Neck": "neck", "J_Bip_C_Head": "head",
    **{f"J_Bip_{s}_{part}": f"{side}{part if part != 'ToeBase' else 'Toes'}"
       for s, side in (("L", "left"), ("R", "right"))
       for part in ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot", "ToeBase")},
}


def build_vroid(context, humanoid_names: bool = False) -> bpy.types.Object:
    """A VRoid Studio avatar (1.55 m, anime proportions: large head, short torso) as the VRM add-on imports it: metres,
    Z up, T-pose (VRM requires one), Root > J_Bip_C_Hips > J_Bip_C_Spine > J_Bip_C_Chest > J_Bip_C_UpperChest >
    J_Bip_C_Neck > J_Bip_C_Head, shoulders under the upper chest, J_Bip_L_UpperLeg ... J_Bip_L_ToeBase.  With
    `humanoid_names` the bones carry the VRM humanoid names instead (hips, spine, chest, upperChest, leftUpperLeg ...,
    the VRMC_vrm specification's list)."""
    bones: list[Bone] = [("Root", None, (0, 0, 0), (0, 0.1, 0), 0),
                         ("J_Bip_C_Hips", "Root", (0, 0.0, 0.84), (0, 0.0, 0.90), 0),
                         ("J_Bip_C_Spine", "J_Bip_C_Hips", (0, 0.0, 0.90), (0, 0.0, 0.98), 0),
                         ("J_Bip_C_Chest", "J_Bip_C_Spine", (0, 0.0, 0.98), (0, 0.0, 1.07), 0),
                         ("J_Bip_C_UpperChest", "J_Bip_C_Chest", (0, 0.0, 1.07), (0, 0.01, 1.17), 0),
                         ("J_Bip_C_Neck", "J_Bip_C_UpperChest", (0, 0.01, 1.20), (0, 0.01, 1.27), 0),
                         ("J_Bip_C_Head", "J_Bip_C_Neck", (0, 0.01, 1.27), (0, 0.01, 1.52), 0)]
    for s, sign in (("L", 1.0), ("R", -1.0)):
        shoulder, elbow, wrist, hand_end = _arm_points((0.09 * sign, 0.01, 1.18), (0.21, 0.20, 0.07), 0.0, sign)
        bones += [(f"J_Bip_{s}_Shoulder", "J_Bip_C_UpperChest", (0.02 * sign, 0.01, 1.17), shoulder, 0),
                  (f"J_Bip_{s}_UpperArm", f"J_Bip_{s}_Shoulder", shoulder, elbow, 0),
                  (f"J_Bip_{s}_LowerArm", f"J_Bip_{s}_UpperArm", elbow, wrist, 0),
                  (f"J_Bip_{s}_Hand", f"J_Bip_{s}_LowerArm", wrist, hand_end, 0),
                  (f"J_Bip_{s}_UpperLeg", "J_Bip_C_Hips", _mirror((0.075, 0.0, 0.80), sign),
                   _mirror((0.075, 0.0, 0.44), sign), 0),
                  (f"J_Bip_{s}_LowerLeg", f"J_Bip_{s}_UpperLeg", _mirror((0.075, 0.0, 0.44), sign),
                   _mirror((0.075, 0.02, 0.07), sign), 0),
                  (f"J_Bip_{s}_Foot", f"J_Bip_{s}_LowerLeg", _mirror((0.075, 0.02, 0.07), sign),
                   _mirror((0.075, -0.08, 0.02), sign), 0),
                  (f"J_Bip_{s}_ToeBase", f"J_Bip_{s}_Foot", _mirror((0.075, -0.08, 0.02), sign),
                   _mirror((0.075, -0.13, 0.02), sign), 0)]
    if humanoid_names:
        def rename(name):
            return VRM_HUMANOID_NAMES.get(name, name) if name else name

        bones = [(rename(n), rename(p), h, t, r) for n, p, h, t, r in bones]
    return armature(context, "VRM humanoid" if humanoid_names else "VRoid avatar", bones, Matrix())


SMPL_JOINTS = ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
               "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
               "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand")
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


def _smpl_rest(skeleton, scale: float) -> np.ndarray:
    """(24, 3) SMPL's template joints in HumanML3D axes (the 22 of the KMM skeleton, scaled, and the two hand
    joints 8 cm past the wrists)."""
    rest = skeleton.rest_positions(skeleton.tpose_offsets()) * scale
    hands = [rest[20] + (0.08, 0.0, 0.0), rest[21] - (0.08, 0.0, 0.0)]
    return np.concatenate([rest, hands])


def _tails(points: np.ndarray, parents) -> np.ndarray:
    tails = np.empty_like(points)
    for joint in range(len(points)):
        children = [c for c, p in enumerate(parents) if p == joint]
        if children:
            tails[joint] = points[children].mean(axis=0) if joint != 0 else points[joint] + (0, 0.1, 0)
        else:
            tails[joint] = points[joint] + (points[joint] - points[parents[joint]]) * 0.5
        if np.linalg.norm(tails[joint] - points[joint]) < 1e-3:
            tails[joint] = points[joint] + (0, 0.05, 0)
    return tails


def build_smpl_fbx(context, skeleton, a_pose: bool = False) -> bpy.types.Object:
    """The SMPL FBX skeleton (m_avg_root > m_avg_Pelvis > m_avg_L_Hip ...; 24 joints incl. the hands): Y-up
    centimetres under an object rotated and scaled like an FBX import, T-pose, bone rolls of 45 degrees.  With
    `a_pose` the arms hang 45 degrees down in the rest pose (everything else the same)."""
    rest = _smpl_rest(skeleton, 1.04) * 100.0 + (0, 100.0, 0)  # Y up, the character facing +Z (HumanML3D axes)
    if a_pose:
        for side, sign in (("L", 1.0), ("R", -1.0)):
            shoulder = rest[SMPL_JOINTS.index(f"{side}_Shoulder")].copy()
            turn = np.radians(-45.0 * sign)  # about +Z (forward): the left arm (+X) turns down, the right arm too
            rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0, 0, 1.0]])
            for part in ("Elbow", "Wrist", "Hand"):
                joint = SMPL_JOINTS.index(f"{side}_{part}")
                rest[joint] = shoulder + rotation @ (rest[joint] - shoulder)
    tails = _tails(rest, SMPL_PARENTS)
    bones: list[Bone] = [("m_avg_root", None, (0, 0, 0), (0, 10, 0), 0)]
    for joint, name in enumerate(SMPL_JOINTS):
        parent = SMPL_PARENTS[joint]
        bones.append((f"m_avg_{name}", "m_avg_root" if parent < 0 else f"m_avg_{SMPL_JOINTS[parent]}",
                      tuple(rest[joint]), tuple(tails[joint]), 45))
    return armature(context, "SMPL m_avg A-pose" if a_pose else "SMPL m_avg", bones,
                    Matrix.Rotation(np.radians(90), 4, "X") @ Matrix.Scale(0.01, 4))


SMPLX_BODY = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
              "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
              "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")


def build_smplx(context, skeleton) -> bpy.types.Object:
    """The SMPL-X Blender add-on's armature: root > pelvis > left_hip ..., metres, Z up, T-pose, the jaw and eyes
    (jaw, left_eye_smplhf, right_eye_smplhf) under the head and three joints per finger (left_index1..3 ...) under
    the wrists, slightly other proportions than SMPL's (a 1.70 m body)."""
    offsets = skeleton.tpose_offsets().copy()
    for side in ("left", "right"):
        for joint in ("knee", "ankle"):
            offsets[skeleton.JOINT_INDEX[f"{side}_{joint}"]] *= 1.04
    rest = skeleton.rest_positions(offsets) * 1.06
    rest[:, 1] -= rest[:, 1].min() - 0.08  # ankles 8 cm above the floor
    tails = _tails(rest, skeleton.PARENTS)

    def blender(point):  # HumanML3D (x, y, z) -> Blender (x, -z, y)
        return (float(point[0]), float(-point[2]), float(point[1]))

    bones: list[Bone] = [("root", None, (0, 0, 0), (0, 0, 0.1), 0)]
    for joint, name in enumerate(SMPLX_BODY):
        parent = skeleton.PARENTS[joint]
        bones.append((name, "root" if parent < 0 else SMPLX_BODY[parent], blender(rest[joint]), blender(tails[joint]),
                      0))
    head = rest[skeleton.JOINT_INDEX["head"]]
    bones += [("jaw", "head", blender(head + (0, -0.02, 0.03)), blender(head + (0, -0.06, 0.09)), 0),
              ("left_eye_smplhf", "head", blender(head + (0.03, 0.05, 0.07)), blender(head + (0.03, 0.05, 0.09)), 0),
              ("right_eye_smplhf", "head", blender(head + (-0.03, 0.05, 0.07)), blender(head + (-0.03, 0.05, 0.09)), 0)]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        wrist = rest[skeleton.JOINT_INDEX[f"{side}_wrist"]]
        for finger, across in (("index", 0.02), ("middle", 0.0), ("ring", -0.02), ("pinky", -0.04)):
            parent = f"{side}_wrist"
            for segment in (1, 2, 3):
                start = wrist + (sign * (0.08 + 0.03 * (segment - 1)), 0.0, across)
                end = start + (sign * 0.03, 0.0, 0.0)
                bones.append((f"{side}_{finger}{segment}", parent, blender(start), blender(end), 0))
                parent = f"{side}_{finger}{segment}"
    return armature(context, "SMPL-X", bones, Matrix())


def rigify_named_bones(top: str) -> list[tuple]:
    """(name, parent, head, tail) of a plain humanoid with Rigify metarig names (metres, Z up, facing -Y), the spine
    ending in ``top`` (``spine.006`` as the metarig names its head; ``spine.005`` on base meshes that stop there)."""
    bones = [("spine", None, (0, 0.03, 1.0), (0, 0.02, 1.12)), ("spine.001", "spine", (0, 0.02, 1.12), (0, 0.02, 1.27)),
             ("spine.002", "spine.001", (0, 0.02, 1.27), (0, 0.03, 1.4)),
             ("spine.003", "spine.002", (0, 0.03, 1.4), (0, 0.02, 1.5)),
             ("spine.004", "spine.003", (0, 0.02, 1.5), (0, 0.0, 1.6)), (top, "spine.004", (0, 0.0, 1.6), (0, 0.0, 1.82))]
    for side, x in (("L", 1), ("R", -1)):
        bones += [(f"shoulder.{side}", "spine.003", (0.02 * x, -0.02, 1.45), (0.17 * x, 0.02, 1.46)),
                  (f"upper_arm.{side}", f"shoulder.{side}", (0.18 * x, 0.02, 1.45), (0.45 * x, 0.03, 1.45)),
                  (f"forearm.{side}", f"upper_arm.{side}", (0.45 * x, 0.03, 1.45), (0.7 * x, 0.0, 1.45)),
                  (f"hand.{side}", f"forearm.{side}", (0.7 * x, 0.0, 1.45), (0.78 * x, 0.0, 1.45)),
                  (f"thigh.{side}", "spine", (0.1 * x, 0.02, 0.98), (0.1 * x, 0.0, 0.53)),
                  (f"shin.{side}", f"thigh.{side}", (0.1 * x, 0.0, 0.53), (0.1 * x, 0.04, 0.09)),
                  (f"foot.{side}", f"shin.{side}", (0.1 * x, 0.04, 0.09), (0.1 * x, -0.1, 0.02)),
                  (f"toe.{side}", f"foot.{side}", (0.1 * x, -0.1, 0.02), (0.1 * x, -0.18, 0.0))]
    return bones


def build_mixamo(context) -> bpy.types.Object:
    """Mixamo's published hierarchy and names ("mixamorig:" namespace), T-pose, Y-up centimetres, FBX-like object."""
    p = "mixamorig:"
    bones = [(p + "Hips", None, (0, 104, 0), (0, 114, -1), 0), (p + "Spine", p + "Hips", (0, 114, -1), (0, 126, -1), 0),
             (p + "Spine1", p + "Spine", (0, 126, -1), (0, 140, -1), 0),
             (p + "Spine2", p + "Spine1", (0, 140, -1), (0, 157, 0), 0),
             (p + "Neck", p + "Spine2", (0, 157, 0), (0, 167, 2), 0), (p + "Head", p + "Neck", (0, 167, 2), (0, 185, 2), 0),
             (p + "HeadTop_End", p + "Head", (0, 185, 2), (0, 190, 2), 0)]
    for side, sign in (("Left", 1), ("Right", -1)):
        s = p + side
        bones += [(s + "Shoulder", p + "Spine2", (7 * sign, 150, 0), (18 * sign, 150, 0), 30),
                  (s + "Arm", s + "Shoulder", (18 * sign, 150, 0), (45 * sign, 150, 0), -20),
                  (s + "ForeArm", s + "Arm", (45 * sign, 150, 0), (70 * sign, 150, 0), 45),
                  (s + "Hand", s + "ForeArm", (70 * sign, 150, 0), (80 * sign, 150, 0), 90),
                  (s + "UpLeg", p + "Hips", (9 * sign, 98, 0), (9 * sign, 55, 1), 10),
                  (s + "Leg", s + "UpLeg", (9 * sign, 55, 1), (9 * sign, 10, -2), -10),
                  (s + "Foot", s + "Leg", (9 * sign, 10, -2), (9 * sign, 1, 12), 5),
                  (s + "ToeBase", s + "Foot", (9 * sign, 1, 12), (9 * sign, 1, 20), 0),
                  (s + "Toe_End", s + "ToeBase", (9 * sign, 1, 20), (9 * sign, 1, 24), 0)]
    return armature(context, "Mixamo", bones,
                                   Matrix.Rotation(np.radians(90), 4, "X") @ Matrix.Scale(0.01, 4))
