# SPDX-License-Identifier: GPL-3.0-or-later
"""Where training clips come from: one function per source kind, each returning `ClipSpec`s.

A `ClipSpec` says everything needed to turn one BVH file (or a frame range of it) into dataset clips: where the
BVH text is (a file, or a member of a tar archive), which joint map(s) may fit its skeleton, its captions, its
content label (for stratified splits and the report) and its take (the recording; the split unit).

Sources accept an extracted folder or the original tar archive (read by streaming, never extracted to disk):

- `bandai_namco_specs`: Bandai-Namco Research Motion Dataset 1/2 (label JSON + cfg label names).
- `cmu_specs`: CMU mocap BVH conversions + ``cmu-descriptions.json``; the joint map (43-joint Daz-friendly or
  31-joint CMU) is chosen per file from its joint names, and frame 0 (a T-pose in these conversions) is dropped.
- `user_specs`: a user's BVH folder + captions file (see user_captions.py) + a joint map.

`read_bvh_texts` then yields the text of every BVH file the chosen specs need, streaming each archive once.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..bvh.joint_map import BUILTIN_MAPS, JointMap, builtin_joint_map, load_joint_map
from ..common.bounded_read import parse_json, read_json, read_text
from ..common.checked_path import checked_join, is_valid_utf8_name, resolved, shown_path
from ..common.errors import ConfigError, InputFileError
from ..common.limits import MAX_MOTION_TEXT_BYTES
from .captions import captions_for_description, captions_for_label, description_content
from .user_captions import read_captions_file

BANDAI_NAMCO_DIR = re.compile(r"^Bandai-Namco-Research-Motiondataset-(\d+)$")
_LABEL_PREFIX = re.compile(r"^dataset-\d+_")
CMU_TRIAL = re.compile(r"^(\d+_\d+)$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True, order=True)
class BvhLocation:
    """A BVH file on disk (`member` None) or the member `member` of the tar archive at `path`."""

    path: str
    member: str | None = None
    format: str = "bvh"   # how the text is read (motion_files.MOTION_FORMATS); archive members are BVH only

    @property
    def label(self) -> str:
        """How errors name this file: the path, or 'archive.tar.xz:member'."""
        return self.path if self.member is None else f"{self.path}:{self.member}"


@dataclass(frozen=True)
class ClipSpec:
    """One source clip to prepare (see the module docstring)."""

    clip_id: str                     # base name of its dataset clips (windows add _wN, mirrors prefix M)
    take: str                        # the recording it belongs to: the unit kept within one split
    dataset: str                     # "bandai-namco-2", "cmu", "user"
    content: str                     # content label ("walk", "raise-up-left-hand", ...)
    style: str | None
    captions: tuple[str, ...]
    location: BvhLocation
    joint_maps: tuple[JointMap, ...]  # candidates; the first that fits the file's skeleton is used
    drop_first_frame: bool = False
    start_frame: int | None = None   # source frames of the BVH file, start inclusive
    end_frame: int | None = None     # end exclusive
    origin: str = ""                 # where the spec was declared (captions file line), named in errors
    skeleton: object | None = field(default=None, compare=False)  # ASF skeleton / DeepMimic character, if needed
    reverse: bool = False            # played backwards (data/reversed_takes.py: lying down backwards is getting up)

    @property
    def stratum(self) -> str:
        """The split/report group: dataset and content."""
        return f"{self.dataset}/{self.content}"


NOT_UTF8_NAME = "its name is not valid UTF-8 (bytes shown as \\xNN): rename the file to read it"


@dataclass
class SourceScan:
    """Specs found in a source, and files that could not become specs (file label, reason)."""

    specs: list[ClipSpec] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # clip id -> the action checks (check, side) its label promises, for sources checked before they are trusted
    # (evaluation/take_checks.py: ACCAD and the CMU ASF/AMC trials)
    checks: dict[str, tuple[tuple[str, str | None], ...]] = field(default_factory=dict)

    def files(self, root: Path, pattern: str) -> list[Path]:
        """The files matching `pattern` under `root`, sorted; a file whose name is not valid UTF-8, or a symbolic
        link to a file outside `root`, is skipped with its reason (never opened: an error quoting its first line
        would show the content of a file outside the folder)."""
        found = []
        inside = resolved(root, "source folder")
        for file in sorted(root.rglob(pattern)):
            if not is_valid_utf8_name(file):
                self.skipped.append((shown_path(file), NOT_UTF8_NAME))
            elif not file.resolve().is_relative_to(inside):
                self.skipped.append((str(file), f"a symbolic link to a file outside {root}: not read"))
            elif file.is_file():
                found.append(file)
        return found


# ---------------------------------------------------------------------------------------------------------------
# A source as a flat listing of files, whether it is a folder or a tar archive
# ---------------------------------------------------------------------------------------------------------------

def is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def _member_key(name: str) -> str:
    """Member name without a leading './' (archives differ in this)."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    return "/".join(parts)


