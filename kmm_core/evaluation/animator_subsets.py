# SPDX-License-Identifier: GPL-3.0-or-later
"""Where an animator looks: a calm-standing subset and a walking subset of the split, measured on their own beside
the split-wide measures, and a short action right after a walk (NumPy; part of ``kmm-train eval``).

* **Calm standing**: the split's normal-style waves and raised hands (content ``wave-*`` or ``raise-up-*`` with
  style ``normal`` in the prepared data's index.csv): the takes an animator keys most, where a shaking pelvis shows.
  Measured: pelvis and head jerk, the pelvis' drift, and its bob: the slow rise and fall of the hips that a jerk
  measure misses (a calm real body's hips hold their height within about a millimetre).
* **Walking**: the split's plain walks (a content label whose action check is ``travel`` and that says ``walk``:
  Bandai-Namco's walks in every style, CMU's and ACCAD's walks; not turns, side steps or backward walks).  Measured:
  pelvis and head jerk, stride regularity (the mean of the autocorrelation peaks, at 0.3-1.5 s, of the pelvis height
  and of the legs' alternation, each also on its own), pelvis bob, foot swing.
* **Split**: the same measures over the whole split (drift on standing captions, the stride on walking captions, as
  ``body_motion.summarize`` groups them), so the three rows compare directly.

Every measure is a ratio of means, generated / real over the same items (1.0 = as real); jerk is the median over
frames of the joint's |third difference| x fps^3 (``body_motion.part_jerk``'s rule) for the pelvis and the head joint.

**Short action after a walk** (`SHORT_ACTION_TIMELINE`, the Blender wild-character test's timeline and
``benchmarks/measure_short_segment_action.py``'s): 2.5 s of "a person walks forward", then 2 s of "a person raises the
left hand", 30 fps; the left wrist must rise above its mean height during the walk by more than 0.15 body heights and
three times the right wrist's rise.  One generation per replication seed; the share that passes is reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..humanml3d.gait_rhythm import gait_peaks
from ..motion.skeleton import JOINT_INDEX
from .action_checks import action_words, checks_for_action
from .body_motion import foot_swing, pelvis_bob, standing_drift
from .split_data import EvalItem

SUBSETS = ("split", "calm_standing", "walking")
SUBSET_TITLES = {"split": "split", "calm_standing": "calm standing", "walking": "walking"}
MEASURES = ("jerk_pelvis", "jerk_head", "drift", "stride_regularity", "pelvis_rhythm", "leg_alternation",
            "pelvis_bob", "foot_swing")
_SUBSET_MEASURES = {
    "calm_standing": ("jerk_pelvis", "jerk_head", "drift", "pelvis_bob"),
    "walking": ("jerk_pelvis", "jerk_head", "stride_regularity", "pelvis_rhythm", "leg_alternation", "pelvis_bob",
                "foot_swing"),
}
_CALM_CONTENT = re.compile(r"^(?:wave|raise)\b")
CALM_STYLE = "normal"
DEFAULT_SUBSET_LIMIT = 64

SHORT_ACTION_TIMELINE = {"fps": 30, "segments": [{"prompt": "a person walks forward", "start": 1, "end": 75},
                                                 {"prompt": "a person raises the left hand", "start": 76, "end": 135}]}
SHORT_ACTION_RISE = 0.15          # body heights
SHORT_ACTION_OVER_OTHER = 3.0     # times the other wrist's rise


def metric_key(subset: str, measure: str) -> str:
    return f"animator_{subset}_{measure}_ratio"


METRIC_KEYS = tuple(metric_key(s, m) for s in SUBSETS for m in MEASURES) + (
    "short_action_after_walk", "short_action_left_rise")


def is_calm_standing(item: EvalItem) -> bool:
    return bool(_CALM_CONTENT.match(item.content.lower())) and item.style.lower() == CALM_STYLE


def is_walking(item: EvalItem) -> bool:
    return checks_for_action(item.content) == ("travel",) and "walk" in action_words(item.content)


def select(items: Sequence[EvalItem], limit: int | None = DEFAULT_SUBSET_LIMIT) -> dict[str, list[EvalItem]]:
    """The calm-standing and walking items of a split (evenly spread to at most `limit` each)."""
    chosen = {"calm_standing": [i for i in items if is_calm_standing(i)],
              "walking": [i for i in items if is_walking(i)]}
    if limit is not None:
        chosen = {name: [found[int(k)] for k in np.linspace(0, len(found) - 1, limit).round().astype(int)]
                  if len(found) > limit else found for name, found in chosen.items()}
    return chosen


def joint_jerk(joints: np.ndarray, joint: str, fps: float) -> float:
    """Median over frames of one joint's |third difference| x fps^3 (m/s^3)."""
    track = np.asarray(joints, dtype=np.float64)[:, JOINT_INDEX[joint]]
    if len(track) < 4:
        return 0.0
    return float(np.median(np.linalg.norm(np.diff(track, n=3, axis=0), axis=-1)) * fps ** 3)


