# SPDX-License-Identifier: GPL-3.0-or-later
"""The keys of one take on one rig, before any Blender data changes: the write options, the motion's validation and
the exact keys on a KMM armature whose rest pose is the motion's own skeleton (every other rig: retarget.py).

Rotation conversion.  Let C be the HumanML3D -> Blender change of basis, q_j the joint's local rotation and R_j the
bone's rest orientation in armature space (`bone.matrix_local`).  Blender evaluates a pose bone as
    M_j = M_parent @ (R_parent^-1 R_j) @ L_j,
and we want M_j's rotation to be the motion's global rotation (in Blender axes) applied to the rest orientation,
G'_j R_j with G'_j = G'_parent (C q_j C^T).  Solving gives L_j = R_j^T (C q_j C^T) R_j: the local rotation
expressed in the bone's own rest frame.  The same formula holds for the root (no parent), so any bone roll and any
armature whose rest pose is the KMM T-pose works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import bpy
import numpy as np

from ...kmm_core.common.errors import KMMError
from ...kmm_core.motion import rotations, skeleton
from ...kmm_core.motion.resample import make_quaternions_continuous, resample_positions, resample_rotations
from .axes import HUMANML3D_TO_BLENDER, positions_to_blender

ROOT_MOTION_WORLD = "WORLD"  # the pelvis travels through the scene as generated
ROOT_MOTION_IN_PLACE = "IN_PLACE"  # horizontal travel removed, height and turning kept
FPS_RESAMPLE = "RESAMPLE"  # keep real time: resample the motion to the scene's frame rate
FPS_FRAME_PER_FRAME = "FRAME_PER_FRAME"  # one motion frame per scene frame (plays faster/slower)

_REST_TOLERANCE = 1e-3  # metres; the armature's rest must be the motion's rest skeleton (offsets from parents)


class MotionLike(Protocol):
    """What the writer reads from a motion (kmm_core.motion.motion_result.MotionResult satisfies it)."""

    fps: float
    root_translation: np.ndarray
    local_rotations: np.ndarray
    segment_frames: np.ndarray
    segment_prompts: Any


class KeyframeWriteError(KMMError):
    """The motion or the target armature cannot be written as keyframes."""


@dataclass
class WriteOptions:
    root_motion: str = ROOT_MOTION_WORLD
    fps_mode: str = FPS_RESAMPLE
    start_frame: float = 1.0  # scene frame of the motion's first frame
    push_to_nla: bool = False
    action_name: str = "KMM take"
    # Which F-curve API to use; None picks the best one the running Blender has (tests force each in turn).
    api: str | None = None


def validate_motion(motion: MotionLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (root_translation (T, 3), local_rotations (T, 22, 4)) as float64, or raise naming the bad field."""
    translation = np.asarray(motion.root_translation, dtype=np.float64)
    local = np.asarray(motion.local_rotations, dtype=np.float64)
    frames = local.shape[0] if local.ndim == 3 else -1
    if local.ndim != 3 or local.shape[1:] != (skeleton.NUM_JOINTS, 4) or frames < 1:
        raise KeyframeWriteError(f"local_rotations must have shape (T, {skeleton.NUM_JOINTS}, 4), got {local.shape}")
    if translation.shape != (frames, 3):
        raise KeyframeWriteError(f"root_translation must have shape ({frames}, 3), got {translation.shape}")
    if not (np.isfinite(translation).all() and np.isfinite(local).all()):
        raise KeyframeWriteError("motion contains NaN or infinite values")
    if not float(motion.fps) > 0:
        raise KeyframeWriteError(f"fps must be positive, got {motion.fps}")
    names = getattr(motion, "joint_names", None)
    if names is not None and tuple(str(n) for n in names) != skeleton.JOINT_NAMES:
        raise KeyframeWriteError(f"joint_names {list(names)} differ from the KMM skeleton {list(skeleton.JOINT_NAMES)}")
    return translation, rotations.qnormalize(local)


