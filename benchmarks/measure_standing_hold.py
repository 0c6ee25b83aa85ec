# SPDX-License-Identifier: GPL-3.0-or-later
"""How much of a generated standing figure's drift the clean-up's standing hold removes (issue 26), and what two
alternatives would: holding on one joint per foot instead of all four, and smoothing the feet's path over 2
frames instead of 4 (`foot_contact.STANDING_PATH_SIGMA`).

Generated from the first captions of the val split's standing items (captions naming no locomotion or whole-body
move), one seed; drift is the pelvis' mean horizontal speed as a ratio to the same real items', pelvis jerk the
median over frames (m/s^3).  Run from the repository root (``data/prepared-all``: training/runs/kmm-small-all/
COMMAND.md)::

    python benchmarks/measure_standing_hold.py --data data/prepared-all
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import kmm_core.motion.foot_contact as foot_contact
from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.evaluation.body_motion import kind_of, part_jerk, standing_drift
from kmm_core.evaluation.generated_motions import generate_features
from kmm_core.humanml3d.features import FOOT_CONTACTS, features_to_joints
from kmm_core.motion.model_timing import MODEL_FPS


def _standing_items(data: Path, count: int) -> tuple[list[str], list[int], list[np.ndarray]]:
    captions, frames, real = [], [], []
    for name in (data / "val.txt").read_text().split():
        path = data / "new_joint_vecs" / f"{name}.npy"
        if not path.is_file():
            continue
        features = np.load(path)[:196]
        texts = [line.split("#")[0] for line in (data / "texts" / f"{name}.txt").read_text().splitlines() if line]
        if len(features) >= 40 and kind_of(texts) == "standing":
            captions.append(texts[0])
            frames.append(len(features))
            real.append(features_to_joints(features))
        if len(captions) >= count:
            break
    return captions, frames, real


def _per_foot(hold):
    def held(joints, contacts, fps, settings):
        contacts = np.asarray(contacts, dtype=bool)
        both_feet = (contacts[:, 0] | contacts[:, 1]) & (contacts[:, 2] | contacts[:, 3])
        return hold(joints, np.repeat(both_feet[:, None], 4, axis=1), fps, settings)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--items", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(default_bundle_path(), device="cpu")
    captions, frames, real = _standing_items(args.data, args.items)
    features = generate_features(bundle, captions, frames, seed=0)
    raw = [features_to_joints(f) for f in features]
    real_drift = float(np.mean([standing_drift(j, MODEL_FPS) for j in real]))

    def report(name: str, motions: list[np.ndarray]) -> None:
        drift = np.mean([standing_drift(m, MODEL_FPS) for m in motions]) / real_drift
        jerk = np.mean([part_jerk(m, MODEL_FPS)["pelvis"] for m in motions])
        print(f"{name}: drift {drift:.2f}x real, pelvis jerk {jerk:.2f} m/s^3")

    def cleaned() -> list[np.ndarray]:
        settings = foot_contact.FootLockSettings(hold_standing=True)
        return [foot_contact.clean_foot_contacts(j, MODEL_FPS, f[:, FOOT_CONTACTS], settings=settings).joints
                for j, f in zip(raw, features, strict=True)]

    print(f"{len(captions)} standing val items; real drift {real_drift:.4f} m/s, real pelvis jerk "
          f"{np.mean([part_jerk(j, MODEL_FPS)['pelvis'] for j in real]):.2f} m/s^3")
    report("raw output", raw)
    report("shipped hold (all four foot joints held, path smoothed over 4 frames)", cleaned())
    shipped_sigma, shipped_hold = foot_contact.STANDING_PATH_SIGMA, foot_contact.hold_standing
    foot_contact.STANDING_PATH_SIGMA = 2.0
    report("path smoothed over 2 frames", cleaned())
    foot_contact.STANDING_PATH_SIGMA = shipped_sigma
    foot_contact.hold_standing = _per_foot(shipped_hold)
    report("one joint per foot held", cleaned())
    foot_contact.hold_standing = shipped_hold


if __name__ == "__main__":
    main()
