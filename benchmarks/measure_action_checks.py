# SPDX-License-Identifier: GPL-3.0-or-later
"""Pass rates of the geometric action checks (kmm_core/evaluation/action_checks.py) on every real clip of a prepared
dataset, per dataset/content: the evidence for the thresholds in that module's docstring.

Joints are recovered from each clip's 263-d features (as ``kmm-train eval-actions`` does for real clips); mirrored
copies are left out (they give the same heights).  Prints a Markdown table; ``--out FILE`` also writes it.

Run: ``python benchmarks/measure_action_checks.py --data data/prepared-all [--out benchmarks/results/action_checks.md]``
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmm_core.common.atomic_write import write_text_atomic  # noqa: E402
from kmm_core.data.prepare import read_index  # noqa: E402
from kmm_core.evaluation.action_checks import CHECK_NAMES, checks_for_action, run_check  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402


def measure(data: Path) -> str:
    passes: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in read_index(data):
        if row["mirrored"] != "0":
            continue
        joints = features_to_joints(np.load(data / "new_joint_vecs" / f"{row['name']}.npy").astype(np.float64))
        key = f"{row['dataset']}/{row['content']}"
        for name in CHECK_NAMES:
            passes[key][name].append(run_check(name, joints).passed)
    lines = [f"Real clips of `{data}` (unmirrored) passing each check; **bold**: the check applies to the action word.",
             "", "| dataset/content | clips | " + " | ".join(CHECK_NAMES) + " |",
             "| --- | ---: | " + " | ".join(["---:"] * len(CHECK_NAMES)) + " |"]
    for key in sorted(passes):
        applies = checks_for_action(key.split("/", 1)[1])
        cells = []
        for name in CHECK_NAMES:
            flags = passes[key][name]
            cell = f"{sum(flags)}/{len(flags)}"
            cells.append(f"**{cell}**" if name in applies else cell)
        lines.append(f"| {key} | {len(passes[key][CHECK_NAMES[0]])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder written by kmm-train prepare")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    table = measure(args.data)
    print(table, end="")
    if args.out:
        write_text_atomic(args.out, "# Action checks on real clips\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
