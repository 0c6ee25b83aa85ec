# SPDX-License-Identifier: GPL-3.0-or-later
"""Geometric directional accuracy: did the motion move the side its prompt names?

No learned evaluator is involved, so the measure cannot share the generator's left/right confusions.  A prompt is
parsed for one side-specific intent; the motion's joints are then measured:

| intent (content label)                 | measured quantity (positive = left)                                        |
| -------------------------------------- | -------------------------------------------------------------------------- |
| raise the left/right hand (raise-up-*) | peak height of each wrist above the shoulder line, left - right             |
| wave the left/right hand (wave-*-hand) | lateral oscillation energy of each wrist in the body frame, log(left/right) |
| turn left/right (walk-turn-*)          | net change of heading (yaw about +Y, degrees)                               |
| walk/step sideways (walk-left/right)   | share of the pelvis path travelled along the body's own left axis          |

Axes are HumanML3D's (Y up; at frame 0 a canonical clip faces +Z and its left is +X).  Heading is measured from the
hips/shoulders across vector, so nothing assumes the clip was canonicalised.  The yaw angle atan2(forward_x,
forward_z) grows when the character turns toward its own left: for a character facing +Z, a left turn brings the
forward vector toward +X, a positive (counter-clockwise seen from above) rotation about +Y.

A measured quantity names a side only when its magnitude reaches that intent's threshold; otherwise the motion
did "neither" and the decision is wrong either way.  Content labels are Bandai-Namco's, so real labelled clips
give the ground-truth ceiling of this measure: on all 1,666 directional clips of the shipped archive it is 99.6%
(raise, wave and sideways 100%).  The 6 misses are turns whose motion contradicts the label:
dataset-2_walk-turn-left_masculine_006/007 turn right, walk-turn-right_masculine_007 turns left,
walk-turn-right_masculine_006 makes a 260-degree left turn, and walk-turn-right_normal_004/032 turn right and
then turn back 180 degrees to the left.  Mirrored clips give exactly the opposite decisions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..common.errors import InputTensorError
from ..humanml3d.features import check_joints
from ..motion.skeleton import JOINT_INDEX

SIDES = ("left", "right")
INTENT_KINDS = ("raise", "wave", "turn", "sideways")

# Bandai-Namco content label of each intent kind, "{side}" filled in.
_CONTENT_LABELS = {
    "raise": "raise-up-{side}-hand",
    "wave": "wave-{side}-hand",
    "turn": "walk-turn-{side}",
    "sideways": "walk-{side}",
}

_PELVIS = JOINT_INDEX["pelvis"]
_NECK = JOINT_INDEX["neck"]
_WRIST = {"left": JOINT_INDEX["left_wrist"], "right": JOINT_INDEX["right_wrist"]}
_SHOULDER = {"left": JOINT_INDEX["left_shoulder"], "right": JOINT_INDEX["right_shoulder"]}
_HIP = {"left": JOINT_INDEX["left_hip"], "right": JOINT_INDEX["right_hip"]}
_UP = np.array([0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------------------------------------
# prompt parsing
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DirectionalIntent:
    """One side-specific intent: kind in INTENT_KINDS, side "left" or "right"."""

    kind: str
    side: str

    @property
    def content(self) -> str:
        """The Bandai-Namco content label of this intent, e.g. "raise-up-left-hand"."""
        return _CONTENT_LABELS[self.kind].format(side=self.side)


def _words(*alternatives: str) -> str:
    return r"\b(?:" + "|".join(alternatives) + r")\b"


# Cues of each kind, checked in this order: a wave usually raises the hand too ("raises the left hand and waves"),
# and a turn while walking also displaces the body sideways, so the more specific kinds win.
_KIND_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("wave", re.compile(
        _words(r"wav\w*", r"waggl\w*", r"greet\w*", r"hello", r"goodbye", r"bye")
        + "|" + r"\b(?:swing|swings|swinging|swung|shak\w*|mov\w*)\b[^.;]*\b(?:hand|arm|palm)s?\b[^.;]*"
        r"\b(?:back and forth|side to side|to and fro)\b")),
    ("turn", re.compile(
        _words(r"turn\w*", r"veer\w*", r"pivot\w*", r"rotat\w*", r"u-turn", r"spin\w*", r"swerv\w*",
               r"curv\w*", r"bend\w* (?:his|her|their|the) path")
        + "|" + _words(r"(?:counter-?|anti-?)?clockwise"))),
    ("sideways", re.compile(
        _words(r"sideways", r"sidestep\w*", r"side-?steps?", r"side-?stepping", r"strafe\w*", r"crab-?walk\w*",
               r"leftwards?", r"rightwards?")
        + "|" + _words(r"walk\w*", r"step\w*", r"mov\w*", r"go(?:es|ing)?", r"heads?", r"shuffl\w*", r"slid\w*",
                       r"shift\w*", r"travel\w*")
        + r"[^.;]{0,25}\b(?:to|toward|towards|over to)\s+(?:the|his|her|their|your)?\s*(?:left|right)\b"
        r"(?!\s*(?:hand|arm|palm)s?\b)")),
    ("raise", re.compile(
        _words(r"rais\w*", r"lift\w*", r"put\w* up", r"puts? (?:the |his |her |their |your )?\w+ (?:hand|arm) up",
               r"hold\w* up", r"holds? (?:the |his |her |their |your )?\w+ (?:hand|arm) up", r"reach\w* up",
               r"reach\w* (?:high|overhead|upward\w*)", r"up high", r"high (?:over|above)", r"in the air", r"overhead",
               r"above (?:the |his |her |their |your )?head", r"sky\w*",
               r"ceiling", r"hoist\w*", r"elevat\w*", r"stretch\w* up"))),
)
_SIDE_WORDS = re.compile(r"\b(left|right)(?:wards?)?\b")
_ROTATION_SIDE = (
    (re.compile(r"\b(?:counter-?clockwise|anti-?clockwise)\b"), "left"),
    (re.compile(r"(?<![-\w])clockwise\b"), "right"),
)
_BOTH_SIDES = re.compile(r"\b(?:both|each|either)\b")
# A negated action ("side-steps without turning", "does not turn") is no cue for that action.
_NEGATED_ACTION = re.compile(r"\b(?:without|not|never|no|don't|doesn't)\s+(?:\w+ing|turn\w*|wav\w*|rais\w*|lift\w*)\b")


def parse_directional_intent(prompt: str) -> DirectionalIntent | None:
    """The single side-specific intent of a prompt, or None (no side named, both sides, or a conflict).

    A prompt naming both "left" and "right" (or "both hands") is ambiguous for this measure and gets None.
    """
    text = _NEGATED_ACTION.sub(" ", prompt.lower())
    sides = set(_SIDE_WORDS.findall(text))
    for pattern, side in _ROTATION_SIDE:
        if pattern.search(text):
            sides.add(side)
    if len(sides) != 1 or _BOTH_SIDES.search(text):
        return None
    side = sides.pop()
    for kind, pattern in _KIND_CUES:
        if pattern.search(text):
            return DirectionalIntent(kind, side)
    return None


# ---------------------------------------------------------------------------------------------------------------
# geometric measures
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DirectionalThresholds:
    """Smallest magnitude of each signed measure that counts as doing the motion with one side.

    Set between what real clips show (Bandai-Namco, canonical joints at 20 fps): on the labelled directional
    clips the smallest magnitudes were raise 0.40 m, wave log-ratio 2.96, turn 73 degrees, sideways fraction 0.30;
    on straight walks and both-hands clips (which name no side) the largest were raise 0.19 m, wave 2.16,
    turn 23 degrees, sideways fraction 0.17.
    """

    raise_metres: float = 0.2           # difference of the peak wrist heights above the shoulders
    wave_log_ratio: float = float(np.log(9.0))  # one wrist's RMS lateral speed at least 3x the other's
    turn_degrees: float = 30.0          # net heading change
    sideways_fraction: float = 0.25     # share of the pelvis path travelled toward the body's own side
    sideways_min_path_metres: float = 0.3  # below this the motion did not travel at all
    edge_seconds: float = 0.5           # start/end averaging window of heading and position



def left_axes(joints: np.ndarray) -> np.ndarray:
    """(T, 3) unit horizontal vector pointing to the character's left in each frame (from hips and shoulders)."""
    across_left = (joints[:, _HIP["left"]] - joints[:, _HIP["right"]]
                   + joints[:, _SHOULDER["left"]] - joints[:, _SHOULDER["right"]])
    across_left[:, 1] = 0.0
    return across_left / np.maximum(np.linalg.norm(across_left, axis=-1, keepdims=True), 1e-12)


