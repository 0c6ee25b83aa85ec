# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a tokenizer's feet lose their jerk: real takes of a split encoded and decoded by each bundle's tokenizer,
each body part's jerk (``body_motion.part_jerk``) as the ratio of means to the same real takes, separately for the
takes whose captions stand, move about (walk, run) or do another whole-body move (``body_motion.kind_of``), and over
all of them (as ``kmm-train eval``'s body-part table: the split's foot jerk is mostly its walks', whose real feet
move about 14 times as sharply as a standing body's).

Written for the decoder's stillness term (``[decoder] still_joints``): a term that holds the feet only in standing
takes still lowers the walks' foot jerk when the decoder it trains damps every foot.

Run: ``python benchmarks/measure_tokenizer_feet.py --checkpoint default [BUNDLE ...] --data DATA --split test
[--items 256] [--out benchmarks/results/tokenizer_feet.md]`` (DATA: a folder written by ``kmm-train prepare``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.body_motion import kind_of, part_jerk  # noqa: E402
from kmm_core.evaluation.generated_motions import tokenizer_reconstruction  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import load_items, window_reader  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

KINDS = ("standing", "locomotion", "other", "all")
PARTS = ("left_foot", "right_foot", "pelvis")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", default=["default"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=256, help="the split's first N items (kmm-train eval's order)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "tokenizer_feet.md")
    args = parser.parse_args()
    folder = HumanML3DFolder(args.data)
    items = load_items(folder, EvaluationSettings(split=args.split))[:args.items]
    window = window_reader(folder)
    features = [window(item) for item in items]
    kinds = [kind_of(item.captions) for item in items]
    real = [part_jerk(features_to_joints(f), MODEL_FPS) for f in features]
    chosen = {kind: [n for n, k in enumerate(kinds) if kind in ("all", k)] for kind in KINDS}
    lines = ["# Where the tokenizer's feet lose their jerk", "",
             f"`python benchmarks/measure_tokenizer_feet.py --checkpoint {' '.join(args.checkpoint)} --data {args.data} "
             f"--split {args.split} --items {args.items}`: the split's first {len(items)} real takes encoded and decoded "
             "by each tokenizer; each part's jerk as the ratio of means to the same real takes (1.00 = as real), by "
             "the kind of the takes' captions (" + ", ".join(f"{kind} {len(chosen[kind])}" for kind in KINDS) + ").",
             "", "| tokenizer of | " + " | ".join(f"{kind}: L / R foot, pelvis" for kind in KINDS) + " |",
             "|" + " --- |" * (1 + len(KINDS))]
    for checkpoint in args.checkpoint:
        bundle = ModelBundle.load(resolve_model(checkpoint), device="cpu")
        _errors, _perplexity, decoded = tokenizer_reconstruction(bundle, features)
        made = [part_jerk(joints, MODEL_FPS) for joints in decoded]
        cells = []
        for kind in KINDS:
            ratio = {part: np.mean([made[n][part] for n in chosen[kind]]) / np.mean([real[n][part] for n in chosen[kind]])
                     for part in PARTS}
            cells.append(f"{ratio['left_foot']:.2f} / {ratio['right_foot']:.2f}, {ratio['pelvis']:.2f}")
        lines.append(f"| {checkpoint} | " + " | ".join(cells) + " |")
    real_feet = {kind: np.mean([real[n]["left_foot"] for n in chosen[kind]]) for kind in ("standing", "locomotion")}
    lines += ["", f"Real left-foot jerk (median over frames, mean over takes): standing {real_feet['standing']:.1f}, "
              f"locomotion {real_feet['locomotion']:.1f} m/s^3."]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
