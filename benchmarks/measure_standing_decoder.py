# SPDX-License-Identifier: GPL-3.0-or-later
"""What a bundle's standing decoder changes, body part by body part: the calm-standing subset of a split (normal-style
waves and raised hands, ``animator_subsets``) generated as ``kmm-train eval`` generates it (the product's smoothing
and foot clean-up), each part's jerk and the drift as ratios to the same real items; and how high a raised hand goes
(the wrist above the shoulder line, ``action_checks.hand_height``: the `hand_high` check passes at 0.10 m) for the
training phrasings of "raise the right / left hand".

Three ways of decoding the same codes of the same bundle:

- ``without``: the tokenizer's decoder alone with the library's standing-root smoothing (2 frames): the default
  before it had a standing decoder;
- ``whole body``: the standing decoder decodes every channel of standing frames;
- ``as shipped``: the standing decoder decodes the root, legs, feet and torso (``STANDING_DECODER_CHANNELS``), the
  arms stay the tokenizer decoder's.

Run: ``python benchmarks/measure_standing_decoder.py --checkpoint default --data DATA --split test [--items 32]
[--seeds 2] [--out benchmarks/results/standing_decoder.md]`` (DATA: a folder written by ``kmm-train prepare``).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle import model_bundle  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.action_checks import hand_height  # noqa: E402
from kmm_core.evaluation.body_motion import standing_drift  # noqa: E402
from kmm_core.evaluation.generated_motions import generate_features, generated_joints  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import choose_captions, load_items, window_reader  # noqa: E402
from kmm_core.generation.prompt_kinds import prompt_kinds  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import STANDING_ROOT_SIGMA, smooth_generated_features  # noqa: E402
from kmm_core.humanml3d.features import FEATURE_DIM, features_to_joints  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PARTS = ("pelvis", "head", "left_foot", "right_foot", "left_wrist", "right_wrist")
RAISE_PROMPTS = (("right", "a person raises the right hand"), ("right", "a person raises the right hand wearily"),
                 ("right", "a person raises up the right hand in a normal way"),
                 ("left", "a person raises the left hand"), ("left", "a person raises the left hand wearily"))
RAISE_FRAMES = 80


@contextmanager
def decoding(bundle: ModelBundle, way: str):
    """The bundle decoding one of the three ways (module docstring); restored afterwards."""
    standing, decoding_config = bundle.standing_tokenizer, bundle.decoding
    channels = model_bundle.STANDING_DECODER_CHANNELS
    try:
        if way == "without":
            bundle.standing_tokenizer = None
            bundle.decoding = replace(decoding_config, standing_root_sigma=STANDING_ROOT_SIGMA)
        elif way == "whole body":
            model_bundle.STANDING_DECODER_CHANNELS = np.arange(FEATURE_DIM)
        yield bundle
    finally:
        bundle.standing_tokenizer, bundle.decoding = standing, decoding_config
        model_bundle.STANDING_DECODER_CHANNELS = channels


def generated(bundle: ModelBundle, prompts: list[str], frames: list[int], seed: int,
              foot_lock: bool = True) -> list[np.ndarray]:
    """Joints as `kmm-train eval` makes them: decoded, smoothed (standing prompts' root too), cleaned (unless not
    `foot_lock`)."""
    sigma = bundle.decoding.standing_root_sigma
    features = [smooth_generated_features(f, kind, standing_sigma=sigma) for f, kind in
                zip(generate_features(bundle, prompts, frames, seed), prompt_kinds(bundle, prompts), strict=True)]
    return generated_joints(features, foot_lock=foot_lock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=32, help="calm-standing items (kmm-train eval --subset-items)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "standing_decoder.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = HumanML3DFolder(args.data)
    items = animator_subsets.select(load_items(folder, EvaluationSettings(split=args.split)), args.items)["calm_standing"]
    window = window_reader(folder)
    real = [features_to_joints(window(item)) for item in items]
    real_jerk = {part: np.mean([animator_subsets.joint_jerk(j, part, MODEL_FPS) for j in real]) for part in PARTS}
    real_drift = np.mean([standing_drift(j, MODEL_FPS) for j in real])
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    if bundle.standing_tokenizer is None:
        raise SystemExit(f"{args.checkpoint}: this bundle has no standing decoder")
    lines = ["# The standing decoder, body part by body part", "",
             f"`python benchmarks/measure_standing_decoder.py --checkpoint {args.checkpoint} --data {args.data} --split "
             f"{args.split} --items {args.items} --seeds {args.seeds}`: the calm-standing subset ({len(items)} items) "
             f"generated with seeds 0-{args.seeds - 1} as `kmm-train eval` generates it, each part's median jerk and "
             "the drift as ratios of means to the same real items (1.00 = as real); the raised hand's height above "
             "the shoulder line (m; `hand_high` passes at 0.10) for each phrasing, mean over the seeds.  Real: "
             + ", ".join(f"{part} {value:.1f}" for part, value in real_jerk.items()) + f" m/s^3, drift {real_drift:.3f}"
             " m/s.", "",
             "| decoding | standing-root sigma | " + " | ".join(f"{p} jerk" for p in PARTS) + " | L / R foot jerk "
             "before the clean-up | drift | " + " | ".join(f"\"{prompt}\"" for _, prompt in RAISE_PROMPTS) + " |",
             "|" + " --- |" * (4 + len(PARTS) + len(RAISE_PROMPTS))]
    for way in ("without", "whole body", "as shipped"):
        with decoding(bundle, way) as model:
            jerk = {part: [] for part in (*PARTS, "raw_left_foot", "raw_right_foot")}
            drift, heights = [], {prompt: [] for _, prompt in RAISE_PROMPTS}
            for seed in range(args.seeds):
                captions, frames = choose_captions(items, seed), [item.frames for item in items]
                made = generated(model, captions, frames, seed)
                raw = generated(model, captions, frames, seed, foot_lock=False)
                for part in PARTS:
                    jerk[part].append(np.mean([animator_subsets.joint_jerk(j, part, MODEL_FPS) for j in made]))
                for part in ("left_foot", "right_foot"):
                    jerk[f"raw_{part}"].append(np.mean([animator_subsets.joint_jerk(j, part, MODEL_FPS) for j in raw]))
                drift.append(np.mean([standing_drift(j, MODEL_FPS) for j in made]))
                raised = generated(model, [prompt for _, prompt in RAISE_PROMPTS], [RAISE_FRAMES] * len(RAISE_PROMPTS),
                                   seed)
                for (side, prompt), joints in zip(RAISE_PROMPTS, raised, strict=True):
                    heights[prompt].append(hand_height(joints, MODEL_FPS, side))
            cells = [f"{np.mean(jerk[part]) / real_jerk[part]:.2f}" for part in PARTS]
            cells.append(" / ".join(f"{np.mean(jerk['raw_' + part]) / real_jerk[part]:.2f}"
                                    for part in ("left_foot", "right_foot")))
            cells.append(f"{np.mean(drift) / real_drift:.2f}")
            cells += [f"{np.mean(heights[prompt]):.3f}" for _, prompt in RAISE_PROMPTS]
            lines.append(f"| {way} | {model.decoding.standing_root_sigma:g} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
