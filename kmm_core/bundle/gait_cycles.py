# SPDX-License-Identifier: GPL-3.0-or-later
"""A bundle's real gait cycles (``gait_cycles.json`` + ``gait_cycles.safetensors``), torch-free.

One cycle is one stride of a recorded walk or run of the model's own training split, from a left heel strike to
the next (``training/gait_cycle_library.py`` cuts them), resampled to ``phase_samples + 1`` evenly spaced phases
(the last is the next left heel strike) of the HumanML3D feature channels that carry the gait (`CYCLE_CHANNELS`:
the root's speed over the floor and height, the legs' joint positions, the foot contacts).  Beside each: its mean
speed over the floor (m/s), its duration (s), the clip it comes from and the feature frames it spans there (so the
stride the walker took next is known: `GaitCycles.successor`) and the unit sentence embedding of that clip's
captions in the text space the bundle's prompt check uses.  Generation plays them under a generated walk
(``generation/gait_matching.py``)::

    gait_cycles.json         {"format_version": 1, "phase_samples": 24, "channels": [1, 2, 3, 4, ...],
                              "space": "minilm", "clips": ["dataset-2_walk_normal_018_w0", ...],
                              "datasets": {"bandai-namco-2": 1230, ...}}
    gait_cycles.safetensors  samples (N, phase_samples + 1, channels) float16, speed (N,), duration (N,),
                             embeddings (N, E) float16, frames (N, 2) int32

``frames`` (each cycle's first and last feature frame in its clip) may be absent in cycles cut before it was
recorded: no cycle then has a successor.  Both files are covered by ``bundle.json``'s checksums
(``weight_checksums.bundle_file_names``) and verified when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic_write import atomic_path, write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError
from ..humanml3d.feature_smoothing import LEG_JOINTS
from ..humanml3d.features import FOOT_CONTACTS, RIC, ROOT_HEIGHT, ROOT_XZ_VELOCITY
from .weight_checksums import GAIT_CYCLE_FILES

GAIT_CYCLES_JSON, GAIT_CYCLES_WEIGHTS = GAIT_CYCLE_FILES
FORMAT_VERSION = 1
PHASE_SAMPLES = 24
LEG_POSITION_CHANNELS = np.array([RIC.start + 3 * (joint - 1) + axis for joint in LEG_JOINTS for axis in range(3)])
CYCLE_CHANNELS = np.concatenate([np.arange(ROOT_XZ_VELOCITY.start, ROOT_HEIGHT.stop), LEG_POSITION_CHANNELS,
                                 np.arange(FOOT_CONTACTS.start, FOOT_CONTACTS.stop)])
"""Root xz velocity (2), root height (1), the 8 leg joints' root-relative positions (24), the foot contacts (4)."""


@dataclass(frozen=True)
class GaitCycles:
    samples: np.ndarray      # (N, phase_samples + 1, len(CYCLE_CHANNELS)) float64: the channels at each phase
    speed: np.ndarray        # (N,) m/s over the floor, the cycle's mean
    duration: np.ndarray     # (N,) seconds, heel strike to heel strike
    embeddings: np.ndarray   # (N, E) unit sentence embeddings of each cycle's clip's captions
    space: str               # the text space of the embeddings ("minilm" or "aligner")
    clips: tuple[str, ...]   # (N,) the clip each cycle was cut from
    frames: np.ndarray | None = None  # (N, 2) int: each cycle's first and last feature frame in its clip

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @cached_property
    def travel(self) -> np.ndarray:
        """(N, 2) each cycle's mean velocity over the floor (x, z in the facing frame, m per frame)."""
        return self.samples[:, :-1, :2].mean(axis=1)

    @cached_property
    def pelvis_height(self) -> np.ndarray:
        """(N,) each cycle's mean pelvis (root) height over the floor, m: its walker's posture."""
        return self.samples[:, :-1, int(np.flatnonzero(CYCLE_CHANNELS == ROOT_HEIGHT.start)[0])].mean(axis=1)

    @cached_property
    def successor(self) -> np.ndarray:
        """(N,) the cycle the walker took next in the same recording (the same clip, starting on the frame this one
        ends), -1 where none was cut (the walk turned, stopped or stumbled there) or the frames are not recorded."""
        following = np.full(len(self), -1, dtype=np.int64)
        if self.frames is None:
            return following
        starts = {(clip, int(first)): index for index, (clip, (first, _)) in enumerate(zip(self.clips, self.frames,
                                                                                           strict=True))}
        for index, (clip, (_, last)) in enumerate(zip(self.clips, self.frames, strict=True)):
            following[index] = starts.get((clip, int(last)), -1)
        return following


