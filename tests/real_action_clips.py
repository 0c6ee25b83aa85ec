# SPDX-License-Identifier: GPL-3.0-or-later
"""Real clips of named actions for tests: a few HDM05 and DeepMimic takes put through `kmm-train prepare` (as
training and eval-actions see them) and back to joints from their 263-d features, by dataset/content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from kmm_core.data.prepare import read_index
from kmm_core.humanml3d.features import features_to_joints
from kmm_core.training.prepare_command import main as prepare_main

HDM05_CLIPS = ("HDM_bd_hopBothLegs1hops_001_120.amc", "HDM_bd_squat1Reps_001_120.amc",
               "HDM_bd_lieDownFloor_001_120.amc", "HDM_bd_kickLFront1Reps_001_120.amc",
               "HDM_bd_depositFloorR_001_120.amc", "HDM_bd_sneak2StepsLStart_001_120.amc",
               "HDM_bd_jogLeftCircle4StepsRstart_001_120.amc")
DEEPMIMIC_FILES = ("humanoid3d_jump.txt", "humanoid3d_crawl.txt", "humanoid3d_walk.txt", "humanoid3d_kick.txt",
                   "humanoid3d_run.txt", "humanoid3d_backflip.txt", "humanoid3d_getup_faceup.txt",
                   "humanoid3d_roll.txt", "humanoid3d_spin.txt", "humanoid3d_dance_a.txt")


def joints_by_content(folder: Path) -> dict[str, list[np.ndarray]]:
    """dataset/content -> joints of its unmirrored windows (a mirrored window keeps its label, 'walk-turn-left',
    but turns the other way; its captions are the ones mirrored)."""
    clips: dict[str, list[np.ndarray]] = {}
    for row in read_index(folder):
        if row["mirrored"] == "1":
            continue
        features = np.load(folder / "new_joint_vecs" / f"{row['name']}.npy").astype(np.float64)
        clips.setdefault(f"{row['dataset']}/{row['content']}", []).append(features_to_joints(features))
    return clips


def prepared_action_clips(extra_mocap_dir: Path, root: Path) -> dict[str, list[np.ndarray]]:
    """`joints_by_content` of `HDM05_CLIPS` and `DEEPMIMIC_FILES` (from the extracted extra-mocap archive) prepared
    under `root` without mirrors; short clips kept (--min-source-frames 10, as the shipped models' data: a single
    hop lasts under a second)."""
    hdm05 = extra_mocap_dir / "hdm05-subset-jointlearning"
    (root / "hdm05" / "asf").mkdir(parents=True)
    shutil.copyfile(hdm05 / "asf" / "HDM_bd.asf", root / "hdm05" / "asf" / "HDM_bd.asf")
    for name in HDM05_CLIPS:
        (found,) = hdm05.rglob(name)
        target = root / "hdm05" / found.relative_to(hdm05)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)
    deepmimic = extra_mocap_dir / "deepmimic-humanoid3d"
    (root / "deepmimic" / "characters").mkdir(parents=True)
    (root / "deepmimic" / "motions").mkdir()
    shutil.copyfile(deepmimic / "characters" / "humanoid3d.txt", root / "deepmimic" / "characters" / "humanoid3d.txt")
    for name in DEEPMIMIC_FILES:
        shutil.copyfile(deepmimic / "motions" / name, root / "deepmimic" / "motions" / name)
    out = root / "prepared"
    assert prepare_main(["--out", str(out), "--hdm05", str(root / "hdm05"), "--deepmimic", str(root / "deepmimic"),
                         "--no-mirror", "--min-source-frames", "10", "--workers", "1", "--quiet", "--seed", "0"]) == 0
    return joints_by_content(out)
