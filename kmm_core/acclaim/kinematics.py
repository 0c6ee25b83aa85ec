# SPDX-License-Identifier: GPL-3.0-or-later
"""Forward kinematics of an Acclaim skeleton (ASF) posed by a motion (AMC), and its conversion to a `BvhMotion`.

The Acclaim reading (as in CMU's own viewer and the ASF documentation):

- A rotation list is applied in the order written: ``dof rx rz`` or ``order ... RX RY RZ`` with angles (a, b)
  gives M = Rz(b) @ Rx(a) (matrices act on column vectors); an ``axis ax ay az XYZ`` gives C = Rz(az) Ry(ay) Rx(ax).
- A bone's rotation relative to its parent, in the global rest axes, is L = C @ M @ C^T; the root's is
  C_root @ M_root @ C_root^T with C_root from ``orientation`` and ``axis``.  World rotation G = G_parent @ L.
- The root sits at its translation channels (the ASF ``position`` for absent ones); a bone starts where its parent
  ends (children of the root start at the root) and ends at start + G @ (direction * length).

`acclaim_to_bvh_motion` expresses the same pose as a BVH skeleton: a joint ``root`` and one joint per bone at the
bone's start (its BVH offset is the parent bone's rest vector), End Sites at the ends of leaf bones, ZYX rotation
channels, metres (``AsfSkeleton.scale_to_metres``), so the rest of the project (joint maps, `kmm-train prepare`,
the BVH writer, Blender's importer) handles ASF/AMC like any BVH file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bvh.reader import END_SITE_SUFFIX, BvhMotion
from ..common.errors import InputFileError
from ..motion.rotations import axis_angle_to_matrix, matrix_to_euler
from .amc import ACCLAIM_FPS, AmcMotion
from .asf import ROOT, AsfSkeleton

_AXIS_VECTORS = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}


def applied_rotation(axes: str | tuple[str, ...], angles: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation of rotating about `axes` (e.g. "XYZ" or ("rx", "rz")) by `angles` (..., len(axes))
    radians, one after the other in the order given: R = R_last @ ... @ R_first."""
    angles = np.asarray(angles, dtype=np.float64)
    result = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes):
        step = axis_angle_to_matrix(angles[..., k, None] * _AXIS_VECTORS[axis[-1].lower()])
        result = step @ result
    return result


@dataclass(frozen=True)
class AcclaimPose:
    """World pose of every bone per frame, in the skeleton's file units and global axes."""

    bone_names: tuple[str, ...]
    root_position: np.ndarray     # (T, 3)
    root_rotation: np.ndarray     # (T, 3, 3) world rotation of the root
    starts: np.ndarray            # (T, B, 3) where each bone starts
    ends: np.ndarray              # (T, B, 3) where it ends
    local_rotations: np.ndarray   # (T, B, 3, 3) L = C M C^T
    world_rotations: np.ndarray   # (T, B, 3, 3)


def _check_motion(skeleton: AsfSkeleton, motion: AmcMotion) -> None:
    if motion.root.shape[1] != len(skeleton.root_order):
        raise InputFileError(motion.path, f"root has {motion.root.shape[1]} values per frame, the skeleton "
                                          f"{skeleton.path} orders {len(skeleton.root_order)}")
    for bone in skeleton.bones:
        if bone.dof and (bone.name not in motion.bones or motion.bones[bone.name].shape[1] != len(bone.dof)):
            raise InputFileError(motion.path, f"bone {bone.name!r}: values do not match its dof {bone.dof} in "
                                              f"{skeleton.path}")


def forward_kinematics(skeleton: AsfSkeleton, motion: AmcMotion) -> AcclaimPose:
    _check_motion(skeleton, motion)
    frames = motion.num_frames
    position = np.broadcast_to(skeleton.root_position, (frames, 3)).copy()
    rotation_channels: list[str] = []
    rotation_columns: list[int] = []
    for column, channel in enumerate(skeleton.root_order):
        if channel.startswith("t"):
            position[:, "xyz".index(channel[1])] = motion.root[:, column]
        else:
            rotation_channels.append(channel)
            rotation_columns.append(column)
    root_axis = applied_rotation(skeleton.root_axis_order,
                                 skeleton.root_orientation[["XYZ".index(a) for a in skeleton.root_axis_order]])
    root_motion = applied_rotation(tuple(rotation_channels), motion.root[:, rotation_columns])
    root_rotation = root_axis @ root_motion @ root_axis.T

    count = len(skeleton.bones)
    starts = np.empty((frames, count, 3))
    ends = np.empty((frames, count, 3))
    local = np.empty((frames, count, 3, 3))
    world = np.empty((frames, count, 3, 3))
    for index, bone in enumerate(skeleton.bones):
        axis = applied_rotation(bone.axis_order, bone.axis[["XYZ".index(a) for a in bone.axis_order]])
        if bone.dof:
            moved = applied_rotation(bone.dof, motion.bones[bone.name])
            local[:, index] = axis @ moved @ axis.T
        else:
            local[:, index] = np.eye(3)
        if bone.parent < 0:
            starts[:, index] = position
            world[:, index] = root_rotation @ local[:, index]
        else:
            starts[:, index] = ends[:, bone.parent]
            world[:, index] = world[:, bone.parent] @ local[:, index]
        ends[:, index] = starts[:, index] + world[:, index] @ (bone.direction * bone.length)
    return AcclaimPose(bone_names=skeleton.bone_names, root_position=position, root_rotation=root_rotation,
                       starts=starts, ends=ends, local_rotations=local, world_rotations=world)


def acclaim_to_bvh_motion(skeleton: AsfSkeleton, motion: AmcMotion, fps: float = ACCLAIM_FPS,
                          path: str | None = None) -> BvhMotion:
    """The motion as a `BvhMotion` in metres (see the module docstring); `path` names it in later errors
    (default: the AMC file)."""
    pose = forward_kinematics(skeleton, motion)
    scale = skeleton.scale_to_metres
    names: list[str] = [ROOT]
    parents: list[int] = [-1]
    offsets: list[np.ndarray] = [skeleton.root_position * scale]
    channels: list[tuple[str, ...]] = [("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")]
    columns: list[np.ndarray] = [pose.root_position * scale, np.degrees(matrix_to_euler(pose.root_rotation, "ZYX"))]
    has_child = [False] * len(skeleton.bones)
    for bone in skeleton.bones:
        if bone.parent >= 0:
            has_child[bone.parent] = True
    for index, bone in enumerate(skeleton.bones):
        names.append(bone.name)
        if bone.parent < 0:
            parents.append(0)
            offsets.append(np.zeros(3))
        else:
            parent = skeleton.bones[bone.parent]
            parents.append(1 + bone.parent)
            offsets.append(parent.direction * parent.length * scale)
        channels.append(("Zrotation", "Yrotation", "Xrotation"))
        columns.append(np.degrees(matrix_to_euler(pose.local_rotations[:, index], "ZYX")))
    for index, bone in enumerate(skeleton.bones):
        if not has_child[index]:
            names.append(bone.name + END_SITE_SUFFIX)
            parents.append(1 + index)
            offsets.append(bone.direction * bone.length * scale)
            channels.append(())
    return BvhMotion(path=path or motion.path, names=tuple(names), parents=tuple(parents),
                     offsets=np.array(offsets), channels=tuple(channels), frame_time=1.0 / fps,
                     frames=np.concatenate(columns, axis=1))
