# SPDX-License-Identifier: GPL-3.0-or-later
"""The SMPL-family body mesh, skinned to the KMM armature, so that a take shows as a body and not only as bones.

The user points the preferences at their own SMPL / SMPL-H / SMPL-X `.npz` model file (never shipped, see
docs/smpl.md).  The model's template mesh stands in the model's rest pose, which is not our armature's rest (an
SMPL template is roughly an A/T-pose with other bone directions and lengths), so it is first bound to the
armature's REST pose:

* per body joint j a rigid transform takes SMPL's rest frame to ours: the rotation R_j is the global rotation our
  inverse kinematics finds when it poses a skeleton with SMPL's rest offsets like our rest joints (it turns SMPL's
  rest bone directions into ours), and the translation puts SMPL's joint j onto our joint j;
* each template vertex moves by the blend of those transforms with its SMPL skinning weights (linear blend
  skinning), which keeps the body's shape around every joint while its limbs take our rest pose;
* the result, in Blender axes, becomes a mesh parented to the armature with an Armature modifier and one vertex
  group per bone.  Blender's own skinning then follows every take, nothing is baked.

SMPL joints after the 22 body joints (SMPL's hands, SMPL-H / SMPL-X fingers, jaw, eyes) have no bone of ours: their
weights go to their nearest ancestor among the body joints (the wrists, the head).  The zero-shape template is used
and pose blend shapes are left out (they would need per-frame evaluation); the mesh is the model's neutral body.
NumPy and bpy only, never torch.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ...kmm_core.common.errors import KMMError
from ...kmm_core.motion import skeleton
from ...kmm_core.motion.kinematics import inverse_kinematics
from ...kmm_core.motion.rotations import quat_to_matrix
from ...kmm_core.motion_formats.smpl_export import SMPLModel, load_smpl_model
from .axes import HUMANML3D_TO_BLENDER, positions_to_blender

DEFAULT_BODY_NAME = "KMM Body"
# Custom property marking a mesh as the KMM body of its parent armature (value: the model file it came from).
BODY_MESH_PROPERTY = "kmm_body_mesh"
# Skinning weights below this are dropped from the vertex groups (SMPL's weights are dense but mostly ~0).
MIN_WEIGHT = 1e-4


def body_joint_weights(model: SMPLModel) -> np.ndarray:
    """(V, 22) skinning weights on our 22 joints: a later SMPL joint's weight goes to its ancestor among them."""
    weights = np.zeros((model.weights.shape[0], skeleton.NUM_JOINTS))
    for joint in range(model.num_joints):
        ancestor = joint
        while ancestor >= skeleton.NUM_JOINTS:
            ancestor = model.parents[ancestor]
        weights[:, ancestor] += model.weights[:, joint]
    return weights


