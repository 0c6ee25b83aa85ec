# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a HumanML3D-layout training folder from BVH clips (`kmm-train prepare`).

For every `ClipSpec` (see sources.py):

1. BVH -> canonical 22 joints at 20 fps (``bvh.retarget``), after dropping a T-pose first frame / cutting the
   requested frame range.
2. Lengths: HumanML3D trains on clips of 40..196 feature frames (a feature frame per pair of joint frames).
   - Longer clips are cut into ``ceil(F / 196)`` equally long windows spread evenly over the clip (neighbours
     overlap by at most a frame or two), so no window is a short leftover.
   - Shorter clips of at least ``min_source_frames`` joint frames (1 s by default) are padded to 40 feature
     frames by holding their last pose: many real clips are short and complete gestures ("raise the left hand"
     takes under two seconds), and a held final pose is what such a motion ends in.  Still shorter clips are
     dropped: more than half of such a clip would be padding.
3. Each window goes through HumanML3D's processing (``humanml3d.process_motion``): its own canonical frame (floor,
   origin, facing +Z), 263-d features; ``new_joints`` are the joints recovered from the features, as HumanML3D
   stores them.
4. Mirrored copy ``M<name>``: the window's raw joints mirrored (left/right joints swapped, x negated) and
   processed again, captions with left/right swapped (``skeleton.mirror_text``).
5. Splits by take, stratified by dataset/content (splits.py); Mean/Std over the train split with HumanML3D's
   grouped std; ``index.csv`` (one row per clip) and ``report.json`` / ``report.md``.

