# SPDX-License-Identifier: GPL-3.0-or-later
"""Retargeting canonical 22-joint motion onto any humanoid rig (NumPy, no torch).

target_skeleton.py  the rig (BVH or Blender armature) as bones, parents, rest heads/axes, up axis and scale
bone_map.py         canonical joint -> rig bone maps, JSON presets per rig family (presets/), import/export
name_matching.py    automatic maps from names + hierarchy + rest geometry; `detect_bone_map`
transfer.py         rest alignment, rotation transfer, root scaling, leg IK
bvh_output.py       writing a retargeted motion on a target BVH's own hierarchy, channels and frame rate
"""