@dataclass
class _SourceTree:
    """BVH files of a source by relative path, and the text of its small label files (.json, .txt)."""

    bvh: dict[str, BvhLocation] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def _scan_source(path: Path, what: str) -> _SourceTree:
    tree = _SourceTree()
    if not path.exists():
        raise InputFileError(path, f"{what} not found")
    if path.is_dir():
        inside = resolved(path, what)
        for file in sorted(path.rglob("*")):
            if not file.is_file() or not file.resolve().is_relative_to(inside) or not is_valid_utf8_name(file):
                continue  # never read a file outside the folder through a symbolic link
            key = file.relative_to(path).as_posix()
            if file.suffix.lower() == ".bvh":
                tree.bvh[key] = BvhLocation(str(file))
            elif file.suffix.lower() in (".json", ".txt"):
                tree.texts[key] = read_text(file, "text file", errors="replace")
        return tree
    if not is_archive(path):
        raise InputFileError(path, f"{what}: expected a folder or a tar archive (.tar, .tar.xz, .tar.gz)")
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key = _member_key(member.name)
                suffix = PurePosixPath(key).suffix.lower()
                if suffix == ".bvh":
                    tree.bvh[key] = BvhLocation(str(path), member.name)
                elif suffix in (".json", ".txt"):
                    data = archive.extractfile(member).read()
                    tree.texts[key] = data.decode("utf-8", errors="replace")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InputFileError(path, f"cannot read the archive: {error}") from error
    return tree


