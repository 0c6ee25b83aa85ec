# SPDX-License-Identifier: GPL-3.0-or-later
"""Hands that bear weight rest on the floor: a body on all fours puts its hands down (NumPy).

Generated crawls hover their hands: the decoder blurs a hand that taps the floor into one that skims it, and four
crawl prompts at seeds 0-2 held their lower wrist 0.09-0.22 m over the floor (each take's median), where a real
crawler's palms are flat on it (ACCAD Male1's crawls: the wrists within 5 cm of it while the hand is down).  So,
after the foot clean-up, where the body is on all fours its hands are put on the floor, following the motion alone:

- *where*: per frame, the body's weight on its hands (`support_weights`): how far its torso leans from upright
  (pelvis to neck, a smoothstep from `LEAN_DEGREES`) times how far its chest faces the floor (the torso's forward
  axis pointing down, from `FACING_DOWN`) times how low its hips are (`PELVIS_LOW`: on hands and knees), so a
  standing, sitting, bowing or bending body and one lying on its back are left as they are;
- *how far*: each wrist's lowest height over the half second around each frame (`LOW_WINDOW_SECONDS`: the moments
  that hand is down) is brought to `PALM_HEIGHT` (the wrist over a palm flat on the floor), the whole hand path
  shifted down (or up, out of the floor) by that much, smoothed over `SHIFT_SIGMA_SECONDS`, so a hand keeps its
  swing between its plants; a hand whose lowest point is more than `REACH_BAND` over the floor is reaching, not
  supporting, and is left alone;
- *hold*: where a lowered wrist is down (within `HELD_TOLERANCE` of `PALM_HEIGHT`, the body on its hands) for
  `MIN_HOLD_SECONDS` or more, it is held on one spot, the mean of its path there, blended in and out over
  `HOLD_BLEND_SECONDS` (`foot_contact.lock_track`, as a held foot is): a hand on the floor bears weight, it does not
  slide (lowered alone, the generated hands slid along the floor at 0.24-0.64 m/s, faster than the crawling body);
- *solve*: elbow and wrist are re-placed by analytic two-bone IK (`two_bone_ik.py`) from the shoulder at the rest
  skeleton's arm lengths, the elbow bending the way it bent, so a hand out of reach stops at the straight arm.

Measured by `benchmarks/measure_hand_support.py` (`benchmarks/results/hand_support.md`: the lower wrist 0.04-0.09 m,
a hand down still within 0.2 m/s, the crawl check passed in 12 of 12 takes against 3) and the everyday actions and
phrasings (the crawls there pass in every seed); a take whose body never leans onto its hands is returned unchanged.
Axes: HumanML3D (metres, Y up).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..common.boolean_runs import true_runs
from ..common.smoothstep import smoothstep
from .foot_contact import clean_runs, lock_track
from .kinematics import forward_kinematics, reaim_joints
from .skeleton import JOINT_INDEX
from .time_filters import gaussian_smooth
from .two_bone_ik import bend_pole, solve_two_bone

ARMS: tuple[tuple[int, int, int], ...] = tuple(
    (JOINT_INDEX[f"{side}_shoulder"], JOINT_INDEX[f"{side}_elbow"], JOINT_INDEX[f"{side}_wrist"])
    for side in ("left", "right"))
LEAN_DEGREES = (45.0, 65.0)
"""Torso lean from upright (pelvis to neck): no support below the first, full from the second."""
FACING_DOWN = (0.2, 0.5)
"""How far the chest's forward axis points down (minus its vertical component): a crawl 0.7-1.0, a back on the
floor below 0."""
PELVIS_LOW = (0.65, 0.5)
"""Metres of pelvis over the floor: no support above the first (a standing body bending down), full below the second
(hands and knees: 0.35-0.5)."""
PALM_HEIGHT = 0.04
"""Metres from the floor to the wrist joint over a palm flat on the floor (real crawls: within 5 cm)."""
REACH_BAND = 0.35
"""A hand whose lowest point nearby is higher than this over the floor is not bearing weight."""
LOW_WINDOW_SECONDS = 0.5
SHIFT_SIGMA_SECONDS = 0.1
HELD_TOLERANCE = 0.03
"""Metres over `PALM_HEIGHT` within which a lowered wrist of a body on its hands is down on the floor."""
MIN_HOLD_SECONDS = 0.15
HOLD_BLEND_SECONDS = 0.1
"""A hand down for at least `MIN_HOLD_SECONDS` is held on one spot, blended in and out over `HOLD_BLEND_SECONDS`."""


def floor_height(joints: np.ndarray) -> float:
    """The floor under a motion: a low percentile of each frame's lowest joint other than the wrists."""
    others = [joint for joint in range(joints.shape[1]) if joint not in {arm[2] for arm in ARMS}]
    return float(np.percentile(joints[:, others, 1].min(axis=1), 5))


