# SPDX-License-Identifier: GPL-3.0-or-later
"""Pass rates of the geometric action checks (kmm_core/evaluation/action_checks.py) on every real clip of a prepared
dataset, per dataset/content: the evidence for the thresholds in that module's docstring.

For each dataset/content: the check its action word gets (``checks_for_action``), how many of its own clips pass it
(side-specific labels: with that side), and how many clips of every OTHER action word pass the same check (with
the action that passes it most often): a check that most other actions also pass says little.  Joints are recovered
from each clip's 263-d features (as ``kmm-train eval-actions`` and ``kmm-train check-words`` measure real clips);
mirrored copies are left out.  Prints a Markdown table; ``--out FILE`` also writes it.

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
from kmm_core.evaluation.action_checks import CHECK_NAMES, checks_for_action, label_side, run_check  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402


def measure(data: Path) -> str:
    clips: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in read_index(data):
        if row["mirrored"] != "0":
            continue
        features = np.load(data / "new_joint_vecs" / f"{row['name']}.npy").astype(np.float64)
        clips[f"{row['dataset']}/{row['content']}"].append(features_to_joints(features))
    # passes[check][content]: unsided results of every clip, for the "other actions" columns
    passes = {name: {key: [run_check(name, joints).passed for joints in motions] for key, motions in clips.items()}
              for name in CHECK_NAMES}
    lines = [f"Real clips of `{data}` (unmirrored).  Own: clips of the action passing its check (a side in the "
             "label: with that side).  Others: clips of every other action word passing the same check (no side), "
             "and the other action passing it most often.", "",
             "| dataset/content | clips | check | own | others | most often passed by |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for key in sorted(clips):
        content = key.split("/", 1)[1]
        (check,) = checks_for_action(content) or ("–",)
        if check == "–":
            lines.append(f"| {key} | {len(clips[key])} | – | – | – | – |")
            continue
        side = label_side(content)
        own = [run_check(check, joints, side=side).passed for joints in clips[key]]
        others = {other: flags for other, flags in passes[check].items() if other.split("/", 1)[1] != content}
        total = sum(len(flags) for flags in others.values())
        passed = sum(sum(flags) for flags in others.values())
        worst = max(others, key=lambda other: (np.mean(others[other]), len(others[other])))
        worst_text = f"{worst} {sum(others[worst])}/{len(others[worst])}" if passed else "–"
        lines.append(f"| {key} | {len(own)} | {check}{f' ({side})' if side else ''} | {sum(own)}/{len(own)} | "
                     f"{passed}/{total} | {worst_text} |")
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
