# SPDX-License-Identifier: GPL-3.0-or-later
"""Sources of `kmm-train prepare` whose takes are named for what happens in them (see
``shared/data/more/README.md``): ACCAD's "Male1" set (BVH, ``Male1_<group><n>_<WhatHappens>.bvh``) and CMU trials
in their own ASF/AMC format (subject 140's get-ups).

Captions come from the names (`take_names.py`, several phrasings, in order: "walks forward, then crouches down");
each clip also records the checks its name promises (``SourceScan.checks``), which
``evaluation/take_checks.check_scan`` runs before the clip is trusted.  Takes: one per file (ACCAD ``accad_Male1_B24``; CMU ``cmu_140_03``, the take name the
``cmu`` source would give the same trial, so both land in one split).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..acclaim.asf import read_asf
from ..bvh.joint_map import builtin_joint_map
from ..common.errors import InputFileError, KMMError
from .action_captions import captions_from_phrases
from .sources import BvhLocation, ClipSpec, SourceScan, is_archive, safe_name
from .take_names import TakeStep, read_take_name, take_phrases

ACCAD_FILE = re.compile(r"^(?P<set>[A-Za-z0-9]+)_(?P<group>[A-Z])(?P<number>\d+)_[A-Za-z0-9_]+$")
CMU_AMC_FILE = re.compile(r"^(?P<subject>\d+)_(?P<trial>\d+)$")
# The `dataset` names these sources give their clips: a content label here describes a whole take ("walk-turn-
# left-45"), not one action, so balanced sampling groups their clips by the action their check measures.
NAMED_TAKE_DATASETS = ("accad", "cmu-amc")

# CMU trials read from ASF/AMC: CMU's description, and the steps it names (phrases + the check that must pass).
CMU_AMC_TRIALS: dict[str, tuple[str, tuple[TakeStep, ...]]] = {
    "140_03": ("Get Up Laying on Side", (TakeStep(
        "getup-from-side", ("gets up from lying on the side", "stands up after lying on the side of the body",
                            "rises from the floor, starting on the side"), "getup"),)),
    "140_04": ("Get Up Laying on Side", (TakeStep(
        "getup-from-side", ("gets up from lying on the side", "stands up after lying on the side of the body",
                            "rises from the floor, starting on the side"), "getup"),)),
    "140_08": ("Get Up From Ground Laying on Back", (TakeStep(
        "getup-from-back", ("gets up from lying on the back", "stands up from lying face up",
                            "rises from the ground after lying on the back"), "getup"),)),
}


def _folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if is_archive(path):
        raise InputFileError(path, f"{what}: give the extracted folder, not the archive (tar xJf "
                                   "more-mocap.tar.xz -C <dir>)")
    if not path.is_dir():
        raise InputFileError(path, f"{what} folder not found")
    return path


def _checks(steps: tuple[TakeStep, ...]) -> tuple[tuple[str, str | None], ...]:
    return tuple((step.check, step.side) for step in steps if step.check)


def accad_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """Every ``<set>_<group><n>_<WhatHappens>.bvh`` under `path` on the ``accad_male1`` joint map."""
    root = _folder(path, "ACCAD")
    joint_map = builtin_joint_map("accad_male1")
    scan = SourceScan()
    for file in scan.files(root, "*.bvh"):
        match = ACCAD_FILE.match(file.stem)
        if not match:
            scan.skipped.append((str(file), "not an ACCAD take name (<set>_<group><n>_<WhatHappens>.bvh)"))
            continue
        try:
            take = read_take_name(file.stem)
            captions = captions_from_phrases(take_phrases(take), f"{seed}|{file.stem}", captions_per_clip)
        except ValueError as error:
            scan.skipped.append((str(file), str(error)))
            continue
        clip_id = safe_name(f"accad_{match.group('set')}_{match.group('group')}{match.group('number')}")
        scan.specs.append(ClipSpec(clip_id=clip_id, take=clip_id, dataset=NAMED_TAKE_DATASETS[0], content=take.content,
                                   style=None, captions=tuple(captions), location=BvhLocation(str(file)),
                                   joint_maps=(joint_map,)))
        scan.checks[clip_id] = _checks(take.steps)
    if not scan.specs and not scan.skipped:
        raise InputFileError(root, "no .bvh files found (expected Male1_<group><n>_<WhatHappens>.bvh)")
    return scan


def cmu_amc_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """Every ``<subject>_<trial>.amc`` under `path` with its ``<subject>.asf`` beside it, for the trials of
    `CMU_AMC_TRIALS` (others are skipped: their captions are not written yet)."""
    root = _folder(path, "CMU ASF/AMC")
    joint_map = builtin_joint_map("acclaim_31")
    scan = SourceScan()
    for file in scan.files(root, "*.amc"):
        match = CMU_AMC_FILE.match(file.stem)
        if not match:
            scan.skipped.append((str(file), "not a CMU trial name (<subject>_<trial>.amc)"))
            continue
        trial = file.stem
        if trial not in CMU_AMC_TRIALS:
            scan.skipped.append((str(file), f"no caption phrases for CMU trial {trial} (named_take_sources.py "
                                            "CMU_AMC_TRIALS)"))
            continue
        asf = file.parent / f"{match.group('subject')}.asf"
        try:
            skeleton = read_asf(asf)
        except KMMError as error:
            scan.skipped.append((str(file), f"skeleton unusable: {error}"))
            continue
        _, steps = CMU_AMC_TRIALS[trial]
        phrases = tuple(dict.fromkeys(p for step in steps for p in step.phrases))
        captions = captions_from_phrases(phrases, f"{seed}|cmu_{trial}", captions_per_clip)
        clip_id = f"cmuamc_{trial}"
        scan.specs.append(ClipSpec(clip_id=clip_id, take=f"cmu_{trial}", dataset=NAMED_TAKE_DATASETS[1],
                                   content="-".join(step.label for step in steps), style=None,
                                   captions=tuple(captions), location=BvhLocation(str(file), format="amc"),
                                   joint_maps=(joint_map,), skeleton=skeleton))
        scan.checks[clip_id] = _checks(steps)
    if not scan.specs and not scan.skipped:
        raise InputFileError(root, "no .amc files found (expected <subject>_<trial>.amc beside <subject>.asf)")
    return scan


__all__ = ["CMU_AMC_TRIALS", "accad_specs", "cmu_amc_specs"]
