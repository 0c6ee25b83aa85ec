# SPDX-License-Identifier: GPL-3.0-or-later
"""Rigs: the KMM armature and body mesh, Blender axes, and a take's keys on any rig (exact, or retargeted)."""
