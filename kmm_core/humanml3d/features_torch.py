# SPDX-License-Identifier: GPL-3.0-or-later
"""Differentiable, batched recovery of joints from HumanML3D features in PyTorch (for losses and MPJPE).

Same formulas as ``features.features_to_joints`` (HumanML3D's ``recover_from_ric``); kept separate so that the
NumPy core never imports torch.  The root rotation is a pure yaw, so it is applied as a rotation about Y by the
integrated angle instead of through quaternions.
"""

from __future__ import annotations

import torch

from ..motion.skeleton import NUM_JOINTS
from .features import FEATURE_DIM, RIC, MotionArrayError


def _check(features: torch.Tensor) -> None:
    if features.dim() < 2 or features.shape[-1] != FEATURE_DIM:
        raise MotionArrayError(f"features: expected shape (..., frames, {FEATURE_DIM}), got {tuple(features.shape)}")


def _rotate_about_y(vectors: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (..., 3) vectors by ``angle`` (radians, broadcastable to (...)) about +Y (right-handed)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    x, y, z = vectors.unbind(-1)
    return torch.stack([cos * x + sin * z, y, -sin * x + cos * z], dim=-1)


def recover_root_torch(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root facing yaw (..., T) in radians and root positions (..., T, 3).

    The yaw is the angle of the rotation about +Y that turns world directions into the facing frame (HumanML3D's
    root quaternion); channel 0 holds half of each yaw step (the quaternion's half angle), hence the factor 2.
    """
    _check(features)
    half_step = features[..., :-1, 0]
    half_angle = torch.cat([torch.zeros_like(features[..., :1, 0]), torch.cumsum(half_step, dim=-1)], dim=-1)
    yaw = 2.0 * half_angle

    zeros = torch.zeros_like(features[..., :-1, 1])
    local_step = torch.stack([features[..., :-1, 1], zeros, features[..., :-1, 2]], dim=-1)
    # Step t -> t+1 is expressed in the facing frame of t+1: undo that frame's facing rotation.
    world_step = _rotate_about_y(local_step, -yaw[..., 1:])
    first = torch.zeros_like(world_step[..., :1, :])
    xz = torch.cumsum(torch.cat([first, world_step], dim=-2), dim=-2)
    root = torch.stack([xz[..., 0], features[..., 3], xz[..., 2]], dim=-1)
    return yaw, root


def features_to_joints_torch(features: torch.Tensor) -> torch.Tensor:
    """Joint positions (..., T, 22, 3) from features (..., T, 263); differentiable with respect to ``features``."""
    yaw, root = recover_root_torch(features)
    ric = features[..., RIC].reshape(features.shape[:-1] + (NUM_JOINTS - 1, 3))
    world = _rotate_about_y(ric, -yaw[..., None])
    offset = torch.stack([root[..., 0], torch.zeros_like(root[..., 1]), root[..., 2]], dim=-1)
    return torch.cat([root[..., None, :], world + offset[..., None, :]], dim=-2)
