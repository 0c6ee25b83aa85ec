# SPDX-License-Identifier: GPL-3.0-or-later
"""How a motion moves, body part by body part, as an animator judges a take: the measures one mean over all joints
hides (NumPy).

- **Jerk per body part** (pelvis, spine and head, each hand, each foot): the median over frames of the part's mean
  |third finite difference| × fps^3 (m/s^3), so a take whose hips shake and whose feet are frozen is not averaged
  into "normal".
- **Frozen feet**: the share of frames on which a foot joint (ankle or toe) stands exactly still (it moves less than
  `FROZEN_STEP`, 1 µm, between two frames).  A real planted foot still rolls and settles: real Bandai-Namco walks,
  waves and raised hands have no such frame (measured: 0.0% of foot samples below 1 µm, 0.6-1.3% below 10 µm).
- **Gait regularity** (walks and runs): the peak of the autocorrelation of the pelvis height and of the left-right
  ankle-height alternation at lags of 0.3-1.5 s, averaged: a real walk is close to 1, a wandering one far below.
- **Stride amplitude** (walks and runs): the pelvis bob (standard deviation of the detrended pelvis height) and the
  foot swing (the 5-95% range of each ankle's height, averaged over the feet).
- **Standing drift** (clips whose captions name no locomotion or whole-body move): the pelvis' mean horizontal speed.

`summarize` gives each measure's mean over a set of motions with their kinds (`kind_of` their captions); `ratios`
divides a generated set's summary by the real one (the evaluation reports ratios to real, 1.0 = as real motion).
Joints are (T, 22, 3), metres, HumanML3D axes (Y up).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..common.errors import InputTensorError
from ..humanml3d.features import check_joints
from ..humanml3d.gait_rhythm import gait_regularity
from ..motion.skeleton import JOINT_INDEX

# How the evaluation groups real clips by their captions' words into the subsets it reports ("locomotion",
# "standing", "other").  Reporting only: how a prompt is decoded follows the motion of its nearest training captions
# (generation/prompt_kinds.py), never these words.
LOCOMOTION = re.compile(r"\b(walk|walks|walking|walked|run|runs|running|jog|jogs|jogging|march|marches|marching|"
                        r"stroll|strolls|strolling|sprint|sprints|sprinting|stride|strides|striding|pace|paces|"
                        r"pacing|steps? (forward|backward|back|around)|skip|skips|skipping|dash|dashes|dashing|"
                        r"sidestep|sidesteps|sidestepping|dribble|dribbles|dribbling|shuffle|shuffles|shuffling|"
                        r"trot|trots|trotting|sneak|sneaks|sneaking|tiptoe|tiptoes|tiptoeing|limp|limps|limping)\b")
WHOLE_BODY = re.compile(r"\b(jump|jumps|jumping|hop|hops|hopping|turn|turns|turning|spin|spins|spinning|crawl|"
                        r"crawls|crawling|lie|lies|lying|sit|sits|sitting|squat|squats|squatting|kneel|kneels|"
                        r"kneeling|fall|falls|falling|climb|climbs|climbing|dance|dances|dancing|kick|kicks|"
                        r"kicking|step|steps|stepping|moves?|goes|going|backwards?|forwards?|around|circle|roll|"
                        r"rolls|rolling|bend|bends|bending|stand up|stands up|get up|gets up|lunge|lunges|crouch|"
                        r"crouches|crouching|cartwheel|cartwheels|plays? (basketball|soccer|football|tennis)|"
                        r"jete|jetes|pirouette|pirouettes|arabesque|arabesques|flip|flips|backflip|backflips|"
                        r"somersault|somersaults)\b")


def kind_of(captions: Sequence[str]) -> str:
    """"locomotion" when a caption names walking or running, "standing" when none names any whole-body move, else
    "other" (jumps, turns, sitting down ...): the evaluation's subsets."""
    text = " ".join(caption.lower() for caption in captions)
    if LOCOMOTION.search(text):
        return "locomotion"
    return "other" if WHOLE_BODY.search(text) else "standing"


