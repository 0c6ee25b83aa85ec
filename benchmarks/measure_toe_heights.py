# SPDX-License-Identifier: GPL-3.0-or-later
"""How high real toes are while they move fast: the reference for `swing_clearance.SCUFF_CLEARANCE`.

    python benchmarks/measure_toe_heights.py --data /work/train/data/prepared-all [--split test]
        [--out benchmarks/results/toe_heights.md]

Every non-mirrored clip of the split (canonical HumanML3D joints at 20 fps), both toe joints: each frame's height
above that toe's 5th-percentile height in the clip, binned by the toe's horizontal speed (central differences, as
`foot_contact.horizontal_speed`).  Reported per speed bin: frames, height percentiles and the share below 2.5 cm (the
height under which the foot-skating metric counts a toe as on the floor).  NumPy only.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.evaluation.motion_quality import CONTACT_HEIGHT, FOOT_JOINTS  # noqa: E402
from kmm_core.motion.foot_contact import horizontal_speed  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SPEED_BINS = ((0.3, 0.5), (0.5, 0.7), (0.7, 1.0), (1.0, np.inf))
PERCENTILES = (5, 10, 25, 50)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared dataset folder (kmm-train prepare)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "toe_heights.md")
    args = parser.parse_args(argv)

    with open(args.data / "index.csv", newline="", encoding="utf-8") as handle:
        names = [row["name"] for row in csv.DictReader(handle) if row["split"] == args.split and row["mirrored"] == "0"]
    if not names:
        parser.error(f"{args.data / 'index.csv'}: no non-mirrored clip in split {args.split!r}")
    heights: dict[tuple[float, float], list[np.ndarray]] = {edges: [] for edges in SPEED_BINS}
    for name in names:
        joints = np.load(args.data / "new_joints" / f"{name}.npy").astype(np.float64)
        speed = horizontal_speed(joints, MODEL_FPS)
        for toe in FOOT_JOINTS:
            height = joints[:, toe, 1] - np.percentile(joints[:, toe, 1], 5)
            for low, high in SPEED_BINS:
                heights[(low, high)].append(height[(speed[:, toe] >= low) & (speed[:, toe] < high)])

    lines = ["# Real toe heights by speed", "",
             f"`python benchmarks/measure_toe_heights.py --data {args.data} --split {args.split}`: {len(names)} "
             f"non-mirrored clips, both toes, height above each toe's 5th percentile in its clip (cm).", "",
             "| toe speed (m/s) | frames | " + " | ".join(f"p{p}" for p in PERCENTILES)
             + f" | share below {CONTACT_HEIGHT * 100:.1f} cm |",
             "| --- | ---: | " + " | ".join("---:" for _ in PERCENTILES) + " | ---: |"]
    for (low, high), parts in heights.items():
        values = np.concatenate(parts)
        label = f"{low}-{high}" if np.isfinite(high) else f"> {low}"
        cells = " | ".join(f"{v * 100:.1f}" for v in np.percentile(values, PERCENTILES)) if values.size else "–"
        share = f"{np.mean(values < CONTACT_HEIGHT):.2f}" if values.size else "–"
        lines.append(f"| {label} | {values.size} | {cells} | {share} |")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