def _one(joints: np.ndarray, measure: str, fps: float) -> float:
    if measure == "jerk_pelvis":
        return joint_jerk(joints, "pelvis", fps)
    if measure == "jerk_head":
        return joint_jerk(joints, "head", fps)
    if measure == "drift":
        return standing_drift(joints, fps)
    if measure in ("stride_regularity", "pelvis_rhythm", "leg_alternation"):
        pelvis, legs = gait_peaks(joints, fps)
        return {"pelvis_rhythm": pelvis, "leg_alternation": legs, "stride_regularity": 0.5 * (pelvis + legs)}[measure]
    if measure == "pelvis_bob":
        return pelvis_bob(joints)
    if measure == "foot_swing":
        return foot_swing(joints)
    raise ValueError(f"unknown animator measure {measure!r}")


def _split_group(measure: str) -> str:
    """Which items of the whole split a measure is taken over: jerk all, drift standing, the stride locomotion."""
    return "all" if measure.startswith("jerk") else "standing" if measure == "drift" else "locomotion"


def measures(motions: Sequence[np.ndarray], fps: float, subset: str,
             kinds: Sequence[str] | None = None) -> dict[str, float]:
    """Each measure's mean over `motions`.  Subset "split" needs the items' `kinds` (``body_motion.kind_of``): jerk
    over all, drift over standing, the stride measures over locomotion."""
    summary: dict[str, float] = {}
    if subset == "split":
        groups = {m: [j for j, k in zip(motions, kinds, strict=True) if _split_group(m) in ("all", k)]
                  for m in MEASURES}
    else:
        groups = {m: list(motions) for m in _SUBSET_MEASURES[subset]}
    for measure, chosen in groups.items():
        if chosen:
            summary[measure] = float(np.mean([_one(np.asarray(j, dtype=np.float64), measure, fps) for j in chosen]))
    return summary


def ratios(subset: str, generated: dict[str, float], real: dict[str, float], floor: float = 1e-9) -> dict[str, float]:
    """generated / real of every measure both have, under its metric key."""
    return {metric_key(subset, m): value / real[m] for m, value in generated.items()
            if m in real and abs(real[m]) > floor}


@dataclass(frozen=True)
class ShortAction:
    left_rise: float      # body heights above the walk's mean
    right_rise: float

    @property
    def performed(self) -> bool:
        return self.left_rise > SHORT_ACTION_RISE and self.left_rise > SHORT_ACTION_OVER_OTHER * self.right_rise


def short_action(joints: np.ndarray, action_start: int) -> ShortAction:
    """The wrists' rise in frames [action_start:] above their mean over [:action_start], in body heights (the first
    frame's vertical extent)."""
    joints = np.asarray(joints, dtype=np.float64)
    height = joints[0, :, 1].max() - joints[0, :, 1].min()
    rises = []
    for side in ("left_wrist", "right_wrist"):
        wrist = joints[:, JOINT_INDEX[side], 1]
        rises.append(float((wrist[action_start:].max() - wrist[:action_start].mean()) / height))
    return ShortAction(rises[0], rises[1])
