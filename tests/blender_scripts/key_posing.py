# SPDX-License-Identifier: GPL-3.0-or-later
"""What the key-pose scripts (constraint_keys.py, partial_keys.py) share: the Rigify and Mixamo rigs they key,
posing a bone as an animator does, the rig's joint points at some frames, and Generate run the way the panel runs
it (the REAL worker, the controller's timer driven by hand).  Import after `_harness.import_extension_package`."""

from __future__ import annotations

import sys
import time

import _harness
import addon_utils
import bpy
import numpy as np
import published_rigs
from kmm_motion.kmm_blender.backend import session as backend_session
from kmm_motion.kmm_blender.jobs import runner as job_runner
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget
from mathutils import Matrix, Vector


def add_rigify_and_mixamo(context) -> tuple:
    """Rigify's human metarig (moved aside), the rig Rigify generates from it and a Mixamo-named rig."""
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    metarig = context.view_layer.objects.active
    bpy.ops.pose.rigify_generate()
    generated = context.view_layer.objects.active
    mixamo = published_rigs.build_mixamo(context)
    metarig.location = (3.0, 0.0, 0.0)
    return metarig, generated, mixamo


def start_keying(context, obj, action_name: str) -> None:
    """A fresh action on ``obj`` in its rest pose, the Rigify rig's limbs switched to FK (as an animator keys it)."""
    for bone, prop, value in rig_retarget.bone_map_for(obj).pose_settings:
        obj.pose.bones[bone][prop] = value
    obj.animation_data_create().action = bpy.data.actions.new(action_name)
    for bone in obj.pose.bones:
        bone.matrix_basis = Matrix()
    context.view_layer.update()


def swing(context, obj, bone_name: str, towards, degrees: float) -> None:
    """Turn the posed bone about its head, its direction swinging `degrees` towards the world direction."""
    bone = obj.pose.bones[bone_name]
    direction = (bone.tail - bone.head).normalized()
    axis = direction.cross((obj.matrix_world.inverted().to_3x3() @ Vector(towards)).normalized())
    turn = Matrix.Rotation(np.radians(degrees), 4, axis.normalized())
    bone.matrix = Matrix.Translation(bone.head) @ turn @ Matrix.Translation(-bone.head) @ bone.matrix
    context.view_layer.update()


def joint_points(obj, frames) -> np.ndarray:
    """The rig's evaluated canonical joint points (frames, 22, 3) at ``frames``."""
    bone_map = rig_retarget.bone_map_for(obj)
    points = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        points.append(rig_retarget.evaluated_joint_points(obj, bone_map))
    return np.asarray(points)


def worker_config():
    """The REAL worker on the CPU, one thread, the repository importable."""
    return backend_session.BackendConfig(python=sys.executable, device="cpu",
                                         extra_env=(("PYTHONPATH", str(_harness.REPO_ROOT)), ("OMP_NUM_THREADS", "1")))


def generate_and_wait(config, limit_s: float):
    """Generate as the panel starts it, the controller's timer driven by hand until the job ends; the job."""
    job = job_runner.start_generation(bpy.context, config)
    started = time.monotonic()
    while job_runner.tick() is not None:
        if time.monotonic() - started > limit_s:
            raise RuntimeError("the generation did not finish")
        time.sleep(0.05)
    return job