def rest_binding(model: SMPLModel, our_rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint rigid transforms (rotations (22, 3, 3), translations (22, 3)) taking the model's rest pose to
    ours (`our_rest_joints` (22, 3), HumanML3D axes): x -> R_j x + t_j sends SMPL joint j onto our joint j."""
    smpl_joints = model.rest_joints()[: skeleton.NUM_JOINTS]
    smpl_offsets = np.zeros_like(smpl_joints)
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent >= 0:
            smpl_offsets[joint] = smpl_joints[joint] - smpl_joints[parent]
    if np.any(np.linalg.norm(smpl_offsets[1:], axis=-1) < 1e-6):
        raise KMMError(f"{model.path}: the model's rest joints coincide (a zero-length bone); cannot bind its mesh")
    _, local = inverse_kinematics(np.asarray(our_rest_joints, dtype=np.float64)[None], smpl_offsets)
    local_matrices = quat_to_matrix(local[0])
    rotations = np.empty_like(local_matrices)
    for joint, parent in enumerate(skeleton.PARENTS):
        rotations[joint] = local_matrices[joint] if parent < 0 else rotations[parent] @ local_matrices[joint]
    translations = our_rest_joints - np.einsum("jab,jb->ja", rotations, smpl_joints)
    return rotations, translations


def bind_template(model: SMPLModel, our_rest_joints: np.ndarray) -> np.ndarray:
    """(V, 3) template vertices moved into our rest pose (HumanML3D axes) by linear blend skinning."""
    rotations, translations = rest_binding(model, our_rest_joints)
    weights = body_joint_weights(model)
    # Blend the 3x4 transforms per vertex, then apply: sum_j w_vj (R_j v + t_j).
    blended_rotations = np.einsum("vj,jab->vab", weights, rotations)
    blended_translations = weights @ translations
    return np.einsum("vab,vb->va", blended_rotations, model.v_template) + blended_translations


def armature_rest_joints(armature_obj: bpy.types.Object) -> np.ndarray:
    """(22, 3) the armature's rest joint positions (bone heads, armature space) in HumanML3D axes."""
    bones = armature_obj.data.bones
    missing = [name for name in skeleton.JOINT_NAMES if name not in bones]
    if missing:
        raise KMMError(f"armature {armature_obj.name!r} lacks the KMM bones {missing}")
    heads = np.array([bones[name].head_local.to_tuple() for name in skeleton.JOINT_NAMES], dtype=np.float64)
    return heads @ HUMANML3D_TO_BLENDER  # row vectors: C^T applied to each, Blender -> HumanML3D


def body_mesh_of(armature_obj: bpy.types.Object) -> bpy.types.Object | None:
    """The KMM body mesh already built on this armature, if any."""
    for child in armature_obj.children:
        if child.type == "MESH" and child.get(BODY_MESH_PROPERTY) is not None:
            return child
    return None


def build_body_mesh(armature_obj: bpy.types.Object, model: SMPLModel, name: str = DEFAULT_BODY_NAME
                    ) -> bpy.types.Object:
    """Create the model's body mesh bound to `armature_obj`'s rest pose, parented to it and skinned by an Armature
    modifier (one vertex group per bone).  All computing happens before any Blender data is created."""
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise KMMError("the body mesh needs a KMM armature")
    vertices = positions_to_blender(bind_template(model, armature_rest_joints(armature_obj)))
    weights = body_joint_weights(model)
    faces = np.asarray(model.faces, dtype=np.int64)

    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
        mesh.loops.add(faces.size)
        mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", (3 * np.arange(len(faces))).astype(np.int32))
        mesh.update(calc_edges=True)
        mesh.validate()
        obj = bpy.data.objects.new(name, mesh)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    try:
        for collection in armature_obj.users_collection:
            collection.objects.link(obj)
        obj.parent = armature_obj
        obj.matrix_parent_inverse = Matrix.Identity(4)  # vertices are in armature space: the mesh sits exactly on the rest
        for joint, bone_name in enumerate(skeleton.JOINT_NAMES):
            group = obj.vertex_groups.new(name=bone_name)
            column = weights[:, joint]
            influenced = np.nonzero(column > MIN_WEIGHT)[0]
            # One call per distinct weight (rigid parts share 1.0) keeps this fast for real 6890-vertex models.
            values, inverse = np.unique(np.round(column[influenced], 6), return_inverse=True)
            for index, value in enumerate(values):
                group.add(influenced[inverse == index].tolist(), float(value), "REPLACE")
        modifier = obj.modifiers.new("Armature", "ARMATURE")
        modifier.object = armature_obj  # type: ignore[attr-defined]  # an ArmatureModifier (stubs: Modifier)
        modifier.use_vertex_groups = True  # type: ignore[attr-defined]
        modifier.use_bone_envelopes = False  # type: ignore[attr-defined]
        obj[BODY_MESH_PROPERTY] = str(model.path)
    except BaseException:
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        raise
    return obj


def ensure_body_mesh(armature_obj: bpy.types.Object, model_path: str | Path | None) -> str | None:
    """After a successful take: build the body mesh on `armature_obj` from the SMPL model file `model_path` (None
    or "": no mesh) when the armature has none yet.  Never raises for a bad model: returns a warning text instead
    (None if fine or nothing to do), so a take is never undone because of its mesh."""
    path = str(model_path) if model_path else ""
    if not path or armature_obj is None or body_mesh_of(armature_obj) is not None:
        return None
    try:
        build_body_mesh(armature_obj, load_smpl_model(path))
    except (KMMError, RuntimeError, ValueError, TypeError) as error:
        return f"KMM: the take is applied, but the body mesh could not be built: {error}"
    return None