def heading_degrees(joints: np.ndarray) -> np.ndarray:
    """(T,) unwrapped yaw of the facing direction in degrees; growing values mean turning toward the left."""
    forward = np.cross(left_axes(joints), _UP)  # left x up = forward (for +X left, +Y up: +Z)
    yaw = np.arctan2(forward[:, 0], forward[:, 2])
    return np.degrees(np.unwrap(yaw))


def _edge_frames(num_frames: int, fps: float, seconds: float) -> int:
    return int(min(max(1, round(seconds * fps)), max(1, num_frames // 4)))


def net_turn_degrees(joints: np.ndarray, fps: float, edge_seconds: float = 0.5) -> float:
    """Heading at the end minus heading at the start (each averaged over `edge_seconds` to cancel gait sway)."""
    heading = heading_degrees(joints)
    edge = _edge_frames(len(heading), fps, edge_seconds)
    return float(heading[-edge:].mean() - heading[:edge].mean())


def initial_frame_displacement(joints: np.ndarray, fps: float, edge_seconds: float = 0.5) -> tuple[float, float]:
    """(the pelvis's net displacement along the left axis of the first `edge_seconds`, its whole horizontal length),
    metres; start/end positions averaged over `edge_seconds`."""
    edge = _edge_frames(len(joints), fps, edge_seconds)
    axis = left_axes(joints[:edge]).mean(axis=0)
    axis /= max(float(np.linalg.norm(axis)), 1e-12)
    net = joints[-edge:, _PELVIS].mean(axis=0) - joints[:edge, _PELVIS].mean(axis=0)
    return float(np.dot(net, axis)), float(np.hypot(net[0], net[2]))


def initial_frame_lateral_displacement(joints: np.ndarray, fps: float, edge_seconds: float = 0.5) -> float:
    """Pelvis displacement (metres) along the left axis of the first `edge_seconds` (start/end positions averaged
    over `edge_seconds`).  Reported for reference only here: a long straight walk whose first frames face a few degrees
    off its path, or any turn, also displaces the body sideways in this frame (`action_checks.toward_degrees` reads
    it as where a take went, which a turn does change)."""
    return initial_frame_displacement(joints, fps, edge_seconds)[0]


def body_frame_travel(joints: np.ndarray) -> tuple[float, float]:
    """(travel toward the character's own left, total horizontal path), metres, of the pelvis.

    Each frame's step is projected onto that frame's left axis, so a sidestep counts fully, while walking forward
    (even along a curve, or with the first frame facing slightly off the path) counts almost nothing.
    """
    step = np.diff(joints[:, _PELVIS], axis=0)
    step[:, 1] = 0.0
    axes = left_axes(joints)
    mid_axes = axes[1:] + axes[:-1]
    mid_axes /= np.maximum(np.linalg.norm(mid_axes, axis=-1, keepdims=True), 1e-12)
    leftward = float(np.einsum("tc,tc->t", step, mid_axes).sum())
    path = float(np.linalg.norm(step, axis=-1).sum())
    return leftward, path


def wrist_height_above_shoulders(joints: np.ndarray, side: str) -> np.ndarray:
    """(T,) height of one wrist above the mean height of both shoulders (negative when below)."""
    shoulder_line = joints[:, [_SHOULDER["left"], _SHOULDER["right"]], 1].mean(axis=1)
    return joints[:, _WRIST[side], 1] - shoulder_line


def raised_hand_measures(joints: np.ndarray) -> dict[str, float]:
    """Per side: peak wrist height above the shoulders and its time average counting only frames above them."""
    measures = {}
    for side in SIDES:
        height = wrist_height_above_shoulders(joints, side)
        measures[f"{side}_peak_above_shoulders"] = float(height.max())
        measures[f"{side}_mean_above_shoulders"] = float(np.maximum(height, 0.0).mean())
    return measures


def wrist_lateral_energy(joints: np.ndarray, side: str, fps: float) -> float:
    """Mean squared lateral speed (m^2/s^2) of a wrist relative to the neck, lateral = the body's left axis.

    Waving moves the hand side to side in front of or beside the body, while walking swings the arms along the
    forward axis: projecting onto the per-frame left axis keeps the first and drops the second.
    """
    relative = joints[:, _WRIST[side]] - joints[:, _NECK]
    lateral = np.einsum("tc,tc->t", relative, left_axes(joints))
    return float(np.mean((np.diff(lateral) * fps) ** 2))


# ---------------------------------------------------------------------------------------------------------------
# decisions and report
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DirectionalDecision:
    """The verdict for one prompt: what it asked, what the motion measured, which side that shows."""

    prompt: str
    intent: DirectionalIntent
    score: float                 # signed measure, positive = left
    threshold: float
    measured_side: str | None    # "left", "right" or None (below threshold)
    correct: bool
    measures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DirectionalReport:
    """Per-prompt decisions, accuracy per content label and overall, and the prompts with no directional intent."""

    decisions: tuple[DirectionalDecision, ...]
    accuracy_by_content: dict[str, float]
    count_by_content: dict[str, int]
    overall_accuracy: float
    skipped_prompts: tuple[str, ...]

    def summary(self) -> str:
        lines = [f"directional accuracy {self.overall_accuracy:.3f} over {len(self.decisions)} prompts"
                 f" ({len(self.skipped_prompts)} without a side-specific intent)"]
        for content in sorted(self.accuracy_by_content):
            lines.append(f"  {content:22s} {self.accuracy_by_content[content]:.3f}"
                         f"  (n={self.count_by_content[content]})")
        return "\n".join(lines)


def measure_intent(intent: DirectionalIntent, joints: np.ndarray, fps: float = 20.0,
                   thresholds: DirectionalThresholds | None = None) -> tuple[float, float, dict[str, float]]:
    """(signed score with positive = left, threshold, all measured quantities) of one intent on one motion."""
    thresholds = thresholds or DirectionalThresholds()
    joints = check_joints(joints, min_frames=2)
    if intent.kind == "raise":
        measures = raised_hand_measures(joints)
        score = measures["left_peak_above_shoulders"] - measures["right_peak_above_shoulders"]
        return score, thresholds.raise_metres, measures
    if intent.kind == "wave":
        measures = {f"{side}_lateral_energy": wrist_lateral_energy(joints, side, fps) for side in SIDES}
        score = float(np.log((measures["left_lateral_energy"] + 1e-9) / (measures["right_lateral_energy"] + 1e-9)))
        return score, thresholds.wave_log_ratio, measures
    if intent.kind == "turn":
        turn = net_turn_degrees(joints, fps, thresholds.edge_seconds)
        return turn, thresholds.turn_degrees, {"net_turn_degrees": turn}
    if intent.kind == "sideways":
        leftward, path = body_frame_travel(joints)
        # Fraction of the path travelled sideways (the sine of the mean crab angle); a motion that barely moves
        # did not walk anywhere, whatever its jitter says.
        fraction = leftward / path if path >= thresholds.sideways_min_path_metres else 0.0
        measures = {"leftward_travel_metres": leftward, "path_metres": path, "sideways_fraction": fraction,
                    "initial_frame_lateral_metres": initial_frame_lateral_displacement(
                        joints, fps, thresholds.edge_seconds)}
        return fraction, thresholds.sideways_fraction, measures
    raise InputTensorError(f"intent.kind: unknown kind {intent.kind!r}, expected one of {INTENT_KINDS}")


def decide(prompt: str, intent: DirectionalIntent, joints: np.ndarray, fps: float = 20.0,
           thresholds: DirectionalThresholds | None = None) -> DirectionalDecision:
    """Measure one motion against one parsed intent."""
    score, threshold, measures = measure_intent(intent, joints, fps, thresholds)
    measured_side = "left" if score >= threshold else "right" if score <= -threshold else None
    return DirectionalDecision(prompt=prompt, intent=intent, score=float(score), threshold=float(threshold),
                               measured_side=measured_side, correct=measured_side == intent.side,
                               measures=measures)


def directional_accuracy(prompts: Sequence[str], motions: Sequence[np.ndarray], fps: float = 20.0,
                         thresholds: DirectionalThresholds | None = None) -> DirectionalReport:
    """Decide every (prompt, motion (T, 22, 3)) pair; prompts without a side-specific intent are skipped."""
    if len(prompts) != len(motions):
        raise InputTensorError(f"motions: got {len(motions)} motions for {len(prompts)} prompts")
    decisions: list[DirectionalDecision] = []
    skipped: list[str] = []
    for index, (prompt, joints) in enumerate(zip(prompts, motions, strict=True)):
        intent = parse_directional_intent(prompt)
        if intent is None:
            skipped.append(prompt)
            continue
        try:
            decisions.append(decide(prompt, intent, joints, fps, thresholds))
        except InputTensorError as error:
            raise InputTensorError(f"motions[{index}] (prompt {prompt!r}): {error}") from error
    by_content: dict[str, list[bool]] = {}
    for decision in decisions:
        by_content.setdefault(decision.intent.content, []).append(decision.correct)
    accuracy = {content: float(np.mean(flags)) for content, flags in by_content.items()}
    counts = {content: len(flags) for content, flags in by_content.items()}
    overall = float(np.mean([d.correct for d in decisions])) if decisions else float("nan")
    return DirectionalReport(decisions=tuple(decisions), accuracy_by_content=accuracy, count_by_content=counts,
                             overall_accuracy=overall, skipped_prompts=tuple(skipped))
