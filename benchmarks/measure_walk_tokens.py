# SPDX-License-Identifier: GPL-3.0-or-later
"""Why generated walks lose their rhythm (issue 26): the tokens a real walk is made of against the tokens the
generator picks for a walk prompt, under several sampling settings.

A real walk's first-layer codes cycle through about five tokens per stride (one token = 4 frames = 0.2 s); the
script prints, for real walks of the data's val split and for generated walks:

- the first 30 codes, the number of distinct codes and the share of repeats (a code equal to the one before);
- the gait regularity of the decoded motion (``evaluation/body_motion.py``), real walks about 0.9;
- for the real walks, the generator's teacher-forced accuracy on half of their codes masked (what it has learned of
  a walk's token-to-token transitions) and its marginal over codes with everything masked.

Run from the repository root (``data/prepared-all``: training/runs/kmm-small-all/COMMAND.md)::

    python benchmarks/measure_walk_tokens.py --checkpoint default --data data/prepared-all
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.evaluation.body_motion import gait_regularity
from kmm_core.humanml3d.features import features_to_joints
from kmm_core.model.decoding import decode_tokens
from kmm_core.model.masked_generator import guided_logits
from kmm_core.motion.model_timing import MODEL_FPS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_teacher_forcing import masked_accuracy, real_clip  # noqa: E402  (the same teacher-forced accuracy)

PROMPTS = ("a person walks forward", "a man walks in a straight line", "a woman is walking forward actively",
           "someone walks slowly forward")
SETTINGS = ({}, {"guidance_scale": 2.0}, {"steps": 30}, {"temperature": 1.5}, {"remask_noise": 4.5},
            {"spaced_commits": True})
FRAMES = 120


def _summary(codes: list[int]) -> str:
    repeats = np.mean([a == b for a, b in zip(codes[:-1], codes[1:], strict=True)])
    return f"{len(set(codes))} distinct, repeats {repeats:.2f}"


def _joints(bundle: ModelBundle, codes: torch.Tensor) -> np.ndarray:
    decoded = bundle.tokenizer.decode(codes, num_frames=FRAMES)[0].float().numpy()
    return features_to_joints(bundle.normalizer.denormalize(decoded.astype(np.float64)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--walks", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    generator = bundle.generator
    names = [n for n in (args.data / "val.txt").read_text().split() if n.startswith("dataset-2_walk_")]
    print(f"real walks ({args.data / 'val.txt'})")
    for name in names[:args.walks]:
        features, base, caption, sentence = real_clip(bundle, args.data, name, FRAMES)
        masked = torch.rand(base.shape, generator=torch.Generator().manual_seed(0)) < 0.5
        accuracy = masked_accuracy(bundle, base, sentence, masked)
        with torch.no_grad():
            blank = guided_logits(generator, 1.0, torch.full_like(base, generator.mask_id), sentence=sentence,
                                  cond_per_token=None, token_valid=torch.ones(base.shape, dtype=torch.bool))
        top = blank.softmax(-1)[0].mean(0).topk(5)
        listed = base[0, :30].tolist()
        print(f"  {caption!r}: gait {gait_regularity(features_to_joints(features), MODEL_FPS):.2f}, "
              f"{_summary(listed)}, teacher-forced accuracy (half masked) {accuracy:.2f}, all-masked marginal "
              f"{[(int(i), round(float(p), 3)) for p, i in zip(top.values, top.indices, strict=True)]}\n    {listed}")
    sentence = bundle.prompt_embeddings(list(PROMPTS))
    for change in SETTINGS:
        config = replace(bundle.decoding, **change)
        rng = torch.Generator().manual_seed(0)
        with torch.no_grad():
            result = decode_tokens(generator, [FRAMES] * len(PROMPTS), sentence=sentence, config=config, rng=rng)
        print(f"generated, decoding {change or 'as shipped'} (guidance {config.guidance_scale:g})")
        for row, prompt in enumerate(PROMPTS):
            codes = result.codes[row:row + 1]
            listed = codes[0, :30, 0].tolist()
            print(f"  {prompt!r}: gait {gait_regularity(_joints(bundle, codes), MODEL_FPS):.2f}, {_summary(listed)}"
                  f"\n    {listed}")


if __name__ == "__main__":
    main()
