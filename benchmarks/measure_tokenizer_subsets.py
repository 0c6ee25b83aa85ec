# SPDX-License-Identifier: GPL-3.0-or-later
"""Does the tokenizer alone shake a calm standing body?  Real takes of the animator's subsets
(kmm_core/evaluation/animator_subsets.py: the split's normal-style waves and raised hands, and its plain walks),
encoded and decoded by a bundle's tokenizer as generation decodes codes (``ModelBundle.codes_to_features``), then
measured against the same real takes: pelvis and head jerk, drift (standing), stride regularity, pelvis bob and foot
swing (walking).

Each measure twice: the ratio of means (reconstructed mean / real mean over the subset, as ``kmm-train eval``
reports it) and the median over takes of each take's own ratio; and at two stages: the decoder's output, and after
generation's Gaussian smoothing of decoded features (``feature_smoothing.DECODED_SMOOTHING_SIGMA``).

Run: ``python benchmarks/measure_tokenizer_subsets.py --checkpoint default --data DATA --split test
[--out benchmarks/results/tokenizer_subsets.md]`` (DATA: a folder written by ``kmm-train prepare`` with the
Bandai-Namco source, e.g. the default recipe's data/prepared-all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.generated_motions import tokenizer_reconstruction  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import load_items, window_reader  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_decoded_features  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SUBSET_MEASURES = {"calm_standing": ("jerk_pelvis", "jerk_head", "drift"),
                   "walking": ("jerk_pelvis", "jerk_head", "stride_regularity", "pelvis_bob", "foot_swing")}


def per_take(joints: list[np.ndarray], subset: str) -> dict[str, np.ndarray]:
    """Each measure of each take on its own."""
    rows = [animator_subsets.measures([j], MODEL_FPS, subset) for j in joints]
    return {m: np.array([row[m] for row in rows]) for m in SUBSET_MEASURES[subset]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "tokenizer_subsets.md")
    args = parser.parse_args()
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    folder = HumanML3DFolder(args.data)
    items = load_items(folder, EvaluationSettings(split=args.split))
    window = window_reader(folder)
    lines = ["# The tokenizer alone on the animator's subsets", "",
             f"`python benchmarks/measure_tokenizer_subsets.py --checkpoint {args.checkpoint} --data {args.data} "
             f"--split {args.split}`: real takes encoded and decoded by the tokenizer of `{args.checkpoint}` against "
             "the same real takes; ratio of means (as `kmm-train eval`) / median of per-take ratios.", ""]
    for subset, chosen in animator_subsets.select(items, limit=None).items():
        if not chosen:
            lines += [f"No {subset} items in the split.", ""]
            continue
        features = [window(item) for item in chosen]
        real = [features_to_joints(f) for f in features]
        errors, _perplexity, decoded = tokenizer_reconstruction(bundle, features)
        # the same codes' features smoothed as generation smooths them
        smoothed = []
        for item_features in features:
            normalised = torch.from_numpy(bundle.normalizer.normalize(item_features).astype(np.float32))[None]
            with torch.no_grad():
                codes = bundle.tokenizer.encode(normalised)
            smoothed.append(features_to_joints(smooth_decoded_features(
                bundle.codes_to_features(codes, item_features.shape[0]), DECODED_SMOOTHING_SIGMA)))
        real_takes = per_take(real, subset)
        names = sorted({item.content for item in chosen})
        lines += [f"## {animator_subsets.SUBSET_TITLES[subset]}: {len(chosen)} takes ({', '.join(names)}), "
                  f"tokenizer MPJPE {np.mean(errors):.1f} mm", "",
                  "| stage | " + " | ".join(SUBSET_MEASURES[subset]) + " |",
                  "|" + " --- |" * (1 + len(SUBSET_MEASURES[subset]))]
        for stage, joints in (("decoder output", decoded), (f"smoothed ({DECODED_SMOOTHING_SIGMA:g} frame)", smoothed)):
            takes = per_take(joints, subset)
            cells = [f"{takes[m].mean() / real_takes[m].mean():.2f} / {np.median(takes[m] / real_takes[m]):.2f}"
                     for m in SUBSET_MEASURES[subset]]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        if subset == "calm_standing":   # which takes shake most (decoder output, ratio of means / median)
            takes = per_take(decoded, subset)
            groups = {"waves": [i.content.startswith("wave") for i in chosen],
                      "raised hands": [i.content.startswith("raise") for i in chosen],
                      "one hand": ["both" not in i.content for i in chosen],
                      "unmirrored": [not i.name.startswith("M") for i in chosen]}
            lines += ["", "| calm takes (decoder output) | takes | jerk_pelvis | jerk_head |", "| --- | --- | --- | --- |"]
            for group, chosen_flags in groups.items():
                flags = np.array(chosen_flags)
                cells = [f"{takes[m][flags].mean() / real_takes[m][flags].mean():.2f} / "
                         f"{np.median(takes[m][flags] / real_takes[m][flags]):.2f}" for m in ("jerk_pelvis", "jerk_head")]
                lines.append(f"| {group} | {int(flags.sum())} | " + " | ".join(cells) + " |")
        lines.append("")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
