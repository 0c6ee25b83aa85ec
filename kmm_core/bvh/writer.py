# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a posed skeleton (root translation + local rotations, see kinematics.py) as a BVH file.

The root gets six channels (position, then rotation), every other joint three rotation channels, all in
`rotation_order` (BVH order: "ZYX" means R = Rz @ Ry @ Rx).  Joints without children end in an End Site half their
own bone long, so that importers draw them with a sensible size: along the bone, but never lower than the joint in
the rest pose (`end_site_offsets`; a head's or a T-pose hand's goes straight on).  The feet's End Sites (the toe tips
of `level_leaves`, the canonical feet by default) stay level in every frame: the toes turn at the toe joint as real
toes bend (`leveled_leaf_rotations`), so a toe tip is at the toe joint's height, never under the floor it stands
on; a leaf's rotation moves nothing but its End Site.  Units and axes
are those of the arrays (metres and HumanML3D axes for the canonical skeleton; Blender's BVH importer with its
default axis settings turns them into Blender's Z-up axes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.atomic_write import write_text_atomic
from ..common.errors import KMMError
from ..common.finite_values import require_finite
from ..motion.rotations import matrix_to_euler, matrix_to_quat, qbetween, quat_to_matrix
from ..motion.skeleton import JOINT_NAMES, PARENTS

_NUMBER_FORMAT = "{:.6f}"


def _format(values) -> str:
    return " ".join(_NUMBER_FORMAT.format(v) for v in values)


UP_AXIS = 1  # the arrays' up axis (HumanML3D's y)


def end_site_offsets(offsets: np.ndarray, up_axis: int = UP_AXIS) -> np.ndarray:
    """(J, 3) each joint's End Site offset (used for the leaves): half its own bone, with the downward part taken
    out where the bone points down in the rest pose (and kept at half the bone's length)."""
    offsets = np.asarray(offsets, dtype=np.float64)
    ends = 0.5 * offsets
    length = np.linalg.norm(ends, axis=-1)
    level = ends.copy()
    level[:, up_axis] = np.maximum(level[:, up_axis], 0.0)
    level_length = np.linalg.norm(level, axis=-1)
    usable = level_length > 1e-9
    ends[usable] = level[usable] * (length[usable] / level_length[usable])[:, None]
    return ends


def leveled_leaf_rotations(local_rotations: np.ndarray, parents, leaves, end_sites: np.ndarray,
                           up_axis: int = UP_AXIS) -> np.ndarray:
    """(T, J, 4) `local_rotations` with each joint of `leaves` turned, frame by frame, by the least rotation that
    lays its End Site (`end_sites`, in its own axes) level in the world."""
    rotations = np.array(local_rotations, dtype=np.float64, copy=True)
    if not len(leaves):
        return rotations
    local = quat_to_matrix(rotations)
    world = np.empty_like(local)
    for joint, parent in enumerate(parents):
        world[:, joint] = local[:, joint] if parent < 0 else world[:, parent] @ local[:, joint]
    for leaf in leaves:
        direction = world[:, leaf] @ end_sites[leaf]
        level = direction.copy()
        level[:, up_axis] = 0.0
        usable = np.linalg.norm(level, axis=-1) > 1e-6 * max(float(np.linalg.norm(end_sites[leaf])), 1e-12)
        turn = quat_to_matrix(qbetween(direction[usable], level[usable]))
        parent_world = world[usable, parents[leaf]]
        new_local = np.swapaxes(parent_world, -1, -2) @ turn @ world[usable, leaf]
        rotations[usable, leaf] = matrix_to_quat(new_local)
    return rotations


def write_bvh(path: str | Path, root_translation: np.ndarray, local_rotations: np.ndarray, offsets: np.ndarray,
              fps: float, joint_names: tuple[str, ...] | list[str] = JOINT_NAMES,
              parents: tuple[int, ...] | list[int] = PARENTS, rotation_order: str = "ZYX",
              level_leaves: tuple[int, ...] | list[int] | None = None) -> Path:
    """Write the motion to `path` and return it.  root_translation (T, 3), local_rotations (T, J, 4) (w, x, y, z)
    relative to the rest pose given by `offsets` (J, 3) (parent -> joint vectors; the root's is its rest
    position).  `level_leaves`: leaf joints whose End Sites are kept level (default: the canonical skeleton's feet
    when the skeleton is the canonical one, else none)."""
    path = Path(path)
    root_translation = np.asarray(root_translation, dtype=np.float64)
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    require_finite(str(path), root_translation=root_translation, local_rotations=local_rotations, offsets=offsets,
                   fps=fps)
    num_joints = len(joint_names)
    order = rotation_order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise KMMError(f"rotation_order must be a permutation of XYZ, got {rotation_order!r}")
    if len(parents) != num_joints or offsets.shape != (num_joints, 3):
        raise KMMError(f"{num_joints} joint names need {num_joints} parents and ({num_joints}, 3) offsets, got "
                       f"{len(parents)} and {offsets.shape}")
    if local_rotations.ndim != 3 or local_rotations.shape[1:] != (num_joints, 4):
        raise KMMError(f"local rotations must have shape (T, {num_joints}, 4), got {local_rotations.shape}")
    if root_translation.shape != (local_rotations.shape[0], 3):
        raise KMMError(f"root translation must have shape ({local_rotations.shape[0]}, 3), got "
                       f"{root_translation.shape}")
    if not fps > 0:
        raise KMMError(f"fps must be positive, got {fps}")
    if any(p >= j for j, p in enumerate(parents)) or [p < 0 for p in parents].count(True) != 1:
        raise KMMError("parents must list one root (-1) and put every parent before its children")
    if any(not name or any(c.isspace() for c in name) for name in joint_names):
        raise KMMError("BVH joint names must be non-empty and contain no whitespace")
    for name, values in (("root translation", root_translation), ("local rotations", local_rotations),
                         ("offsets", offsets)):
        if not np.all(np.isfinite(values)):
            raise KMMError(f"{name} contain NaN or infinite values")

    children: list[list[int]] = [[] for _ in range(num_joints)]
    for joint, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(joint)
    rotation_channels = " ".join(f"{axis}rotation" for axis in order)
    end_sites = end_site_offsets(offsets)
    if level_leaves is None:
        level_leaves = [JOINT_NAMES.index(foot) for foot in ("left_foot", "right_foot")] if (
            tuple(joint_names) == JOINT_NAMES and tuple(parents) == PARENTS) else []
    if any(children[leaf] for leaf in level_leaves):
        raise KMMError("level_leaves must name joints without children")
    local_rotations = leveled_leaf_rotations(local_rotations, parents, level_leaves, end_sites)
    lines = ["HIERARCHY"]

    def write_joint(joint: int, depth: int) -> None:
        indent = "  " * depth
        keyword = "ROOT" if parents[joint] < 0 else "JOINT"
        lines.append(f"{indent}{keyword} {joint_names[joint]}")
        lines.append(f"{indent}{{")
        lines.append(f"{indent}  OFFSET {_format(offsets[joint])}")
        if parents[joint] < 0:
            lines.append(f"{indent}  CHANNELS 6 Xposition Yposition Zposition {rotation_channels}")
        else:
            lines.append(f"{indent}  CHANNELS 3 {rotation_channels}")
        for child in children[joint]:
            write_joint(child, depth + 1)
        if not children[joint]:
            lines.append(f"{indent}  End Site")
            lines.append(f"{indent}  {{")
            lines.append(f"{indent}    OFFSET {_format(end_sites[joint])}")
            lines.append(f"{indent}  }}")
        lines.append(f"{indent}}}")

    root = list(parents).index(-1)
    write_joint(root, 0)

    # Channel columns follow the hierarchy's depth-first order, which is how readers assign them.
    file_order: list[int] = []

    def visit(joint: int) -> None:
        file_order.append(joint)
        for child in children[joint]:
            visit(child)

    visit(root)
    angles = np.degrees(matrix_to_euler(quat_to_matrix(local_rotations), order))  # (T, J, 3)
    # Unwrap so that curves do not jump by 360 degrees between frames (same rotations, smoother keys).
    angles = np.degrees(np.unwrap(np.radians(angles), axis=0))
    columns = [root_translation] + [angles[:, joint] for joint in file_order]
    frames = np.concatenate(columns, axis=1)

    lines.append("MOTION")
    lines.append(f"Frames: {frames.shape[0]}")
    lines.append(f"Frame Time: {1.0 / fps:.8f}")
    lines.extend(_format(row) for row in frames)
    write_text_atomic(path, "\n".join(lines) + "\n")  # a full disk keeps an older file of that name intact
    return path
