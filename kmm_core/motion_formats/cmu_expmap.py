# SPDX-License-Identifier: GPL-3.0-or-later
"""CMU motion as exponential-map text (the 8-action subset of Li et al., CVPR 2018) -> `BvhMotion`.

Each line of such a file is one frame at 120 fps: 117 comma-separated numbers = the root position (x, y, z in
CMU's ASF length units, Y up) followed by 38 exponential maps (3 numbers each, radians), one per joint of CMU's
skeleton laid out as `EXPMAP_LAYOUT`: the root, then for each chain the ASF bones in order (a joint sits where its
bone starts, so a joint's rest offset from its parent is the parent bone's rest vector) and an end joint at the end
of each chain.  Joint i's rotation relative to its parent, in the skeleton's global rest axes, is the transpose of
the rotation matrix of its exponential map (the files were written for row-vector kinematics, v' = v @ R).
Frame 0 of these files is usually the rest pose (all root angles exactly zero); `drop_rest_frame` removes it.

The files carry no skeleton, so bone directions and lengths come from an Acclaim skeleton (`AsfSkeleton`) with
CMU's 31 bone names, e.g. one of HDM05's; only the proportions differ from the captured subject's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..acclaim.asf import ROOT, AsfSkeleton
from ..bvh.reader import END_SITE_SUFFIX, BvhMotion, is_number
from ..common.bounded_read import read_text
from ..common.errors import InputFileError
from ..common.limits import MAX_MOTION_TEXT_BYTES
from ..motion.rotations import axis_angle_to_matrix, matrix_to_euler

EXPMAP_FPS = 120.0
_E = END_SITE_SUFFIX
# (joint name, parent index, ASF bone whose rest vector is the joint's offset (None: at the parent's position)).
EXPMAP_LAYOUT: tuple[tuple[str, int, str | None], ...] = (
    (ROOT, -1, None),
    ("lhipjoint", 0, None), ("lfemur", 1, "lhipjoint"), ("ltibia", 2, "lfemur"), ("lfoot", 3, "ltibia"),
    ("ltoes", 4, "lfoot"), ("ltoes" + _E, 5, "ltoes"),
    ("rhipjoint", 0, None), ("rfemur", 7, "rhipjoint"), ("rtibia", 8, "rfemur"), ("rfoot", 9, "rtibia"),
    ("rtoes", 10, "rfoot"), ("rtoes" + _E, 11, "rtoes"),
    ("lowerback", 0, None), ("upperback", 13, "lowerback"), ("thorax", 14, "upperback"),
    ("lowerneck", 15, "thorax"), ("upperneck", 16, "lowerneck"), ("head", 17, "upperneck"), ("head" + _E, 18, "head"),
    ("lclavicle", 15, "thorax"), ("lhumerus", 20, "lclavicle"), ("lradius", 21, "lhumerus"),
    ("lwrist", 22, "lradius"), ("lhand", 23, "lwrist"), ("lfingers", 24, "lhand"), ("lfingers" + _E, 25, "lfingers"),
    ("lthumb", 23, "lwrist"), ("lthumb" + _E, 27, "lthumb"),
    ("rclavicle", 15, "thorax"), ("rhumerus", 29, "rclavicle"), ("rradius", 30, "rhumerus"),
    ("rwrist", 31, "rradius"), ("rhand", 32, "rwrist"), ("rfingers", 33, "rhand"), ("rfingers" + _E, 34, "rfingers"),
    ("rthumb", 32, "rwrist"), ("rthumb" + _E, 36, "rthumb"),
)
VALUES_PER_FRAME = 3 + 3 * len(EXPMAP_LAYOUT)   # 117


def read_expmap_values(text: str, path: str) -> np.ndarray:
    """(T, 117) numbers of an exp-map text file; a short/long row or a non-number names its line."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        words = line.split(",")
        if len(words) != VALUES_PER_FRAME:
            raise InputFileError(path, f"expected {VALUES_PER_FRAME} comma-separated values per frame (root "
                                       f"position + {len(EXPMAP_LAYOUT)} exponential maps), found {len(words)}",
                                 number)
        try:
            row = [float(word) for word in words]
        except ValueError:
            bad = next(w for w in words if not is_number(w))
            raise InputFileError(path, f"{bad.strip()!r} is not a number", number) from None
        if not np.all(np.isfinite(row)):
            raise InputFileError(path, "values must be finite", number)
        rows.append(row)
    if not rows:
        raise InputFileError(path, "no frames")
    return np.asarray(rows, dtype=np.float64)


def expmap_to_bvh_motion(values: np.ndarray, skeleton: AsfSkeleton, path: str, fps: float = EXPMAP_FPS,
                         drop_rest_frame: bool = True) -> BvhMotion:
    """A `BvhMotion` in metres (joints named as in `EXPMAP_LAYOUT`) from (T, 117) exp-map values."""
    missing = sorted({bone for _, _, bone in EXPMAP_LAYOUT if bone} - set(skeleton.bone_names))
    if missing:
        raise InputFileError(skeleton.path, f"the skeleton has no bone {missing[0]!r} (CMU's 31 bone names are "
                                            "needed for exp-map files)")
    if drop_rest_frame and len(values) > 1 and not np.any(values[0, 3:6]):
        values = values[1:]
    scale = skeleton.scale_to_metres
    frames = len(values)
    rotations = axis_angle_to_matrix(values[:, 3:].reshape(frames, len(EXPMAP_LAYOUT), 3))
    local = np.swapaxes(rotations, -1, -2)   # row-vector R -> column-vector R^T
    names, parents, offsets, channels, columns = [], [], [], [], [values[:, :3] * scale]
    for index, (name, parent, bone) in enumerate(EXPMAP_LAYOUT):
        names.append(name)
        parents.append(parent)
        if bone is None:
            offsets.append(np.zeros(3))
        else:
            asf_bone = skeleton.bones[skeleton.bone_index(bone)]
            offsets.append(asf_bone.direction * asf_bone.length * scale)
        if name.endswith(END_SITE_SUFFIX):
            channels.append(())
            continue
        if parent < 0:
            channels.append(("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation"))
        else:
            channels.append(("Zrotation", "Yrotation", "Xrotation"))
        columns.append(np.degrees(matrix_to_euler(local[:, index], "ZYX")))
    return BvhMotion(path=path, names=tuple(names), parents=tuple(parents), offsets=np.array(offsets),
                     channels=tuple(channels), frame_time=1.0 / fps, frames=np.concatenate(columns, axis=1))


def parse_cmu_expmap(text: str, skeleton: AsfSkeleton, path: str = "<string>", fps: float = EXPMAP_FPS,
                     drop_rest_frame: bool = True) -> BvhMotion:
    return expmap_to_bvh_motion(read_expmap_values(text, path), skeleton, path, fps, drop_rest_frame)


def read_cmu_expmap(path: str | Path, skeleton: AsfSkeleton, fps: float = EXPMAP_FPS,
                    drop_rest_frame: bool = True) -> BvhMotion:
    path = Path(path)
    text = read_text(path, "exp-map file", limit=MAX_MOTION_TEXT_BYTES, errors="replace")
    return parse_cmu_expmap(text, skeleton, str(path), fps, drop_rest_frame)
