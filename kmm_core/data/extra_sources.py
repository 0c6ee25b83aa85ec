# SPDX-License-Identifier: GPL-3.0-or-later
"""Sources of `kmm-train prepare` beyond BVH collections: HDM05 (ASF/AMC), CMU re-exported on the Character
Creator rig (BVH + clips.csv), the CMU exp-map subset and DeepMimic clips (see ``shared/data/extra/README.md``).

Each function takes the extracted folder of its source and returns a `SourceScan` of `ClipSpec`s; files that
cannot become clips (unknown label, unreadable skeleton, a mirrored copy) are listed as skipped with the reason.

Takes (the unit kept within one split): one recording each.  CMU trials keep the take name the ``cmu`` source gives
them (``cmu_02_01``), so a trial that is in both the CMU BVH collection and the iClone export lands in one split.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..acclaim.amc import ACCLAIM_FPS
from ..acclaim.asf import AsfSkeleton, read_asf
from ..bvh.joint_map import builtin_joint_map
from ..common.bounded_read import read_text
from ..common.checked_path import checked_join
from ..common.errors import InputFileError, KMMError
from ..motion_formats.deepmimic import read_deepmimic_character
from .action_captions import (
    CMU_EXPMAP_PHRASES,
    DEEPMIMIC_PHRASES,
    captions_from_phrases,
    deepmimic_label,
    hdm05_phrases,
)
from .captions import captions_for_description, description_content
from .sources import BvhLocation, ClipSpec, SourceScan, is_archive, safe_name

HDM05_FILE = re.compile(r"^HDM_(?P<actor>[A-Za-z0-9]+)_(?P<label>[A-Za-z0-9]+)_(?P<take>\d+)_(?P<fps>\d+)$")
CMU_TRIAL_IN_CSV = re.compile(r"^\d+_\d+$")
DEEPMIMIC_CHARACTER = Path("characters") / "humanoid3d.txt"


def _folder(path: str | Path, what: str, hint: str) -> Path:
    path = Path(path)
    if is_archive(path):
        raise InputFileError(path, f"{what}: give the extracted folder, not the archive ({hint})")
    if not path.is_dir():
        raise InputFileError(path, f"{what} folder not found")
    return path


def _extract_hint(name: str) -> str:
    return f"tar xJf extra-mocap.tar.xz -C <dir>, then <dir>/{name}"


# ---------------------------------------------------------------------------------------------------------------
# HDM05
# ---------------------------------------------------------------------------------------------------------------

def hdm05_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """Every ``HDM_<actor>_<class>_<take>_<fps>.amc`` under `path`, with the skeleton ``HDM_<actor>.asf`` found
    anywhere under `path`; the class (camelCase) gives the content label and captions."""
    root = _folder(path, "HDM05", _extract_hint("hdm05-subset-jointlearning"))
    scan = SourceScan()
    skeleton_files = {file.stem: file for file in scan.files(root, "*.asf")}
    skeletons: dict[str, AsfSkeleton | KMMError] = {}
    joint_map = builtin_joint_map("acclaim_31")
    for file in scan.files(root, "*.amc"):
        match = HDM05_FILE.match(file.stem)
        if not match:
            scan.skipped.append((str(file), "not an HDM05 clip name (HDM_<actor>_<class>_<take>_<fps>.amc)"))
            continue
        actor, label = match.group("actor"), match.group("label")
        asf_name = f"HDM_{actor}"
        if asf_name not in skeletons:
            if asf_name not in skeleton_files:
                skeletons[asf_name] = InputFileError(root, f"skeleton {asf_name}.asf not found")
            else:
                try:
                    skeletons[asf_name] = read_asf(skeleton_files[asf_name])
                except KMMError as error:
                    skeletons[asf_name] = error
        skeleton = skeletons[asf_name]
        if isinstance(skeleton, KMMError):
            scan.skipped.append((str(file), f"skeleton unusable: {skeleton}"))
            continue
        fps = float(match.group("fps"))
        if fps != ACCLAIM_FPS:
            scan.skipped.append((str(file), f"frame rate {fps:g} in the name; HDM05 clips here are {ACCLAIM_FPS:g}"))
            continue
        try:
            captions = captions_from_phrases(hdm05_phrases(label), f"{seed}|{file.stem}", captions_per_clip)
        except ValueError as error:
            scan.skipped.append((str(file), str(error)))
            continue
        clip_id = safe_name(f"hdm05_{actor}_{label}_{match.group('take')}")
        scan.specs.append(ClipSpec(clip_id=clip_id, take=clip_id, dataset="hdm05", content=label, style=None,
                                   captions=tuple(captions), location=BvhLocation(str(file), format="amc"),
                                   joint_maps=(joint_map,), skeleton=skeleton))
    if not scan.specs and not scan.skipped:
        raise InputFileError(root, "no .amc files found (expected HDM_<actor>_<class>_<take>_120.amc)")
    return scan


# ---------------------------------------------------------------------------------------------------------------
# CMU on the Character Creator rig (iClone export)
# ---------------------------------------------------------------------------------------------------------------

def cmu_iclone_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """The BVH files listed in ``clips.csv`` (file, trial, description, ...) of `path`, on the ``cc_base`` map,
    captioned from the CMU descriptions."""
    root = _folder(path, "CMU iClone export", _extract_hint("cmu-iclone-dragonforged"))
    index = root / "clips.csv"
    if not index.is_file():
        raise InputFileError(index, "clips.csv not found (file,trial,description,... of every clip)")
    joint_map = builtin_joint_map("cc_base")
    scan = SourceScan()
    with io.StringIO(read_text(index, "clip index"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "trial", "description"} - set(reader.fieldnames or ())
        if missing:
            raise InputFileError(index, f"missing column(s) {', '.join(sorted(missing))}", 1)
        listed = set()
        for line, row in enumerate(reader, start=2):
            file = checked_join(root, row["file"], where=f"{index}, line {line}, file")
            listed.add(file.resolve())
            trial = (row["trial"] or "").strip()
            if not CMU_TRIAL_IN_CSV.match(trial):
                raise InputFileError(index, f"trial {trial!r} is not a CMU trial id (NN_MM)", line)
            if not file.is_file():
                scan.skipped.append((f"{index}, line {line}", f"BVH file {row['file']!r} not found"))
                continue
            try:
                content = description_content(row["description"])
                captions = captions_for_description(row["description"], f"{seed}|{trial}", captions_per_clip)
            except ValueError as error:
                scan.skipped.append((str(file), str(error)))
                continue
            scan.specs.append(ClipSpec(clip_id=f"cmuic_{trial}", take=f"cmu_{trial}", dataset="cmu-iclone",
                                       content=content, style=None, captions=tuple(captions),
                                       location=BvhLocation(str(file)), joint_maps=(joint_map,),
                                       origin=f"{index}, line {line}"))
    for file in scan.files(root, "*.bvh"):
        if file.resolve() not in listed:
            scan.skipped.append((str(file), f"not listed in {index}"))
    return scan


# ---------------------------------------------------------------------------------------------------------------
# CMU exponential maps
# ---------------------------------------------------------------------------------------------------------------

def cmu_expmap_specs(path: str | Path, skeleton_path: str | Path, seed: int = 0, captions_per_clip: int = 3
                     ) -> SourceScan:
    """Every ``<action>/<action>_<n>.txt`` under `path` (train/ and test/ alike; the split is the project's own),
    with bone geometry from the ASF skeleton `skeleton_path` (CMU's 31 bone names, e.g. an HDM05 actor's)."""
    root = _folder(path, "CMU exp-map subset", _extract_hint("cmu-8action-expmap"))
    skeleton = read_asf(skeleton_path)
    joint_map = builtin_joint_map("acclaim_31")
    scan = SourceScan()
    for file in scan.files(root, "*.txt"):
        action = file.parent.name
        if not re.match(rf"^{re.escape(action)}_\d+$", file.stem):
            continue   # READMEs and other text
        if action not in CMU_EXPMAP_PHRASES:
            scan.skipped.append((str(file), f"no caption phrases for action {action!r}"))
            continue
        part = file.parent.parent.name
        clip_id = safe_name(f"cmuexp_{part}_{file.stem}")
        captions = captions_from_phrases(CMU_EXPMAP_PHRASES[action], f"{seed}|{clip_id}", captions_per_clip)
        scan.specs.append(ClipSpec(clip_id=clip_id, take=clip_id, dataset="cmu-expmap", content=action, style=None,
                                   captions=tuple(captions), location=BvhLocation(str(file), format="cmu_expmap"),
                                   joint_maps=(joint_map,), skeleton=skeleton))
    if not scan.specs and not scan.skipped:
        raise InputFileError(root, "no <action>/<action>_<n>.txt exp-map files found")
    return scan


# ---------------------------------------------------------------------------------------------------------------
# DeepMimic
# ---------------------------------------------------------------------------------------------------------------

def deepmimic_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """Every ``motions/**/humanoid3d_<label>.txt`` of `path` on the character ``characters/humanoid3d.txt``.
    ``*_mirror`` files are skipped: prepare makes its own mirrors (and a mirror shares its original's take)."""
    root = _folder(path, "DeepMimic", _extract_hint("deepmimic-humanoid3d"))
    character = read_deepmimic_character(root / DEEPMIMIC_CHARACTER)
    joint_map = builtin_joint_map("deepmimic_humanoid3d")
    scan = SourceScan()
    for file in scan.files(root / "motions", "*.txt"):
        if file.stem.endswith("_mirror"):
            scan.skipped.append((str(file), f"a mirrored copy of {file.stem.removesuffix('_mirror')} (prepare "
                                            "adds mirrors itself)"))
            continue
        label = deepmimic_label(file.stem)
        if label not in DEEPMIMIC_PHRASES:
            scan.skipped.append((str(file), f"no caption phrases for label {label!r}"))
            continue
        clip_id = safe_name(f"deepmimic_{file.stem.removeprefix('humanoid3d_')}")
        captions = captions_from_phrases(DEEPMIMIC_PHRASES[label], f"{seed}|{clip_id}", captions_per_clip)
        scan.specs.append(ClipSpec(clip_id=clip_id, take=clip_id, dataset="deepmimic", content=label, style=None,
                                   captions=tuple(captions), location=BvhLocation(str(file), format="deepmimic"),
                                   joint_maps=(joint_map,), skeleton=character))
    if not scan.specs and not scan.skipped:
        raise InputFileError(root / "motions", "no DeepMimic motion files found")
    return scan
