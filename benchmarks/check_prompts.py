# SPDX-License-Identifier: GPL-3.0-or-later
"""Does a model obey the side words of given prompts?  Each prompt is generated alone for several seeds and judged
by the geometric directional check (`kmm_core.evaluation.directional`); prompts without a side-specific intent are
reported as such.

    python benchmarks/check_prompts.py --bundle kmm_core/checkpoints/kmm-small --seeds 4 --seconds 4 \
        "a person waves the left hand" "a person sidesteps to the left"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.evaluation.directional import directional_accuracy, parse_directional_intent
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("--bundle", type=Path, default=default_bundle_path())
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0 .. N-1")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bundle = ModelBundle.load(args.bundle, device="cpu")
    print(f"| prompt | passed ({args.seeds} seeds, {args.seconds:g} s) |\n| --- | --- |")
    for prompt in args.prompts:
        if parse_directional_intent(prompt) is None:
            print(f"| {prompt} | no side-specific intent |")
            continue
        motions = [generate_timeline(bundle, Timeline.single(prompt, args.seconds), seed=seed)[0].joints
                   for seed in range(args.seeds)]
        accuracy = directional_accuracy([prompt] * len(motions), motions, 20.0).overall_accuracy
        print(f"| {prompt} | {accuracy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
