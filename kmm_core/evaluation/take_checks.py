# SPDX-License-Identifier: GPL-3.0-or-later
"""Every clip of a labelled-by-name source checked by the geometric action checks before it is trusted.

A source whose captions come from file names (ACCAD ``WalkToCrouch``, CMU ``Get Up Laying on Side``) records, per
clip, the checks of the steps its name says happen (``SourceScan.checks``: clip id -> ((check, side), ...)).
`check_scan` reads each clip as ``kmm-train prepare`` does (joint map, 20 fps, HumanML3D features, joints recovered
from the features) and runs every check of ``evaluation/action_checks.py`` it names.

The rule (documented in docs/data.md): a step's check passes when it passes on the whole take or on any 3-second
part of it (a walk-then-backwards take travels backwards only in its second half); a clip is trusted when every
step with a check passes; a clip with a failing step is left out of the dataset and listed among the skipped files
with the check, its value and its threshold.  Steps with nothing to measure (standing, swaying, looking around) are
trusted as named.  A box picked up or put down is `BOX_CHECK`: reach_floor with the
wrists up to 0.45 m above the floor (they hold the box at its sides).  `CheckedClip` keeps every result for the report (``benchmarks/check_named_takes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..bvh.retarget import bvh_to_canonical_joints
from ..common.bounded_read import read_text
from ..common.errors import KMMError
from ..common.limits import MAX_MOTION_TEXT_BYTES
from ..data.motion_files import motion_from_text
from ..data.reversed_takes import played_backwards
from ..data.sources import ClipSpec, SourceScan
from ..humanml3d.features import features_to_joints
from ..humanml3d.preprocess import process_motion
from ..motion.model_timing import MODEL_FPS
from .action_checks import ActionCheckThresholds, CheckResult, run_check

WINDOW_SECONDS = 3.0
# Picking up, lifting or putting down a box: the hands hold the box at its sides, so the lowest wrist stays about
# half a box above the floor (ACCAD's box: 0.31-0.40 m, against reach_floor's 0.30 m for a hand on the floor).
BOX_CHECK = "reach_box"
BOX_REACH_METRES = 0.45
WINDOW_STEP_SECONDS = 0.5


@dataclass(frozen=True)
class StepResult:
    check: str
    side: str | None
    result: CheckResult
    where: str            # "whole take" or "frames a-b" (20 fps) of the first part that passed


@dataclass(frozen=True)
class CheckedClip:
    clip_id: str
    file: str
    content: str
    steps: tuple[StepResult, ...]

    @property
    def trusted(self) -> bool:
        return all(step.result.passed for step in self.steps)

    def failure(self) -> str:
        failed = [s for s in self.steps if not s.result.passed]
        return "; ".join(f"action check {s.check}{f' ({s.side})' if s.side else ''} failed: measured "
                         f"{s.result.value:.3g}, threshold {s.result.threshold:.3g}" for s in failed)


def clip_joints(spec: ClipSpec) -> np.ndarray:
    """The clip's joints (T, 22, 3) at 20 fps as training sees them: recovered from its HumanML3D features."""
    text = read_text(spec.location.path, "motion file", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
    motion = motion_from_text(text, spec.location.label, spec.location.format, spec.skeleton)
    joint_map = spec.joint_maps[0]
    joint_map.check_skeleton(motion.names, spec.location.label)
    raw = bvh_to_canonical_joints(motion, joint_map, MODEL_FPS)
    if spec.reverse:
        raw = played_backwards(raw)
    features, _ = process_motion(raw)
    return features_to_joints(features.astype(np.float32)).astype(np.float64)


def step_result(check: str, side: str | None, joints: np.ndarray, fps: float = MODEL_FPS) -> StepResult:
    """The check on the whole take, else on the first 3-second part where it passes, else the whole take's miss.
    `BOX_CHECK` is reach_floor with the wrists allowed `BOX_REACH_METRES` above the floor."""
    thresholds = ActionCheckThresholds(reach_floor_metres=BOX_REACH_METRES) if check == BOX_CHECK else None
    measured = "reach_floor" if check == BOX_CHECK else check
    whole = run_check(measured, joints, fps, thresholds, side=side)
    if whole.passed:
        return StepResult(check, side, whole, "whole take")
    window, stride = round(WINDOW_SECONDS * fps), round(WINDOW_STEP_SECONDS * fps)
    for start in range(0, max(1, len(joints) - window + 1), stride):
        part = joints[start:start + window]
        if len(part) < window:
            break
        result = run_check(measured, part, fps, thresholds, side=side)
        if result.passed:
            return StepResult(check, side, result, f"frames {start}-{start + window}")
    return StepResult(check, side, whole, "whole take")


def check_clip(spec: ClipSpec, checks: tuple[tuple[str, str | None], ...],
               joints_of: Callable[[ClipSpec], np.ndarray] = clip_joints) -> CheckedClip:
    joints = joints_of(spec)
    steps = tuple(step_result(check, side, joints) for check, side in checks)
    return CheckedClip(spec.clip_id, spec.location.label, spec.content, steps)


def check_scan(scan: SourceScan) -> tuple[SourceScan, list[CheckedClip]]:
    """The scan with the clips that failed a check moved to its skipped list (see the module docstring), and every
    clip's results.  A clip whose file cannot be read stays in the scan: prepare reports that error itself."""
    kept, checked = [], []
    skipped = list(scan.skipped)
    for spec in scan.specs:
        checks = scan.checks.get(spec.clip_id, ())
        try:
            clip = check_clip(spec, checks)
        except KMMError:
            kept.append(spec)
            continue
        checked.append(clip)
        if clip.trusted:
            kept.append(spec)
        else:
            skipped.append((spec.location.label, clip.failure()))
    return replace(scan, specs=kept, skipped=skipped), checked
