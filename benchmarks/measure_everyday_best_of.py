# SPDX-License-Identifier: GPL-3.0-or-later
"""Would best-of-N sampling re-ranked by the bundle's own aligner perform more everyday actions?  (issue 39)

For each action of ``measure_everyday_actions.EVERYDAY`` asked for (and the left-hand waves, ``wave0``-``wave2``),
each seed s draws N candidates through the product's ``generate_timeline`` (seeds s, s + 1000, ..., the same
timelines and checks as ``measure_everyday_actions.py``; a wave is judged by the directional check), scores each by
the cosine between the aligner's embedding of the prompt and of the candidate's motion (the generator's own
text-motion model, never the evaluator), and reports per action how many seeds pass with the first candidate (what
the product draws today), with the aligner's pick, and with any of the N (the most a re-ranker could reach).

Run from the repository root::

    python benchmarks/measure_everyday_best_of.py --checkpoint default --candidates 4 --seeds 8 \
        --actions carry wave0 punch "get up"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_actions import EVERYDAY, LIE_FRAMES, judge  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.directional import directional_accuracy  # noqa: E402
from kmm_core.evaluation.evaluator import Evaluator  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.humanml3d.features import joints_to_features  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

WAVES = ("a person waves the left hand", "a person waves with the left hand", "a woman waves her left hand")
FRAMES = 100  # 5 s at 20 fps; a wave 4 s


def timeline_of(action: str) -> tuple[str, Timeline, tuple[int, int]]:
    """The prompt, its timeline and the frames the prompt spans (the get-up follows a 3-s "lies down")."""
    if action.startswith("wave"):
        prompt = WAVES[int(action[4:])]
        return prompt, Timeline.from_dict({"fps": MODEL_FPS, "segments": [
            {"prompt": prompt, "start": 1, "end": 80}]}), (0, 80)
    prompt = EVERYDAY[action][0]
    if action == "get up":
        return prompt, Timeline.from_dict({"fps": MODEL_FPS, "segments": [
            {"prompt": EVERYDAY["lie down"][0], "start": 1, "end": LIE_FRAMES},
            {"prompt": prompt, "start": LIE_FRAMES + 1, "end": LIE_FRAMES + FRAMES}]}), (LIE_FRAMES, LIE_FRAMES + FRAMES)
    return prompt, Timeline.from_dict({"fps": MODEL_FPS, "segments": [
        {"prompt": prompt, "start": 1, "end": FRAMES}]}), (0, FRAMES)


def passes(action: str, prompt: str, joints: np.ndarray) -> bool:
    if action.startswith("wave"):
        return directional_accuracy([prompt], [joints], MODEL_FPS).overall_accuracy > 0.5
    return judge(action, joints)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--actions", nargs="+", default=["carry", "wave0", "punch", "get up"],
                        help=f"any of {', '.join(EVERYDAY)}, wave0, wave1, wave2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    scorer = Evaluator(bundle.aligner, bundle.normalizer, Path("."), bundle.device)
    print(f"| action | first candidate | the aligner's pick of {args.candidates} | any of {args.candidates} |")
    print("| --- | --- | --- | --- |")
    for action in args.actions:
        prompt, timeline, (start, stop) = timeline_of(action)
        text = scorer.embed_texts([prompt])[0]
        text /= np.linalg.norm(text)
        first = picked = any_pass = 0
        for seed in range(args.seeds):
            scored = []
            for k in range(args.candidates):
                joints = np.asarray(generate_timeline(bundle, timeline, seed=seed + 1000 * k)[0].joints, np.float64)
                motion = scorer.embed_motions([joints_to_features(joints[start:stop].astype(np.float32))])[0]
                scored.append((float(motion @ text / np.linalg.norm(motion)), passes(action, prompt, joints)))
            first += scored[0][1]
            picked += max(scored)[1]
            any_pass += any(ok for _, ok in scored)
        print(f"| {action} ({prompt}) | {first} of {args.seeds} | {picked} of {args.seeds} | {any_pass} of "
              f"{args.seeds} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
