# SPDX-License-Identifier: GPL-3.0-or-later
"""HumanML3D's motion representation: canonical preprocessing, 263-d features, statistics and folder layout.

Torch-free: the differentiable recovery lives in ``features_torch`` and must be imported explicitly.
"""

from .dataset_folder import (
    Caption,
    HumanML3DFolder,
    tokenize_caption,
    write_clip,
    write_mean_std,
    write_split,
)
from .features import (
    CHANNEL_GROUPS,
    FEATURE_DIM,
    MotionArrayError,
    features_to_joints,
    features_to_local_rotations,
    joints_to_features,
    mirror_features,
    recover_root,
)
from .normalizer import Normalizer
from .preprocess import preprocess_joints, process_motion

__all__ = [
    "CHANNEL_GROUPS", "FEATURE_DIM", "Caption", "HumanML3DFolder", "MotionArrayError", "Normalizer",
    "features_to_joints", "features_to_local_rotations", "joints_to_features", "mirror_features",
    "preprocess_joints", "process_motion", "recover_root", "tokenize_caption", "write_clip", "write_mean_std",
    "write_split",
]