Determinism: every random choice is seeded from (seed, name); files are written from per-clip arrays whose values
do not depend on the worker that computed them; statistics are accumulated in sorted clip order.  The same inputs
and seed give byte-identical data files (report files differ only in ``elapsed_seconds``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import multiprocessing
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bvh.joint_map import JointMap
from ..bvh.reader import BvhMotion
from ..bvh.retarget import bvh_to_canonical_joints
from ..common.atomic_write import atomic_directory
from ..common.bounded_read import read_text
from ..common.checked_path import shown_path
from ..common.errors import ConfigError, InputFileError, KMMError
from ..humanml3d.dataset_folder import FEATURES_DIR, JOINTS_DIR, TEXTS_DIR, write_clip, write_mean_std, write_split
from ..humanml3d.features import FEATURE_DIM, features_to_joints
from ..humanml3d.normalizer import HUMANML3D_STD_GROUPS, MEAN_FILE, STD_FILE
from ..humanml3d.preprocess import process_motion
from ..motion.model_timing import MODEL_FPS
from ..motion.skeleton import mirror_positions, mirror_text
from .motion_files import motion_from_text
from .reversed_takes import played_backwards
from .sources import BvhLocation, ClipSpec, read_bvh_texts
from .splits import SPLITS, assign_splits, check_fractions

MIN_FRAMES = 40      # HumanML3D's shortest training clip (feature frames)
MAX_FRAMES = 196     # and its longest
MIN_SOURCE_FRAMES = 20  # joint frames (1 s at 20 fps): shorter clips are dropped instead of padded
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
INDEX_CSV = "index.csv"
# Everything prepare writes; only these are replaced when overwriting a folder.
OUTPUT_DIRS = (FEATURES_DIR, JOINTS_DIR, TEXTS_DIR)
OUTPUT_FILES = (MEAN_FILE, STD_FILE, INDEX_CSV, REPORT_JSON, REPORT_MD, "all.txt", *(f"{s}.txt" for s in SPLITS))
_INDEX_COLUMNS = ("name", "take", "dataset", "content", "style", "split", "mirrored", "window", "start_frame",
                  "frames", "padded_frames", "source")


class PrepareError(KMMError, ValueError):
    """The dataset cannot be prepared as asked (output folder, no usable clip, ...)."""


@dataclass(frozen=True)
class PrepareOptions:
    seed: int = 0
    min_frames: int = MIN_FRAMES
    max_frames: int = MAX_FRAMES
    min_source_frames: int = MIN_SOURCE_FRAMES
    mirror: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    limit_per_content: int | None = None   # at most this many takes per dataset/content (fast tests and demos)
    workers: int = 1
    progress: bool = True
    overwrite: bool = False

    def check(self) -> None:
        if not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(f"min_frames ({self.min_frames}) must be >= 1 and <= max_frames ({self.max_frames})")
        if not 2 <= self.min_source_frames <= self.min_frames + 1:
            raise ConfigError(f"min_source_frames must be in 2..{self.min_frames + 1}, got {self.min_source_frames}")
        if self.limit_per_content is not None and self.limit_per_content < 1:
            raise ConfigError(f"limit_per_content must be >= 1, got {self.limit_per_content}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        check_fractions(self.val_fraction, self.test_fraction)


# ---------------------------------------------------------------------------------------------------------------
# Windows: cutting and padding to HumanML3D's length range
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    start: int      # first joint frame (20 fps) in the clip
    frames: int     # joint frames taken from the clip
    padding: int    # copies of the last pose appended


def plan_windows(num_frames: int, min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES,
                 min_source_frames: int = MIN_SOURCE_FRAMES) -> list[Window]:
    """Windows of a clip of `num_frames` joint frames whose features (one frame fewer) have min..max frames.

    Returns [] when the clip is too short to pad (see the module docstring).
    """
    features = num_frames - 1
    if num_frames < min_source_frames:
        return []
    if features < min_frames:
        return [Window(0, num_frames, min_frames + 1 - num_frames)]
    if features <= max_frames:
        return [Window(0, num_frames, 0)]
    count = math.ceil(features / max_frames)
    length = features // count
    spare = features - length
    return [Window(round(i * spare / (count - 1)), length + 1, 0) for i in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# One BVH file -> processed clips (runs in worker processes)
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class ProcessedClip:
    name: str
    spec_id: str
    mirrored: bool
    window: int
    start_frame: int
    padding: int
    captions: tuple[str, ...]
    features: np.ndarray   # (T, 263) float32
    joints: np.ndarray     # (T, 22, 3) float32, recovered from the features


@dataclass
class SpecOutcome:
    spec_id: str
    clips: list[ProcessedClip] = field(default_factory=list)
    error: str | None = None        # the file could not be used (skipped)
    error_file: str | None = None
    error_line: int | None = None
    dropped_frames: int | None = None  # too short: its length in joint frames


def _choose_joint_map(motion: BvhMotion, candidates: Sequence[JointMap], label: str) -> JointMap:
    for joint_map in candidates:
        try:
            joint_map.check_skeleton(motion.names, label)
            return joint_map
        except InputFileError:
            continue
    if len(candidates) == 1:
        candidates[0].check_skeleton(motion.names, label)  # raises, naming the missing joint
    names = ", ".join(repr(m.name) for m in candidates)
    raise InputFileError(label, f"no joint map fits this skeleton (tried {names}); root joint {motion.names[0]!r}")


def _select_frames(motion: BvhMotion, spec: ClipSpec) -> BvhMotion:
    frames = motion.frames
    if spec.start_frame is not None or spec.end_frame is not None:
        start = spec.start_frame or 0
        end = motion.num_frames if spec.end_frame is None else spec.end_frame
        if end > motion.num_frames or start >= motion.num_frames:
            where = spec.origin or motion.path
            raise KMMError(f"{where}: frame range {start}..{end} is beyond the {motion.num_frames} frames of "
                           f"{motion.path}")
        frames = frames[start:end]
    if spec.drop_first_frame and len(frames) > 1:
        frames = frames[1:]
    return dataclasses.replace(motion, frames=frames)


def _process_window(raw: np.ndarray, options: PrepareOptions, label: str) -> tuple[np.ndarray, np.ndarray]:
    features, _ = process_motion(raw)
    if not (options.min_frames <= len(features) <= options.max_frames):
        raise AssertionError(f"{label}: window has {len(features)} feature frames")
    if not np.all(np.isfinite(features)):
        raise KMMError(f"{label}: the motion gives non-finite features (degenerate skeleton?)")
    features = features.astype(np.float32)
    # HumanML3D stores new_joints = joints recovered from the (float32) features.
    return features, features_to_joints(features).astype(np.float32)


def process_spec(motion: BvhMotion, spec: ClipSpec, options: PrepareOptions) -> SpecOutcome:
    """All dataset clips of one spec (windows and their mirrors) from its parsed BVH file."""
    outcome = SpecOutcome(spec.clip_id)
    label = spec.location.label
    joint_map = _choose_joint_map(motion, spec.joint_maps, label)
    joints = bvh_to_canonical_joints(_select_frames(motion, spec), joint_map, MODEL_FPS)
    if spec.reverse:
        joints = played_backwards(joints)
    windows = plan_windows(len(joints), options.min_frames, options.max_frames, options.min_source_frames)
    if not windows:
        outcome.dropped_frames = len(joints)
        return outcome
    mirrored_captions = tuple(mirror_text(c) for c in spec.captions)
    for index, window in enumerate(windows):
        raw = joints[window.start: window.start + window.frames]
        if window.padding:
            raw = np.concatenate([raw, np.repeat(raw[-1:], window.padding, axis=0)], axis=0)
        name = f"{spec.clip_id}_w{index}"
        features, recovered = _process_window(raw, options, label)
        outcome.clips.append(ProcessedClip(name, spec.clip_id, False, index, window.start, window.padding,
                                           spec.captions, features, recovered))
        if options.mirror:
            features, recovered = _process_window(mirror_positions(raw), options, label)
            outcome.clips.append(ProcessedClip("M" + name, spec.clip_id, True, index, window.start, window.padding,
                                               mirrored_captions, features, recovered))
    return outcome


def process_bvh_text(job: tuple[BvhLocation, str | Exception, list[ClipSpec], PrepareOptions]) -> list[SpecOutcome]:
    """Worker entry: parse one BVH text once and process every spec that uses it; errors become outcomes."""
    location, text, specs, options = job
    try:
        if isinstance(text, Exception):
            raise text
        motion = motion_from_text(text, location.label, location.format, specs[0].skeleton)
    except KMMError as error:
        return [_failed(spec.clip_id, error, location.label) for spec in specs]
    outcomes = []
    for spec in specs:
        try:
            outcomes.append(process_spec(motion, spec, options))
        except KMMError as error:
            outcomes.append(_failed(spec.clip_id, error, location.label))
    return outcomes


def _failed(spec_id: str, error: Exception, file_label: str) -> SpecOutcome:
    return SpecOutcome(spec_id, error=getattr(error, "reason", None) or str(error),
                       error_file=getattr(error, "path", None) or file_label,
                       error_line=getattr(error, "line", None))


def _bounded_map(function: Callable, jobs: Iterable, workers: int) -> Iterable:
    """map(function, jobs) in input order, on `workers` processes with few jobs in flight (BVH texts are big)."""
    if workers <= 1:
        for job in jobs:
            yield function(job)
        return
    # "spawn": the caller (kmm-train) may have torch and its threads loaded; forking those can deadlock.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.apply_async(function, (job,)))
            if len(pending) >= 4 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ---------------------------------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------------------------------

def limit_specs(specs: Sequence[ClipSpec], limit: int | None, seed: int) -> list[ClipSpec]:
    """At most `limit` takes per dataset/content, chosen by a seeded shuffle (so styles are mixed)."""
    if limit is None:
        return list(specs)
    takes_by_stratum: dict[str, set[str]] = defaultdict(set)
    for spec in specs:
        takes_by_stratum[spec.stratum].add(spec.take)
    kept: set[str] = set()
    for stratum in sorted(takes_by_stratum):
        takes = sorted(takes_by_stratum[stratum])
        random.Random(f"{seed}|limit|{stratum}").shuffle(takes)
        kept.update(takes[:limit])
    return [spec for spec in specs if spec.take in kept]


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Check the output folder; with `overwrite` its previous OUTPUT_DIRS/OUTPUT_FILES are replaced only once the
    new dataset is complete (`atomic_directory`), and other files in it stay."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"{out_dir}: the output path exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise PrepareError(f"{out_dir}: the output folder is not empty (use overwrite / --overwrite)")


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # the progress bar is a convenience, not a requirement
        return None
    return tqdm(total=total, desc="prepare", unit="file", disable=not enabled, dynamic_ncols=True)


def compute_mean_std(out_dir: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and HumanML3D grouped std of the features of `names`, read from disk in sorted order (two passes,
    float64, so memory stays one clip and the result is exactly Normalizer.fit(..., group_std=True))."""
    names = sorted(names)
    if not names:
        raise PrepareError("the train split is empty: cannot compute Mean/Std")
    total = np.zeros(FEATURE_DIM)
    count = 0
    for name in names:
        features = np.load(out_dir / FEATURES_DIR / f"{name}.npy").astype(np.float64)
        total += features.sum(axis=0)
        count += len(features)
    mean = total / count
    squares = np.zeros(FEATURE_DIM)
    for name in names:
        features = np.load(out_dir / FEATURES_DIR / f"{name}.npy").astype(np.float64)
        squares += ((features - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / count)
    for group in HUMANML3D_STD_GROUPS:
        std[group] = std[group].mean()
    return mean, std


@dataclass
class ClipRecord:
    """What the report and index need of a written clip."""

    name: str
    spec: ClipSpec
    mirrored: bool
    window: int
    start_frame: int
    frames: int
    padding: int
    captions: tuple[str, ...]


def skipped_listing(skipped: Sequence[tuple[str, str]]) -> str:
    """The first `MAX_LISTED` (file, reason) pairs of takes a scan skipped, for an error message."""
    listed = "; ".join(f"{shown_path(file)}: {reason}" for file, reason in skipped[:MAX_LISTED])
    return listed + (f"; and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else "")


def prepare_dataset(specs: Sequence[ClipSpec], out_dir: str | Path, options: PrepareOptions = PrepareOptions(),
                    source_skipped: Sequence[tuple[str, str]] = (), sources: Sequence[dict] = ()) -> dict:
    """Write the dataset folder `out_dir` from `specs`; returns the report (also written as report.json/.md).

    `source_skipped` lists (file, reason) of files the source scans already rejected; `sources` describes the
    inputs (for the report only).
    """
    started = time.perf_counter()
    options.check()
    out_dir = Path(out_dir)
    ids = Counter(spec.clip_id for spec in specs)
    duplicated = sorted(name for name, n in ids.items() if n > 1)
    if duplicated:
        raise PrepareError(f"two source clips would both be named {duplicated[0]!r}")
    chosen = limit_specs(specs, options.limit_per_content, options.seed)
    if not chosen:
        if source_skipped:  # the scans know why each take was dropped: say it, per take
            raise PrepareError(f"no source clips to prepare: all {len(source_skipped)} takes found were skipped: "
                               f"{skipped_listing(source_skipped)}")
        raise PrepareError("no source clips to prepare")
    _prepare_output(out_dir, options.overwrite)
    # Built in a temporary folder beside out_dir and renamed into place when complete: a killed or failed run (a full
    # disk) never leaves half a dataset at out_dir, and a previous dataset there stays until the new one is whole.
    with atomic_directory(out_dir, replace=True, owned_names=(*OUTPUT_DIRS, *OUTPUT_FILES)) as building:
        return _write_dataset(chosen, building, options, source_skipped, sources, started)


def _write_dataset(chosen: list[ClipSpec], out_dir: Path, options: PrepareOptions,
                   source_skipped: Sequence[tuple[str, str]], sources: Sequence[dict], started: float) -> dict:
    """The body of prepare_dataset: every file of the dataset written into `out_dir`; returns the report."""
    specs_by_location: dict[BvhLocation, list[ClipSpec]] = defaultdict(list)
    for spec in chosen:
        specs_by_location[spec.location].append(spec)
    spec_by_id = {spec.clip_id: spec for spec in chosen}
    jobs = ((location, text, specs_by_location[location], options)
            for location, text in read_bvh_texts(list(specs_by_location)))

    records: list[ClipRecord] = []
    skipped: list[dict] = [{"file": f, "line": None, "reason": r} for f, r in source_skipped]
    dropped: list[dict] = []
    bar = _progress(len(specs_by_location), options.progress)
    for outcomes in _bounded_map(process_bvh_text, jobs, min(options.workers, len(specs_by_location))):
        for outcome in outcomes:
            spec = spec_by_id[outcome.spec_id]
            if outcome.error is not None:
                skipped.append({"file": outcome.error_file, "line": outcome.error_line, "reason": outcome.error,
                                "clip": spec.clip_id})
                continue
            if outcome.dropped_frames is not None:
                dropped.append({"clip": spec.clip_id, "frames": outcome.dropped_frames,
                                "file": spec.location.label})
                continue
            for clip in outcome.clips:
                write_clip(out_dir, clip.name, clip.joints, clip.features, clip.captions)
                records.append(ClipRecord(clip.name, spec, clip.mirrored, clip.window, clip.start_frame,
                                          len(clip.features), clip.padding, clip.captions))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not records:
        example = f"; e.g. {skipped[-1]['file']}: {skipped[-1]['reason']}" if skipped else ""
        raise PrepareError(f"no clip could be prepared ({len(skipped)} skipped, {len(dropped)} too short{example})")

    records.sort(key=lambda r: r.name)
    skipped.sort(key=lambda s: (str(s["file"]), s["line"] or 0, s.get("clip", "")))
    dropped.sort(key=lambda d: d["clip"])
    # A reversed copy shares its take with the original (reversed_takes.py): the original's stratum deals the take,
    # so the splits are those of the data without the copies, and copies of val/test takes are left out (they
    # train, never measure).
    take_strata = {r.spec.take: r.spec.stratum for r in records if not r.spec.reverse}
    for record in records:
        take_strata.setdefault(record.spec.take, record.spec.stratum)
    split_of_take = assign_splits(take_strata, options.seed, options.val_fraction, options.test_fraction)
    for record in records:
        if record.spec.reverse and split_of_take[record.spec.take] != "train":
            for folder, suffix in ((FEATURES_DIR, ".npy"), (JOINTS_DIR, ".npy"), (TEXTS_DIR, ".txt")):
                (out_dir / folder / f"{record.name}{suffix}").unlink(missing_ok=True)
    records = [r for r in records if not r.spec.reverse or split_of_take[r.spec.take] == "train"]
    names_by_split = {split: [r.name for r in records if split_of_take[r.spec.take] == split] for split in SPLITS}
    for split, names in names_by_split.items():
        write_split(out_dir, split, names)
    write_split(out_dir, "all", [r.name for r in records])
    mean, std = compute_mean_std(out_dir, names_by_split["train"])
    write_mean_std(out_dir, mean, std)
    _write_index(out_dir, records, split_of_take)

    report = build_report(records, split_of_take, skipped, dropped, options, sources)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    write_report(out_dir, report)
    return report


def _write_index(out_dir: Path, records: Sequence[ClipRecord], split_of_take: dict[str, str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_INDEX_COLUMNS)
    for r in records:
        writer.writerow([r.name, r.spec.take, r.spec.dataset, r.spec.content, r.spec.style or "",
                         split_of_take[r.spec.take], int(r.mirrored), r.window, r.start_frame, r.frames, r.padding,
                         r.spec.location.label])
    (out_dir / INDEX_CSV).write_text(buffer.getvalue(), encoding="utf-8")


def read_index(out_dir: str | Path) -> list[dict[str, str]]:
    """Rows of a prepared folder's index.csv (name, take, dataset, content, style, split, mirrored, ...)."""
    path = Path(out_dir) / INDEX_CSV
    if not path.is_file():
        raise InputFileError(path, "index not found (not a folder written by kmm-train prepare?)")
    with io.StringIO(read_text(path, "index"), newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------

def _minutes(frames: int) -> float:
    return round(frames / MODEL_FPS / 60.0, 2)


def build_report(records: Sequence[ClipRecord], split_of_take: dict[str, str], skipped: list[dict],
                 dropped: list[dict], options: PrepareOptions, sources: Sequence[dict]) -> dict:
    per_content: dict[str, dict] = {}
    per_split = {s: {"takes": 0, "clips": 0, "frames": 0} for s in SPLITS}
    takes_seen: set[str] = set()
    for r in records:
        split = split_of_take[r.spec.take]
        entry = per_content.setdefault(r.spec.stratum, {"takes": set(), "clips": 0, "frames": 0,
                                                        **{s: set() for s in SPLITS}})
        entry["takes"].add(r.spec.take)
        entry[split].add(r.spec.take)
        entry["clips"] += 1
        entry["frames"] += r.frames
        per_split[split]["clips"] += 1
        per_split[split]["frames"] += r.frames
        if r.spec.take not in takes_seen:
            takes_seen.add(r.spec.take)
            per_split[split]["takes"] += 1
    content_rows = {}
    for stratum in sorted(per_content):
        e = per_content[stratum]
        content_rows[stratum] = {"takes": len(e["takes"]), "clips": e["clips"], "minutes": _minutes(e["frames"]),
                                 **{f"{s}_takes": len(e[s]) for s in SPLITS}}
    split_rows = {s: {"takes": v["takes"], "clips": v["clips"], "minutes": _minutes(v["frames"])}
                  for s, v in per_split.items()}
    dataset_rows: dict[str, dict] = {}
    for r in records:   # per source: what came out of it
        row = dataset_rows.setdefault(r.spec.dataset, {"takes": set(), "contents": set(), "clips": 0, "frames": 0})
        row["takes"].add(r.spec.take)
        row["contents"].add(r.spec.content)
        row["clips"] += 1
        row["frames"] += r.frames
    dataset_rows = {d: {"takes": len(v["takes"]), "contents": len(v["contents"]), "clips": v["clips"],
                        "minutes": _minutes(v["frames"])} for d, v in sorted(dataset_rows.items())}
    originals = [r for r in records if not r.mirrored]
    examples = []
    first_of_stratum: dict[str, ClipRecord] = {}
    for r in originals:
        first_of_stratum.setdefault(r.spec.stratum, r)
    by_name = {r.name: r for r in records}
    for stratum in sorted(first_of_stratum):
        r = first_of_stratum[stratum]
        mirror = by_name.get("M" + r.name)
        examples.append({"clip": r.name, "captions": list(r.captions),
                         "mirror": mirror.name if mirror else None,
                         "mirror_captions": list(mirror.captions) if mirror else []})
    return {
        "format_version": 1,
        "settings": {k: v for k, v in dataclasses.asdict(options).items() if k not in ("progress", "overwrite")},
        "sources": list(sources),
        "totals": {
            "takes": len(takes_seen), "clips": len(records), "original_clips": len(originals),
            "mirrored_clips": len(records) - len(originals),
            "minutes": _minutes(sum(r.frames for r in records)),
            "original_minutes": _minutes(sum(r.frames for r in originals)),
            "cut_takes": len({r.spec.clip_id for r in originals if r.window > 0}),
            "padded_clips": sum(1 for r in originals if r.padding > 0),
            "dropped_too_short": len(dropped), "skipped_files": len(skipped),
        },
        "per_split": split_rows,
        "per_dataset": dataset_rows,
        "per_content": content_rows,
        "strata_not_in_test": [s for s, row in content_rows.items() if row["test_takes"] == 0],
        "caption_examples": examples,
        "dropped_too_short": dropped,
        "skipped": skipped,
    }


MAX_LISTED = 10  # skipped takes named one by one in an error message (the report lists them all)


def write_report(out_dir: Path, report: dict) -> None:
    # a file name that is not valid UTF-8 is written with its bytes escaped, never a UnicodeEncodeError at the end
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8",
                                       errors="backslashreplace")
    (out_dir / REPORT_MD).write_text(report_markdown(report), encoding="utf-8", errors="backslashreplace")


def report_markdown(report: dict) -> str:
    totals = report["totals"]
    lines = ["# Prepared dataset", "",
             f"{totals['takes']} takes -> {totals['clips']} clips ({totals['original_clips']} + "
             f"{totals['mirrored_clips']} mirrored), {totals['minutes']} minutes ({totals['original_minutes']} "
             f"before mirroring). Long takes cut into windows: {totals['cut_takes']}; short clips padded: "
             f"{totals['padded_clips']}; dropped as too short: {totals['dropped_too_short']}; skipped files: "
             f"{totals['skipped_files']}. Time: {report.get('elapsed_seconds', '?')} s.", "",
             "## Splits", "", "| split | takes | clips | minutes |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {s} | {v['takes']} | {v['clips']} | {v['minutes']} |" for s, v in report["per_split"].items()]
    if report.get("per_dataset"):
        lines += ["", "## Sources", "", "| dataset | takes | contents | clips | minutes |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {d} | {v['takes']} | {v['contents']} | {v['clips']} | {v['minutes']} |"
                  for d, v in report["per_dataset"].items()]
    lines += ["", "## Contents", "", "| dataset/content | takes | clips | minutes | train | val | test |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c} | {v['takes']} | {v['clips']} | {v['minutes']} | {v['train_takes']} | {v['val_takes']} | "
              f"{v['test_takes']} |" for c, v in report["per_content"].items()]
    if report["strata_not_in_test"]:
        lines += ["", "Not in the test split (too few takes): " + ", ".join(report["strata_not_in_test"])]
    lines += ["", "## Caption examples", ""]
    for example in report["caption_examples"]:
        lines.append(f"- `{example['clip']}`: " + " / ".join(example["captions"]))
        if example["mirror"] and example["mirror_captions"] != example["captions"]:
            lines.append(f"  - mirrored `{example['mirror']}`: " + " / ".join(example["mirror_captions"]))
    if report["skipped"]:
        lines += ["", "## Skipped files", ""]
        for s in report["skipped"]:
            where = f"{s['file']}, line {s['line']}" if s["line"] is not None else s["file"]
            lines.append(f"- {where}: {s['reason']}")
    if report["dropped_too_short"]:
        lines += ["", "## Dropped (shorter than the minimum)", ""]
        lines += [f"- `{d['clip']}`: {d['frames']} frames at 20 fps" for d in report["dropped_too_short"]]
    return "\n".join(lines) + "\n"


def print_summary(report: dict, out_dir: str | Path) -> None:
    totals = report["totals"]
    print(f"prepared {out_dir}: {totals['takes']} takes, {totals['clips']} clips, {totals['minutes']} minutes "
          f"({report.get('elapsed_seconds', '?')} s)")
    for split, row in report["per_split"].items():
        print(f"  {split:5s}: {row['takes']:5d} takes {row['clips']:6d} clips {row['minutes']:8.2f} min")
    for stratum, row in report["per_content"].items():
        print(f"  {stratum:40s} {row['takes']:4d} takes {row['clips']:5d} clips {row['minutes']:7.2f} min "
              f"(train/val/test takes {row['train_takes']}/{row['val_takes']}/{row['test_takes']})")
    for example in report["caption_examples"][:6]:
        print(f"  e.g. {example['clip']}: {example['captions'][0]!r}"
              + (f" | mirror: {example['mirror_captions'][0]!r}" if example["mirror_captions"] else ""))
    print(f"  padded {totals['padded_clips']}, cut takes {totals['cut_takes']}, dropped too short "
          f"{totals['dropped_too_short']}, skipped files {totals['skipped_files']}")
    for s in report["skipped"][:20]:
        where = f"{s['file']}, line {s['line']}" if s["line"] is not None else s["file"]
        print(f"  skipped {where}: {s['reason']}")
    print(f"  report: {Path(out_dir) / REPORT_MD}")
