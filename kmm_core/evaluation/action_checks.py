# SPDX-License-Identifier: GPL-3.0-or-later
"""Geometric checks of single actions on joint positions: did the motion jump, squat, lie down, crawl, kick?

Torch-free NumPy on canonical joints (22 joints of ``skeleton.JOINT_NAMES``, metres, HumanML3D axes: Y up).  Used by
``kmm-train eval-actions`` (``action_evaluation.py``) next to the evaluator's retrieval; the side words of a prompt
keep their own check (``directional.py``).  Which check applies comes from the action word (``checks_for_action``):

| check | action words            | measured (held for a minimum time)                   | passes when         |
| ----- | ----------------------- | ---------------------------------------------------- | ------------------- |
| jump  | jump*, hop*, leap*      | the LOWEST foot joint's height above its own floor   | >= 0.10 m for 0.2 s |
| squat | squat*, sit(s), crouch* | pelvis drop below its standing height (share of it)  | >= 35 %             |
| lie   | lie, lies, lying        | torso (pelvis -> neck) angle above the horizontal;   | <= 20 deg for 0.5 s |
|       |                         | frames with the pelvis > 0.35 m up count as 90       |                     |
| crawl | crawl*                  | the HIGHER wrist's height above the floor            | <= 0.20 m for 1 s   |
| kick  | *kick*                  | a toe above the OTHER leg's knee                     | >= 0.15 m for 0.1 s |

"Held for t" means the best value that lasts t seconds: for a lower bound, the largest value v such that the measure
stays >= v over some t-second window (``held_at_least``), for an upper bound the mirror (``held_at_most``); one
frame of decoder jitter cannot pass a check.  Floor: each foot joint (ankles, toes) gets its own ground level, the 5th
percentile of its height over the clip, so heel strikes (ankle down, toe up) do not read as the lowest joint leaving
the floor; the floor is the lowest of the four levels.  Standing pelvis height: its 90th percentile above the floor.

Thresholds were chosen on every unmirrored clip of ``kmm-train prepare`` over Bandai-Namco, CMU, HDM05, the CMU
exp-map subset, CMU on the Character Creator rig and DeepMimic (3,426 clips; joints recovered from the 263-d features
as the evaluation does).  ``benchmarks/measure_action_checks.py`` prints every check on every dataset/content
(``benchmarks/results/action_checks.md``).  Real pass rates:

* jump: HDM05 hopBothLegs 34/35 (the miss hops 0.08 m), exp-map jumping 8/8, CMU-iClone jump 4/4, DeepMimic jump
  1/1, CMU jump 15/20 (the misses are windows of "jump to grab something, tiptoe" trials without a jump in them);
  Bandai-Namco walks 0/702 and runs 0/306, CMU walk 3/33 and run 1/12, CMU-iClone walk 2/18 (uneven floor in long
  trials).
* squat: HDM05 squat1Reps 52/52 (drops of 45-67 %); every walk and run 0; bending to the floor (HDM05 depositFloor)
  13/32 and the take-off crouch of jumps (CMU jump 6/20) also drop that far (not squat words, so never checked).
* lie: HDM05 lieDownFloor 20/20 (held angles 0.4-4.6 deg); every Bandai-Namco clip 0; HDM05 depositFloor (torso
  horizontal, pelvis high) 0/32; DeepMimic crawl and both get-up clips pass (they are on the floor).
* crawl: DeepMimic crawl 1/1 (0.17 m); every walk and run 0; HDM05 lieDownFloor 19/20 (hands on the floor too) and
  depositFloor 1/32 (0.195 m).
* kick: HDM05 kickLFront 29/29 (toe 0.29-0.88 m above the other knee), Bandai-Namco kick 2/2, DeepMimic kick and
  spinkick 1/1 each; every walk 0 (highest 0.10 m); Bandai-Namco run 38/291 and dash 2/15 (the heel flick of a
  sprint), HDM05 elbowToKnee 11/27 (the knee comes up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..common.errors import InputTensorError
from ..humanml3d.features import check_joints
from ..motion.model_timing import MODEL_FPS
from ..motion.skeleton import JOINT_INDEX

CHECK_NAMES = ("jump", "squat", "lie", "crawl", "kick")

_PELVIS = JOINT_INDEX["pelvis"]
_NECK = JOINT_INDEX["neck"]
_FOOT_JOINTS = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
_WRISTS = [JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]]
_TOE = {"left": JOINT_INDEX["left_foot"], "right": JOINT_INDEX["right_foot"]}
_KNEE = {"left": JOINT_INDEX["left_knee"], "right": JOINT_INDEX["right_knee"]}


@dataclass(frozen=True)
class ActionCheckThresholds:
    """Pass thresholds of the checks (the module docstring gives the real clips they were chosen on)."""

    jump_clearance_metres: float = 0.10
    jump_seconds: float = 0.2
    squat_drop_fraction: float = 0.35
    lie_degrees: float = 20.0
    lie_pelvis_metres: float = 0.35
    lie_seconds: float = 0.5
    crawl_hand_metres: float = 0.20
    crawl_seconds: float = 1.0
    kick_metres: float = 0.15
    kick_seconds: float = 0.1
    floor_percentile: float = 5.0
    standing_percentile: float = 90.0


@dataclass(frozen=True)
class CheckResult:
    """One check on one motion: the held measure, its threshold and whether it passed."""

    name: str
    value: float
    threshold: float
    passed: bool


# ---------------------------------------------------------------------------------------------------------------
# which checks an action word gets
# ---------------------------------------------------------------------------------------------------------------

_CHECK_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("jump", re.compile(r"^(?:jump\w*|hop|hops|hopping|hopped|leap\w*)$")),
    ("squat", re.compile(r"^(?:squat\w*|sit|sits|sitting|sat|crouch\w*)$")),
    ("lie", re.compile(r"^(?:lie|lies|lying)$")),
    ("crawl", re.compile(r"^crawl\w*$")),
    ("kick", re.compile(r"kick")),
)


def action_words(label: str) -> list[str]:
    """Lower-case words of a content label: 'kickLFront1Reps' -> ['kick', 'l', 'front', 'reps'],
    'walk-turn-left' -> ['walk', 'turn', 'left'], 'getup_faceup' -> ['getup', 'faceup']."""
    return [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", label)]


def checks_for_action(label: str) -> tuple[str, ...]:
    """The geometric checks (names of CHECK_NAMES, in that order) that apply to an action word."""
    words = action_words(label)
    return tuple(name for name, pattern in _CHECK_WORDS if any(pattern.search(word) for word in words))


# ---------------------------------------------------------------------------------------------------------------
# measures
# ---------------------------------------------------------------------------------------------------------------

def _frames(seconds: float, fps: float, available: int) -> int:
    return int(min(max(1, round(seconds * fps)), available))


def held_at_least(values: np.ndarray, frames: int) -> float:
    """The largest v such that `values` stays >= v over `frames` consecutive frames (whole clip if shorter)."""
    values = np.asarray(values, dtype=np.float64)
    frames = min(max(1, frames), len(values))
    return float(np.lib.stride_tricks.sliding_window_view(values, frames).min(axis=1).max())


def held_at_most(values: np.ndarray, frames: int) -> float:
    """The smallest v such that `values` stays <= v over `frames` consecutive frames (whole clip if shorter)."""
    return -held_at_least(-np.asarray(values, dtype=np.float64), frames)


def foot_floor_levels(joints: np.ndarray, percentile: float = 5.0) -> np.ndarray:
    """(4,) ground level of each foot joint (left/right ankle, left/right toe): a low percentile of its height."""
    return np.percentile(joints[:, _FOOT_JOINTS, 1], percentile, axis=0)


def feet_clearance(joints: np.ndarray, percentile: float = 5.0) -> np.ndarray:
    """(T,) height of the lowest foot joint above its own ground level: > 0 in every foot joint = both feet off."""
    return (joints[:, _FOOT_JOINTS, 1] - foot_floor_levels(joints, percentile)).min(axis=1)


def floor_height(joints: np.ndarray, percentile: float = 5.0) -> float:
    return float(foot_floor_levels(joints, percentile).min())


def jump_clearance(joints: np.ndarray, fps: float = MODEL_FPS,
                   thresholds: ActionCheckThresholds | None = None) -> float:
    """Metres both feet stay above the floor for `jump_seconds`."""
    t = thresholds or ActionCheckThresholds()
    clearance = feet_clearance(joints, t.floor_percentile)
    return held_at_least(clearance, _frames(t.jump_seconds, fps, len(joints)))


def pelvis_drop_fraction(joints: np.ndarray, fps: float = MODEL_FPS,
                         thresholds: ActionCheckThresholds | None = None) -> float:
    """How far the pelvis drops below its standing height (share of it), held for 3 frames at 20 fps."""
    t = thresholds or ActionCheckThresholds()
    height = joints[:, _PELVIS, 1] - floor_height(joints, t.floor_percentile)
    standing = float(np.percentile(height, t.standing_percentile))
    if standing <= 1e-6:
        return 0.0
    lowest = held_at_most(height, _frames(0.15, fps, len(joints)))
    return float((standing - lowest) / standing)


def torso_elevation_degrees(joints: np.ndarray) -> np.ndarray:
    """(T,) angle of the pelvis -> neck vector above the horizontal plane (0 lying, 90 upright)."""
    torso = joints[:, _NECK] - joints[:, _PELVIS]
    length = np.maximum(np.linalg.norm(torso, axis=-1), 1e-9)
    return np.degrees(np.arcsin(np.clip(np.abs(torso[:, 1]) / length, 0.0, 1.0)))


def lying_torso_degrees(joints: np.ndarray, fps: float = MODEL_FPS,
                        thresholds: ActionCheckThresholds | None = None) -> float:
    """Torso angle above the horizontal held for `lie_seconds`, frames with the pelvis high counting as 90."""
    t = thresholds or ActionCheckThresholds()
    pelvis = joints[:, _PELVIS, 1] - floor_height(joints, t.floor_percentile)
    angle = np.where(pelvis <= t.lie_pelvis_metres, torso_elevation_degrees(joints), 90.0)
    return held_at_most(angle, _frames(t.lie_seconds, fps, len(joints)))


def hands_above_floor(joints: np.ndarray, fps: float = MODEL_FPS,
                      thresholds: ActionCheckThresholds | None = None) -> float:
    """Height of the higher wrist above the floor held for `crawl_seconds` (both hands down = small)."""
    t = thresholds or ActionCheckThresholds()
    higher = joints[:, _WRISTS, 1].max(axis=1) - floor_height(joints, t.floor_percentile)
    return held_at_most(higher, _frames(t.crawl_seconds, fps, len(joints)))


def kick_height(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None) -> float:
    """Metres a toe stays above the other leg's knee for `kick_seconds` (the better side)."""
    t = thresholds or ActionCheckThresholds()
    frames = _frames(t.kick_seconds, fps, len(joints))
    return max(held_at_least(joints[:, _TOE[side], 1] - joints[:, _KNEE[other], 1], frames)
               for side, other in (("left", "right"), ("right", "left")))


