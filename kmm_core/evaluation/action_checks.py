# SPDX-License-Identifier: GPL-3.0-or-later
"""Geometric checks of single actions on joint positions: one check for every action word

Torch-free NumPy on canonical joints (22 joints of ``skeleton.JOINT_NAMES``, metres, HumanML3D axes: Y up).  Used by
``kmm-train eval-actions`` (``action_evaluation.py``) next to the evaluator's retrieval; the side words of a prompt
keep their own check (``directional.py``).  Which check applies comes from the action word (``checks_for_action``):

| check | action words            | measured (held for a minimum time)                   | passes when         |
| ----- | ----------------------- | ---------------------------------------------------- | ------------------- |
| jump  | jump*, hop*, leap*      | the LOWEST foot joint's height above its own floor   | >= 0.10 m for 0.2 s |
| squat | squat*, sit(s), crouch* | pelvis drop below its standing height (share of it)  | >= 35 %             |
|       |                         | with the torso up: frames with the torso within 30   |                     |
|       |                         | deg of the horizontal count as standing              |                     |
| lie   | lie, lies, lying        | torso (pelvis -> neck) angle above the horizontal;   | <= 20 deg for 0.5 s |
|       |                         | frames with the pelvis > 0.35 m up count as 90       |                     |
| crawl | crawl*                  | the HIGHER wrist's height above the floor            | <= 0.20 m for 1 s   |
| kick  | *kick*                  | a toe above the OTHER leg's knee                     | >= 0.15 m for 0.1 s |

The other 23 checks (leg_lift ... toward: ``CHECK_NAMES``) say what they measure next to their thresholds in
``ActionCheckThresholds``; ``_CHECK_RULES`` gives the words of each, ``CHECK_KINDS`` the kind of action.

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
  The torso stays up in every real squat and crouch (30-60 degrees above the horizontal at the lowest, 62 at the
  median of HDM05's squats) and lies under 20 degrees on the floor: a body that lies down, or crawls, is not
  squatting (HDM05's lie-downs still pass: they sit on the floor on the way down).  A clip that never stands
  (ACCAD's crouch-lie-down starts crouched) is measured from a standing height of at least 1.05 leg lengths (hip ->
  knee -> ankle): standing clips hold the pelvis 1.07-1.40 leg lengths up (Bandai-Namco, CMU, HDM05, ACCAD,
  DeepMimic), so theirs is their own.
* lie: HDM05 lieDownFloor 20/20 (held angles 0.4-4.6 deg); every Bandai-Namco clip 0; HDM05 depositFloor (torso
  horizontal, pelvis high) 0/32; DeepMimic crawl and both get-up clips pass (they are on the floor).
* crawl: DeepMimic crawl 1/1 (0.17 m); every walk and run 0; HDM05 lieDownFloor 19/20 (hands on the floor too) and
  depositFloor 1/32 (0.195 m).
* circle: HDM05 jogLeftCircle 17/17 (2-s jogs turning 48-119 degrees: 24-60 degrees a second; as a run they
  passed 13/17, slower than a run); the straight walks and runs of Bandai-Namco, CMU and ACCAD 0; walks that turn
  pass (Bandai-Namco walk-turn 165/436, ACCAD's runs that turn, DeepMimic's long walks, which wander: 5/10): a
  circle is a turn kept up while travelling.
* toward: where a take went, however it stepped ("walks to the left": a sidestep, or a turn and a walk): Bandai-Namco
  walk-turn-left 217/219 and walk-turn-right 216/217 to their own side (3 the other way), its sidesteps walk-left
  13/16 and walk-right 15/15, ACCAD's sidesteps 4/4 and turned walks and runs 9/9, never the other side; straight
  walks and runs of Bandai-Namco (0/537; its walks backwards 0/19), CMU (1/45) and CMU on the Character Creator rig
  (0/19) not; DeepMimic's long walks wander (walk 5/10, zombie walk 2/3, stealthy walk 9/15).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..common.errors import InputTensorError
from ..humanml3d.features import check_joints
from ..humanml3d.motion_kind import leg_length
from ..motion.model_timing import MODEL_FPS
from ..motion.skeleton import JOINT_INDEX
from .directional import (
    body_frame_travel,
    heading_degrees,
    initial_frame_displacement,
    left_axes,
    net_turn_degrees,
)

CHECK_NAMES = ("jump", "squat", "lie", "crawl", "kick", "leg_lift", "knee_up", "getup", "inverted", "ground", "spin",
               "travel", "run", "backward", "sideways", "turn", "hand_high", "hands_high", "hand_up", "wave", "punch",
               "swing", "bow", "reach_floor", "climb", "dance", "circle", "toward")
SIDED_CHECKS = ("kick", "leg_lift", "knee_up", "hand_high", "hand_up", "wave", "punch", "swing")   # a side: that limb
# The kind of action each check measures: a weak word's alternative (word_checks.py) is looked for among the strong
# words of its own check first, then of its kind ("crawl" -> a strong floor word, not a walk).
CHECK_KINDS = {
    "travel": "locomotion", "run": "locomotion", "backward": "locomotion", "sideways": "locomotion",
    "turn": "locomotion", "circle": "locomotion", "climb": "locomotion", "toward": "locomotion",
    "kick": "leg", "leg_lift": "leg", "knee_up": "leg",
    "jump": "acrobatic", "inverted": "acrobatic",
    "spin": "dance", "dance": "dance",
    "lie": "floor", "getup": "floor", "ground": "floor", "crawl": "floor",
    "squat": "lowering", "reach_floor": "lowering", "bow": "lowering",
    "hand_high": "arm_raise", "hands_high": "arm_raise", "hand_up": "arm_raise", "wave": "arm_raise",
    "punch": "strike", "swing": "strike",
}

_PELVIS = JOINT_INDEX["pelvis"]
_NECK = JOINT_INDEX["neck"]
_HEAD = JOINT_INDEX["head"]
_FOOT_JOINTS = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
_WRISTS = [JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]]
_TOE = {"left": JOINT_INDEX["left_foot"], "right": JOINT_INDEX["right_foot"]}
_KNEE = {"left": JOINT_INDEX["left_knee"], "right": JOINT_INDEX["right_knee"]}
_WRIST = {"left": JOINT_INDEX["left_wrist"], "right": JOINT_INDEX["right_wrist"]}
_SHOULDER = {"left": JOINT_INDEX["left_shoulder"], "right": JOINT_INDEX["right_shoulder"]}
_OTHER = {"left": "right", "right": "left"}
_SIDES = ("left", "right")


@dataclass(frozen=True)
class ActionCheckThresholds:
    """Pass thresholds of the checks (the module docstring gives the real clips they were chosen on)."""

    jump_clearance_metres: float = 0.10
    jump_seconds: float = 0.2
    squat_drop_fraction: float = 0.35
    squat_torso_degrees: float = 30.0          # squat: the torso at least this far above the horizontal while low
    lie_degrees: float = 20.0
    lie_pelvis_metres: float = 0.35
    lie_seconds: float = 0.5
    crawl_hand_metres: float = 0.20
    crawl_seconds: float = 1.0
    kick_metres: float = 0.15
    kick_seconds: float = 0.1
    knee_below_pelvis_metres: float = 0.10     # knee_up: the knee rises to within this of the pelvis
    getup_start_degrees: float = 30.0          # getup: the first half lies (torso this flat) ...
    getup_end_degrees: float = 50.0            # ... and the last 0.5 s stands (torso this upright, pelvis high)
    getup_pelvis_metres: float = 0.5
    inverted_metres: float = 0.30              # pelvis above the head, held 0.1 s
    turned_over_feet_metres: float = 0.20      # turns_over: both feet above the head, held 0.1 s
    ground_head_metres: float = 0.50           # the head this close to the floor, held 0.3 s
    spin_degrees: float = 270.0                # heading range over the clip
    travel_speed: float = 0.30                 # pelvis speed (0.5 s mean) held for 1 s, m/s
    run_speed: float = 1.60
    backward_fraction: float = 0.50            # share of the pelvis path travelled against the facing
    sideways_fraction: float = 0.25            # share of the path toward the body's own side
    min_path_metres: float = 0.30
    turn_degrees: float = 45.0                 # net heading change
    toward_degrees: float = 20.0               # net travel this far to a side of the first facing line
    circle_degrees_per_second: float = 20.0    # net heading change over the clip's length, travelling as it turns
    hand_high_metres: float = 0.10             # wrist above the shoulder line, held 0.3 s
    hand_up_metres: float = -0.10              # wrist at least this far above the shoulders (chest height)
    wave_speed_squared: float = 0.05           # lateral wrist speed^2 (m^2/s^2) while the hand is up
    punch_reach_metres: float = 0.30           # wrist ahead of its shoulder at chest height or above, 0.1 s
    swing_speed: float = 1.5                   # peak wrist speed (relative to the pelvis, 0.1 s) with the arm up
    swing_hand_metres: float = 0.05
    bow_degrees: float = 30.0                  # forward lean of the torso with the pelvis high, held 0.3 s
    reach_floor_metres: float = 0.30           # lowest wrist above the floor, held 0.2 s
    climb_metres: float = 0.30                 # both feet above the start floor, held 0.5 s
    dance_wrist_speed: float = 1.2             # mean wrist speed relative to the pelvis, m/s ...
    dance_max_travel_speed: float = 1.0        # ... without walking away
    floor_percentile: float = 5.0
    standing_percentile: float = 90.0
    standing_leg_lengths: float = 1.05         # a standing pelvis is 1.07-1.40 leg lengths up in every real clip


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

# (check, pattern over the label's lower-case words joined by spaces): the FIRST matching rule decides, so the more
# specific phrases come first ("dance spin" is a spin, "walk back" a backward walk, "basketball signal" a gesture).
_CHECK_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
    ("kick", r"\bkick|kick\b"),
    ("hands_high", r"\b(?:raise|grab|reach)\w* (?:up )?both\b|\brotate\w* arms\b"),
    ("squat", r"\b(?:squat\w*|sit|sits|sitting|sat|crouch\w*)\b"),
    ("getup", r"\bgetup\b|\bget(?:s|ting)? up\b"),
    ("lie", r"\b(?:lie|lies|lying|lay|lays)\b"),
    ("crawl", r"\bcrawl\w*"),
    ("jump", r"\b(?:jump\w*|hop|hops|hopping|hopped|leap\w*)\b"),
    ("inverted", r"\b(?:\w*flip\w*|cartwheel\w*|handstand\w*|somersault\w*)\b"),
    ("ground", r"\b(?:roll|rolls|rolling|fall|falls|falling|fell)\b"),
    ("climb", r"\bclimb\w*|\bstep\w* up\b|\bstairs\b"),
    ("circle", r"\bcircl\w*"),
    ("spin", r"\b(?:spin\w*|step|pirouette\w*|expressive)\b"),
    ("backward", r"\b(?:walk|step|steps)\w* back\b|\bbackwards?\b"),
    ("turn", r"\bturn\w*\b"),
    ("toward", r"\btoward\b"),
    ("sideways", r"\bwalk\w* (?:left|right)\b|\bsideways\b|\bsidestep\w*"),
    ("run", r"\b(?:run\w*|jog\w*|dash\w*|sprint\w*)\b"),
    ("hand_high", r"\b(?:raise|grab|reach)\w*|\barm\b"),
    ("wave", r"\bwave\w*"),
    ("punch", r"\b(?:punch\w*|push\w*|strike\w*|jab\w*)\b"),
    ("swing", r"\b(?:throw\w*|slash\w*|sword\w*|swing\w*)\b"),
    ("bow", r"\bbow\w*\b"),
    ("reach_floor", r"\b(?:deposit\w*|bend\w*|pick\w*|scoop\w*)\b"),
    ("knee_up", r"\belbow\w* to knee\b|\bknee\w* up\b"),
    ("dance", r"\bdanc\w*"),
    ("leg_lift", r"\b(?:arabesque|attitude|coupe|glissade|retire|rond|quasi|small|ballet)\b"),
    ("hand_up", r"\b(?:bye|byebye|goodbye|call|guide|respond|signal|directing|traffic|wash\w*|gesture\w*)\b"),
    ("travel", r"\b(?:walk\w*|sneak\w*|stroll\w*|dribble\w*|basketball|soccer|crossover|march\w*)\b"),
))


def action_words(label: str) -> list[str]:
    """Lower-case words of a content label: 'kickLFront1Reps' -> ['kick', 'l', 'front', 'reps'],
    'walk-turn-left' -> ['walk', 'turn', 'left'], 'getup_faceup' -> ['getup', 'faceup']."""
    return [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", label)]


def checks_for_action(label: str) -> tuple[str, ...]:
    """The geometric check (one name of CHECK_NAMES) that applies to an action word or phrase, as a 1-tuple; ()
    for a word no rule knows."""
    text = " ".join(action_words(label))
    for name, pattern in _CHECK_RULES:
        if pattern.search(text):
            return (name,)
    return ()


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
    """How far the pelvis drops below its standing height (share of it) with the torso up, held for 3 frames at 20
    fps; frames whose torso is within `squat_torso_degrees` of the horizontal count as standing (lying down or
    crawling is no squat, and no sitting).  The standing height is the clip's own (`standing_percentile`), at least
    `standing_leg_lengths` of its legs: a take that starts crouched and never stands up still crouches."""
    t = thresholds or ActionCheckThresholds()
    height = joints[:, _PELVIS, 1] - floor_height(joints, t.floor_percentile)
    standing = max(float(np.percentile(height, t.standing_percentile)), t.standing_leg_lengths * leg_length(joints))
    if standing <= 1e-6:
        return 0.0
    upright = torso_elevation_degrees(joints) >= t.squat_torso_degrees
    lowest = held_at_most(np.where(upright, height, standing), _frames(0.15, fps, len(joints)))
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


def _sides(side: str | None) -> tuple[str, ...]:
    if side is not None and side not in _SIDES:
        raise InputTensorError(f"side: expected 'left', 'right' or None, got {side!r}")
    return _SIDES if side is None else (side,)


def kick_height(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None,
                side: str | None = None) -> float:
    """Metres a toe stays above the other leg's knee for `kick_seconds` (the better side, or the kicking `side`)."""
    t = thresholds or ActionCheckThresholds()
    frames = _frames(t.kick_seconds, fps, len(joints))
    return max(held_at_least(joints[:, _TOE[leg], 1] - joints[:, _KNEE[_OTHER[leg]], 1], frames)
               for leg in _sides(side))


