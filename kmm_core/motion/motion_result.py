# SPDX-License-Identifier: GPL-3.0-or-later
"""MotionResult: generated motion as the .npz file that crosses the worker/Blender process boundary.

The layout is the table "MotionResult (.npz)" in docs/architecture.md.  Files hold plain arrays only (no pickled
objects) and are read with `allow_pickle=False`, so opening a result can never run code.  Every problem found while
reading names the file and the key.  NumPy only: the Blender add-on reads these files without torch.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic_write import write_npz_atomic
from ..common.bounded_read import parse_json
from ..common.errors import InputFileError, KMMError, open_npz_archive
from ..common.limits import MAX_FPS, MAX_MOTION_RESULT_BYTES, MAX_PROMPT_CHARS, MIN_FPS
from ..common.prompt_text import prompt_problem
from .resample import (
    resample_positions,
    resample_rotations,
    resampled_frame_count,
    rescale_frame_numbers,
    sample_points,
)
from .rotations import qnormalize
from .skeleton import JOINT_NAMES, NUM_JOINTS, rest_positions, tpose_offsets

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added `foot_lock` and `foot_contacts`; version 1 files still load (as motion without foot locking)."""

_KEYS_V1 = ("format_version", "fps", "joints", "root_translation", "local_rotations", "rest_offsets", "joint_names",
            "segment_frames", "segment_prompts", "timeline_json")
_KEYS = (*_KEYS_V1, "foot_lock", "foot_contacts", "loop_offset")
FOOT_CONTACT_COLUMNS = ("left_ankle", "left_foot", "right_ankle", "right_foot")
MIN_REST_EXTENT_METRES = 0.01  # the rest pose must span at least this (a person spans about 1.7 m)


class MotionResultError(KMMError, ValueError):
    """A MotionResult (in memory or in a file) is invalid: names the file, where known, and the key."""

    def __init__(self, reason: str, *, key: str | None = None, path: object = None):
        self.reason = reason
        self.key = key
        self.path = None if path is None else str(path)
        where = [part for part in (self.path, key) if part is not None]
        super().__init__(": ".join([*where, reason]))


