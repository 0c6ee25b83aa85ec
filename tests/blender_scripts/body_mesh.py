# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: the SMPL body mesh bound to the KMM armature follows a real take.

Synthetic SMPL-family models (tests/smpl_synthetic_model.py: one small tetrahedron per joint, centred on it) in a
T-pose and an A-pose rest, and a SMPL-H one, are bound to an armature driven by the HumanML3D fixture clip; at
several frames the centres of the evaluated (skinned) tetrahedra are compared with the posed bone heads and with
the clip's joints.  Then: a malformed model file, and the preference hook in take_importer.  Arguments: a scratch
folder, the HumanML3D fixture folder.  Prints one JSON result (see _harness.emit).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
sys.path.insert(0, str(_harness.REPO_ROOT / "tests"))
from kmm_motion.kmm_blender.rigs import (  # noqa: E402
    armature_builder,
    body_mesh,
    take_keys,  # noqa: E402
)
from kmm_motion.kmm_blender.rigs.axes import positions_to_blender  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer  # noqa: E402
from kmm_motion.kmm_core.motion import skeleton  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402
from kmm_motion.kmm_core.motion_formats.smpl_export import SMPLModelError, load_smpl_model  # noqa: E402
from smpl_synthetic_model import HAND_LENGTH, write_synthetic_smpl_model  # noqa: E402

scratch = Path(sys.argv[1])
FIXTURE = Path(sys.argv[2]) / "new_joints" / "012314.npy"
NUM_FRAMES = 80
CHECK_FRAMES = (0, 20, 40, 60, 79)

result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 20, 1.0
joints = np.load(FIXTURE).astype(np.float64)[:NUM_FRAMES]
motion = MotionResult.from_joints(joints, fps=20.0)
motion_path = motion.save(scratch / "motion.npz")
options = take_keys.WriteOptions(fps_mode=take_keys.FPS_FRAME_PER_FRAME, start_frame=1.0)


def skinned_centres(body: bpy.types.Object, count: int) -> np.ndarray:
    """World centres of the first `count` tetrahedra of the depsgraph-evaluated (skinned) mesh."""
    depsgraph = context.evaluated_depsgraph_get()
    evaluated = body.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        coords = np.empty(3 * len(mesh.vertices))
        mesh.vertices.foreach_get("co", coords)
    finally:
        evaluated.to_mesh_clear()
    world = np.array(body.matrix_world)
    coords = coords.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    return coords[: 4 * count].reshape(count, 4, 3).mean(axis=1)


def bone_heads(armature: bpy.types.Object) -> np.ndarray:
    world = armature.matrix_world
    return np.array([list(world @ armature.pose.bones[name].head) for name in skeleton.JOINT_NAMES])


def hand_error(body: bpy.types.Object, armature: bpy.types.Object) -> float:
    """SMPL's hand joints (22, 23) hang off the wrists, skinned to them: the bound rotation must carry the model's
    wrist -> hand offset onto our forearm's direction (whatever the model's rest pose), HAND_LENGTH beyond it."""
    centres, heads = skinned_centres(body, 24), bone_heads(armature)
    worst = 0.0
    for hand, wrist, elbow in ((22, 20, 18), (23, 21, 19)):
        forearm = heads[wrist] - heads[elbow]
        expected = heads[wrist] + HAND_LENGTH * forearm / np.linalg.norm(forearm)
        worst = max(worst, float(np.linalg.norm(centres[hand] - expected)))
    return worst


rest_vertices = {}
cases = {}
for rest_pose, model_type in (("tpose", "smpl"), ("apose", "smpl"), ("apose", "smplh")):
    case = f"{rest_pose}/{model_type}"
    model = load_smpl_model(write_synthetic_smpl_model(scratch / f"{rest_pose}_{model_type}.npz", rest_pose=rest_pose,
                                                       model_type=model_type))
    armature = armature_builder.create_armature(context, name=f"KMM {case}", offsets=motion.rest_offsets)
    started = time.perf_counter()
    body = body_mesh.build_body_mesh(armature, model)
    seconds = time.perf_counter() - started
    scene.frame_set(1)
    rest_error = float(np.linalg.norm(skinned_centres(body, 22) - bone_heads(armature), axis=-1).max())
    rest_vertices[case] = np.array([list(v.co) for v in body.data.vertices])
    hand_errors = [hand_error(body, armature)] if model_type == "smpl" else []
    keyframe_writer.write_take(armature, motion, options, scene)
    vs_bones, vs_joints = 0.0, 0.0
    for frame in CHECK_FRAMES:
        scene.frame_set(1 + frame)
        centres = skinned_centres(body, 22)
        vs_bones = max(vs_bones, float(np.linalg.norm(centres - bone_heads(armature), axis=-1).max()))
        expected = positions_to_blender(joints[frame])
        vs_joints = max(vs_joints, float(np.linalg.norm(centres - expected, axis=-1).max()))
        if model_type == "smpl":
            hand_errors.append(hand_error(body, armature))
    # Vertices of the joints after the 22 body joints (hands / fingers): all weight on a wrist group.
    extra = slice(4 * 22, 4 * model.num_joints)
    groups = {group.index: group.name for group in body.vertex_groups}
    extra_groups = sorted({groups[g.group] for v in list(body.data.vertices)[extra] for g in v.groups if g.weight > 0})
    cases[case] = {
        "rest_error": rest_error, "hand_error": max(hand_errors, default=None), "vs_bones": vs_bones, "vs_joints": vs_joints, "seconds": seconds,
        "parent": body.parent.name if body.parent else None, "parent_type": body.parent_type,
        "modifiers": [(m.type, m.object.name if m.object else None) for m in body.modifiers],
        "vertex_groups": [group.name for group in body.vertex_groups],
        "vertices": len(body.data.vertices), "faces": len(body.data.polygons), "model_vertices": len(model.v_template),
        "extra_groups": extra_groups, "found_again": body_mesh.body_mesh_of(armature) == body,
    }
