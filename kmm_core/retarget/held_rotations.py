# SPDX-License-Identifier: GPL-3.0-or-later
"""Keyed rotations held by a retargeted take: a keyed hand bend, an arm's twist, a head's turn (NumPy, no torch).

The canonical skeleton the model generates has 22 joint positions: a pose constraint holds where the joints are,
not how a hand is bent or an upper arm twisted about itself.  So after the transfer, at each frame the animator
keyed, every keyed bone the map drives is turned back to its keyed world orientation: fully where the bone ends a
chain (a hand, the head, a toe: nothing the transfer placed hangs from it), about its own axis only elsewhere (an
upper arm: its twist, so the elbow and wrist stay where the take put them).  The correction fades out over
`window` frames either side of the keyed frame (smoothstep), the nearest keyed frame's correction winning where
two windows overlap.  Works on `RetargetedMotion.deltas` (world rotations in the rig's HumanML3D axes), so a keyed
orientation depends on the bone's rest frame only through the pose the animator made, never on its roll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..common.errors import KMMError
from ..common.smoothstep import smoothstep
from ..motion.rotations import matrix_to_quat, quat_to_matrix, slerp
from .transfer import RetargetedMotion

HOLD_SECONDS = 0.3  # the correction fades out over this long either side of a keyed frame


class HeldRotationError(KMMError, ValueError):
    """A keyed rotation cannot be held (names the bone and frame)."""


def keyed_deltas(motion: RetargetedMotion, rotations: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """{bone index: world delta (HumanML3D axes)} of bones keyed with armature-space pose matrices `rotations`
    ({bone name: (3, 3), columns the posed bone's axes in armature coordinates}): D* = A R R_rest^T A^T."""
    skeleton = motion.skeleton
    axes = skeleton.to_humanml3d
    found = {}
    for name, rotation in rotations.items():
        bone = skeleton.index.get(name)
        if bone is None or bone not in motion.plan.driver or bone == motion.plan.pelvis_bone or (
                bone in motion.plan.placed):
            continue  # the pelvis's orientation and a placed foot's come from their points
        matrix = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(matrix)):
            raise HeldRotationError(f"bone {name!r}: its keyed rotation is not a number")
        u, _, vt = np.linalg.svd(matrix)  # the rotation part (a scaled bone's matrix has its scale in it)
        matrix = u @ vt
        if np.linalg.det(matrix) < 0:
            raise HeldRotationError(f"bone {name!r}: its keyed rotation is mirrored (a negative scale)")
        found[bone] = axes @ matrix @ skeleton.rest_rotations[bone].T @ axes.T
    return found


def _ends_chain(motion: RetargetedMotion, bone: int) -> bool:
    """Whether nothing the transfer places hangs from `bone` (it carries no canonical point but maybe its own)."""
    plan = motion.plan
    joint = plan.driver[bone]
    return not any(k != joint for k in plan.carried.get(bone, []))


def _bone_axes(motion: RetargetedMotion, points: np.ndarray, bone: int) -> np.ndarray:
    """(T, 3) the unit posed direction from `bone`'s head to the mean of the canonical points it carries."""
    plan = motion.plan
    carried = [k for k in plan.carried.get(bone, []) if k != plan.driver[bone]]
    axes = points[:, carried].mean(axis=1) - motion.heads[:, bone]
    return axes / np.maximum(np.linalg.norm(axes, axis=-1, keepdims=True), 1e-12)


def _twist_angle(rotation: np.ndarray, axis: np.ndarray) -> float:
    """The signed angle of the twist part (about the unit `axis`) of `rotation` (3, 3)."""
    quaternion = matrix_to_quat(rotation[None])[0]
    angle = 2.0 * np.arctan2(float(quaternion[1:] @ axis), quaternion[0])
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)  # the short way round, so the fade never spins


def hold_keyed_rotations(motion: RetargetedMotion, keys: Sequence[tuple[int, Mapping[str, np.ndarray]]],
                         window: float | None = None) -> list[str]:
    """Turn `motion`'s keyed bones (in place) to their keyed orientations: `keys` lists (motion frame, {bone name:
    armature-space pose matrix}); `window` in frames (default `HOLD_SECONDS` at the motion's fps).  Returns the
    names of the bones held.  Frames outside the motion are skipped."""
    frames = len(motion.deltas)
    window = max(float(window if window is not None else HOLD_SECONDS * motion.fps), 1.0)
    per_bone: dict[int, list[tuple[int, np.ndarray]]] = {}
    for frame, rotations in keys:
        if not 0 <= frame < frames:
            continue
        for bone, wanted in keyed_deltas(motion, rotations).items():
            per_bone.setdefault(bone, []).append((int(frame), wanted))
    times = np.arange(frames)
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    points = motion.joint_points() if per_bone else None
    for bone, held in per_bone.items():
        keyed_frames = np.array([frame for frame, _ in held])
        nearest = np.argmin(np.abs(times[:, None] - keyed_frames[None]), axis=1)
        distance = np.abs(times - keyed_frames[nearest]) / window
        weight = smoothstep(1.0 - distance)
        active = np.flatnonzero(weight > 0)
        if _ends_chain(motion, bone):  # the whole keyed orientation
            corrections = np.array([matrix_to_quat((wanted @ motion.deltas[frame, bone].T)[None])[0]
                                    for frame, wanted in held])
            chosen = corrections[nearest[active]]
            chosen = np.where(chosen[:, :1] < 0, -chosen, chosen)
            partial = slerp(np.broadcast_to(identity, chosen.shape), chosen, weight[active])
        else:  # the twist about the bone's own posed axis at each frame, so the points it carries stay
            axes = _bone_axes(motion, points, bone)
            angles = np.array([_twist_angle(wanted @ motion.deltas[frame, bone].T, axes[frame])
                               for frame, wanted in held])
            half = 0.5 * weight[active] * angles[nearest[active]]
            partial = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * axes[active]], axis=-1)
        motion.deltas[active, bone] = quat_to_matrix(partial) @ motion.deltas[active, bone]
    names = motion.skeleton.bone_names
    return sorted(names[bone] for bone in per_bone)
