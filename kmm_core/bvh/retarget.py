# SPDX-License-Identifier: GPL-3.0-or-later
"""BVH clips of any mapped skeleton -> canonical 22-joint positions (HumanML3D axes, metres, 20 fps).

Only positions are retargeted: the canonical joints are points of the source skeleton (see joint_map.py), so no
rest-pose matching is needed.  Facing direction and floor height are left as they are; the HumanML3D
preprocessing normalises them later.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..common.errors import InputFileError, KMMError
from ..motion.model_timing import MODEL_FPS
from ..motion.resample import resample_positions
from .joint_map import JointMap
from .reader import BvhMotion, read_bvh

MIN_SKELETON_EXTENT_METRES = 0.01
"""The mapped joints of every frame must span at least this (a person spans about 1.7 m)."""
MAX_POSITION_METRES = 100_000.0
"""No joint of a take lies farther than this from the origin (100 km): root values beyond it are huge or in other
units, refused before they overflow into nonsense further down."""
MAX_SKELETON_EXTENT_METRES = 100.0
"""... and at most this: a skeleton of huge bone lengths or root values (or one read in the wrong units) is refused
saying so, before its numbers overflow into "zero length" errors further down."""


def bvh_to_canonical_joints(motion: BvhMotion, joint_map: JointMap, target_fps: float | None = MODEL_FPS
                            ) -> np.ndarray:
    """(T', 22, 3) canonical joint positions, HumanML3D axes, metres, resampled to `target_fps`
    (None keeps the file's frame rate)."""
    if motion.num_frames == 0:
        raise InputFileError(motion.path, "the clip has no frames ('Frames: 0'): a motion needs at least one")
    source_positions = motion.world_positions()
    joints = joint_map.apply(source_positions, motion.names, skeleton_source=motion.path)
    _check_extent(joints, motion, joint_map)
    if target_fps is not None:
        joints = resample_positions(joints, motion.fps, target_fps)
    return joints


def _check_extent(joints: np.ndarray, motion: BvhMotion, joint_map: JointMap) -> None:
    """Refuse a clip whose mapped joints collapse onto one point in some frame: a skeleton whose OFFSETs are all zero
    (rotation channels only) places every joint at its root, and retargeting it wrote a pelvis 7.5e8 m away."""
    with np.errstate(over="ignore", invalid="ignore"):
        extent = np.linalg.norm(np.ptp(joints, axis=1), axis=-1)  # (T,) size of each frame's skeleton, metres
        far = np.abs(joints).max(axis=(1, 2))
    away = np.flatnonzero(far > MAX_POSITION_METRES)
    if away.size:
        frame = int(away[0])
        raise InputFileError(motion.path, f"in frame {frame} a joint of map {joint_map.name!r} lies {far[frame]:.3g} m "
                             f"from the origin (at most {MAX_POSITION_METRES:g} m): are its root positions huge, or "
                             "in other units?")
    broken = np.flatnonzero(~np.isfinite(extent) | (extent > MAX_SKELETON_EXTENT_METRES))
    if broken.size:  # huge bone lengths, offsets or root values: say so, not "zero length" further down
        frame = int(broken[0])
        size = "is not a finite size" if not np.isfinite(extent[frame]) else f"span {extent[frame]:.3g} m"
        raise InputFileError(motion.path, f"in frame {frame} the {joints.shape[1]} joints of map {joint_map.name!r} "
                             f"{size} (at most {MAX_SKELETON_EXTENT_METRES:g} m): are its bone lengths, OFFSETs or "
                             "root positions huge, or in other units?")
    collapsed = np.flatnonzero(extent < MIN_SKELETON_EXTENT_METRES)
    if collapsed.size:
        frame = int(collapsed[0])
        raise InputFileError(motion.path, f"in frame {frame} the {joints.shape[1]} joints of map {joint_map.name!r} "
                             f"lie within {extent[frame] * 100:.2f} cm of one point (at least "
                             f"{MIN_SKELETON_EXTENT_METRES * 100:g} cm needed): are its OFFSETs all zero?")


def load_bvh_folder(paths: Iterable[str | Path], joint_map: JointMap, target_fps: float | None = MODEL_FPS
                    ) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[Path, KMMError]]]:
    """Retarget many files; malformed ones (or ones the map does not fit) are skipped and reported.

    Returns (ok, failures): ok holds (path, (T, 22, 3) joints) in input order, failures (path, error).
    """
    ok: list[tuple[Path, np.ndarray]] = []
    failures: list[tuple[Path, KMMError]] = []
    for path in paths:
        path = Path(path)
        try:
            ok.append((path, bvh_to_canonical_joints(read_bvh(path), joint_map, target_fps)))
        except KMMError as error:
            failures.append((path, error))
    return ok, failures
