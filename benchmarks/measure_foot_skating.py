# SPDX-License-Identifier: GPL-3.0-or-later
"""What does the foot-skating metric count on generated motion, and what does each step of the clean-up change?

    python benchmarks/measure_foot_skating.py [--bundle kmm_core/checkpoints/kmm-small]
        [--data /work/train/data/prepared-all] [--split test] [--max-samples 128] [--seed 0]
        [--out benchmarks/results/foot_skating.md]

The split's items (the same `--max-samples` draw as ``kmm-train eval``, one caption each, replication `--seed`) are
generated once with the bundle's decoding settings and smoothed as generation does; then every variant of the
clean-up runs on the same motions, and on the real motions of the same items:

* foot skating (``motion_quality.foot_skating``: toes below 2.5 cm moving faster than 0.5 m/s), mean jerk, floor
  penetration and the swing toe's peak height (the highest toe point between two of its contacts, metres);
* where the counted (skating) steps fall: on a held toe, at a contact's first/last frame, within a few frames of a
  contact (lift-off / touch-down), or far from any contact (a foot the detector never held).

Variants: the raw decode; the same made rigid on the T-pose rest skeleton (IK -> FK, what BVH/Blender show without
the clean-up); the former clean-up (contacts below a fixed 0.5 m/s, feet placed where FK puts them, no clearance);
then each change added in turn: sliding stances held, feet kept where the model put them, swing clearance (the
default).  CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.evaluation.motion_quality import (  # noqa: E402
    CONTACT_HEIGHT,
    FOOT_JOINTS,
    SKATING_SPEED,
    floor_penetration,
    foot_skating,
    mean_jerk,
)
from kmm_core.humanml3d.features import FOOT_CONTACTS, features_to_joints  # noqa: E402
from kmm_core.motion.foot_contact import FootLockSettings, clean_foot_contacts, detect_contacts  # noqa: E402
from kmm_core.motion.kinematics import forward_kinematics, inverse_kinematics  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402
from kmm_core.motion.skeleton import tpose_offsets  # noqa: E402
from kmm_core.motion.swing_clearance import swing_gaps  # noqa: E402

TOE_COLUMNS = {FOOT_JOINTS[0]: 1, FOOT_JOINTS[1]: 3}
VARIANTS = {
    "former clean-up (speed limit 0.5 m/s, feet where FK puts them)": FootLockSettings(
        keep_foot_positions=False, swing_clearance=False, relative_speed_limit=0.0),
    "+ sliding stances held (below 0.8x the pelvis' speed)": FootLockSettings(keep_foot_positions=False,
                                                                             swing_clearance=False),
    "+ feet kept where the model put them": FootLockSettings(swing_clearance=False),
    "+ swing clearance = the default": FootLockSettings(),
}


def where_skating(joints: np.ndarray, contacts: np.ndarray, near: int = 4) -> dict[str, int]:
    """Counted skating steps of the toes by where they fall relative to the contacts used."""
    counts = {"toe held": 0, "contact edge": 0, f"within {near} frames of a contact": 0, "far from contacts": 0}
    for joint in FOOT_JOINTS:
        held = contacts[:, TOE_COLUMNS[joint]].astype(bool) if contacts is not None else np.zeros(len(joints), bool)
        height = joints[:, joint, 1]
        grounded = (height[1:] < CONTACT_HEIGHT) & (height[:-1] < CONTACT_HEIGHT)
        speed = np.linalg.norm(np.diff(joints[:, joint, [0, 2]], axis=0), axis=-1) * MODEL_FPS
        held_frames = np.flatnonzero(held)
        for step in np.flatnonzero(grounded & (speed > SKATING_SPEED)):
            if held[step] and held[step + 1]:
                counts["toe held"] += 1
            elif held[step] or held[step + 1]:
                counts["contact edge"] += 1
            elif held_frames.size and np.abs(held_frames - step).min() <= near:
                counts[f"within {near} frames of a contact"] += 1
            else:
                counts["far from contacts"] += 1
    return counts


def swing_peaks(joints: np.ndarray, contacts: np.ndarray) -> list[float]:
    """Peak toe height of every swing (between two contacts of the toe's foot)."""
    peaks = []
    for joint, column in TOE_COLUMNS.items():
        held = contacts[:, column - 1].astype(bool) | contacts[:, column].astype(bool)
        peaks += [float(joints[start:end, joint, 1].max()) for start, end in swing_gaps(held)]
    return peaks


def summary(name: str, motions: list[np.ndarray], contacts: list[np.ndarray]) -> tuple[list[str], dict[str, int]]:
    skating = [foot_skating(m, MODEL_FPS).skating_ratio for m in motions]
    peaks = [p for m, c in zip(motions, contacts, strict=True) for p in swing_peaks(m, c)]
    where: dict[str, int] = {}
    for m, c in zip(motions, contacts, strict=True):
        for key, value in where_skating(m, c).items():
            where[key] = where.get(key, 0) + value
    row = [name, f"{np.mean(skating):.3f}", f"{mean_jerk(motions, MODEL_FPS):.1f}",
           f"{1000 * np.mean([floor_penetration(m).mean_depth for m in motions]):.2f}",
           f"{np.median(peaks):.3f}" if peaks else "–"]
    return row, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--data", default="/work/train/data/prepared-all")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "foot_skating.md")
    args = parser.parse_args(argv)

    import torch

    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.evaluation.generated_motions import generate_features
    from kmm_core.evaluation.settings import EvaluationSettings
    from kmm_core.evaluation.split_data import EvaluationData, choose_captions
    from kmm_core.humanml3d.feature_smoothing import smooth_decoded_features

    torch.set_num_threads(1)
    settings = EvaluationSettings(split=args.split, max_samples=args.max_samples, base_seed=args.seed)
    data = EvaluationData.load(args.data, settings)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    captions = choose_captions(data.items, args.seed)
    features = [smooth_decoded_features(f) for f in
                generate_features(bundle, captions, [item.frames for item in data.items], args.seed)]
    raw = [features_to_joints(f) for f in features]
    channels = [f[:, FOOT_CONTACTS] for f in features]
    offsets = tpose_offsets()
    rigid = [forward_kinematics(*inverse_kinematics(j, offsets), offsets) for j in raw]
    detected = [detect_contacts(j, MODEL_FPS, c) for j, c in zip(raw, channels, strict=True)]

    rows, wheres = [], []
    for name, motions, contacts in (("generated, raw decode", raw, detected),
                                    ("generated, rigid on the T-pose (IK/FK)", rigid, detected)):
        row, where = summary(name, motions, contacts)
        rows.append(row)
        wheres.append((name, where))
    for name, variant in VARIANTS.items():
        cleaned = [clean_foot_contacts(j, MODEL_FPS, c, settings=variant) for j, c in zip(raw, channels, strict=True)]
        row, where = summary(f"generated, {name}", [c.joints for c in cleaned], [c.contacts for c in cleaned])
        rows.append(row)
        wheres.append((f"generated, {name}", where))
    real_contacts = [detect_contacts(j, MODEL_FPS) for j in data.joints]
    row, where = summary("real", data.joints, real_contacts)
    rows.append(row)
    wheres.append(("real", where))
    real_cleaned = [clean_foot_contacts(j, MODEL_FPS) for j in data.joints]
    row, where = summary("real, default clean-up (geometry-only contacts)", [c.joints for c in real_cleaned],
                         [c.contacts for c in real_cleaned])
    rows.append(row)
    wheres.append(("real, default clean-up", where))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    keys = list(wheres[0][1])
    lines = [
        "# Foot skating: what the metric counts, step by step through the clean-up",
        "",
        f"`python benchmarks/measure_foot_skating.py --data {args.data} --split {args.split} --max-samples "
        f"{args.max_samples} --seed {args.seed}` with `{Path(args.bundle).name}`: {len(raw)} items of the split, one "
        f"caption each, generated once at 20 fps (smoothed as generation does); every row measures the same "
        f"motions.  Load average {load:.1f} on {os.cpu_count()} cores (shared machine; no timings here).",
        "",
        "| motion | foot skating ↓ | mean jerk (m/s³) | floor pen. (mm) | median swing toe peak (m) |",
        "| --- | --- | --- | --- | --- |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "Where the counted steps (toe below 2.5 cm at both ends, faster than 0.5 m/s) fall, relative to the "
        "contacts each row's clean-up used (raw and rigid rows: the contacts the detector finds):",
        "",
        "| motion | " + " | ".join(keys) + " |",
        "| --- | " + " | ".join("---" for _ in keys) + " |",
        *(f"| {name} | " + " | ".join(str(where[k]) for k in keys) + " |" for name, where in wheres),
        "",
    ]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
