# SPDX-License-Identifier: GPL-3.0-or-later
"""Acclaim ASF/AMC motion capture (CMU's and HDM05's native format), torch-free.

`read_asf` -> `AsfSkeleton`; `read_amc(path, skeleton)` -> `AmcMotion`; `forward_kinematics` gives bone positions;
`acclaim_to_bvh_motion` turns the pair into a `BvhMotion` in metres for joint maps and `kmm-train prepare`.
"""

from .amc import ACCLAIM_FPS, AmcMotion, parse_amc, read_amc
from .asf import AsfBone, AsfSkeleton, parse_asf, read_asf
from .kinematics import AcclaimPose, acclaim_to_bvh_motion, applied_rotation, forward_kinematics

__all__ = ["ACCLAIM_FPS", "AcclaimPose", "AmcMotion", "AsfBone", "AsfSkeleton", "acclaim_to_bvh_motion",
           "applied_rotation", "forward_kinematics", "parse_amc", "parse_asf", "read_amc", "read_asf"]