@dataclass(eq=False)
class MotionResult:
    """One generated motion at `fps`, with the timeline segments it was made from. Construction validates."""

    fps: float
    joints: np.ndarray              # (T, 22, 3) float32, world positions, metres, HumanML3D axes
    root_translation: np.ndarray    # (T, 3) float32, world position of the pelvis
    local_rotations: np.ndarray     # (T, 22, 4) float32 (w, x, y, z), relative to the T-pose rest, parent space
    rest_offsets: np.ndarray = field(default_factory=lambda: tpose_offsets().astype(np.float32))  # (22, 3)
    joint_names: tuple[str, ...] = JOINT_NAMES
    segment_frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (S, 2) [start, end)
    segment_prompts: tuple[str, ...] = ()
    timeline_json: str = ""
    foot_lock: bool = False         # True: feet were held on their contacts by kmm_core.motion.foot_contact
    foot_contacts: np.ndarray | None = None  # (T, 4) uint8, 1 = held (FOOT_CONTACT_COLUMNS); None = all 0
    loop_offset: np.ndarray | None = None    # (3,) dx, dz, dyaw from one repetition of a loop to the next; None = 0
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # ---- basic facts -----------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered: frame i stands for the interval [i / fps, (i + 1) / fps)."""
        return self.num_frames / self.fps

    def segment_at(self, frame: int) -> int | None:
        """Index of the timeline segment that contains `frame`, or None outside every segment."""
        for index, (start, end) in enumerate(self.segment_frames):
            if start <= frame < end:
                return index
        return None

    # ---- building ------------------------------------------------------------------------------------------
    @classmethod
    def from_joints(cls, joints: np.ndarray, fps: float, timeline: Any = None,
                    segment_frames: np.ndarray | None = None, prompts: Any = None,
                    rest_offsets: np.ndarray | None = None) -> MotionResult:
        """Complete a motion given as joint positions: bone rotations by inverse kinematics.

        The rotations refer to `rest_offsets`, by default the standard T-pose `skeleton.tpose_offsets()` (every
        result then drives the same armature; forward kinematics lands within a few centimetres of `joints`, see
        kinematics.py). Pass `kinematics.fit_rest_offsets(joints)` for a rest pose with the motion's own bone
        lengths, which reproduces `joints` exactly.  `timeline` (a generation.timeline.Timeline) supplies the
        segments and prompts unless they are given; its length at `fps` must equal the number of frames.
        """
        from .kinematics import inverse_kinematics  # lazy: keeps importing this module cheap

        joints = np.asarray(joints)
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 1:
            raise MotionResultError(f"expected shape (T, {NUM_JOINTS}, 3) with T >= 1, got {joints.shape}",
                                    key="joints")
        timeline_json = ""
        if timeline is not None:
            timeline_json = timeline.to_json()
            if segment_frames is None:
                segment_frames = np.asarray(timeline.segment_ranges(fps), dtype=np.int64)
                if segment_frames[-1, 1] != joints.shape[0]:
                    raise MotionResultError(
                        f"the timeline lasts {segment_frames[-1, 1]} frames at {fps:g} fps but the motion has "
                        f"{joints.shape[0]}", key="segment_frames")
            if prompts is None:
                prompts = timeline.prompts
        if segment_frames is None:
            segment_frames = np.zeros((0, 2), np.int64)
        segment_frames = np.asarray(segment_frames, dtype=np.int64).reshape(-1, 2)
        if prompts is None:
            prompts = ("",) * len(segment_frames)
        offsets = tpose_offsets() if rest_offsets is None else np.asarray(rest_offsets, dtype=np.float64)
        root_translation, local_rotations = inverse_kinematics(joints.astype(np.float64), offsets)
        return cls(fps=fps, joints=joints, root_translation=root_translation, local_rotations=local_rotations,
                   rest_offsets=offsets, segment_frames=segment_frames, segment_prompts=tuple(prompts),
                   timeline_json=timeline_json)

    # ---- resampling ----------------------------------------------------------------------------------------
    def resample(self, fps: float) -> MotionResult:
        """The same motion at another frame rate, keeping its duration T / fps (the rule of ``kmm_core.motion.resample``):
        positions interpolate linearly, rotations by slerp, and segment boundaries are rescaled and rounded, so a
        result made from a timeline and resampled has the frames `Timeline.segment_ranges(fps)` gives."""
        if not _is_positive_number(fps):
            raise MotionResultError(f"must be a positive number, got {fps!r}", key="fps")
        fps = float(fps)
        new_count = resampled_frame_count(self.num_frames, self.fps, fps)
        boundaries = np.minimum(rescale_frame_numbers(self.segment_frames, self.fps, fps), new_count)
        collapsed = np.flatnonzero(boundaries[:, 1] <= boundaries[:, 0])
        if collapsed.size:
            raise MotionResultError(f"at {fps:g} fps segment {int(collapsed[0])} would have no frames",
                                    key="segment_frames")
        before, after, weight = sample_points(self.num_frames, self.fps, fps)
        nearest = np.where(weight < 0.5, before, after)
        return MotionResult(fps=fps, joints=resample_positions(self.joints.astype(np.float64), self.fps, fps),
                            root_translation=resample_positions(self.root_translation.astype(np.float64), self.fps,
                                                                fps),
                            local_rotations=resample_rotations(self.local_rotations, self.fps, fps),
                            rest_offsets=self.rest_offsets, joint_names=self.joint_names, segment_frames=boundaries,
                            segment_prompts=self.segment_prompts, timeline_json=self.timeline_json,
                            foot_lock=self.foot_lock, foot_contacts=self.foot_contacts[nearest],
                            loop_offset=self.loop_offset)

    # ---- files ---------------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Exactly the arrays of the .npz file."""
        return {
            "format_version": np.array(self.format_version, dtype=np.int64),
            "fps": np.array(self.fps, dtype=np.float64),
            "joints": self.joints,
            "root_translation": self.root_translation,
            "local_rotations": self.local_rotations,
            "rest_offsets": self.rest_offsets,
            "joint_names": np.array(self.joint_names, dtype=str),
            "segment_frames": self.segment_frames,
            "segment_prompts": np.array(self.segment_prompts, dtype=str).reshape(-1),
            "timeline_json": np.array(self.timeline_json, dtype=str),
            "foot_lock": np.array(int(self.foot_lock), dtype=np.int64),
            "foot_contacts": self.foot_contacts,
            "loop_offset": self.loop_offset,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (`atomic_write`): a temporary file in the same folder, then a rename, so a reader (Blender
        polling for results) never sees half a file and a full disk never destroys an older file of that name
        (OutputWriteError).  The name is used exactly as given (no ".npz" appended); the mode follows the umask."""
        path = Path(path)
        if not path.parent.is_dir():
            raise MotionResultError("cannot save: the folder does not exist", path=path)
        return write_npz_atomic(path, self.to_arrays())  # checked finite again: the arrays may have changed

    @classmethod
    def load(cls, path: str | Path) -> MotionResult:
        path = Path(path)
        if not path.is_file():
            raise MotionResultError("file not found", path=path)
        archive = open_npz_archive(path, "file", MotionResultError)
        with archive:
            # Each entry inflates to at most its declared size (zipfile stops there), so bounding the declared sizes
            # bounds the memory: a 407 kB zlib bomb declaring 400 MiB is refused before anything is inflated.
            declared = sum(info.file_size for info in archive.zip.infolist())
            if declared > MAX_MOTION_RESULT_BYTES:
                raise MotionResultError(f"its arrays take {declared / 2**20:.0f} MiB once inflated, more than the "
                                        f"{MAX_MOTION_RESULT_BYTES / 2**20:.0f} MiB a motion may take (a damaged "
                                        "or hostile file)", path=path)
            keys = set(archive.files)
            expected = _KEYS if keys & set(_KEYS[len(_KEYS_V1):]) else _KEYS_V1
            missing = [key for key in expected if key not in keys]
            if missing:
                raise MotionResultError(f"missing key(s) {', '.join(missing)}", key=missing[0], path=path)
            unknown = sorted(keys - set(expected))
            if unknown:
                raise MotionResultError(f"unknown key(s) {', '.join(unknown)} for format version {FORMAT_VERSION}",
                                        key=unknown[0], path=path)
            arrays = {}
            for key in expected:
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:  # object arrays need pickle, which we refuse
                    raise MotionResultError(f"cannot be read without pickle ({exc})", key=key, path=path) from None
                except (OSError, zipfile.BadZipFile, EOFError) as exc:
                    raise MotionResultError(f"damaged entry ({exc})", key=key, path=path) from None
                if key == "segment_prompts" and arrays[key].dtype.kind == "U" \
                        and arrays[key].dtype.itemsize // 4 > MAX_PROMPT_CHARS:  # before any string is made
                    raise MotionResultError(f"holds a prompt of {arrays[key].dtype.itemsize // 4} characters; the "
                                            f"limit is {MAX_PROMPT_CHARS}", key=key, path=path)
        version = arrays["format_version"]
        if version.shape != () or version.dtype.kind not in "iu":
            raise MotionResultError(f"must be an integer scalar, got {version.dtype} {version.shape}",
                                    key="format_version", path=path)
        if int(version) not in READABLE_VERSIONS:
            newer = " (written by a newer version: update the package and the add-on)" if version > FORMAT_VERSION else ""
            raise MotionResultError(f"format version {int(version)} is not supported; this reader knows "
                                    f"{', '.join(map(str, READABLE_VERSIONS))}{newer}", key="format_version", path=path)
        if (int(version) >= 2) != (len(expected) == len(_KEYS)):
            raise MotionResultError(f"format version {int(version)} needs the keys {', '.join(_KEYS[len(_KEYS_V1):])} "
                                    f"exactly from version 2 on", key="foot_lock", path=path)
        foot = {}
        if int(version) >= 2:
            lock = arrays["foot_lock"]
            if lock.shape != () or lock.dtype.kind not in "iub" or int(lock) not in (0, 1):
                raise MotionResultError(f"must be the integer 0 or 1, got {lock.dtype} {lock.shape}", key="foot_lock",
                                        path=path)
            foot = {"foot_lock": bool(lock), "foot_contacts": arrays["foot_contacts"],
                    "loop_offset": arrays["loop_offset"]}
        for key in ("fps", "timeline_json"):
            if arrays[key].shape != ():
                raise MotionResultError(f"must be a scalar, got shape {arrays[key].shape}", key=key, path=path)
        if arrays["fps"].dtype.kind not in "iuf":
            raise MotionResultError(f"must be a number, got {arrays['fps'].dtype}", key="fps", path=path)
        for key in ("joint_names", "segment_prompts", "timeline_json"):
            if arrays[key].dtype.kind != "U":
                raise MotionResultError(f"must be unicode text, got {arrays[key].dtype}", key=key, path=path)
        try:
            return cls(fps=float(arrays["fps"]), joints=arrays["joints"], root_translation=arrays["root_translation"],
                       local_rotations=arrays["local_rotations"], rest_offsets=arrays["rest_offsets"],
                       joint_names=tuple(str(name) for name in arrays["joint_names"].reshape(-1)),
                       segment_frames=arrays["segment_frames"],
                       segment_prompts=_strings(arrays["segment_prompts"], "segment_prompts", path),
                       timeline_json=str(arrays["timeline_json"]), **foot)
        except MotionResultError as exc:
            raise MotionResultError(exc.reason, key=exc.key, path=path) from None


# ---- validation ----------------------------------------------------------------------------------------------------
def _is_positive_number(value: object) -> bool:
    return (isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _strings(array: np.ndarray, key: str, path: object) -> tuple[str, ...]:
    if array.ndim != 1:
        raise MotionResultError(f"must be a 1-D list of strings, got shape {array.shape}", key=key, path=path)
    return tuple(str(item) for item in array)


def _float_array(result: MotionResult, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Check kind and shape (None = any length), then store the array as float32."""
    value = np.asarray(getattr(result, key))
    if value.dtype.kind not in "fiu":
        raise MotionResultError(f"must hold numbers, got dtype {value.dtype}", key=key)
    expected = "(" + ", ".join("T" if n is None else str(n) for n in shape) + ")"
    if value.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, value.shape, strict=True)):
        raise MotionResultError(f"expected shape {expected}, got {value.shape}", key=key)
    if not np.all(np.isfinite(value)):
        raise MotionResultError("contains NaN or infinite values", key=key)
    value = value.astype(np.float32, copy=False)
    setattr(result, key, value)
    return value


