# SPDX-License-Identifier: GPL-3.0-or-later
"""How well a retargeted motion follows its source: the numbers the tests and the closing note report.

- position error: matched joints on the rig vs the source joints scaled to the rig's leg length, mean over frames
  and joints, as a fraction of the body height (the scaled source T-pose from ankle to head joint, a little under
  the standing height, so the fraction is a little stricter than one of the full height);
- foot-contact drift: on frames where a source foot is planted (ankle slow and near its lowest height), how far the
  rig's ankle moves away from where the scaled source ankle moves (metres; 0 = the rig's foot stays as planted as the
  source's); its part along the ground alone is the *slide* (the rig's own feet, rolling over another heel and toes
  than the source's, may rise differently while planted; they must not slide);
- largest turn: the largest change of any bone's local rotation between consecutive frames (degrees), the flip check;
- proportion-neutral reference (`proportion_neutral_reference`): the source's own joint rotations re-played on a
  skeleton with the rig's bone lengths (pelvis on the scaled source pelvis).  Its error against the scaled source is
  what the two skeletons' proportions cost *in this motion*; the retargeted joints' distance from it is what the
  retargeting itself changes (foot IK, aiming, pelvis placement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..motion.rotations import matrix_to_quat
from ..motion.skeleton import JOINT_INDEX, PARENTS

CONTACT_SPEED = 0.4  # m/s: a source ankle slower than this ...
CONTACT_HEIGHT = 0.06  # m: ... and within this of its lowest height is planted


@dataclass(frozen=True)
class RetargetQuality:
    mean_error: float           # metres
    height: float               # metres (the rig's rest height)
    contact_drift: float        # metres
    contact_frames: int
    largest_turn: float         # degrees between consecutive frames
    contact_slide: float = 0.0  # metres: the contact drift along the ground only (the feet sliding)

    @property
    def mean_error_fraction(self) -> float:
        return self.mean_error / self.height


def contact_mask(ankle: np.ndarray, fps: float) -> np.ndarray:
    """(T,) planted frames of one ankle track (T, 3) in HumanML3D axes (y up)."""
    speed = np.zeros(len(ankle))
    if len(ankle) > 1:
        step = np.linalg.norm(np.diff(ankle, axis=0), axis=-1) * fps
        speed[1:] = step
        speed[0] = step[0]
    low = ankle[:, 1] < ankle[:, 1].min() + CONTACT_HEIGHT
    return (speed < CONTACT_SPEED) & low


def contact_drift(rig_ankle: np.ndarray, source_ankle: np.ndarray, mask: np.ndarray) -> float:
    """Largest |(rig(t) - rig(start)) - (source(t) - source(start))| over each run of planted frames."""
    worst, start = 0.0, None
    for frame in range(len(mask) + 1):
        planted = frame < len(mask) and mask[frame]
        if planted and start is None:
            start = frame
        elif not planted and start is not None:
            run = slice(start, frame)
            moved = (rig_ankle[run] - rig_ankle[start]) - (source_ankle[run] - source_ankle[start])
            worst = max(worst, float(np.linalg.norm(moved, axis=-1).max()))
            start = None
    return worst


def largest_turn(local_rotations: np.ndarray) -> float:
    """Largest angle (degrees) any bone's (T, B, 3, 3) local rotation turns between consecutive frames."""
    if len(local_rotations) < 2:
        return 0.0
    quaternions = matrix_to_quat(local_rotations)
    dots = np.abs(np.sum(quaternions[1:] * quaternions[:-1], axis=-1))
    return float(np.degrees(2 * np.arccos(np.clip(dots, -1.0, 1.0))).max())


