# SPDX-License-Identifier: GPL-3.0-or-later
"""Where does the retargeting error come from?  On the real BVH rigs (Bandai-Namco, CMU 31-joint, CMU Daz 43-joint,
Character Creator), for a generated take and a real Bandai-Namco walk:

    python benchmarks/measure_retarget_error.py --take take.npz
        [--shared ../shared/data] [--out benchmarks/results/retarget_error.md]

(take.npz: `kmm generate "a person walks forward and then waves with the right hand" --seconds 6 --seed 3
-o take.npz`, the take of tests/test_blender_retarget.py.)  Per rig and motion, as % of the body height
(`kmm_core/retarget/quality.py`):

* the issue's mean joint error, and the same over the limb joints and over the torso + head joints;
* proportions alone (the source's rest pose standing still on the rig) and the proportion-neutral reference (the
  source's rotations re-played on the rig's bone lengths) with the rig's distance from that reference;
* the neck and head errors split into their radial part (how much farther or nearer the pelvis they are: torso
  length) and the angle between the rig's and the source's pelvis -> joint directions (what aiming a chain by
  direction could still fix);
* a bound for the pelvis placement: the error left after the best per-frame translation of the whole rig pose (no
  pelvis rule can do better than moving everything rigidly).

Only NumPy work (no torch, no Blender); the BVH files are read straight from the archives.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints  # noqa: E402
from kmm_core.bvh.reader import parse_bvh  # noqa: E402
from kmm_core.motion import skeleton  # noqa: E402
from kmm_core.motion.motion_result import MotionResult  # noqa: E402
from kmm_core.retarget.bone_map import best_preset_map  # noqa: E402
from kmm_core.retarget.bvh_output import resample_source  # noqa: E402
from kmm_core.retarget.quality import mean_error_fraction, measure, proportion_neutral_reference  # noqa: E402
from kmm_core.retarget.target_skeleton import bvh_target_skeleton  # noqa: E402
from kmm_core.retarget.transfer import (  # noqa: E402
    SourceMotion,
    retarget,
    source_from_motion_result,
    source_from_positions,
)

RIGS = {  # rig -> (archive below --shared, member path suffix)
    "bandai_namco": ("bandai-namco/bandai-namco-bvh.tar.xz", "dataset-1_walk_normal_001.bvh"),
    "cmu_31": ("cmu/cmu-bvh.tar.xz", "data/16/16_01.bvh"),
    "cmu_daz": ("cmu/cmu-bvh.tar.xz", "data/02/02_01.bvh"),
    "character_creator": ("extra/extra-mocap.tar.xz", "cmu-iclone-dragonforged/bvh/All_BVH/subjects/002/002_01.bvh"),
}
LIMBS = [j for j, name in enumerate(skeleton.JOINT_NAMES)
         if any(part in name for part in ("hip", "knee", "ankle", "foot", "shoulder", "elbow", "wrist"))]
TORSO = [j for j in range(skeleton.NUM_JOINTS) if j not in LIMBS]


def read_members(shared: Path) -> dict[str, object]:
    wanted: dict[str, list[tuple[str, str]]] = {}
    for rig, (archive, suffix) in RIGS.items():
        wanted.setdefault(archive, []).append((rig, suffix))
    clips = {}
    for archive, items in wanted.items():
        with tarfile.open(shared / archive, "r|*") as stream:
            for member in stream:
                for rig, suffix in items:
                    if member.isfile() and member.name.endswith(suffix) and rig not in clips:
                        text = stream.extractfile(member).read().decode("utf-8", errors="replace")
                        clips[rig] = parse_bvh(text, member.name)
                if all(rig in clips for rig, _ in items):
                    break
    return clips


def still(source: SourceMotion) -> SourceMotion:
    rest = source.rest_positions[None] + np.array([0.0, 1.0, 0.0])
    return SourceMotion(positions=np.repeat(rest, 2, axis=0), rest_positions=source.rest_positions, fps=30.0,
                        global_rotations=np.broadcast_to(np.eye(3), (2, skeleton.NUM_JOINTS, 3, 3)).copy())


def quality(motion, source):
    return measure(motion.joint_points(), source.positions, motion.plan.scale, source.rest_positions,
                   motion.local_rotations()[:, motion.driven_bones()], source.fps)


def analyse(rig: str, clip, source: SourceMotion, motion_name: str) -> dict:
    names = tuple(clip.names[j] for j in clip.joint_indices)
    bone_map, preset = best_preset_map(names)
    target = bvh_target_skeleton(clip, scale_to_metres=preset.bvh.get("scale_to_metres"))
    motion = retarget(source, target, bone_map)
    measured = quality(motion, source)
    standing = still(source)
    floor = quality(retarget(standing, target, bone_map), standing).mean_error_fraction
    points, scaled, height = motion.joint_points(), source.positions * motion.plan.scale, measured.height
    rest_points = motion.plan.rest_points()
    rig_rest = np.array([rest_points.get(j, [np.nan] * 3) for j in range(skeleton.NUM_JOINTS)])
    reference = proportion_neutral_reference(source.positions, source.global_rotations, source.rest_positions,
                                             rig_rest, motion.plan.scale)
    reference = np.where(np.isnan(points), np.nan, reference)
    error = np.linalg.norm(points - scaled, axis=-1)
    matched = ~np.isnan(error[0])
    row = {"rig": rig, "motion": motion_name, "error": measured.mean_error_fraction, "floor": floor,
           "reference": mean_error_fraction(reference, scaled, height),
           "vs_reference": mean_error_fraction(points, reference, height),
           "limbs": error[:, [j for j in LIMBS if matched[j]]].mean() / height,
           "torso": error[:, [j for j in TORSO if matched[j]]].mean() / height}
    for name in ("neck", "head"):
        joint = skeleton.JOINT_INDEX[name]
        on_rig, wanted = points[:, joint] - points[:, 0], scaled[:, joint] - scaled[:, 0]
        radial = np.abs(np.linalg.norm(on_rig, axis=-1) - np.linalg.norm(wanted, axis=-1)).mean() / height
        cosine = np.sum(on_rig * wanted, -1) / np.linalg.norm(on_rig, axis=-1) / np.linalg.norm(wanted, axis=-1)
        row[f"{name}_error"] = error[:, joint].mean() / height
        row[f"{name}_radial"] = radial
        row[f"{name}_angle"] = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).mean())
    shift = (scaled[:, matched] - points[:, matched]).mean(axis=1, keepdims=True)
    row["rigid_bound"] = np.linalg.norm(points[:, matched] + shift - scaled[:, matched], axis=-1).mean() / height
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--take", required=True, help="a generated MotionResult .npz")
    parser.add_argument("--shared", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "retarget_error.md"))
    args = parser.parse_args(argv)
    clips = read_members(Path(args.shared))
    generated = resample_source(source_from_motion_result(MotionResult.load(args.take)), 30.0)
    walk = clips["bandai_namco"]
    joints = bvh_to_canonical_joints(walk, builtin_joint_map("bandai_namco"), None)
    mocap = resample_source(source_from_positions(joints, walk.fps), 30.0)
    rows = [analyse(rig, clips[rig], source, name) for rig in RIGS
            for name, source in (("generated", generated), ("mocap", mocap))]

    def pct(value):
        return f"{value * 100:.2f}"

    lines = ["# Where the retargeting error comes from", "",
             "`python benchmarks/measure_retarget_error.py --take take.npz` (take: `kmm generate \"a person walks "
             "forward and then waves with the right hand\" --seconds 6 --seed 3`; mocap: Bandai-Namco "
             "`dataset-1_walk_normal_001.bvh`).  All numbers % of the body height except the angles; quality only "
             "(no timings), so the load of the shared machine does not change them.  Radial: the mean difference "
             "of the joint's distance from the pelvis (rig vs scaled source; the pelvis points themselves differ a "
             "little, so it can exceed the joint's error); angle: between the two pelvis -> joint directions.", "",
             "| rig | motion | mean joint error | limbs | torso + head | proportions alone | proportion-neutral "
             "reference | rig vs reference | best rigid shift (bound) | neck error / radial / angle | "
             "head error / radial / angle |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['rig']} | {row['motion']} | {pct(row['error'])} | {pct(row['limbs'])} | {pct(row['torso'])} | "
            f"{pct(row['floor'])} | {pct(row['reference'])} | {pct(row['vs_reference'])} | "
            f"{pct(row['rigid_bound'])} | {pct(row['neck_error'])} / {pct(row['neck_radial'])} / "
            f"{row['neck_angle']:.1f} deg | {pct(row['head_error'])} / {pct(row['head_radial'])} / "
            f"{row['head_angle']:.1f} deg |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