def check_gait_cycles(cycles: GaitCycles, where: str | Path) -> GaitCycles:
    """`cycles` when every array has the shape the format says and holds finite values; InputFileError naming
    `where` and the array otherwise."""
    count = cycles.samples.shape[0] if cycles.samples.ndim == 3 else -1
    expected = {"samples": (count, PHASE_SAMPLES + 1, len(CYCLE_CHANNELS)), "speed": (count,),
                "duration": (count,)}
    for name, shape in expected.items():
        array = getattr(cycles, name)
        if array.shape != shape or count < 1:
            raise InputFileError(where, f"{name} has shape {array.shape}, expected {shape} with at least one cycle")
    if cycles.embeddings.ndim != 2 or cycles.embeddings.shape[0] != count:
        raise InputFileError(where, f"embeddings has shape {cycles.embeddings.shape}, expected ({count}, E)")
    if len(cycles.clips) != count:
        raise InputFileError(where, f"names {len(cycles.clips)} clips for {count} cycles")
    if cycles.frames is not None and (cycles.frames.shape != (count, 2) or np.any(cycles.frames[:, 0] < 0)
                                      or np.any(cycles.frames[:, 1] <= cycles.frames[:, 0])):
        raise InputFileError(where, f"frames must be {count} pairs [first, last] of frames, 0 <= first < last")
    for name in ("samples", "speed", "duration", "embeddings"):
        if not np.all(np.isfinite(getattr(cycles, name))):
            raise InputFileError(where, f"{name} holds NaN or infinite values")
    if np.any(cycles.speed <= 0) or np.any(cycles.duration <= 0):
        raise InputFileError(where, "every cycle's speed and duration must be above 0")
    return cycles


def read_gait_cycles(folder: str | Path) -> GaitCycles | None:
    """The gait cycles of the bundle at `folder`, None when it has none; InputFileError naming the file when they
    are malformed.  The caller verifies the checksums first (``weight_checksums.verify_bundle_files``)."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / GAIT_CYCLES_JSON).is_file():
        return None
    meta = read_json(folder / GAIT_CYCLES_JSON, "gait cycles")
    where = folder / GAIT_CYCLES_JSON
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise InputFileError(where, f"expected an object with format_version {FORMAT_VERSION}")
    if meta.get("phase_samples") != PHASE_SAMPLES or meta.get("channels") != CYCLE_CHANNELS.tolist():
        raise InputFileError(where, f"phase_samples and channels must be {PHASE_SAMPLES} and the format's "
                                    "CYCLE_CHANNELS (cycles cut for another layout)")
    clips = meta.get("clips")
    if not isinstance(clips, list) or not all(isinstance(clip, str) for clip in clips):
        raise InputFileError(where, "clips must be a list of clip names")
    try:
        arrays = load_file(str(folder / GAIT_CYCLES_WEIGHTS))
        cycles = GaitCycles(samples=arrays["samples"].astype(np.float64), speed=arrays["speed"].astype(np.float64),
                            duration=arrays["duration"].astype(np.float64),
                            embeddings=arrays["embeddings"].astype(np.float32), space=str(meta.get("space")),
                            clips=tuple(clips),
                            frames=arrays["frames"].astype(np.int64) if "frames" in arrays else None)
    except (OSError, KeyError, ValueError) as error:
        raise InputFileError(folder / GAIT_CYCLES_WEIGHTS, f"cannot read the gait cycles: {error}") from None
    return check_gait_cycles(cycles, folder / GAIT_CYCLES_WEIGHTS)


def write_gait_cycles(folder: str | Path, cycles: GaitCycles, datasets: dict[str, int]) -> list[Path]:
    """Write both files atomically (a failed write leaves the old ones); the caller re-records the checksums."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    check_gait_cycles(cycles, folder / GAIT_CYCLES_WEIGHTS)
    arrays = {"samples": cycles.samples.astype(np.float16), "speed": cycles.speed.astype(np.float32),
              "duration": cycles.duration.astype(np.float32), "embeddings": cycles.embeddings.astype(np.float16)}
    if cycles.frames is not None:
        arrays["frames"] = cycles.frames.astype(np.int32)
    with atomic_path(folder / GAIT_CYCLES_WEIGHTS) as temporary:
        save_file(arrays, str(temporary))
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "phase_samples": PHASE_SAMPLES,
                            "channels": CYCLE_CHANNELS.tolist(), "space": cycles.space, "datasets": datasets,
                            "clips": list(cycles.clips)}
    write_text_atomic(folder / GAIT_CYCLES_JSON, json.dumps(meta, indent=1) + "\n")
    return [folder / GAIT_CYCLES_WEIGHTS, folder / GAIT_CYCLES_JSON]
