# SPDX-License-Identifier: GPL-3.0-or-later
"""Text of one motion file -> `BvhMotion`, whatever its format (`BvhLocation.format`).

`kmm-train prepare` reads every file's text once (from a folder or an archive) and hands it here with the
skeleton its source scan parsed: ``bvh`` needs none, ``amc`` an `AsfSkeleton`, ``cmu_expmap`` an `AsfSkeleton`
(for the bone geometry), ``deepmimic`` a `DeepMimicCharacter`.
"""

from __future__ import annotations

from ..acclaim.amc import parse_amc
from ..acclaim.asf import AsfSkeleton
from ..acclaim.kinematics import acclaim_to_bvh_motion
from ..bvh.reader import BvhMotion, parse_bvh
from ..common.errors import InputFileError
from ..motion_formats.cmu_expmap import parse_cmu_expmap
from ..motion_formats.deepmimic import DeepMimicCharacter, parse_deepmimic_motion

MOTION_FORMATS = ("bvh", "amc", "cmu_expmap", "deepmimic")
DEEPMIMIC_LOOP_SECONDS = 2.0   # looping DeepMimic clips under half this are repeated to it (run, jog: one stride)


def motion_from_text(text: str, label: str, file_format: str = "bvh", skeleton: object | None = None) -> BvhMotion:
    """Parse `text` (named `label` in errors) as `file_format`; `skeleton` as described in the module docstring."""
    if file_format == "bvh":
        return parse_bvh(text, label)
    if file_format in ("amc", "cmu_expmap"):
        if not isinstance(skeleton, AsfSkeleton):
            raise InputFileError(label, f"a {file_format} file needs an ASF skeleton")
        if file_format == "amc":
            return acclaim_to_bvh_motion(skeleton, parse_amc(text, skeleton, label), path=label)
        return parse_cmu_expmap(text, skeleton, label)
    if file_format == "deepmimic":
        if not isinstance(skeleton, DeepMimicCharacter):
            raise InputFileError(label, "a DeepMimic motion needs its character file")
        return parse_deepmimic_motion(text, skeleton, label, loop_to_seconds=DEEPMIMIC_LOOP_SECONDS)
    raise InputFileError(label, f"unknown motion file format {file_format!r} (known: {', '.join(MOTION_FORMATS)})")
