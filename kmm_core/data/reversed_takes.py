# SPDX-License-Identifier: GPL-3.0-or-later
"""Takes played backwards where the reverse is an action of its own: lying down, played backwards, is getting up.

Why: the data holds 26 takes of lying down (HDM05 ``lieDownFloor``, ACCAD ``LieDown`` / ``CrouchToLie``) and three
of getting up from the floor (DeepMimic's two, ACCAD's ``LieToCrouch``); the generator trained on them answered "a
person gets up from the floor" by lying down (measured: 0 of 3 seeds get up, the pelvis sinks from 0.5 m to the
floor; docs/data.md, "Reversed takes").  Lying down is slow and quasi-static, so its reverse is a plausible rise: a
hand pushes off the floor, the knees come under the body, the torso straightens.  Each copy is
checked by the ``getup`` action check (lies in the first half, stands upright at the end) before prepare keeps it.

A lying-down take ends with the performer lying still for seconds (HDM05's: 2-4 s of 5-7), so played backwards it
would lie still for half its length before rising, and a generator taught so answers "gets up" by lying on (measured:
the rise came in the segment's last second).  ``played_backwards`` cuts that still start to
``LYING_LEAD_IN_SECONDS`` before the head first rises ``RISE_METRES`` above where it lay.

A copy shares its take with the original (``ClipSpec.take``), so it lands in the original's split, which prepare
deals by the original's stratum alone; copies of val and test takes are left out: they train, never measure, and the
val and test splits stay those of the data without them (``prepare._write_dataset``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..motion.model_timing import MODEL_FPS
from ..motion.skeleton import JOINT_INDEX
from .action_captions import captions_from_phrases
from .sources import ClipSpec, SourceScan

GETUP_PHRASES = ("gets up from lying on the floor", "stands up from the floor", "rises from lying on the ground",
                 "gets up off the ground")
# (dataset, content) of the takes whose reverse is a get-up -> the content label of the reversed copy.
REVERSIBLE_CONTENTS = {
    ("hdm05", "lieDownFloor"): "standUpLieFloor",      # HDM05's own name for the class it has no takes of here
    ("accad", "lie-down"): "lying-getup",              # ACCAD's own label of its LieToCrouch take
    ("accad", "crouch-lie-down"): "lying-getup",
}
REVERSED_SUFFIX = "_reversed"
GETUP_CHECK = (("getup", None),)
LYING_LEAD_IN_SECONDS = 1.0  # still lying kept before the rise (the getup check asks for 0.5 s lying first)
RISE_METRES = 0.15           # the head this far above its height over the first half second: the rise has begun


def played_backwards(joints: np.ndarray, fps: float = MODEL_FPS) -> np.ndarray:
    """A take's joints (T, 22, 3), y up, reversed, starting ``LYING_LEAD_IN_SECONDS`` before the head first rises
    ``RISE_METRES`` above its height over the first half second (the whole reverse if it never does)."""
    backwards = joints[::-1]
    head = backwards[:, JOINT_INDEX["head"], 1]
    lying = float(np.median(head[: max(1, round(0.5 * fps))]))
    risen = np.flatnonzero(head > lying + RISE_METRES)
    start = max(0, int(risen[0]) - round(LYING_LEAD_IN_SECONDS * fps)) if len(risen) else 0
    return np.ascontiguousarray(backwards[start:])


def reversed_takes(specs: list[ClipSpec], seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """A reversed, get-up-captioned copy of every spec in ``specs`` whose (dataset, content) is in
    ``REVERSIBLE_CONTENTS``, each to be checked by the ``getup`` check (``take_checks.check_scan``)."""
    scan = SourceScan()
    for spec in specs:
        content = REVERSIBLE_CONTENTS.get((spec.dataset, spec.content))
        if content is None or spec.reverse:
            continue
        clip_id = spec.clip_id + REVERSED_SUFFIX
        captions = captions_from_phrases(GETUP_PHRASES, f"{seed}|{clip_id}", captions_per_clip)
        scan.specs.append(dataclasses.replace(spec, clip_id=clip_id, content=content, captions=tuple(captions),
                                              reverse=True, origin=f"{spec.origin or spec.location.label} (reversed)"))
        scan.checks[clip_id] = GETUP_CHECK
    return scan
