# SPDX-License-Identifier: GPL-3.0-or-later
"""The root path the animator draws in the scene: a curve object, or an empty whose child empties are the waypoints.

Points are read in world space, taken into the target armature's space when there is one (the motion is keyed
relative to it), and converted to HumanML3D floor coordinates: Blender (x, y, z) is HumanML3D (x, z, -y), so a
point's floor position is (x, -y).  The timeline then carries them as a whole-timeline ``path`` (see
kmm_core/generation/paths.py); the path is walked at constant speed over the timeline.
"""

from __future__ import annotations

import bpy
from mathutils import Matrix

from ...kmm_core.common.errors import KMMError

PATH_OBJECT_TYPES = ("CURVE", "EMPTY")


def _curve_points(obj: bpy.types.Object) -> list:
    """World-space points of the curve's first spline (Bezier control points or poly/NURBS points)."""
    splines = obj.data.splines
    if not splines:
        raise KMMError(f"path {obj.name!r}: the curve has no spline")
    spline = splines[0]
    if spline.type == "BEZIER":
        local = [point.co for point in spline.bezier_points]
    else:
        local = [point.co.xyz for point in spline.points]
    points = [obj.matrix_world @ co for co in local]
    if spline.use_cyclic_u and points:
        points.append(points[0])
    return points


def _empty_points(obj: bpy.types.Object) -> list:
    """The empty itself, then its child empties by name."""
    children = sorted((child for child in obj.children if child.type == "EMPTY"), key=lambda child: child.name)
    return [obj.matrix_world.translation.copy()] + [child.matrix_world.translation.copy() for child in children]


def path_points(obj: bpy.types.Object, armature: bpy.types.Object | None = None) -> list[list[float]]:
    """[[x, z], ...] in HumanML3D floor coordinates of the path object (relative to `armature` when given)."""
    if obj.type == "CURVE":
        points = _curve_points(obj)
    elif obj.type == "EMPTY":
        points = _empty_points(obj)
    else:
        raise KMMError(f"path {obj.name!r}: pick a curve, or an empty with child empties as waypoints")
    to_armature = armature.matrix_world.inverted() if armature is not None else Matrix.Identity(4)
    floor = [[float(p.x), float(-p.y)] for p in (to_armature @ point for point in points)]
    if len(floor) < 2:
        raise KMMError(f"path {obj.name!r}: a path needs at least 2 points (an empty needs child empties)")
    return floor
