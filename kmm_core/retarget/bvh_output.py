# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a retargeted motion on a target BVH's own skeleton: its hierarchy and OFFSETs unchanged, each joint's
channels in the file's order, the file's frame rate (so MotionBuilder/Maya users get the motion on their rig).

The HIERARCHY section is copied from the target file verbatim; only the MOTION section is new.  Rotation channels
get the joint's local rotation (rest = the BVH's zero pose) in the joint's channel order; position channels keep the
OFFSET value except on the joint the pelvis drives (or, when that joint has none, the topmost joint that has
them), which carries the root translation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bvh.reader import BvhMotion
from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_text
from ..common.errors import InputFileError
from ..common.finite_values import require_finite
from ..common.limits import MAX_MOTION_TEXT_BYTES
from ..motion.resample import resample_positions, resample_rotations
from ..motion.rotations import matrix_to_euler, matrix_to_quat, quat_to_matrix
from .transfer import RetargetedMotion, RetargetError, SourceMotion

_POSITION_AXIS = {"xposition": 0, "yposition": 1, "zposition": 2}


def resample_source(source: SourceMotion, fps: float) -> SourceMotion:
    """The source at another frame rate by kmm_core.motion.resample's one rule (positions lerped, rotations slerped, the
    same duration and frame count as every other resampled motion)."""
    if abs(source.fps - fps) < 1e-9:
        return source
    positions = resample_positions(source.positions, source.fps, fps)
    rotations = quat_to_matrix(resample_rotations(matrix_to_quat(source.global_rotations), source.fps, fps))
    return SourceMotion(positions=positions, global_rotations=rotations, rest_positions=source.rest_positions,
                        fps=float(fps))


def bvh_frames(motion: RetargetedMotion, target: BvhMotion) -> np.ndarray:
    """(T, C) MOTION rows for `target`'s channels (C columns as the file declares them)."""
    skeleton = motion.skeleton
    axes = skeleton.to_humanml3d
    joint_of_bone = list(target.joint_indices)
    bone_of_joint = {joint: bone for bone, joint in enumerate(joint_of_bone)}
    # World rotation of each bone in rig axes (rest = identity for BVH): A^T D A; local = parent^T own.
    world = np.swapaxes(axes, 0, 1) @ motion.deltas @ axes
    frames = len(motion.deltas)
    carrier = bone_of_joint.get(joint_of_bone[motion.plan.pelvis_bone])
    if not any(c.lower() in _POSITION_AXIS for c in target.channels[joint_of_bone[carrier]]):
        carrier = next((b for b in range(len(joint_of_bone)) if any(c.lower() in _POSITION_AXIS for c in
                                                                   target.channels[joint_of_bone[b]])
                        and skeleton.is_ancestor(b, motion.plan.pelvis_bone)), None)
        if carrier is None:
            raise RetargetError(f"{target.path}: no joint above {skeleton.bone_names[motion.plan.pelvis_bone]!r} "
                                "has position channels to carry the root translation")
    heads_rig = motion.heads @ axes / skeleton.scale_to_metres  # HumanML3D metres -> rig axes and units
    columns = np.zeros((frames, target.frames.shape[1]))
    for bone, joint in enumerate(joint_of_bone):
        parent = skeleton.parents[bone]
        local = world[:, bone] if parent < 0 else np.swapaxes(world[:, parent], -1, -2) @ world[:, bone]
        rotation_channels = [c for c in target.channels[joint] if c.lower().endswith("rotation")]
        order = "".join(c[0].upper() for c in rotation_channels)
        angles = np.zeros((frames, 0))
        if len(order) == 3:
            angles = np.degrees(np.unwrap(matrix_to_euler(local, order), axis=0))
        elif rotation_channels:
            raise RetargetError(f"{target.path}: joint {target.names[joint]!r} has {len(rotation_channels)} "
                                "rotation channels; only joints with all three can be written")
        if bone == carrier:
            head = heads_rig[:, bone]
            if bone != motion.plan.pelvis_bone:  # an undriven joint above the pelvis carries the pelvis' travel
                pelvis = motion.plan.pelvis_bone
                head = head + heads_rig[:, pelvis] - (skeleton.rest_heads[pelvis] - skeleton.rest_heads[bone]
                                                      + heads_rig[:, bone])
            if parent < 0:
                translation = head
            else:
                translation = np.einsum("tji,tj->ti", world[:, parent], head - heads_rig[:, parent])
        else:
            translation = np.broadcast_to(target.offsets[joint], (frames, 3))
        rotation_index = 0
        for k, channel in enumerate(target.channels[joint]):
            column = target.channel_start[joint] + k
            key = channel.lower()
            if key in _POSITION_AXIS:
                columns[:, column] = translation[:, _POSITION_AXIS[key]]
            else:
                columns[:, column] = angles[:, rotation_index]
                rotation_index += 1
    return columns


def write_retargeted_bvh(path: str | Path, motion: RetargetedMotion, target: BvhMotion) -> Path:
    """Write `motion` (retargeted onto `target`'s skeleton at `target`'s frame rate) to `path`."""
    path = Path(path)
    text = read_text(target.path, "target BVH", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
    marker = text.find("MOTION")
    if marker < 0:
        raise InputFileError(target.path, "no MOTION section")
    rows = bvh_frames(motion, target)
    require_finite(str(path), frames=rows)
    lines = [text[:marker].rstrip("\n"), "MOTION", f"Frames: {len(rows)}", f"Frame Time: {target.frame_time:.8f}"]
    lines.extend(" ".join(f"{value:.6f}" for value in row) for row in rows)
    return write_text_atomic(path, "\n".join(lines) + "\n")  # a full disk keeps an older file of that name