BODY_PARTS: dict[str, tuple[int, ...]] = {
    "pelvis": (JOINT_INDEX["pelvis"],),
    "spine_head": tuple(JOINT_INDEX[n] for n in ("spine1", "spine2", "spine3", "neck", "head")),
    "left_hand": (JOINT_INDEX["left_wrist"],),
    "right_hand": (JOINT_INDEX["right_wrist"],),
    "left_foot": (JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"]),
    "right_foot": (JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"]),
}
FOOT_JOINTS = BODY_PARTS["left_foot"] + BODY_PARTS["right_foot"]
FROZEN_STEP = 1e-6  # metres between two frames: "exactly still"; real feet, even planted, move more on every frame
def _checked(joints: np.ndarray, fps: float, min_frames: int = 4) -> tuple[np.ndarray, float]:
    if not np.isfinite(fps) or fps <= 0:
        raise InputTensorError(f"fps: must be a positive number, got {fps}")
    return check_joints(joints, min_frames=min_frames), float(fps)


def part_jerk(joints: np.ndarray, fps: float) -> dict[str, float]:
    """Median over frames of each body part's mean joint jerk (m/s^3)."""
    joints, fps = _checked(joints, fps)
    jerk = np.linalg.norm(np.diff(joints, n=3, axis=0), axis=-1) * fps ** 3  # (T - 3, 22)
    return {part: float(np.median(jerk[:, list(indices)].mean(axis=1))) for part, indices in BODY_PARTS.items()}


def frozen_share(joints: np.ndarray, joint_indices: Sequence[int] = FOOT_JOINTS, step: float = FROZEN_STEP) -> float:
    """Share of (frame, joint) samples of `joint_indices` that move less than `step` metres from the frame before."""
    joints = check_joints(joints, min_frames=2)
    moves = np.linalg.norm(np.diff(joints[:, list(joint_indices)], axis=0), axis=-1)
    return float(np.mean(moves < step))


def height_bob(joints: np.ndarray, joint: str) -> float:
    """Standard deviation (m) of one joint's height after removing its linear trend."""
    joints = check_joints(joints, min_frames=2)
    height = joints[:, JOINT_INDEX[joint], 1]
    frames = np.arange(len(height))
    return float(np.std(height - np.polyval(np.polyfit(frames, height, 1), frames)))


def pelvis_bob(joints: np.ndarray) -> float:
    """Standard deviation (m) of the pelvis height after removing its linear trend."""
    return height_bob(joints, "pelvis")


def foot_swing(joints: np.ndarray) -> float:
    """5-95% range (m) of each ankle's height, averaged over the two feet."""
    joints = check_joints(joints, min_frames=2)
    heights = joints[:, [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]], 1]
    return float(np.mean(np.percentile(heights, 95, axis=0) - np.percentile(heights, 5, axis=0)))


def standing_drift(joints: np.ndarray, fps: float) -> float:
    """Mean horizontal speed (m/s) of the pelvis."""
    joints, fps = _checked(joints, fps, min_frames=2)
    step = np.diff(joints[:, JOINT_INDEX["pelvis"], :][:, [0, 2]], axis=0)
    return float(np.linalg.norm(step, axis=-1).mean() * fps)


def summarize(motions: Sequence[np.ndarray], kinds: Sequence[str], fps: float) -> dict[str, float]:
    """Each measure's mean over `motions` (each with its kind from `kind_of`): jerk per part over all motions and
    separately for standing and locomotion, frozen feet over all, gait and stride on locomotion, drift on standing.
    A measure whose motions are missing (no locomotion in the set) is left out."""
    if len(motions) != len(kinds):
        raise InputTensorError(f"{len(motions)} motions but {len(kinds)} kinds")
    summary: dict[str, float] = {}
    jerks = [part_jerk(m, fps) for m in motions]
    for subset, name in ((None, ""), ("standing", "_standing"), ("locomotion", "_locomotion")):
        chosen = [j for j, kind in zip(jerks, kinds, strict=True) if subset is None or kind == subset]
        for part in BODY_PARTS:
            if chosen:
                summary[f"jerk_{part}{name}"] = float(np.mean([j[part] for j in chosen]))
    if motions:
        summary["frozen_feet"] = float(np.mean([frozen_share(m) for m in motions]))
    walking = [m for m, kind in zip(motions, kinds, strict=True) if kind == "locomotion"]
    if walking:
        summary["gait_regularity"] = float(np.mean([gait_regularity(m, fps) for m in walking]))
        summary["pelvis_bob"] = float(np.mean([pelvis_bob(m) for m in walking]))
        summary["foot_swing"] = float(np.mean([foot_swing(m) for m in walking]))
    standing = [m for m, kind in zip(motions, kinds, strict=True) if kind == "standing"]
    if standing:
        summary["standing_drift"] = float(np.mean([standing_drift(m, fps) for m in standing]))
    return summary


def ratios(generated: dict[str, float], real: dict[str, float], floor: float = 1e-9) -> dict[str, float]:
    """generated / real for every measure both summaries have, as "<measure>_ratio" (1.0: as real motion).  The
    frozen-feet share is left out: real feet are never frozen, so it is reported as a share, not a ratio."""
    return {f"{key}_ratio": value / real[key] for key, value in generated.items()
            if key != "frozen_feet" and key in real and abs(real[key]) > floor}
