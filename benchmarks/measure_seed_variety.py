# SPDX-License-Identifier: GPL-3.0-or-later
"""How much a take changes with its seed: what the panel's **Variations** (and a new seed) give an animator.

Each prompt of PROMPTS is generated alone through the product's `generate_timeline` (clean-up on), SECONDS long at
20 fps, seeds 0..N-1; for every pair of seeds: the body's pose apart (the mean distance of the 22 joints, each
relative to the pelvis, frame by frame), the pelvis path apart on the floor (the mean distance of the two paths,
each from its start), and whether the two takes are the same (every joint within 1 mm in every frame).  The
prompts: the README's timeline, standing gestures, walks and whole-body actions, and a compound prompt.

Run: ``python benchmarks/measure_seed_variety.py [--checkpoint default] [--seeds 4]``
"""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.generation.variation_likeness import takes_apart  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SECONDS = 5.0
SAME_METRES = 0.001
PROMPTS = ("a person walks forward", "a person raises the left hand", "a person walks and turns right",
           "a person raises the right hand", "a man waves both hands", "a person waves hello", "a man bows",
           "someone wanders ahead slowly", "a person jogs forward", "a person jumps", "a person dances",
           "someone squats down into a crouch", "a person lies down on the floor",
           "a person walks forward and then waves with the right hand")


def takes(bundle: ModelBundle, prompt: str, seeds: int) -> list[np.ndarray]:
    """(T, 22, 3) joints of `prompt` at seeds 0..seeds-1."""
    frames = int(round(SECONDS * MODEL_FPS))
    timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "start": 1, "end": frames}]})
    return [np.asarray(generate_timeline(bundle, timeline, seed=seed)[0].joints, dtype=np.float64)
            for seed in range(seeds)]


def apart(first: np.ndarray, second: np.ndarray) -> tuple[float, float, bool]:
    """(pose apart, path apart, the same take) of two takes of one prompt (metres; module docstring): the measure
    by which the product names variations that came out alike (`variation_likeness.takes_apart`)."""
    return (*takes_apart(first, second), bool(np.abs(first - second).max() <= SAME_METRES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "seed_variety.md")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        raise SystemExit("--seeds: at least 2 (pairs of seeds are compared)")
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    rows = []
    for prompt in PROMPTS:
        pairs = [apart(a, b) for a, b in combinations(takes(bundle, prompt, args.seeds), 2)]
        pose, path, same = (np.array(column) for column in zip(*pairs, strict=True))
        rows.append(f"| {prompt} | {pose.mean() * 100:.1f} [{pose.min() * 100:.1f}-{pose.max() * 100:.1f}] | "
                    f"{path.mean() * 100:.1f} | {int(same.sum())} of {len(same)} |")
    lines = ["# How much a take changes with its seed", "",
             f"Command: `python benchmarks/measure_seed_variety.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}`.  Each prompt alone, {SECONDS:g} s, seeds 0-{args.seeds - 1}, every pair of seeds "
             "compared: the pose apart (the 22 joints relative to the pelvis, mean over joints and frames), the "
             f"pelvis path apart on the floor (mean over frames), and the pairs that are the same take (every joint "
             f"within {SAME_METRES * 1000:g} mm in every frame).", "",
             "| prompt | pose apart, cm (mean [min-max] over pairs) | path apart, cm | pairs the same take |",
             "| --- | --- | --- | --- |", *rows, ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