def support_weights(joints: np.ndarray, floor: float | None = None) -> np.ndarray:
    """(T,) 0-1: how much each frame's body is on all fours (module docstring, *where*); `floor`: its
    `floor_height`, measured when not given."""
    pelvis, neck = joints[:, JOINT_INDEX["pelvis"]], joints[:, JOINT_INDEX["neck"]]
    spine = neck - pelvis
    up = spine / np.maximum(np.linalg.norm(spine, axis=1, keepdims=True), 1e-9)
    lean = np.degrees(np.arccos(np.clip(up[:, 1], -1.0, 1.0)))
    across = joints[:, JOINT_INDEX["left_hip"]] - joints[:, JOINT_INDEX["right_hip"]]
    forward = np.cross(across, up)  # HumanML3D: left x up points the way the body faces
    forward /= np.maximum(np.linalg.norm(forward, axis=1, keepdims=True), 1e-9)
    pelvis_height = pelvis[:, 1] - (floor_height(joints) if floor is None else floor)
    return (smoothstep(lean, *LEAN_DEGREES) * smoothstep(-forward[:, 1], *FACING_DOWN)
            * smoothstep(pelvis_height, *PELVIS_LOW))


def _running_min(values: np.ndarray, half: int) -> np.ndarray:
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return windows.min(axis=1)


def hand_support_targets(joints: np.ndarray, fps: float) -> np.ndarray | None:
    """(T, 2, 3) where each wrist goes (left, right), or None where no frame's body is on its hands."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape[0] < 2:
        return None
    floor = floor_height(joints)
    weights = support_weights(joints, floor)
    if not np.any(weights > 0):
        return None
    half = max(1, int(round(LOW_WINDOW_SECONDS * fps / 2)))
    targets = joints[:, [arm[2] for arm in ARMS]].copy()
    for hand in range(len(ARMS)):
        low = _running_min(targets[:, hand, 1] - floor, half)
        shift = (low - PALM_HEIGHT) * smoothstep(low, REACH_BAND, 0.8 * REACH_BAND) * weights  # < 0: through the floor
        targets[:, hand, 1] -= gaussian_smooth(shift, SHIFT_SIGMA_SECONDS * fps)
        targets[:, hand] = _held_on_the_floor(targets[:, hand], weights, floor, fps)
    return targets


def _held_on_the_floor(wrist: np.ndarray, weights: np.ndarray, floor: float, fps: float) -> np.ndarray:
    """(T, 3) a lowered wrist path held still where it is down (module docstring, *hold*)."""
    down = (weights > 0.5) & (wrist[:, 1] - floor < PALM_HEIGHT + HELD_TOLERANCE)
    runs = true_runs(clean_runs(down, max(2, int(round(MIN_HOLD_SECONDS * fps)))))
    if not runs:
        return wrist
    locks = []
    for start, end in runs:  # each at the mean of its path over the floor, the palm flat on it
        x, z = wrist[start:end][:, [0, 2]].mean(axis=0)
        locks.append(np.array([x, floor + PALM_HEIGHT, z]))
    weight, correction = lock_track(runs, locks, wrist, max(1, int(round(HOLD_BLEND_SECONDS * fps))))
    return wrist + weight[:, None] * correction


def plant_hands(joints: np.ndarray, fps: float, offsets: np.ndarray) -> np.ndarray:
    """(T, 22, 3) `joints` with the hands of a body on all fours on the floor (module docstring); the arms keep the
    rest skeleton's lengths (`offsets` (22, 3))."""
    joints = np.asarray(joints, dtype=np.float64)
    targets = hand_support_targets(joints, fps)
    if targets is None:
        return joints
    out = joints.copy()
    for hand, (shoulder, elbow, wrist) in enumerate(ARMS):
        moved = np.abs(targets[:, hand] - joints[:, wrist]).max(axis=1) > 1e-6
        if not moved.any():
            continue
        # a straight arm bends its elbow back towards the hips, as a crawler's does
        backwards = joints[:, JOINT_INDEX["pelvis"]] - joints[:, shoulder]
        pole = bend_pole(joints[:, shoulder], joints[:, elbow], joints[:, wrist], backwards)
        middle, end = solve_two_bone(joints[:, shoulder], targets[:, hand], pole,
                                     float(np.linalg.norm(offsets[elbow])), float(np.linalg.norm(offsets[wrist])))
        out[moved, elbow], out[moved, wrist] = middle[moved], end[moved]
    return out


def hands_planted_motion(motion):
    """The MotionResult `motion` with the hands of a body on all fours on the floor (`plant_hands` on the pose its
    rotations show), the arms' rotations re-solved from the new positions; `motion` itself where no hand moves."""
    offsets = np.asarray(motion.rest_offsets, dtype=np.float64)
    posed = forward_kinematics(motion.root_translation, motion.local_rotations, offsets)  # what the rig shows
    planted = plant_hands(posed, motion.fps, offsets)
    if np.array_equal(planted, posed):
        return motion
    root, rotations = reaim_joints(planted, motion.local_rotations, [joint for arm in ARMS for joint in arm], offsets)
    return replace(motion, joints=forward_kinematics(root, rotations, offsets), root_translation=root,
                   local_rotations=rotations)