def read_bvh_texts(locations: Iterable[BvhLocation]) -> Iterator[tuple[BvhLocation, str]]:
    """(location, text) of each location: files first (sorted), then each archive in one streaming pass.

    A file that cannot be read yields an InputFileError instead of text, so one bad file never stops the rest.
    """
    files = sorted({loc for loc in locations if loc.member is None})
    by_archive: dict[str, set[str]] = {}
    for loc in locations:
        if loc.member is not None:
            by_archive.setdefault(loc.path, set()).add(loc.member)
    for loc in files:
        try:
            yield loc, read_text(loc.path, "BVH file", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
        except InputFileError as error:
            yield loc, error
    for archive_path in sorted(by_archive):
        wanted = by_archive[archive_path]
        try:
            with tarfile.open(archive_path, "r|*") as archive:
                for member in archive:
                    if member.name in wanted:
                        data = archive.extractfile(member).read()
                        wanted.discard(member.name)
                        yield BvhLocation(archive_path, member.name), data.decode("utf-8", errors="replace")
        except (tarfile.TarError, OSError, EOFError) as error:
            for member in sorted(wanted):
                yield BvhLocation(archive_path, member), InputFileError(archive_path,
                                                                      f"cannot read the archive: {error}")
            continue
        for member in sorted(wanted):
            yield BvhLocation(archive_path, member), InputFileError(archive_path, f"member {member!r} not found")


def safe_name(text: str) -> str:
    """A clip-name-safe version of `text` (letters, digits, '_', '-', '.')."""
    return _UNSAFE_NAME_CHARS.sub("_", text).strip("_") or "clip"


# ---------------------------------------------------------------------------------------------------------------
# Bandai-Namco
# ---------------------------------------------------------------------------------------------------------------

def _label_names(tree: _SourceTree, key: str, source: Path) -> list[str]:
    if key not in tree.texts:
        raise InputFileError(source, f"label names {key!r} not found")
    # The files spell labels with their dataset prefix ("dataset-1_walk"); the label is what follows it.
    return [_LABEL_PREFIX.sub("", line.strip()) for line in tree.texts[key].splitlines() if line.strip()]


def bandai_namco_specs(path: str | Path, seed: int = 0, captions_per_clip: int = 3) -> SourceScan:
    """Specs of every labelled BVH clip of the Bandai-Namco datasets in `path` (folder or archive).

    `path` may hold several ``Bandai-Namco-Research-Motiondataset-N`` folders or be one of them.  Each clip's
    ``.json`` gives 0-based indices into ``cfg/content_label.txt`` and ``cfg/style_label.txt``; clips without a
    readable label are skipped and reported.
    """
    path = Path(path)
    tree = _scan_source(path, "Bandai-Namco dataset")
    # Each dataset root: the folder holding cfg/ and data/ (its name gives the dataset number).
    marker = "cfg/content_label.txt"
    roots = sorted(key[: -len(marker)].rstrip("/") for key in tree.texts if key.endswith(marker))
    if not roots:
        raise InputFileError(path, "no Bandai-Namco dataset found (expected .../cfg/content_label.txt)")
    scan = SourceScan()
    joint_map = builtin_joint_map("bandai_namco")
    for root in roots:
        prefix = f"{root}/" if root else ""
        folder_name = PurePosixPath(root).name if root else path.name
        number = BANDAI_NAMCO_DIR.match(folder_name)
        dataset = f"bandai-namco-{number.group(1)}" if number else "bandai-namco"
        contents = _label_names(tree, f"{prefix}cfg/content_label.txt", path)
        styles = _label_names(tree, f"{prefix}cfg/style_label.txt", path)
        for key in sorted(k for k in tree.bvh if k.startswith(prefix + "data/")):
            location = tree.bvh[key]
            label_key = key[:-4] + ".json"
            try:
                if label_key not in tree.texts:
                    raise InputFileError(location.label, f"label file {PurePosixPath(label_key).name!r} not found")
                try:
                    label = parse_json(tree.texts[label_key], f"{path}:{label_key}", "label file")
                    content = contents[int(label["content"])]
                    style = styles[int(label["style"])]
                except (ValueError, KeyError, IndexError, TypeError) as error:
                    raise InputFileError(f"{path}:{label_key}",
                                         f"bad label (need 'content' and 'style' indices): {error}") from error
                captions = captions_for_label(content, style, seed=f"{seed}|{PurePosixPath(key).stem}",
                                              count=captions_per_clip)
            except (InputFileError, KeyError) as error:
                scan.skipped.append((location.label, str(error)))
                continue
            stem = safe_name(PurePosixPath(key).stem)
            scan.specs.append(ClipSpec(clip_id=stem, take=stem, dataset=dataset, content=content, style=style,
                                       captions=tuple(captions), location=location, joint_maps=(joint_map,)))
    return scan


# ---------------------------------------------------------------------------------------------------------------
# CMU
# ---------------------------------------------------------------------------------------------------------------

def cmu_specs(path: str | Path, descriptions_path: str | Path, seed: int = 0, captions_per_clip: int = 3
              ) -> SourceScan:
    """Specs of the CMU BVH files (``NN_MM.bvh``) in `path` (folder or archive), captioned from their descriptions."""
    path, descriptions_path = Path(path), Path(descriptions_path)
    descriptions = read_json(descriptions_path, "descriptions")
    if not isinstance(descriptions, dict):
        raise InputFileError(descriptions_path, "expected an object mapping trial ids ('02_01') to descriptions")
    tree = _scan_source(path, "CMU BVH collection")
    joint_maps = (builtin_joint_map("cmu_daz"), builtin_joint_map("cmu_31"))
    scan = SourceScan()
    for key in sorted(tree.bvh):
        location = tree.bvh[key]
        trial = PurePosixPath(key).stem
        if not CMU_TRIAL.match(trial):
            scan.skipped.append((location.label, "not a CMU trial name (NN_MM.bvh)"))
            continue
        entry = descriptions.get(trial)
        description = entry.get("desc") if isinstance(entry, dict) else entry
        if not isinstance(description, str) or not description.strip():
            scan.skipped.append((location.label, f"no description for trial {trial!r} in {descriptions_path}"))
            continue
        try:
            content = description_content(description)
            captions = captions_for_description(description, seed=f"{seed}|{trial}", count=captions_per_clip)
        except ValueError as error:
            scan.skipped.append((location.label, str(error)))
            continue
        clip_id = f"cmu_{trial}"
        scan.specs.append(ClipSpec(clip_id=clip_id, take=clip_id, dataset="cmu", content=content, style=None,
                                   captions=tuple(captions), location=location, joint_maps=joint_maps,
                                   drop_first_frame=True))
    return scan


# ---------------------------------------------------------------------------------------------------------------
# A user's folder
# ---------------------------------------------------------------------------------------------------------------

def resolve_joint_map(spec: str | Path) -> JointMap:
    """A built-in joint map by name ("bandai_namco", "cmu_daz", "cmu_31") or a joint map JSON file."""
    text = str(spec)
    if text in BUILTIN_MAPS:
        return builtin_joint_map(text)
    path = Path(text)
    if path.suffix.lower() != ".json" and not path.exists():
        raise ConfigError(f"joint map {text!r}: not a built-in map ({', '.join(BUILTIN_MAPS)}) nor a JSON file")
    return load_joint_map(path)


def user_specs(bvh_folder: str | Path, captions_file: str | Path, joint_map: str | Path | JointMap,
               drop_first_frame: bool = False) -> SourceScan:
    """Specs of the clips a user's captions file lists; a listed file missing from the folder is an error
    naming the captions file line/entry.  BVH files of the folder that the captions file does not list are
    reported as skipped (no captions)."""
    bvh_folder = Path(bvh_folder)
    if not bvh_folder.is_dir():
        raise InputFileError(bvh_folder, "BVH folder not found")
    entries = read_captions_file(captions_file)
    chosen_map = joint_map if isinstance(joint_map, JointMap) else resolve_joint_map(joint_map)
    scan = SourceScan()
    seen_ids: dict[str, str] = {}
    for entry in entries:
        file = checked_join(bvh_folder, entry.file, where=entry.origin)
        if not file.is_file():
            raise entry.error(f"BVH file {entry.file!r} not found in {bvh_folder}")
        take = "user_" + safe_name(str(PurePosixPath(entry.file).with_suffix("")))
        clip_id = take
        if entry.start_frame is not None or entry.end_frame is not None:
            start = entry.start_frame or 0
            end = "end" if entry.end_frame is None else entry.end_frame
            clip_id = f"{take}_f{start}-{end}"
        if clip_id in seen_ids:
            raise entry.error(f"clip name {clip_id!r} is also made by {seen_ids[clip_id]} (file names that differ "
                              "only in characters unsafe for clip names)")
        seen_ids[clip_id] = entry.origin
        scan.specs.append(ClipSpec(clip_id=clip_id, take=take, dataset="user", content=entry.content, style=None,
                                   captions=entry.captions, location=BvhLocation(str(file)),
                                   joint_maps=(chosen_map,), drop_first_frame=drop_first_frame,
                                   start_frame=entry.start_frame, end_frame=entry.end_frame, origin=entry.origin))
    listed = {str(checked_join(bvh_folder, e.file, where=e.origin).resolve()) for e in entries}
    for file in scan.files(bvh_folder, "*.bvh"):
        if str(file.resolve()) not in listed:
            scan.skipped.append((str(file), f"not listed in the captions file {captions_file}"))
    return scan
