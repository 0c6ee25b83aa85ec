# SPDX-License-Identifier: GPL-3.0-or-later
"""BVH motion files: reading any skeleton, mapping it onto the canonical 22 joints, writing the canonical skeleton."""

from .joint_map import JointMap, builtin_joint_map, joint_map_from_dict, load_joint_map
from .reader import BvhMotion, parse_bvh, read_bvh
from .retarget import bvh_to_canonical_joints, load_bvh_folder
from .writer import write_bvh

__all__ = [
    "BvhMotion", "JointMap", "builtin_joint_map", "bvh_to_canonical_joints", "joint_map_from_dict",
    "load_bvh_folder", "load_joint_map", "parse_bvh", "read_bvh", "write_bvh",
]
