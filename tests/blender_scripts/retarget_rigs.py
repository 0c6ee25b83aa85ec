# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: takes retargeted onto real and built rigs, evaluated in real bpy (one process for every rig).

    python retarget_rigs.py job.json result.npz

job.json: {"motions": {"generated": take.npz, "mocap": clip.npz}, "bvh": {"bandai_namco": [path, scale], ...},
"regenerated": motion.npz (a second version of "generated" with its second segment changed)}.
Rigs: Blender's bundled Rigify human metarig and the rig Rigify generates from it; the BVH skeletons imported with
Blender's own BVH importer; an A-pose rig with the KMM bone names but other proportions; and Mixamo and UE5-mannequin
rigs BUILT HERE (not downloaded) with the published bone names and hierarchy (Mixamo: "mixamorig:" names, Y-up
armature data in centimetres under an object rotated and scaled like an FBX import; UE5: centimetres, arms in an
A-pose, facing +Y, twist bones); Auto-Rig Pro (export), Daz Genesis 8 and 9, VRoid/VRM, SMPL and SMPL-X rigs BUILT by
published_rigs.py (not downloaded either; see its docstring).  For every rig and motion the evaluated canonical joint
points and the keyed bones' rotations at every frame go into result.npz; the JSON line carries the detected maps and
the behaviour checks.
"""

from __future__ import annotations

import json
import sys

import _harness
import numpy as np

user_dir = _harness.start()
import addon_utils  # noqa: E402
import bpy  # noqa: E402
import published_rigs  # noqa: E402
from mathutils import Matrix  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.rigs import armature_builder, take_keys  # noqa: E402
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_blender.takes import segment_regenerator  # noqa: E402
from kmm_motion.kmm_blender.timeline import segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion import skeleton  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402
from kmm_motion.kmm_core.retarget.quality import measure, on_rig_floor  # noqa: E402
from kmm_motion.kmm_core.retarget.transfer import SourceMotion  # noqa: E402

job = json.loads(open(sys.argv[1], encoding="utf-8").read())
result: dict = {"maps": {}, "unmatched": {}}
arrays: dict[str, np.ndarray] = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0


def build_ue5() -> bpy.types.Object:
    """UE5 mannequin's published names/hierarchy (root > pelvis > spine_01..05 > neck_01 > neck_02 > head, twist
    bones), centimetres, Z up, arms in an A-pose, facing +Y (all points turned 180 degrees about Z)."""
    def turn(point):
        return (-point[0], -point[1], point[2])

    spine = [("root", None, (0, 0, 0), (0, -10, 0)), ("pelvis", "root", (0, 0, 95), (0, -1, 100)),
             ("spine_01", "pelvis", (0, -1, 100), (0, -1, 107)), ("spine_02", "spine_01", (0, -1, 107), (0, -1, 115)),
             ("spine_03", "spine_02", (0, -1, 115), (0, -1, 124)), ("spine_04", "spine_03", (0, -1, 124), (0, 0, 134)),
             ("spine_05", "spine_04", (0, 0, 134), (0, 1, 148)), ("neck_01", "spine_05", (0, 1, 148), (0, 1, 153)),
             ("neck_02", "neck_01", (0, 1, 153), (0, 0, 160)), ("head", "neck_02", (0, 0, 160), (0, 0, 178))]
    bones = [(n, parent, turn(h), turn(t), 90) for n, parent, h, t in spine]
    down = np.radians(40)
    for side, sign in (("l", 1), ("r", -1)):
        def arm(distance, sign=sign):
            return (sign * (16 + distance * np.cos(down)), 2, 142 - distance * np.sin(down))

        limb = [(f"clavicle_{side}", "spine_05", (3 * sign, 1, 143), arm(0)),
                (f"upperarm_{side}", f"clavicle_{side}", arm(0), arm(27)),
                (f"upperarm_twist_01_{side}", f"upperarm_{side}", arm(12), arm(20)),
                (f"lowerarm_{side}", f"upperarm_{side}", arm(27), arm(52)),
                (f"lowerarm_twist_01_{side}", f"lowerarm_{side}", arm(40), arm(48)),
                (f"hand_{side}", f"lowerarm_{side}", arm(52), arm(62)),
                (f"thigh_{side}", "pelvis", (9 * sign, 0, 92), (9 * sign, 1, 50)),
                (f"thigh_twist_01_{side}", f"thigh_{side}", (9 * sign, 0, 75), (9 * sign, 0, 65)),
                (f"calf_{side}", f"thigh_{side}", (9 * sign, 1, 50), (9 * sign, 3, 9)),
                (f"calf_twist_01_{side}", f"calf_{side}", (9 * sign, 2, 30), (9 * sign, 2, 20)),
                (f"foot_{side}", f"calf_{side}", (9 * sign, 3, 9), (9 * sign, -12, 2)),
                (f"ball_{side}", f"foot_{side}", (9 * sign, -12, 2), (9 * sign, -18, 2))]
        bones += [(n, parent, turn(h), turn(t), -90 * sign) for n, parent, h, t in limb]
    return published_rigs.armature(context, "UE5 mannequin", bones, Matrix.Scale(0.01, 4))


def a_pose_offsets() -> np.ndarray:
    offsets = skeleton.tpose_offsets().copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for joint in ("elbow", "wrist"):
            index = skeleton.JOINT_INDEX[f"{side}_{joint}"]
            offsets[index] = np.linalg.norm(offsets[index]) * np.array([sign, -1.0, 0.0]) / np.sqrt(2)
        for joint in ("knee", "ankle"):
            offsets[skeleton.JOINT_INDEX[f"{side}_{joint}"]] *= 1.15
    return offsets


def import_bvh(path: str, scale: float) -> bpy.types.Object:
    bpy.ops.import_anim.bvh(filepath=path, global_scale=scale)
    obj = context.view_layer.objects.active
    obj.animation_data.action = None  # the file's own motion is not what is measured
    return obj


# --- the rigs ------------------------------------------------------------------------------------------------------
rigs: dict[str, bpy.types.Object] = {}
addon_utils.enable("rigify", default_set=True)
bpy.ops.object.armature_human_metarig_add()
rigs["rigify_metarig"] = context.view_layer.objects.active
bpy.ops.pose.rigify_generate()
rigs["rigify"] = context.view_layer.objects.active
rigs["rigify_metarig"].location = (3.0, 0.0, 0.0)
for name, (path, scale) in job["bvh"].items():
    rigs[name] = import_bvh(path, scale)
rigs["a_pose"] = armature_builder.create_armature(context, name="A-pose KMM", offsets=a_pose_offsets())
rigs["mixamo"] = published_rigs.build_mixamo(context)
rigs["ue5_mannequin"] = build_ue5()
rigs["auto_rig_pro"] = published_rigs.build_auto_rig_pro(context)
rigs["daz_genesis8"] = published_rigs.build_daz_genesis8(context)
rigs["daz_genesis9"] = published_rigs.build_daz_genesis9(context)
rigs["vroid"] = published_rigs.build_vroid(context)
rigs["vrm_humanoid"] = published_rigs.build_vroid(context, humanoid_names=True)
rigs["smpl_fbx"] = published_rigs.build_smpl_fbx(context, skeleton)
rigs["smpl_fbx_a_pose"] = published_rigs.build_smpl_fbx(context, skeleton, a_pose=True)
rigs["smplx"] = published_rigs.build_smplx(context, skeleton)

motions = {name: MotionResult.load(path) for name, path in job["motions"].items()}
options = take_keys.WriteOptions(start_frame=1.0)
for rig_name, rig in rigs.items():
    label, unmatched, problem = rig_retarget.describe_bone_map(rig)
    result["maps"][rig_name] = label
    result["unmatched"][rig_name] = unmatched
    assert problem is None, (rig_name, problem)
    bone_map = rig_retarget.bone_map_for(rig)
    for motion_name, path in job["motions"].items():
        imported = take_importer.import_takes(context, [path], rig, options)
        take = imported.takes[0]
        source = rig_retarget.source_for(motions[motion_name], False, 30.0)
        planned = rig_retarget.retarget_onto(rig, source)
        keyed = [rig.data.bones[name].name for name in planned.skeleton.bone_names
                 if planned.skeleton.index[name] in planned.plan.driver]
        frames = range(int(take.frame_start), int(take.frame_end) + 1)
        points, quaternions = [], []
        for frame in frames:
            scene.frame_set(frame)
            points.append(rig_retarget.evaluated_joint_points(rig, bone_map, planned.skeleton))
            # the pose rotation in whatever mode the bone is keyed (the BVH importer's bones use Euler angles)
            quaternions.append([list(rig.pose.bones[name].matrix_basis.to_quaternion()) for name in keyed])
        if rig_name == "rigify":  # the deforming chain follows the keyed FK controls (IK/FK switches at FK)
            pairs = [("ORG-upper_arm.L", "upper_arm_fk.L"), ("ORG-forearm.R", "forearm_fk.R"), ("ORG-hand.L", "hand_fk.L"),
                     ("ORG-shin.R", "shin_fk.R"), ("ORG-foot.L", "foot_fk.L"), ("DEF-forearm.L", "forearm_fk.L"),
                     ("ORG-spine.004", "neck"), ("ORG-spine.006", "head")]
            worst = 0.0
            for frame in list(frames)[::10]:
                scene.frame_set(frame)
                worst = max(worst, max((rig.pose.bones[a].head - rig.pose.bones[b].head).length for a, b in pairs))
            result[f"rigify_deform_follows_controls__{motion_name}"] = worst
        key = f"{rig_name}__{motion_name}"
        arrays[f"points__{key}"] = np.array(points)
        arrays[f"source__{key}"] = source.positions
        arrays[f"rest__{key}"] = source.rest_positions
        arrays[f"scale__{key}"] = np.array(planned.plan.scale)
        arrays[f"offset__{key}"] = np.array(planned.vertical_offset)  # the body stood on the rig's own floor
        rest_points = planned.plan.rest_points()  # where the canonical joints sit on the rig at rest
        arrays[f"rig_rest__{key}"] = np.array([rest_points.get(j, [np.nan] * 3) for j in range(skeleton.NUM_JOINTS)])
        arrays[f"source_rotations__{motion_name}"] = source.global_rotations
        arrays[f"quaternions__{key}"] = np.array(quaternions)
        # What the proportions alone cost: the source's own rest pose, standing still, put on the rig.
        rest = source.rest_positions[None] + np.array([0.0, 1.0, 0.0])
        still = SourceMotion(positions=np.repeat(rest, 2, axis=0), rest_positions=source.rest_positions, fps=30.0,
                             global_rotations=np.broadcast_to(np.eye(3), (2, skeleton.NUM_JOINTS, 3, 3)).copy())
        standing = rig_retarget.retarget_onto(rig, still)
        arrays[f"floor__{key}"] = np.array(measure(
            standing.joint_points(), on_rig_floor(still.positions, standing.vertical_offset, standing.plan.scale),
            standing.plan.scale, still.rest_positions, standing.local_rotations(), 30.0).mean_error_fraction)

# --- behaviour around the takes -----------------------------------------------------------------------------------
mixamo = rigs["mixamo"]
# A failing write changes nothing: the rig keeps its action and no action is added.
bad_path = str(user_dir / "bad.npz")
bad = MotionResult.load(job["motions"]["generated"])
bad.root_translation[5, 0] = np.nan
np.savez(bad_path, **{k: v for k, v in np.load(job["motions"]["generated"]).items() if k != "root_translation"},
         root_translation=bad.root_translation)
before = (mixamo.animation_data.action.name, len(bpy.data.actions))
try:
    take_importer.import_takes(context, [bad_path], mixamo, options)
    result["bad_motion_error"] = None
except KMMError as error:
    result["bad_motion_error"] = str(error)
result["unchanged_after_failure"] = before == (mixamo.animation_data.action.name, len(bpy.data.actions))

# NLA push on a foreign rig.
nla = take_importer.import_takes(context, [job["motions"]["generated"]], mixamo,
                                 take_keys.WriteOptions(start_frame=1.0, push_to_nla=True))
result["nla_track"] = nla.takes[0].nla_track is not None and mixamo.animation_data.action is None

# Regenerate one segment in place on a foreign rig (the worker's result stands in as a prepared file).
take = take_importer.import_takes(context, [job["two_segments"]], mixamo, options).takes[0]
plan = segment_regenerator.plan_regeneration(scene, mixamo, 1)
new_take = segment_regenerator.apply_regeneration(context, plan, job["regenerated"])
first_half = range(int(take.frame_start), int(take.frame_start) + 80)
second_half = range(int(take.frame_start) + 100, int(take.frame_end) + 1)


def curve_values(action, frames):
    values = []
    for fcurve in _fcurves(action):
        values.append([fcurve.evaluate(f) for f in frames])
    return np.array(values)


def _fcurves(action):
    from bpy_extras import anim_utils

    slot = action.slots[0]
    return list(anim_utils.action_get_channelbag_for_slot(action, slot).fcurves)


result["regenerated_kept_outside"] = float(np.abs(curve_values(take.action, first_half)
                                                   - curve_values(new_take.action, first_half)).max())
result["regenerated_changed_inside"] = float(np.abs(curve_values(take.action, second_half)
                                                    - curve_values(new_take.action, second_half)).max())

# An armature no map fits is refused before any backend starts, with the reason.
stick = published_rigs.armature(context, "Stick", [("a", None, (0, 0, 0), (0, 0, 1), 0),
                                                  ("b", "a", (0, 0, 1), (0, 0, 2), 0)], Matrix())
scene.kmm.target_armature = stick
set_rows(scene.kmm, [segment_table.Row("a person walks forward", 1, 60)])
try:
    job_runner.build_request(scene)
    result["unmappable_error"] = None
except KMMError as error:
    result["unmappable_error"] = str(error)
result["backend_started"] = job_runner.current_session() is not None

# A fixed row is stored on the armature and used; export/import through the operators.
edited = rig_retarget.bone_map_for(mixamo).with_bone("left_collar", None)
rig_retarget.store_bone_map(mixamo, edited)
result["edited_label"] = rig_retarget.describe_bone_map(mixamo)[0]
scene.kmm.target_armature = mixamo
exported = str(user_dir / "mixamo_map.json")
bpy.ops.kmm.bone_map_export(filepath=exported)
rig_retarget.clear_bone_map(mixamo)
bpy.ops.kmm.bone_map_import(filepath=exported)
result["imported_collar"] = rig_retarget.bone_map_for(mixamo).bones["left_collar"]
bpy.ops.kmm.bone_map_set_row(joint="left_collar", bone="mixamorig:LeftShoulder")
result["row_fixed"] = rig_retarget.bone_map_for(mixamo).bones["left_collar"]

np.savez(sys.argv[2], **arrays)
_harness.emit(result)