def _validate(result: MotionResult) -> None:
    if result.format_version != FORMAT_VERSION:
        raise MotionResultError(f"must be {FORMAT_VERSION}, got {result.format_version!r}", key="format_version")
    if not _is_positive_number(result.fps):
        raise MotionResultError(f"must be a positive number, got {result.fps!r}", key="fps")
    if not MIN_FPS <= result.fps <= MAX_FPS:
        raise MotionResultError(f"must be between {MIN_FPS:g} and {MAX_FPS:g} frames per second, got "
                                f"{float(result.fps):g}", key="fps")
    result.fps = float(result.fps)
    joints = _float_array(result, "joints", (None, NUM_JOINTS, 3))
    frames = joints.shape[0]
    if frames < 1:
        raise MotionResultError("has no frames", key="joints")
    for key, shape in (("root_translation", (frames, 3)), ("local_rotations", (frames, NUM_JOINTS, 4)),
                       ("rest_offsets", (NUM_JOINTS, 3))):
        _float_array(result, key, shape)
    rest = rest_positions(result.rest_offsets.astype(np.float64))
    extent = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    if extent < MIN_REST_EXTENT_METRES:  # zero offsets: every joint at the pelvis, no bone to turn
        raise MotionResultError(f"the rest pose's {NUM_JOINTS} joints lie within {extent * 100:.2f} cm of one point "
                                f"(at least {MIN_REST_EXTENT_METRES * 100:g} cm needed: are the offsets all zero?)",
                                key="rest_offsets")
    norms = np.linalg.norm(result.local_rotations, axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-3):
        raise MotionResultError("holds quaternions that are not unit length", key="local_rotations")
    if np.any(np.abs(norms - 1.0) > 1e-6):  # renormalise only beyond float32 rounding, so save/load is exact
        result.local_rotations = qnormalize(result.local_rotations.astype(np.float64)).astype(np.float32)
    if tuple(result.joint_names) != JOINT_NAMES:
        raise MotionResultError(f"must be the {NUM_JOINTS} HumanML3D joint names (skeleton.JOINT_NAMES), got "
                                f"{list(result.joint_names)[:4]}...", key="joint_names")
    result.joint_names = tuple(result.joint_names)
    segments = np.asarray(result.segment_frames)
    if segments.size == 0:
        segments = segments.reshape(0, 2)
    if segments.dtype.kind not in "iu" or segments.ndim != 2 or segments.shape[1] != 2:
        raise MotionResultError(f"must be an (S, 2) integer array, got {segments.dtype} {segments.shape}",
                                key="segment_frames")
    segments = segments.astype(np.int64)
    for index, (start, end) in enumerate(segments):
        if not 0 <= start < end <= frames:
            raise MotionResultError(f"segment {index} covers [{start}, {end}), outside the {frames} frames or empty",
                                    key="segment_frames")
        if index and start < segments[index - 1, 1]:
            raise MotionResultError(f"segment {index} starts at {start}, before segment {index - 1} ends",
                                    key="segment_frames")
    result.segment_frames = segments
    if isinstance(result.segment_prompts, str) or len(result.segment_prompts) != len(segments):
        raise MotionResultError(f"needs one prompt per segment ({len(segments)}), got {len(result.segment_prompts)}",
                                key="segment_prompts")
    if not all(isinstance(prompt, str) for prompt in result.segment_prompts):
        raise MotionResultError("must all be strings", key="segment_prompts")
    for index, prompt in enumerate(result.segment_prompts):
        problem = prompt_problem(prompt)  # the timeline's rule: length, no control characters
        if problem is not None:
            raise MotionResultError(f"segment {index}: {problem}", key="segment_prompts")
    result.segment_prompts = tuple(result.segment_prompts)
    _validate_foot(result, frames)
    if not isinstance(result.timeline_json, str):
        raise MotionResultError(f"must be a string, got {type(result.timeline_json).__name__}", key="timeline_json")
    if result.timeline_json:
        try:  # bounded: nesting capped, as for a timeline file
            parse_json(result.timeline_json, "timeline_json", "timeline", allow_non_finite=True)
        except InputFileError as exc:
            raise MotionResultError(exc.reason, key="timeline_json") from None