result["cases"] = cases
# Same toy body, rest poses apart only in the arms.  Once bound to our rest, the joints' centres agree (checked
# above); each tetrahedron's orientation shows the bound rotation itself: the A-pose model's arms were turned 45
# degrees down about the forward axis, so binding must turn the tetrahedra of the joints along each arm (shoulder,
# elbow, wrist, hand) back up by the same angle, and leave every other tetrahedron as the T-pose model's.
def turn_about_forward(degrees: float) -> np.ndarray:
    """Rotation by `degrees` about HumanML3D's Z (forward) as it acts in Blender axes, where that axis is -Y."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


tpose_rest = rest_vertices["tpose/smpl"].reshape(24, 4, 3)
expected = tpose_rest.copy()
for arm, degrees in (((16, 18, 20, 22), 45.0), ((17, 19, 21, 23), -45.0)):
    for joint in arm:
        centre = tpose_rest[joint].mean(axis=0)
        expected[joint] = centre + (tpose_rest[joint] - centre) @ turn_about_forward(degrees).T
result["apose_vs_tpose_bound"] = float(np.abs(rest_vertices["apose/smpl"].reshape(24, 4, 3) - expected).max())
result["apose_vs_tpose_unturned"] = float(np.abs(rest_vertices["apose/smpl"].reshape(24, 4, 3) - tpose_rest).max())


# --- a malformed model file: a clear error, nothing in the scene changes ----------------------------------------
armature = armature_builder.create_armature(context, name="KMM malformed", offsets=motion.rest_offsets)
bad_path = write_synthetic_smpl_model(scratch / "bad.npz", drop=("weights",))
counts_before = (len(bpy.data.objects), len(bpy.data.meshes))
try:
    load_smpl_model(bad_path)
    result["malformed_error"] = None
except SMPLModelError as error:
    result["malformed_error"] = str(error)
result["malformed_warning"] = body_mesh.ensure_body_mesh(armature, bad_path)
wrong_tree = write_synthetic_smpl_model(scratch / "wrong_weights.npz",
                                        replace={"weights": np.zeros((4 * 24, 3))})
result["wrong_shape_warning"] = body_mesh.ensure_body_mesh(armature, wrong_tree)
result["malformed_counts_unchanged"] = (len(bpy.data.objects), len(bpy.data.meshes)) == counts_before
result["malformed_children"] = len(armature.children)

# --- the body model path through take_importer (the panel, Apply Motion File and batch pass the preferences') ----
counts_before = (len(bpy.data.objects), len(bpy.data.meshes))
plain = take_importer.import_takes(context, [str(motion_path)], None, options)
result["no_preference"] = {
    "children": len(plain.armature.children), "warnings": plain.warnings,
    "new_meshes": len(bpy.data.meshes) - counts_before[1], "new_objects": len(bpy.data.objects) - counts_before[0],
}
model_path = str(scratch / "apose_smpl.npz")
first = take_importer.import_takes(context, [str(motion_path)], None, options, body_model_path=model_path)
second = take_importer.import_takes(context, [str(motion_path)], first.armature, options, body_model_path=model_path)
result["with_preference"] = {
    "bodies": [child.name for child in first.armature.children if body_mesh.BODY_MESH_PROPERTY in child],
    "warnings": first.warnings + second.warnings, "takes": len(first.takes) + len(second.takes),
}
actions_before = len(bpy.data.actions)
bad = take_importer.import_takes(context, [str(motion_path)], None, options, body_model_path=str(bad_path))
result["bad_preference"] = {
    "warnings": bad.warnings, "new_actions": len(bpy.data.actions) - actions_before,
    "children": len(bad.armature.children), "action": bad.armature.animation_data.action.name,
}
_harness.emit(result)
