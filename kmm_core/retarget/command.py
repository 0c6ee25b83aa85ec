# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm retarget`: put a motion on another BVH skeleton (the command line's retargeting, torch-free).

    kmm retarget motion.npz --to their_rig.bvh -o out.bvh [--bone-map map.json] [--save-map map.json]
    kmm retarget clip.bvh --source-map bandai_namco --to their_rig.bvh -o out.bvh

The source is a MotionResult (.npz, as `kmm generate` writes) or a mocap BVH read through a joint map
(`kmm_core/bvh/joint_maps`).  The output keeps the target file's hierarchy, OFFSETs, channel order and frame rate.
The bone map is `--bone-map` when given, else the shipped preset that names the target's bones, else an automatic
map; `--save-map` writes the map used (to fix a row and pass it back with --bone-map).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.atomic_write import check_output_file
from ..common.errors import KMMError


def add_parser(commands) -> None:
    retarget = commands.add_parser("retarget", help="put a motion (.npz or mocap .bvh) on another BVH skeleton")
    retarget.add_argument("source", help="MotionResult .npz, or a .bvh clip (with --source-map)")
    retarget.add_argument("--to", required=True, metavar="RIG.bvh", help="target skeleton (a BVH file)")
    retarget.add_argument("-o", "--output", required=True, metavar="OUT.bvh")
    retarget.add_argument("--bone-map", metavar="MAP.json", help="canonical joint -> target bone map (JSON)")
    retarget.add_argument("--save-map", metavar="MAP.json", help="write the bone map that was used")
    retarget.add_argument("--source-map", default="bandai_namco",
                          help="joint map of a .bvh source: bandai_namco, cmu_daz, cmu_31 or a JSON file")
    retarget.add_argument("--up", default=None, help="the target's up axis (default: its preset's, else +Y)")
    retarget.add_argument("--forward", default=None, help="the way the target faces (default: preset's, else +Z)")
    retarget.add_argument("--no-leg-ik", action="store_true", help="skip the foot-planting leg IK")


def load_source(path: str, source_map: str):
    """A `transfer.SourceMotion` from a MotionResult .npz or a mocap .bvh (read through `source_map`)."""
    from ..bvh import builtin_joint_map, bvh_to_canonical_joints, load_joint_map, read_bvh
    from ..bvh.joint_map import BUILTIN_MAPS
    from ..motion.motion_result import MotionResult
    from .transfer import source_from_motion_result, source_from_positions

    if Path(path).suffix.lower() == ".bvh":
        clip = read_bvh(path)
        joint_map = builtin_joint_map(source_map) if source_map in BUILTIN_MAPS else load_joint_map(source_map)
        return source_from_positions(bvh_to_canonical_joints(clip, joint_map, None), clip.fps)
    return source_from_motion_result(MotionResult.load(path))


def retarget_to_bvh(source_path: str, target_path: str, output: str, bone_map_path: str | None = None,
                    source_map: str = "bandai_namco", up: str | None = None, forward: str | None = None,
                    leg_ik: bool = True, save_map: str | None = None):
    """Retarget the source file onto the target BVH and write `output`; returns (bone map, RetargetedMotion)."""
    from ..bvh import read_bvh
    from .bone_map import best_preset_map, load_bone_map, save_bone_map
    from .bvh_output import resample_source, write_retargeted_bvh
    from .name_matching import auto_bone_map
    from .target_skeleton import bvh_target_skeleton
    from .transfer import retarget

    for written in (output, save_map):  # a file that cannot be written fails now, not after the work
        if written:
            check_output_file(written)
    target = read_bvh(target_path)
    names = tuple(target.names[j] for j in target.joint_indices)
    found = best_preset_map(names)
    settings = found[1].bvh if found else {}
    skeleton = bvh_target_skeleton(target, up or settings.get("up", "+Y"), forward or settings.get("forward", "+Z"),
                                   settings.get("scale_to_metres"))
    if bone_map_path:
        bone_map = load_bone_map(bone_map_path)
    elif found:
        bone_map = found[0]
    else:
        bone_map = auto_bone_map(skeleton.bone_names, skeleton.parents, skeleton.rest_heads_metres(),
                                 str(target_path))
    source = resample_source(load_source(source_path, source_map), target.fps)
    motion = retarget(source, skeleton, bone_map, leg_ik=leg_ik)
    write_retargeted_bvh(output, motion, target)
    if save_map:
        save_bone_map(bone_map, save_map)
    return bone_map, motion


def command_retarget(args: argparse.Namespace) -> int:
    if Path(args.output).suffix.lower() != ".bvh":
        raise KMMError(f"-o {args.output}: the retargeted motion is written as .bvh")
    bone_map, motion = retarget_to_bvh(args.source, args.to, args.output, args.bone_map, args.source_map, args.up,
                                       args.forward, not args.no_leg_ik, args.save_map)
    unmatched = bone_map.unmatched()
    print(f"kmm: {len(motion.heads)} frames at {motion.fps:g} fps on {args.to} (bone map {bone_map.name!r}"
          + (f"; joints without a bone: {', '.join(unmatched)}" if unmatched else "") + f") -> {args.output}")
    return 0