def run_check(name: str, joints: np.ndarray, fps: float = MODEL_FPS,
              thresholds: ActionCheckThresholds | None = None) -> CheckResult:
    """Measure one motion (T, 22, 3) with check `name` (one of CHECK_NAMES)."""
    t = thresholds or ActionCheckThresholds()
    joints = check_joints(joints, min_frames=2)
    if name == "jump":
        value = jump_clearance(joints, fps, t)
        return CheckResult(name, value, t.jump_clearance_metres, value >= t.jump_clearance_metres)
    if name == "squat":
        value = pelvis_drop_fraction(joints, fps, t)
        return CheckResult(name, value, t.squat_drop_fraction, value >= t.squat_drop_fraction)
    if name == "lie":
        value = lying_torso_degrees(joints, fps, t)
        return CheckResult(name, value, t.lie_degrees, value <= t.lie_degrees)
    if name == "crawl":
        value = hands_above_floor(joints, fps, t)
        return CheckResult(name, value, t.crawl_hand_metres, value <= t.crawl_hand_metres)
    if name == "kick":
        value = kick_height(joints, fps, t)
        return CheckResult(name, value, t.kick_metres, value >= t.kick_metres)
    raise InputTensorError(f"check: unknown action check {name!r}, expected one of {', '.join(CHECK_NAMES)}")