def measure(rig_points: np.ndarray, source_points: np.ndarray, scale: float, source_rest: np.ndarray,
            local_rotations: np.ndarray, fps: float) -> RetargetQuality:
    """Quality of a retargeted motion.  rig_points (T, 22, 3): the matched joints on the rig (NaN where unmatched),
    source_points (T, 22, 3): the source joints, both HumanML3D axes and metres; source_rest (22, 3): the source's
    T-pose (its height times `scale` is the body height errors are compared with, ankle to head joint);
    local_rotations (T, B, 3, 3) of the bones keyed.  A retargeting that stood the rig on its own floor compares
    with the source raised by `RetargetedMotion.vertical_offset / scale` (`on_rig_floor`)."""
    scaled = source_points * scale
    matched = ~np.isnan(rig_points[0, :, 0])
    error = np.linalg.norm(rig_points[:, matched] - scaled[:, matched], axis=-1)
    height = float(np.ptp(source_rest[:, 1])) * scale
    drift, slide, frames = 0.0, 0.0, 0
    horizontal = np.array([1.0, 0.0, 1.0])
    for side in ("left", "right"):
        joint = JOINT_INDEX[f"{side}_ankle"]
        mask = contact_mask(scaled[:, joint], fps)
        frames += int(mask.sum())
        drift = max(drift, contact_drift(rig_points[:, joint], scaled[:, joint], mask))
        slide = max(slide, contact_drift(rig_points[:, joint] * horizontal, scaled[:, joint] * horizontal, mask))
    return RetargetQuality(mean_error=float(error.mean()), height=height, contact_drift=drift,
                           contact_frames=frames, largest_turn=largest_turn(local_rotations), contact_slide=slide)


def on_rig_floor(source_points: np.ndarray, vertical_offset: float, scale: float) -> np.ndarray:
    """(T, 22, 3) the source raised by the distance (metres, on the rig) the retargeting moved the whole body to stand
    it on the rig's own floor (`RetargetedMotion.vertical_offset`): what the rig's joints are compared with."""
    raised = np.array(source_points, dtype=np.float64, copy=True)
    raised[..., 1] += vertical_offset / scale
    return raised


def proportion_neutral_reference(source_points: np.ndarray, source_global_rotations: np.ndarray,
                                 source_rest: np.ndarray, rig_rest_points: np.ndarray, scale: float) -> np.ndarray:
    """(T, 22, 3) the source's rotations re-played on the rig's bone lengths (HumanML3D axes, metres).

    source_points (T, 22, 3) and source_global_rotations (T, 22, 3, 3): the source motion (rotations relative to its
    rest `source_rest` (22, 3)); rig_rest_points (22, 3): where the canonical joints sit on the rig at rest (NaN where
    the rig has none; that bone then keeps the source's length times `scale`).  Each canonical bone keeps the source
    rest direction and takes the rig's length, so the rig's rest pose (A-pose, rolls) plays no part; the pelvis
    follows the scaled source pelvis."""
    source_points = np.asarray(source_points, dtype=np.float64)
    rotations = np.asarray(source_global_rotations, dtype=np.float64)
    rest = np.asarray(source_rest, dtype=np.float64)
    rig = np.asarray(rig_rest_points, dtype=np.float64)
    reference = np.empty_like(source_points)
    reference[:, 0] = source_points[:, 0] * scale
    for joint, parent in enumerate(PARENTS):
        if parent < 0:
            continue
        direction = rest[joint] - rest[parent]
        length = float(np.linalg.norm(direction))
        rig_length = float(np.linalg.norm(rig[joint] - rig[parent]))
        wanted = rig_length if np.isfinite(rig_length) else length * scale
        offset = direction / max(length, 1e-9) * wanted
        reference[:, joint] = reference[:, parent] + np.einsum("tij,j->ti", rotations[:, parent], offset)
    return reference


def mean_error_fraction(points: np.ndarray, other: np.ndarray, height: float) -> float:
    """Mean distance of the joints both (T, 22, 3) arrays have (not NaN), as a fraction of `height`."""
    matched = ~(np.isnan(points[0, :, 0]) | np.isnan(other[0, :, 0]))
    return float(np.linalg.norm(points[:, matched] - other[:, matched], axis=-1).mean() / height)
