# SPDX-License-Identifier: GPL-3.0-or-later
"""Does the tokenizer keep what the per-action geometric checks look for?  Real clips vs their reconstruction.

    python benchmarks/measure_tokenizer_actions.py [--bundle kmm_core/checkpoints/kmm-small]
        [--data /work/train/data/prepared-all] [--splits val test] [--out benchmarks/results/tokenizer_actions.md]

Every non-mirrored clip of the splits whose action has a geometric check (jump, squat, lie, crawl, kick:
``evaluation/action_checks.py``) is measured three times: as recorded, after the bundle's tokenizer encodes and
decodes it (all quantizer layers), and after that plus the feature smoothing generation applies.  A check the real
clips pass but their reconstructions fail cannot be passed by any generator on this tokenizer: the generator only
chooses codes, and these are the codes' best rendering of the real motion.  CPU, one torch thread.
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

from kmm_core.evaluation.action_checks import checks_for_action, run_check  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_decoded_features  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402

TOKEN_FRAMES = 4


def reconstruct(bundle, features: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        normalized = torch.from_numpy(bundle.normalizer.normalize(features)).float()[None]
        codes = bundle.tokenizer.encode(normalized)
        decoded = bundle.tokenizer.decode(codes, num_frames=len(features))[0]
    return bundle.normalizer.denormalize(decoded.numpy().astype(np.float64))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--data", type=Path, required=True, help="a prepared dataset folder (kmm-train prepare)")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "tokenizer_actions.md")
    args = parser.parse_args(argv)

    import torch

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(1)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    with open(args.data / "index.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] in args.splits and row["mirrored"] == "0"]
    results: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    for row in rows:
        checks = [check for check in checks_for_action(row["content"]) if check != "side"]
        if not checks:
            continue
        features = np.load(args.data / "new_joint_vecs" / f"{row['name']}.npy").astype(np.float64)
        features = features[:len(features) // TOKEN_FRAMES * TOKEN_FRAMES]
        if len(features) < 4 * TOKEN_FRAMES:
            continue
        rebuilt = reconstruct(bundle, features)
        motions = (features, rebuilt, smooth_decoded_features(rebuilt, DECODED_SMOOTHING_SIGMA))
        for check in checks:
            measured = [run_check(check, features_to_joints(motion)) for motion in motions]
            results.setdefault((row["content"], check), []).append(
                tuple(float(m.passed) for m in measured) + tuple(m.value for m in measured))
    lines = [
        "# Per-action checks on real clips and on their tokenizer reconstructions",
        "",
        f"`python benchmarks/measure_tokenizer_actions.py --data {args.data} --splits {' '.join(args.splits)}` with "
        f"`{Path(args.bundle).name}`: every non-mirrored clip of the splits whose action has a geometric check; "
        "pass rates, and the median measured value (metres for jump clearance and kick height, share of standing "
        "height for squat, degrees for lie, metres for crawl).",
        "",
        "| action | check | clips | pass: real | pass: tokenizer | pass: tokenizer + smoothing | value: real | "
        "value: tokenizer | value: tokenizer + smoothing |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (action, check), values in sorted(results.items()):
        table = np.array(values)
        rates = table[:, :3].mean(axis=0)
        medians = np.median(table[:, 3:], axis=0)
        lines.append(f"| `{action}` | {check} | {len(table)} | {rates[0]:.2f} | {rates[1]:.2f} | {rates[2]:.2f} | "
                     f"{medians[0]:.3f} | {medians[1]:.3f} | {medians[2]:.3f} |")
    lines.append("")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
