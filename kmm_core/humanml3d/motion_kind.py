# SPDX-License-Identifier: GPL-3.0-or-later
"""What a recorded clip does with its whole body, read from its motion (NumPy): does it walk or run, does it keep
its heading while it does, does it stand in place upright.

Generation treats the frames of a walk, of a calm standing body and of everything else differently (the walking,
standing and gesture decoders, a walk's guidance and gait-cycle pull, a calm body's root smoothing:
``feature_smoothing.py``, ``model/decoding.py``).  Which treatment a prompt gets follows what the recorded clips
nearest to it in the text encoder's space do (``generation/prompt_kinds.py``), and those clips are measured here,
never by the words of their captions.  Per frame, at the features' 20 fps, over a 0.5 s Gaussian:

- *travelling*: the root moves faster than `TRAVEL_SPEED` over the floor with the pelvis upright (above
  `UPRIGHT_SHARE` of the leg length over the lowest foot: a crawl or a roll travels low);
- *standing*: the root moves slower than `STILL_SPEED`, turns slower than `STILL_TURN` and the pelvis stands at
  least `STANDING_SHARE` of the leg length over the lowest foot (a squat, a kneel or a seat is lower).

A clip *walks* (or runs) when at least `CLIP_SHARE` of its frames travel, its feet strike the floor at least
`STEP_RATE` times a second (the contact channels' onsets, both feet) and it steps regularly (``gait_rhythm``'s
regularity at least `REGULARITY`): a kick, a punch or a dance that travels a few steps is not a walk.  It walks
*steadily* when its heading stays within `STEADY_HEADING` over the clip (a walk that curves or turns does not repeat
one gait cycle).  It *stands* when at least `STANDING_CLIP_SHARE` of its frames stand (a squat's or a bow's
repetitions stand up between them, not most of the time).  An action's kind is the share of its clips that do each
(``bundle/vocabulary.py`` stores it per action).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..motion.skeleton import JOINT_INDEX
from ..motion.time_filters import gaussian_smooth
from .features import (
    FOOT_CONTACTS,
    ROOT_HEIGHT,
    ROOT_XZ_VELOCITY,
    ROOT_YAW_VELOCITY,
    check_features,
    features_to_joints,
)
from .gait_rhythm import gait_regularity

FEATURES_FPS = 20.0
SMOOTHING_SECONDS = 0.25
"""Sigma of the Gaussian over each frame's speed and turn (a step's sway is not a change of pace)."""
TRAVEL_SPEED = 0.3
"""m/s over the floor above which a frame travels (a slow stroll is 0.5-0.8 m/s)."""
STILL_SPEED = 0.15
"""m/s under which a frame stands in place."""
STILL_TURN = np.radians(30.0)
"""rad/s under which a standing frame turns (turning on the spot is a whole-body move)."""
STEADY_HEADING = np.radians(40.0)
"""The widest heading range (radians) of a walk that keeps its heading (the recorded 45-degree turns span 45-60)."""
STEP_RATE = 1.0
"""Foot strikes a second, both feet (a stroll makes 1.5-2, a run 2.5-3)."""
REGULARITY = 0.4
"""Gait regularity of a walk (recorded walks and runs 0.5-0.99; kicks, punches and dances that step 0.1-0.4)."""
UPRIGHT_SHARE = 0.6
STANDING_SHARE = 0.8
CLIP_SHARE = 0.5
STANDING_CLIP_SHARE = 0.8


@dataclass(frozen=True)
class MotionKind:
    """Shares in [0, 1]: of walking or running, of doing so on a steady heading, of standing in place upright (a
    clip's are 0 or 1; an action's or a prompt's are means)."""

    walking: float = 0.0
    steady: float = 0.0
    standing: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"walking": round(self.walking, 4), "steady": round(self.steady, 4), "standing": round(self.standing, 4)}


def leg_length(joints: np.ndarray) -> float:
    """The median over frames of hip -> knee -> ankle, both legs averaged (metres): the unit of the gait measures
    (``evaluation/gait.py``) and of a clip's pelvis height here."""
    lengths = []
    for side in ("left", "right"):
        hip, knee, ankle = (joints[:, JOINT_INDEX[f"{side}_{part}"]] for part in ("hip", "knee", "ankle"))
        lengths.append(np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(ankle - knee, axis=-1))
    return float(np.median(np.mean(lengths, axis=0)))


def frame_measures(features: np.ndarray, fps: float = FEATURES_FPS) -> dict[str, np.ndarray]:
    """Per frame of (T, 263) denormalised features: ``speed`` (m/s over the floor), ``turn`` (rad/s), ``heading``
    (radians from the first frame), ``height`` (the pelvis over the clip's lowest foot, in leg lengths), and
    ``joints`` (T, 22, 3)."""
    features = check_features(features)
    sigma = SMOOTHING_SECONDS * fps
    speed = np.linalg.norm(features[:, ROOT_XZ_VELOCITY], axis=1) * fps
    yaw = 2.0 * features[:, ROOT_YAW_VELOCITY.start]  # the channel holds half the turn (a quaternion's angle)
    turn = np.abs(yaw) * fps
    joints = features_to_joints(features)
    feet = joints[:, [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")], 1]
    height = (features[:, ROOT_HEIGHT.start] - feet.min()) / max(leg_length(joints), 1e-6)
    if features.shape[0] > 1:
        speed, turn = gaussian_smooth(speed, sigma), gaussian_smooth(turn, sigma)
    return {"speed": speed, "turn": turn, "heading": np.concatenate([[0.0], np.cumsum(yaw[:-1])]), "height": height,
            "joints": joints}


def step_rate(features: np.ndarray, fps: float = FEATURES_FPS) -> float:
    """Foot strikes a second, both feet: onsets of contact in the features' contact channels (a foot is down when
    either of its two channels is)."""
    contacts = np.asarray(features)[:, FOOT_CONTACTS] > 0.5
    strikes = sum(int(np.sum(np.diff(down.astype(np.int8)) == 1))
                  for down in (contacts[:, 0] | contacts[:, 1], contacts[:, 2] | contacts[:, 3]))
    return strikes * fps / max(len(contacts), 1)


def clip_motion_kind(features: np.ndarray, fps: float = FEATURES_FPS) -> MotionKind:
    """A recorded clip's kind (module docstring): each share 0 or 1."""
    measures = frame_measures(features, fps)
    speed, turn, height = measures["speed"], measures["turn"], measures["height"]
    travelling = (speed > TRAVEL_SPEED) & (height > UPRIGHT_SHARE)
    standing = (speed < STILL_SPEED) & (turn < STILL_TURN) & (height > STANDING_SHARE)
    walks = bool(travelling.mean() >= CLIP_SHARE and step_rate(features, fps) >= STEP_RATE
                 and gait_regularity(measures["joints"], fps) >= REGULARITY)
    heading = measures["heading"]
    steady = walks and float(heading.max() - heading.min()) < STEADY_HEADING
    return MotionKind(float(walks), float(steady), float(standing.mean() >= STANDING_CLIP_SHARE))


def mean_kind(kinds: list[MotionKind], weights: np.ndarray | None = None) -> MotionKind:
    """The (weighted) mean of `kinds`; all zero for none."""
    if not kinds:
        return MotionKind()
    w = np.ones(len(kinds)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / max(float(w.sum()), 1e-12)
    values = np.clip(np.array([[k.walking, k.steady, k.standing] for k in kinds]).T @ w, 0.0, 1.0)
    return MotionKind(*(float(v) for v in values))