def knee_lift(joints: np.ndarray, fps: float = MODEL_FPS, side: str | None = None) -> float:
    """Height of a knee relative to the pelvis (negative: below it), held for 0.1 s; the better side."""
    frames = _frames(0.1, fps, len(joints))
    return max(held_at_least(joints[:, _KNEE[leg], 1] - joints[:, _PELVIS, 1], frames) for leg in _sides(side))


def getup_degrees(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None) -> float:
    """Mean torso angle over the last 0.5 s (frames with the pelvis low count as 0) when the first half lies; else 0."""
    t = thresholds or ActionCheckThresholds()
    half = max(2, len(joints) // 2)
    if lying_torso_degrees(joints[:half], fps, replace(t, lie_degrees=t.getup_start_degrees)) > t.getup_start_degrees:
        return 0.0
    pelvis = joints[:, _PELVIS, 1] - floor_height(joints, t.floor_percentile)
    angle = np.where(pelvis >= t.getup_pelvis_metres, torso_elevation_degrees(joints), 0.0)
    return float(angle[-_frames(0.5, fps, len(joints)):].mean())


def pelvis_above_head(joints: np.ndarray, fps: float = MODEL_FPS) -> float:
    """Metres the pelvis stays above the head for 0.1 s (upside down > 0)."""
    return held_at_least(joints[:, _PELVIS, 1] - joints[:, _HEAD, 1], _frames(0.1, fps, len(joints)))


TURNING_CHECKS = ("inverted", "ground", "getup")
"""The checks whose real clips turn the body over (flips, cartwheels, rolls, a kip-up): `turns_over` is what they
ask for; every other action's real clips stay upright."""


def turns_over(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None) -> bool:
    """Whether both feet rise ``turned_over_feet_metres`` above the head, held 0.1 s: the body upside down.  Over
    the 6,994 clips of ``data/prepared-all`` only flips, cartwheels, rolls and a kip-up do (0.51-0.86 m); lying and
    crawling bodies, feet and head near the floor, reach 0.05 m at most, a deep bend to the floor stays below zero.
    A pick-up that somersaults does what no real pick-up does, whatever its hands reach."""
    t = thresholds or ActionCheckThresholds()
    feet = joints[:, _FOOT_JOINTS, 1].min(axis=1) - joints[:, _HEAD, 1]
    return held_at_least(feet, _frames(0.1, fps, len(joints))) >= t.turned_over_feet_metres


FOOT_OVER_HEAD_CHECKS = (*TURNING_CHECKS, "crawl", "dance", "hand_up", "kick", "leg_lift", "lie", "run", "spin",
                         "squat")
"""The checks some of whose real clips put a foot over the head (`foot_over_head`; over the unmirrored clips of
``data/prepared-all``: kicks, leg lifts and dances by the kick or the lift, crawls and lying bodies with the head at
the floor, one run, one squat that lies down, a traffic director's step).  In every other check's real clips a foot
stays at least 0.1 m below the head: 0.47 m for a reach to the floor, 0.66 for a walk, 0.98 for a sidestep."""


def foot_over_head(joints: np.ndarray, fps: float = MODEL_FPS) -> bool:
    """Whether a foot rises over the head, held 0.1 s: a leg flung high (a pick-up that kicks a foot 2 m up), which
    the real clips of the checks outside `FOOT_OVER_HEAD_CHECKS` never do.  Implied by `turns_over`."""
    highest = joints[:, _FOOT_JOINTS, 1].max(axis=1) - joints[:, _HEAD, 1]
    return held_at_least(highest, _frames(0.1, fps, len(joints))) > 0.0


def head_above_floor(joints: np.ndarray, fps: float = MODEL_FPS,
                     thresholds: ActionCheckThresholds | None = None) -> float:
    """Height of the head above the floor held for 0.3 s (on the ground: small)."""
    t = thresholds or ActionCheckThresholds()
    return held_at_most(joints[:, _HEAD, 1] - floor_height(joints, t.floor_percentile),
                        _frames(0.3, fps, len(joints)))


def heading_range_degrees(joints: np.ndarray) -> float:
    """Largest minus smallest unwrapped heading over the clip: a full turn on the spot is 360."""
    heading = heading_degrees(joints)
    return float(heading.max() - heading.min())


def _moving_mean(values: np.ndarray, frames: int) -> np.ndarray:
    frames = min(max(1, frames), len(values))
    return np.lib.stride_tricks.sliding_window_view(values, frames, axis=0).mean(axis=-1)


def travel_speed(joints: np.ndarray, fps: float = MODEL_FPS) -> float:
    """Horizontal pelvis speed (m/s; positions averaged over 0.5 s, so gait sway does not count) held for 1 s."""
    pelvis = _moving_mean(joints[:, _PELVIS][:, [0, 2]], _frames(0.5, fps, len(joints)))
    if len(pelvis) < 2:
        return 0.0
    speed = np.linalg.norm(np.diff(pelvis, axis=0), axis=1) * fps
    return held_at_least(speed, _frames(1.0, fps, len(speed)))


def forward_travel_fraction(joints: np.ndarray, thresholds: ActionCheckThresholds | None = None) -> float:
    """Share of the horizontal pelvis path travelled along the body's own facing (-1: straight backwards); 0 when
    the path is shorter than `min_path_metres`."""
    t = thresholds or ActionCheckThresholds()
    step = np.diff(joints[:, _PELVIS], axis=0)
    step[:, 1] = 0.0
    forward = np.cross(left_axes(joints), np.array([0.0, 1.0, 0.0]))
    mid = forward[1:] + forward[:-1]
    mid /= np.maximum(np.linalg.norm(mid, axis=-1, keepdims=True), 1e-12)
    path = float(np.linalg.norm(step, axis=-1).sum())
    return float(np.einsum("tc,tc->t", step, mid).sum() / path) if path >= t.min_path_metres else 0.0


def toward_degrees(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None
                   ) -> float:
    """Degrees to the body's left (negative: right) of its first facing line that the pelvis's net displacement
    points: where the take went, however its feet stepped there (a sidestep, or a turn and a walk).  Measured from
    the line, not from straight ahead, so a walk backwards is as straight as one forwards; start and end positions
    and the first facing are averaged over 0.5 s.  0 below `min_path_metres` of net displacement."""
    t = thresholds or ActionCheckThresholds()
    leftward, distance = initial_frame_displacement(joints, fps, edge_seconds=0.5)
    if distance < t.min_path_metres:
        return 0.0
    return float(np.degrees(np.arcsin(np.clip(leftward / distance, -1.0, 1.0))))


def sideways_travel_fraction(joints: np.ndarray, thresholds: ActionCheckThresholds | None = None) -> float:
    """Share of the pelvis path travelled toward the body's own left (negative: right); 0 below `min_path_metres`."""
    t = thresholds or ActionCheckThresholds()
    leftward, path = body_frame_travel(joints)
    return leftward / path if path >= t.min_path_metres else 0.0


def _wrist_above_shoulders(joints: np.ndarray, arm: str) -> np.ndarray:
    shoulder_line = joints[:, [_SHOULDER["left"], _SHOULDER["right"]], 1].mean(axis=1)
    return joints[:, _WRIST[arm], 1] - shoulder_line


def hand_height(joints: np.ndarray, fps: float = MODEL_FPS, side: str | None = None, seconds: float = 0.3) -> float:
    """Metres a wrist stays above the shoulder line for `seconds` (negative: below); the better side."""
    frames = _frames(seconds, fps, len(joints))
    return max(held_at_least(_wrist_above_shoulders(joints, arm), frames) for arm in _sides(side))


def both_hands_height(joints: np.ndarray, fps: float = MODEL_FPS) -> float:
    """Metres the LOWER wrist stays above the shoulder line for 0.1 s."""
    lower = np.minimum(_wrist_above_shoulders(joints, "left"), _wrist_above_shoulders(joints, "right"))
    return held_at_least(lower, _frames(0.1, fps, len(joints)))


def wave_speed_squared(joints: np.ndarray, fps: float = MODEL_FPS, side: str | None = None,
                       thresholds: ActionCheckThresholds | None = None) -> float:
    """Mean squared side-to-side speed of a wrist relative to the neck (body's left axis) over the frames where
    that hand is up (`hand_up_metres`), counted over the whole clip; the better side."""
    t = thresholds or ActionCheckThresholds()
    axes = left_axes(joints)
    best = 0.0
    for arm in _sides(side):
        lateral = np.einsum("tc,tc->t", joints[:, _WRIST[arm]] - joints[:, _NECK], axes)
        up = _wrist_above_shoulders(joints, arm)[1:] >= t.hand_up_metres
        best = max(best, float(np.mean((np.diff(lateral) * fps) ** 2 * up)))
    return best


def punch_reach(joints: np.ndarray, fps: float = MODEL_FPS, side: str | None = None,
                thresholds: ActionCheckThresholds | None = None) -> float:
    """Metres a wrist stays ahead of its shoulder (along the facing) for 0.1 s while at chest height or above."""
    t = thresholds or ActionCheckThresholds()
    forward = np.cross(left_axes(joints), np.array([0.0, 1.0, 0.0]))
    frames = _frames(0.1, fps, len(joints))
    best = -np.inf
    for arm in _sides(side):
        reach = np.einsum("tc,tc->t", joints[:, _WRIST[arm]] - joints[:, _SHOULDER[arm]], forward)
        reach = np.where(_wrist_above_shoulders(joints, arm) >= t.hand_up_metres, reach, 0.0)
        best = max(best, held_at_least(reach, frames))
    return float(best)


def wrist_speed(joints: np.ndarray, fps: float = MODEL_FPS, side: str | None = None,
                thresholds: ActionCheckThresholds | None = None) -> float:
    """Peak speed (m/s, held 0.1 s) of a wrist relative to the pelvis over frames with that hand above the
    shoulders by `swing_hand_metres` (0 when it never is); the better side."""
    t = thresholds or ActionCheckThresholds()
    best = 0.0
    for arm in _sides(side):
        relative = joints[:, _WRIST[arm]] - joints[:, _PELVIS]
        speed = np.linalg.norm(np.diff(relative, axis=0), axis=1) * fps
        up = _wrist_above_shoulders(joints, arm)
        speed = np.where(np.maximum(up[1:], up[:-1]) >= t.swing_hand_metres, speed, 0.0)
        best = max(best, held_at_least(speed, _frames(0.1, fps, len(speed))))
    return best


def bow_degrees(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None) -> float:
    """Forward lean of the torso (pelvis -> neck, toward the facing; degrees from upright) held for 0.3 s, frames
    with the pelvis below 70% of its standing height counting as 0 (a squat or lying is no bow)."""
    t = thresholds or ActionCheckThresholds()
    torso = joints[:, _NECK] - joints[:, _PELVIS]
    forward = np.cross(left_axes(joints), np.array([0.0, 1.0, 0.0]))
    lean = np.degrees(np.arctan2(np.einsum("tc,tc->t", torso, forward), torso[:, 1]))
    height = joints[:, _PELVIS, 1] - floor_height(joints, t.floor_percentile)
    standing = float(np.percentile(height, t.standing_percentile))
    return held_at_least(np.where(height > 0.7 * standing, lean, 0.0), _frames(0.3, fps, len(joints)))


def wrist_above_floor(joints: np.ndarray, fps: float = MODEL_FPS,
                      thresholds: ActionCheckThresholds | None = None) -> float:
    """Height of the LOWER wrist above the floor held for 0.2 s."""
    t = thresholds or ActionCheckThresholds()
    lower = joints[:, _WRISTS, 1].min(axis=1) - floor_height(joints, t.floor_percentile)
    return held_at_most(lower, _frames(0.2, fps, len(joints)))


def climb_height(joints: np.ndarray, fps: float = MODEL_FPS, thresholds: ActionCheckThresholds | None = None) -> float:
    """Metres both feet stay above the clip's floor for 0.5 s (standing on something higher)."""
    t = thresholds or ActionCheckThresholds()
    return held_at_least(feet_clearance(joints, t.floor_percentile), _frames(0.5, fps, len(joints)))


def arm_activity(joints: np.ndarray, fps: float = MODEL_FPS) -> float:
    """Mean speed of both wrists relative to the pelvis (m/s)."""
    relative = joints[:, _WRISTS] - joints[:, _PELVIS][:, None]
    return float(np.linalg.norm(np.diff(relative, axis=0), axis=-1).mean() * fps)


def _measure(name: str, joints: np.ndarray, fps: float, t: ActionCheckThresholds,
             side: str | None) -> tuple[float, float, bool]:
    """(value, threshold, passed) of check `name`."""
    if name == "jump":
        value = jump_clearance(joints, fps, t)
        return value, t.jump_clearance_metres, value >= t.jump_clearance_metres
    if name == "squat":
        value = pelvis_drop_fraction(joints, fps, t)
        return value, t.squat_drop_fraction, value >= t.squat_drop_fraction
    if name == "lie":
        value = lying_torso_degrees(joints, fps, t)
        return value, t.lie_degrees, value <= t.lie_degrees
    if name == "crawl":
        value = hands_above_floor(joints, fps, t)
        return value, t.crawl_hand_metres, value <= t.crawl_hand_metres
    if name in ("kick", "leg_lift"):
        value = kick_height(joints, fps, t, side)
        return value, t.kick_metres, value >= t.kick_metres
    if name == "knee_up":
        value = knee_lift(joints, fps, side)
        return value, -t.knee_below_pelvis_metres, value >= -t.knee_below_pelvis_metres
    if name == "getup":
        value = getup_degrees(joints, fps, t)
        return value, t.getup_end_degrees, value >= t.getup_end_degrees
    if name == "inverted":
        value = pelvis_above_head(joints, fps)
        return value, t.inverted_metres, value >= t.inverted_metres
    if name == "ground":
        value = head_above_floor(joints, fps, t)
        return value, t.ground_head_metres, value <= t.ground_head_metres
    if name == "spin":
        value = heading_range_degrees(joints)
        return value, t.spin_degrees, value >= t.spin_degrees
    if name in ("travel", "run"):
        value, threshold = travel_speed(joints, fps), (t.travel_speed if name == "travel" else t.run_speed)
        return value, threshold, value >= threshold
    if name == "backward":
        value = forward_travel_fraction(joints, t)
        return value, -t.backward_fraction, value <= -t.backward_fraction
    if name == "sideways":
        value = sideways_travel_fraction(joints, t)
        return value, t.sideways_fraction, _toward(value, side) >= t.sideways_fraction
    if name == "turn":
        value = net_turn_degrees(joints, fps)
        return value, t.turn_degrees, _toward(value, side) >= t.turn_degrees
    if name == "toward":
        value = toward_degrees(joints, fps, t)
        return value, t.toward_degrees, _toward(value, side) >= t.toward_degrees
    if name == "circle":
        value = net_turn_degrees(joints, fps) * fps / max(len(joints) - 1, 1)
        travels = travel_speed(joints, fps) >= t.travel_speed
        return value, t.circle_degrees_per_second, travels and _toward(value, side) >= t.circle_degrees_per_second
    if name == "hand_high":
        value = hand_height(joints, fps, side)
        return value, t.hand_high_metres, value >= t.hand_high_metres
    if name == "hands_high":
        value = both_hands_height(joints, fps)
        return value, t.hand_high_metres, value >= t.hand_high_metres
    if name == "hand_up":
        value = hand_height(joints, fps, side)
        return value, t.hand_up_metres, value >= t.hand_up_metres
    if name == "wave":
        value = wave_speed_squared(joints, fps, side, t)
        return value, t.wave_speed_squared, value >= t.wave_speed_squared
    if name == "punch":
        value = punch_reach(joints, fps, side, t)
        return value, t.punch_reach_metres, value >= t.punch_reach_metres
    if name == "swing":
        value = wrist_speed(joints, fps, side, t)
        return value, t.swing_speed, value >= t.swing_speed
    if name == "bow":
        value = bow_degrees(joints, fps, t)
        return value, t.bow_degrees, value >= t.bow_degrees
    if name == "reach_floor":
        value = wrist_above_floor(joints, fps, t)
        return value, t.reach_floor_metres, value <= t.reach_floor_metres
    if name == "climb":
        value = climb_height(joints, fps, t)
        return value, t.climb_metres, value >= t.climb_metres
    if name == "dance":
        value = arm_activity(joints, fps)
        still = travel_speed(joints, fps) <= t.dance_max_travel_speed
        return value, t.dance_wrist_speed, still and value >= t.dance_wrist_speed
    raise InputTensorError(f"check: unknown action check {name!r}, expected one of {', '.join(CHECK_NAMES)}")


def _toward(value: float, side: str | None) -> float:
    """A signed measure (positive: toward the body's left) toward `side`; its size where no side is asked."""
    return {None: abs(value), "left": value, "right": -value}[side]


def run_check(name: str, joints: np.ndarray, fps: float = MODEL_FPS,
              thresholds: ActionCheckThresholds | None = None, side: str | None = None) -> CheckResult:
    """Measure one motion (T, 22, 3) with check `name` (one of CHECK_NAMES); `side` ("left"/"right") limits a
    check of SIDED_CHECKS to that limb and makes turn/circle/sideways/toward ask for that direction."""
    t = thresholds or ActionCheckThresholds()
    joints = check_joints(joints, min_frames=2)
    _sides(side)
    value, threshold, passed = _measure(name, joints, fps, t, side)
    return CheckResult(name, float(value), float(threshold), bool(passed))


_LABEL_SIDE = re.compile(r"(?:^|[-_ ])(left|right)(?:$|[-_ ])|(?<=[a-z])([LR])(?=[A-Z]|$)")


def label_side(label: str) -> str | None:
    """The side a content label names: 'walk-left' and 'raise-up-left-hand' -> left, 'kickLFront1Reps' -> left,
    'grabHighR' -> right, 'jogLeftCircle4StepsRstart' -> left (a lower-case letter after L/R: no side); None for
    labels naming none or both.  Only checks of SIDED_CHECKS and turn/circle/sideways/toward use the side."""
    sides = set()
    for word, letter in _LABEL_SIDE.findall(label):
        sides.add(word or {"L": "left", "R": "right"}[letter])
    sides |= {side for side in _SIDES if side.capitalize() in re.findall(r"[A-Z][a-z]+", label)}
    return sides.pop() if len(sides) == 1 else None


_PROMPT_SIDE = re.compile(r"\b(left|right)\b")


def prompt_side(prompt: str, label_default: str | None) -> str | None:
    """The one side a prompt names ("left"/"right"), else the label's side."""
    sides = set(_PROMPT_SIDE.findall(prompt.lower()))
    return sides.pop() if len(sides) == 1 else label_default
