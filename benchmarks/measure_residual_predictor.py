# SPDX-License-Identifier: GPL-3.0-or-later
"""Does the residual-layer predictor (MoMask-style) beat decoding the base quantizer layer alone?

For one bundle, generates the test split's captions twice per seed — once with the residual predictor filling the
residual quantizer layers, once with the base layer only — and measures both against the real motions through the
evaluator (FID, R-precision top-3, MM-Dist), as mean ± 95% CI over seeds. Also reports the tokenizer's own
reconstruction error with 1 layer vs all layers, the ceiling of what the residual layers can add.

    python benchmarks/measure_residual_predictor.py --bundle runs/small/bundle --data data/prepared \
        --max-samples 128 --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.evaluation.bundle_metrics import ReplicationCache, text_motion_metrics
from kmm_core.evaluation.confidence import mean_confidence_interval
from kmm_core.evaluation.evaluator import load_evaluator
from kmm_core.evaluation.generated_motions import generate_features
from kmm_core.evaluation.settings import EvaluationSettings
from kmm_core.evaluation.split_data import EvaluationData
from kmm_core.humanml3d.features import features_to_joints


def tokenizer_mpjpe_mm(bundle: ModelBundle, features: list[np.ndarray], num_layers: int) -> float:
    """Mean per-joint position error (mm, root-relative) after encode/decode with `num_layers` quantizer layers."""
    errors = []
    with torch.no_grad():
        for raw in features:
            x = torch.from_numpy(bundle.normalizer.normalize(raw).astype(np.float32))[None]
            codes = bundle.tokenizer.encode(x, num_layers=num_layers)
            decoded = bundle.tokenizer.decode(codes, num_frames=raw.shape[0])[0].float().numpy()
            joints_real = features_to_joints(raw)
            joints_back = features_to_joints(bundle.normalizer.denormalize(decoded.astype(np.float64)))
            relative_real = joints_real - joints_real[:, :1]
            relative_back = joints_back - joints_back[:, :1]
            errors.append(np.linalg.norm(relative_real - relative_back, axis=-1).mean())
    return float(np.mean(errors) * 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--max-samples", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    settings = EvaluationSettings(max_samples=args.max_samples, replications=args.seeds, max_directional=1)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    data = EvaluationData.load(args.data, settings)
    cache = ReplicationCache(data, load_evaluator(args.bundle), settings)
    frames = [item.frames for item in data.items]
    rows: dict[str, list[dict[str, float]]] = {"residual predictor": [], "base layer only": []}
    seconds = {name: 0.0 for name in rows}
    for seed in settings.seeds:
        captions, text = cache.captions(seed)
        for name, use_residual in (("residual predictor", True), ("base layer only", False)):
            start = time.perf_counter()
            generated = generate_features(bundle, captions, frames, seed, use_residual=use_residual)
            seconds[name] += time.perf_counter() - start
            motion = cache.evaluator.embed_motions(generated)
            rows[name].append(text_motion_metrics(text, motion, cache.real, seed))

    print(f"bundle {args.bundle}, {len(data.items)} test items, seeds {list(settings.seeds)}\n")
    print("| decoding | FID ↓ | R-precision top-3 ↑ | MM-Dist ↓ | generation s |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in rows.items():
        cells = []
        for key in ("fid", "r_precision_top3", "mm_distance"):
            ci = mean_confidence_interval([run[key] for run in runs])
            cells.append(f"{ci.mean:.3f} ± {ci.half_width:.3f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.1f} |")
    layers = bundle.tokenizer.num_quantizers
    print(f"\ntokenizer MPJPE: 1 layer {tokenizer_mpjpe_mm(bundle, data.features, 1):.1f} mm, "
          f"{layers} layers {tokenizer_mpjpe_mm(bundle, data.features, layers):.1f} mm")


if __name__ == "__main__":
    main()
