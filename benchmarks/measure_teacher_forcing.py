# SPDX-License-Identifier: GPL-3.0-or-later
"""How well the generator predicts an action's codes from their neighbours (issue 26): teacher-forced accuracy of
the base layer on real clips of one action, with 15%, 50% and 85% of the codes masked at random, on the train and
the val split.

A model that has learned a walk's token-to-token cycle predicts a masked code from its unmasked neighbours; one that
has not stays near its accuracy with everything masked.  Each clip: its first 196 frames, its first caption, 3 masks
per ratio (seeds 0-2), conditional logits only (guidance 1).

Run from the repository root (``data/prepared-all``: training/runs/kmm-small-all/COMMAND.md)::

    python benchmarks/measure_teacher_forcing.py --checkpoint default --data data/prepared-all --prefix dataset-2_walk_
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.model.masked_generator import guided_logits

RATIOS = (0.15, 0.5, 0.85)


def real_clip(bundle: ModelBundle, data: Path, name: str, frames: int) -> tuple[np.ndarray, torch.Tensor, str,
                                                                               torch.Tensor]:
    """A prepared clip's first ``frames`` features, its base-layer codes (1, L), its first caption and that
    caption's condition."""
    features = np.load(data / "new_joint_vecs" / f"{name}.npy")[:frames]
    normalised = torch.from_numpy(bundle.normalizer.normalize(features).astype(np.float32))[None]
    base = bundle.tokenizer.encode(normalised)[:, :, 0]
    caption = (data / "texts" / f"{name}.txt").read_text().split("#")[0]
    return features, base, caption, bundle.prompt_embeddings([caption])


def masked_accuracy(bundle: ModelBundle, base: torch.Tensor, sentence: torch.Tensor, masked: torch.Tensor) -> float:
    """The share of the ``masked`` codes of ``base`` (1, L) the generator predicts from the others (guidance 1)."""
    generator = bundle.generator
    with torch.no_grad():
        logits = guided_logits(generator, 1.0, base.masked_fill(masked, generator.mask_id), sentence=sentence,
                               cond_per_token=None, token_valid=torch.ones(base.shape, dtype=torch.bool))
    return float((logits.argmax(-1)[masked] == base[masked]).float().mean())


def split_accuracy(bundle: ModelBundle, data: Path, split: str, prefix: str, clips: int) -> tuple[int, dict]:
    """(clips used, {mask ratio: mean accuracy over clips and masks}) of ``split``'s clips named ``prefix*``."""
    names = [n for n in (data / f"{split}.txt").read_text().split() if n.startswith(prefix)][:clips]
    accuracies: dict[float, list[float]] = {ratio: [] for ratio in RATIOS}
    for name in names:
        _, base, _, sentence = real_clip(bundle, data, name, 196)
        for ratio in RATIOS:
            for seed in range(3):
                masked = torch.rand(base.shape, generator=torch.Generator().manual_seed(seed)) < ratio
                if masked.any():
                    accuracies[ratio].append(masked_accuracy(bundle, base, sentence, masked))
    return len(names), {ratio: float(np.mean(values)) if values else float("nan")
                        for ratio, values in accuracies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prefix", default="dataset-2_walk_", help="clip names to read (an action's clips)")
    parser.add_argument("--clips", type=int, default=24, help="at most this many clips per split")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    print(f"teacher-forced base-layer accuracy, {args.checkpoint}, clips {args.prefix}*")
    for split in ("train", "val"):
        count, accuracy = split_accuracy(bundle, args.data, split, args.prefix, args.clips)
        cells = ", ".join(f"{int(ratio * 100)}% masked {value:.3f}" for ratio, value in accuracy.items())
        print(f"  {split} ({count} clips): {cells}")


if __name__ == "__main__":
    main()