def _validate_foot(result: MotionResult, frames: int) -> None:
    if not isinstance(result.foot_lock, bool | np.bool_):
        raise MotionResultError(f"must be True or False, got {result.foot_lock!r}", key="foot_lock")
    result.foot_lock = bool(result.foot_lock)
    if result.foot_contacts is None:
        result.foot_contacts = np.zeros((frames, len(FOOT_CONTACT_COLUMNS)), np.uint8)
    contacts = np.asarray(result.foot_contacts)
    if contacts.shape != (frames, len(FOOT_CONTACT_COLUMNS)) or contacts.dtype.kind not in "biu":
        raise MotionResultError(f"expected an integer array of shape ({frames}, {len(FOOT_CONTACT_COLUMNS)}) "
                                f"(columns {', '.join(FOOT_CONTACT_COLUMNS)}), got {contacts.dtype} {contacts.shape}",
                                key="foot_contacts")
    if np.any((contacts != 0) & (contacts != 1)):
        raise MotionResultError("must hold only 0 and 1", key="foot_contacts")
    result.foot_contacts = contacts.astype(np.uint8)
    offset = np.zeros(3) if result.loop_offset is None else np.asarray(result.loop_offset)
    if offset.shape != (3,) or offset.dtype.kind not in "iuf" or not np.all(np.isfinite(offset)):
        raise MotionResultError(f"must be 3 finite numbers (dx, dz, dyaw), got {offset.dtype} {offset.shape}",
                                key="loop_offset")
    result.loop_offset = offset.astype(np.float64)
