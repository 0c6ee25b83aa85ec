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

from ..common.errors import KMMError
from ..motion.model_timing import MODEL_FPS
from ..motion.resample import resample_positions
from .joint_map import JointMap
from .reader import BvhMotion, read_bvh


def bvh_to_canonical_joints(motion: BvhMotion, joint_map: JointMap, target_fps: float | None = MODEL_FPS
                            ) -> np.ndarray:
    """(T', 22, 3) canonical joint positions, HumanML3D axes, metres, resampled to `target_fps`
    (None keeps the file's frame rate)."""
    source_positions = motion.world_positions()
    joints = joint_map.apply(source_positions, motion.names, skeleton_source=motion.path)
    if target_fps is not None:
        joints = resample_positions(joints, motion.fps, target_fps)
    return joints


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
