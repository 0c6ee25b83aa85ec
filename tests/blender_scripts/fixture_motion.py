# SPDX-License-Identifier: GPL-3.0-or-later
"""A real motion for the Blender tests: the HumanML3D fixture clip turned into a MotionResult-shaped object.

Rotations come from kmm_core.motion.kinematics.inverse_kinematics (the project's IK).  `forward_kinematics` here is written
independently of the add-on and of kmm_core, so the tests compare separate implementations.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(os.environ.get("KMM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "humanml3d-fixture"
FIXTURE_FPS = 20.0


def _core():
    import importlib
    import sys

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    skeleton = importlib.import_module("kmm_core.motion.skeleton")
    rotations = importlib.import_module("kmm_core.motion.rotations")
    return skeleton, rotations


def forward_kinematics(root: np.ndarray, local: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """World joints (T, 22, 3): a joint's rotation turns the offsets of its children (BVH convention)."""
    skeleton, rotations = _core()
    local_m = rotations.quat_to_matrix(local)
    globals_ = np.empty_like(local_m)
    joints = np.empty(local.shape[:2] + (3,))
    for j, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            globals_[:, j] = local_m[:, j]
            joints[:, j] = root
        else:
            globals_[:, j] = globals_[:, parent] @ local_m[:, j]
            joints[:, j] = joints[:, parent] + globals_[:, parent] @ offsets[j]
    return joints


def load_fixture_motion(frames: int | None = None) -> SimpleNamespace:
    """The fixture clip as a MotionResult-shaped namespace (plus `source_joints`, the recorded positions)."""
    skeleton, _ = _core()
    source = np.load(FIXTURE / "new_joints" / "012314.npy").astype(np.float64)[:frames]
    offsets = skeleton.tpose_offsets()
    from kmm_core.motion import kinematics  # type: ignore  (top-level import: REPO_ROOT is on sys.path, see _core)

    root, local = kinematics.inverse_kinematics(source, offsets)
    half = len(source) // 2
    return SimpleNamespace(
        fps=FIXTURE_FPS,
        joints=forward_kinematics(root, local, offsets),
        source_joints=source,
        root_translation=root,
        local_rotations=local,
        rest_offsets=offsets,
        joint_names=np.array(skeleton.JOINT_NAMES),
        segment_frames=np.array([[0, half], [half, len(source)]], dtype=np.int64),
        segment_prompts=np.array(["a person walks forward", "then turns around"]),
        timeline_json="",
    )


FIXTURE_SEGMENTS = [[0, 60], [60, 110], [110, 170]]
FIXTURE_PROMPTS = ("walk", "turn", "walk back")


def three_segment_take(motion_result_class, fixture: SimpleNamespace | None = None):
    """The fixture clip as a three-segment MotionResult (`motion_result_class`: the add-on's or kmm_core's)."""
    fixture = fixture or load_fixture_motion()
    return motion_result_class(fps=fixture.fps, joints=fixture.joints.astype(np.float32),
                               root_translation=fixture.root_translation, local_rotations=fixture.local_rotations,
                               rest_offsets=fixture.rest_offsets, segment_frames=FIXTURE_SEGMENTS,
                               segment_prompts=FIXTURE_PROMPTS)


def with_segment_reversed(source, segment: int, prompt: str):
    """What the worker's `edit` promises for regenerating `segment`: every frame outside it bit-identical to
    `source`, the frames inside other real motion (the source's own, played backwards), the segment's prompt
    replaced."""
    start, end = (int(v) for v in source.segment_frames[segment])
    inside, backwards = slice(start, end), slice(end - 1, start - 1, -1)
    joints, root, local = source.joints.copy(), source.root_translation.copy(), source.local_rotations.copy()
    joints[inside], root[inside], local[inside] = joints[backwards], root[backwards], local[backwards]
    prompts = list(source.segment_prompts)
    prompts[segment] = prompt
    return type(source)(fps=source.fps, joints=joints, root_translation=root, local_rotations=local,
                        rest_offsets=source.rest_offsets, segment_frames=source.segment_frames,
                        segment_prompts=tuple(prompts))
