# SPDX-License-Identifier: GPL-3.0-or-later
"""Every clip of the sources named for what happens in each take (ACCAD Male1, CMU ASF/AMC trials) checked by the
geometric checks its name promises, as ``kmm-train prepare --accad/--cmu-amc`` checks them before trusting a clip
(kmm_core/evaluation/take_checks.py): per clip the first caption, each check with its measured value and threshold,
where it passed, and whether the clip is kept.

Run: ``python benchmarks/check_named_takes.py --accad DIR/accad-male1 --cmu-amc DIR/cmu-140-getup
[--out benchmarks/results/named_take_checks.md]`` (DIR: ``tar xJf ../shared/data/more/more-mocap.tar.xz -C DIR``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.data.named_take_sources import accad_specs, cmu_amc_specs  # noqa: E402
from kmm_core.evaluation.take_checks import check_scan  # noqa: E402


def table(scans) -> list[str]:
    lines = ["| clip | caption (first of 3) | checks: measured / threshold | kept |", "| --- | --- | --- | --- |"]
    kept_count = total = 0
    for scan in scans:
        _, checked = check_scan(scan)
        captions = {spec.clip_id: spec.captions[0] for spec in scan.specs}
        for clip in checked:
            total += 1
            kept_count += clip.trusted
            steps = "; ".join(f"{s.check}{f' ({s.side})' if s.side else ''} {s.result.value:.3g} / "
                              f"{s.result.threshold:.3g} {'pass' if s.result.passed else '**miss**'}"
                              f"{'' if s.where == 'whole take' else f' ({s.where})'}" for s in clip.steps) or \
                "nothing to measure (standing idle)"
            lines.append(f"| {clip.clip_id} | {captions[clip.clip_id]} | {steps} | {'yes' if clip.trusted else 'no'} |")
    return [f"{kept_count} of {total} clips kept.", ""] + lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accad", type=Path, required=True)
    parser.add_argument("--cmu-amc", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "named_take_checks.md")
    args = parser.parse_args()
    lines = ["# Named takes checked before they are trusted", "",
             "`python benchmarks/check_named_takes.py --accad DIR/accad-male1 --cmu-amc DIR/cmu-140-getup` "
             "(kmm_core/evaluation/take_checks.py: a check passes on the whole take or on any 3-s part; a clip "
             "with a failing check is left out of `kmm-train prepare`).", ""]
    lines += table([accad_specs(args.accad), cmu_amc_specs(args.cmu_amc)])
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
