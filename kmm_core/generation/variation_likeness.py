# SPDX-License-Identifier: GPL-3.0-or-later
"""Which variations of one request came out as the same motion to the eye.

Variation v of a request is generated at seed ``seed + v``; for most prompts the seeds give different takes (a walk's
takes 8.5 cm apart in pose on average, `benchmarks/results/seed_variety.md`), but for the calm gestures the model
knows one way to perform (a raised left hand: 1.1 cm, a two-handed wave: 1.6 cm) the takes are nearly one take, and
an animator who asked for four takes to choose from has one.  They are told so, with what does vary the motion (the
wording, or a style: "a person raises the left hand" is 3-7 cm from the same prompt "wearily", "proudly",
"actively" or "like a child" at the same seed), rather than left to find out in the viewport: `alike_variations`
names each variation within `ALIKE_POSE` and `ALIKE_PATH` of an earlier one (`takes_apart`: the pose, the 22
joints each relative to the pelvis, mean distance over joints and frames; the path, the pelvis on the floor from its
start, mean distance over frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALIKE_POSE = 0.02
ALIKE_PATH = 0.05
"""Metres: two takes whose pose is within ``ALIKE_POSE`` and pelvis path within ``ALIKE_PATH`` of each other on
average are the same motion to the eye (about 1% of a body's height: a raised hand's seeds, 0.0-2.0 cm apart in
pose, look alike; a walk's, 8.5 cm apart in pose and 7.7 cm in path on average, do not)."""


@dataclass(frozen=True)
class AlikeVariation:
    """Variation ``variation`` came out as the same motion as the earlier ``like``."""

    variation: int
    like: int
    pose_apart: float  # metres
    path_apart: float  # metres

    def to_dict(self) -> dict[str, float | int]:
        """The worker's ``info.alike`` entry (docs/worker_protocol.md)."""
        return {"variation": self.variation, "like": self.like, "pose_apart_m": round(self.pose_apart, 4),
                "path_apart_m": round(self.path_apart, 4)}

    @classmethod
    def from_dict(cls, data: object) -> AlikeVariation | None:
        """An ``info.alike`` entry as the add-on reads it; None for anything else (a newer or broken worker)."""
        try:
            return cls(int(data["variation"]), int(data["like"]), float(data["pose_apart_m"]),  # type: ignore[index]
                       float(data["path_apart_m"]))  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None


MEASURED_FRAMES = 2000
"""At most this many frames of a take are compared, evenly spaced (a mean over a 10-minute take's 18,000 frames at 30
fps is the same to a fraction of a millimetre over every ninth)."""


def _pose_and_path(take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A take's joints (T, 22, 3) relative to its pelvis, and its pelvis path on the floor from its start, on at most
    `MEASURED_FRAMES` frames."""
    take = np.asarray(take, dtype=np.float32)
    take = take[::max(1, -(-len(take) // MEASURED_FRAMES))]
    return take - take[:, :1], take[:, 0, [0, 2]] - take[0, 0, [0, 2]]


def _apart(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    return (float(np.linalg.norm(first[0] - second[0], axis=-1).mean(dtype=np.float64)),
            float(np.linalg.norm(first[1] - second[1], axis=-1).mean(dtype=np.float64)))


def takes_apart(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """(pose apart, path apart) in metres of two takes' joints (T, 22, 3), y up, of the same length."""
    return _apart(_pose_and_path(first), _pose_and_path(second))


def alike_variations(takes: Sequence[np.ndarray]) -> list[AlikeVariation]:
    """Each variation (after the first) within `ALIKE_POSE` and `ALIKE_PATH` of an earlier one, with the nearest such
    earlier one; [] for a single take.  Each take's pose and path are taken once (64 variations of a 10-minute
    timeline are 2,016 pairs)."""
    if len(takes) < 2:
        return []  # one take, as most requests ask: nothing to compare, nothing measured
    found = []
    measured = [_pose_and_path(take) for take in takes]
    for variation in range(1, len(takes)):
        close = [(pose, path, earlier) for earlier in range(variation)
                 for pose, path in [_apart(measured[earlier], measured[variation])]
                 if pose < ALIKE_POSE and path < ALIKE_PATH]
        if close:
            pose, path, earlier = min(close)
            found.append(AlikeVariation(variation, earlier, pose, path))
    return found


def alike_note(alike: Sequence[AlikeVariation], names: Sequence[str]) -> str | None:
    """The sentence the user reads (the panel, `kmm generate`) about the alike variations among takes ``names``
    (one per variation, in order); None when there are none."""
    alike = [item for item in alike if 0 <= item.like < item.variation < len(names)]
    if not alike:
        return None
    same = "; ".join(f'"{names[item.variation]}" like "{names[item.like]}"' for item in alike)
    return (f"{len(alike)} of the {len(names)} variations came out as the same motion as an earlier one ({same}: "
            f"joints within {ALIKE_POSE * 100:g} cm on average): the model knows one way to perform this timeline. "
            "For different takes, change the wording or add a style such as \"wearily\" or \"like a child\" "
            "(`kmm vocab` lists the styles).")
