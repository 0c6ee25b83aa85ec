# SPDX-License-Identifier: GPL-3.0-or-later
"""The clean-up of a generated take, in its one order (NumPy): the feet held on their contacts
(``foot_contact.py``), then a body on all fours put on its hands (``hand_support.py``).

Fresh takes (``generation/timeline_generator.py``), loops (``generation/loops.py``), edits
(``generation/edit_cleanup.py``) and the evaluation's measures of the motion as shipped
(``evaluation/generated_motions.py``) all clean a take here, so a step added to the clean-up reaches every one.
"""

from __future__ import annotations

import numpy as np

from .foot_contact import FootLockSettings, clean_foot_contacts, foot_locked_motion
from .hand_support import hands_planted_motion, plant_hands
from .skeleton import tpose_offsets


def cleaned_motion(motion, channels: np.ndarray | None = None, settings: FootLockSettings | None = None):
    """The MotionResult `motion` cleaned: `foot_contact.foot_locked_motion` (`channels` (T, 4) the contact channels
    at its frames, None for geometry alone), then `hand_support.hands_planted_motion`."""
    return hands_planted_motion(foot_locked_motion(motion, channels, settings or FootLockSettings()))


def cleaned_joints(joints: np.ndarray, fps: float, channels: np.ndarray | None = None,
                   settings: FootLockSettings | None = None) -> np.ndarray:
    """(T, 22, 3) joint positions cleaned the same way on the standard rest skeleton: `clean_foot_contacts`, then
    `plant_hands`."""
    offsets = tpose_offsets()
    locked = clean_foot_contacts(joints, fps, channels, offsets, settings=settings or FootLockSettings()).joints
    return plant_hands(locked, fps, offsets)