def check_rest_matches(motion: MotionLike, armature_offsets: np.ndarray, armature_name: str) -> None:
    """The rotations only reproduce the motion on an armature whose rest pose is the motion's rest skeleton."""
    rest = getattr(motion, "rest_offsets", None)
    rest = skeleton.tpose_offsets() if rest is None else np.asarray(rest, np.float64)
    expected = positions_to_blender(rest)[1:]
    worst = float(np.abs(armature_offsets[1:] - expected).max())
    if worst > _REST_TOLERANCE:
        joint = int(np.abs(armature_offsets[1:] - expected).max(axis=-1).argmax()) + 1
        raise KeyframeWriteError(
            f"armature {armature_name!r} has another rest pose than the motion's rest skeleton (bone "
            f"{skeleton.JOINT_NAMES[joint]!r} is {worst * 100:.1f} cm off): use an armature built for this motion")


def resample_take(translation: np.ndarray, local: np.ndarray, source_fps: float,
                  target_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Root translation and local rotations at the scene's frame rate, by kmm_core's one resampling rule."""
    if abs(source_fps - target_fps) < 1e-9:
        return translation, local
    return (resample_positions(translation, source_fps, target_fps),
            resample_rotations(local, source_fps, target_fps))


def bone_local_rotations(local: np.ndarray, rest_rotations: np.ndarray) -> np.ndarray:
    """(T, 22, 4) pose-bone quaternions L_j = R_j^T (C q_j C^T) R_j for rest orientations R_j (22, 3, 3).

    Conjugating a rotation by the rotation B_j = R_j^T C keeps the quaternion's w and rotates its vector part by
    B_j, so L_j = (w, B_j v) directly (no matrix round trip).  The first key of every bone has w >= 0, the rest
    follow it on the short arc (``make_quaternions_continuous``: the one place the signs are chosen, so `local`'s own
    signs do not matter).

    The work runs on one contiguous (T, 22) plane per component (w, x, y, z): 10 minutes at 30 fps take about
    20 ms, against 60 ms for the same sums over the (T, 22, 4) layout and einsum, which differ from these only in
    the last bit of float64 (the float32 keys are the same).
    """
    basis = np.swapaxes(rest_rotations, -1, -2) @ HUMANML3D_TO_BLENDER  # R_j^T C, (22, 3, 3)
    w, x, y, z = np.moveaxis(np.asarray(local, dtype=np.float64), -1, 0)
    length = w * w + x * x + y * y + z * z  # rotations.qnormalize, one plane at a time (same bits)
    np.maximum(np.sqrt(length, out=length), rotations.NORM_FLOOR, out=length)
    planes = np.empty((4,) + w.shape)  # (4, T, 22)
    np.divide(w, length, out=planes[0])
    x, y, z = x / length, y / length, z / length
    for axis in range(3):  # B_j v, row by row
        row = planes[1 + axis]
        np.multiply(x, basis[:, axis, 0], out=row)
        row += y * basis[:, axis, 1]
        row += z * basis[:, axis, 2]
    if len(w):
        planes *= np.where(planes[0, :1] < 0, -1.0, 1.0)
    return make_quaternions_continuous(np.moveaxis(planes, 0, -1))


def root_locations(translation: np.ndarray, rest_head: np.ndarray, rest_rotation: np.ndarray, root_motion: str) -> np.ndarray:
    """(T, 3) pelvis pose-bone locations (bone rest frame) that put the pelvis at the motion's root position."""
    if root_motion == ROOT_MOTION_IN_PLACE:
        translation = translation.copy()
        translation[:, [0, 2]] = 0.0  # HumanML3D ground plane is x/z
    elif root_motion != ROOT_MOTION_WORLD:
        raise KeyframeWriteError(f"unknown root motion option {root_motion!r}")
    return (positions_to_blender(translation) - rest_head) @ rest_rotation  # R^T (p - h), row-vector form


@dataclass
class TakeKeys:
    """The keyframe values of one take, before any Blender data is touched."""

    frames: np.ndarray  # (N,) scene frames, one key per frame
    quaternions: np.ndarray  # (N, 22, 4) pose-bone rotations, sign-continuous along time
    locations: np.ndarray  # (N, 3) pelvis pose-bone locations
    frames_per_motion_frame: float  # scene frames per motion frame (1 unless resampled)
    segment_starts: np.ndarray  # (S,) motion frame where each segment starts
    # The bones keyed (quaternions' axis 1) and the one whose location carries the travel: the KMM joints, or
    # the bones a retargeting bone map drives on another rig (retarget.py).
    bone_names: tuple[str, ...] = skeleton.JOINT_NAMES
    location_bone: str = skeleton.JOINT_NAMES[0]
    pose_settings: tuple[tuple[str, str, float], ...] = ()  # (bone, custom property, value) set with the take
    # Further bones keyed by location (N, L, 3): a bone map's placed bones (IK feet under the root) and the bones
    # above them, kept at rest (retarget.py).
    located_bones: tuple[str, ...] = ()
    located: np.ndarray | None = None
    warnings: tuple[str, ...] = ()  # what the keys cannot move (bones left behind), said to the user

    def located_values(self) -> np.ndarray:
        """(N, L, 3) the locations of `located_bones` (empty when there are none)."""
        return self.located if self.located is not None else np.zeros((len(self.frames), 0, 3))


def fits_motion_skeleton(obj: bpy.types.Object, motion: MotionLike) -> bool:
    """Whether `obj` has the KMM bones with the motion's own rest skeleton (the exact, direct path applies)."""
    if any(name not in obj.data.bones for name in skeleton.JOINT_NAMES):
        return False
    heads = np.array([obj.data.bones[name].head_local for name in skeleton.JOINT_NAMES], dtype=np.float64)
    try:
        check_rest_matches(motion, heads - heads[[max(p, 0) for p in skeleton.PARENTS]], obj.name)
    except KeyframeWriteError:
        return False
    return True


def motion_armature_keys(obj: bpy.types.Object, motion: MotionLike, options: WriteOptions,
                         scene: bpy.types.Scene) -> TakeKeys:
    """The exact keys of `motion` on a KMM armature built for it (read-only: changes nothing)."""
    translation, local = validate_motion(motion)  # the keys' signs are chosen by bone_local_rotations
    segment_starts = np.asarray(motion.segment_frames).reshape(-1, 2)[:, 0]
    if len(segment_starts) != len(list(motion.segment_prompts)):
        raise KeyframeWriteError(f"{len(segment_starts)} segment_frames but {len(list(motion.segment_prompts))} "
                                 "segment_prompts")

    scene_fps = scene.render.fps / scene.render.fps_base
    if options.fps_mode == FPS_RESAMPLE:
        translation, local = resample_take(translation, local, float(motion.fps), scene_fps)
        frames_per_motion_frame = scene_fps / float(motion.fps)
    else:
        frames_per_motion_frame = 1.0
    # After resampling (or in frame-per-frame mode) every motion frame is one scene frame.
    frames = options.start_frame + np.arange(len(local), dtype=np.float64)

    bones = [obj.data.bones[name] for name in skeleton.JOINT_NAMES]
    heads = np.array([bone.head_local for bone in bones], dtype=np.float64)
    parent_heads = heads[[max(parent, 0) for parent in skeleton.PARENTS]]
    check_rest_matches(motion, heads - parent_heads, obj.name)
    rest = np.array([[list(row) for row in bone.matrix_local.to_3x3()] for bone in bones])
    return TakeKeys(frames=frames, quaternions=bone_local_rotations(local, rest),
                    locations=root_locations(translation, np.array(bones[0].head_local), rest[0],
                                             options.root_motion),
                    frames_per_motion_frame=frames_per_motion_frame, segment_starts=segment_starts)
