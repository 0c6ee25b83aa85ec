# SPDX-License-Identifier: GPL-3.0-or-later
"""Generation's standing-root smoothing against the calm-standing shake, measured where the defects are: the
animator's subsets of `kmm-train eval` (kmm_core/evaluation/animator_subsets.py).

The step (shipped, default on; ``kmm_core/humanml3d/feature_smoothing.py``): after generation's usual smoothing of
decoded features, the root channels (root turn speed, root velocity, root height: features 0-3) of a prompt that
stand (their standing share: ``generation/prompt_kinds.py``) get a second Gaussian of SIGMA frames; walking
and other prompts are untouched, so walks, directional paraphrases and every moving prompt are unchanged by
construction (the script counts the paraphrases it touches).  Each variant's features go through the product's own
``smooth_generated_features`` (as `kmm-train eval` does), then the same foot-contact clean-up as shipped; sigma 0 is
the step turned off.

The short action after a walk is generated through ``generate_timeline`` with ``GenerationOptions(
standing_root_sigma=SIGMA)``: the product path, fading in over the standing segment's first frames.
The torso chain's positions and local rotations (spine1, spine2, spine3, neck, head; not the arms or legs) get a
Gaussian of ``--torso-scale`` times SIGMA; ``--torso-scale 0`` smooths the root only (the step as first shipped).

Per variant and subset: pelvis and head jerk, drift (calm standing), stride regularity, pelvis bob, foot swing
(walking) as ratios of means to the real items; for the raised hands of the calm subset, the share whose generated
motion still passes its hand_high check (the arm must not be damped).  Same captions and seeds for every variant.

Run: ``python benchmarks/measure_standing_root_smoothing.py --checkpoint default --data DATA --split test
--seeds 2 --sigmas 2 4 [--walking-items 32]``
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
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.action_checks import checks_for_action, label_side, run_check  # noqa: E402
from kmm_core.evaluation.bundle_metrics import text_motion_metrics  # noqa: E402
from kmm_core.evaluation.directional import directional_accuracy  # noqa: E402
from kmm_core.evaluation.evaluator import load_evaluator  # noqa: E402
from kmm_core.evaluation.generated_motions import cleaned_joints, generate_features  # noqa: E402
from kmm_core.evaluation.paraphrases import paraphrase_prompts  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import choose_captions, load_items, subset, window_reader  # noqa: E402
from kmm_core.generation.decoding_engine import GenerationOptions  # noqa: E402
from kmm_core.generation.prompt_kinds import prompt_kinds  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.humanml3d import feature_smoothing  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import smooth_generated_features  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.humanml3d.motion_kind import MotionKind  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PARAPHRASE_FRAMES = int(round(EvaluationSettings().directional_seconds * MODEL_FPS))
TORSO_SCALE = feature_smoothing.STANDING_TORSO_SCALE
"""`--torso-scale`: the torso chain's sigma as a share of the root's (0: the root only, the step as first shipped)."""


WANDER_KEEP = 1.0
"""`--wander-keep`: the share of the root's slow horizontal velocity kept on standing prompts (1: untouched)."""
WANDER_SIGMA = 6.4
"""`--wander-sigma`: frames of the Gaussian that splits the slow part off (6.4 frames at 20 fps: about 0.5 Hz)."""


def damp_slow_wander(features: np.ndarray, kind: MotionKind) -> np.ndarray:
    """Candidate (measured here only): on a standing prompt, the root's horizontal velocity (features 1-2) keeps
    only `WANDER_KEEP` of its component slower than about 0.5 Hz (its Gaussian of `WANDER_SIGMA` frames); the
    faster part, the weight shifts, stays."""
    if WANDER_KEEP == 1.0 or kind.standing < 0.5:
        return features
    out = features.copy()
    slow = feature_smoothing.gaussian_smooth(features[:, 1:3], WANDER_SIGMA, axis=0)
    out[:, 1:3] = features[:, 1:3] - (1.0 - WANDER_KEEP) * slow
    return out


def candidate(features: np.ndarray, kind: MotionKind, sigma: float) -> np.ndarray:
    """The product's smoothing of one prompt's decoded features, with standing-root sigma `sigma` (0: off); with
    `--wander-keep` below 1, the slow-wander candidate on top for sigma > 0."""
    smoothed = smooth_generated_features(features, kind, standing_sigma=sigma, torso_scale=TORSO_SCALE)
    return damp_slow_wander(smoothed, kind) if sigma > 0 else smoothed


def split_metrics(bundle: ModelBundle, items: list, window, variants: list[float], args) -> list[str]:
    """FID and R-precision (the bundle's evaluator) of the split's items, as `kmm-train eval` measures them, per
    variant: the candidate changes the standing items' features, so these columns move only through them."""
    evaluator = load_evaluator(resolve_model(args.checkpoint))
    chosen = subset(items, args.split_items, 0)
    real = evaluator.embed_motions([window(item) for item in chosen])
    runs: dict[float, list[dict[str, float]]] = {v: [] for v in variants}
    for seed in range(args.seeds):
        captions = choose_captions(chosen, seed)
        text = evaluator.embed_texts(captions)
        raw = generate_features(bundle, captions, [item.frames for item in chosen], seed)
        for sigma in variants:
            kinds = prompt_kinds(bundle, captions)
            motion = evaluator.embed_motions([candidate(f, k, sigma) for f, k in zip(raw, kinds, strict=True)])
            runs[sigma].append(text_motion_metrics(text, motion, real, seed))
    standing = sum(kind.standing >= 0.5 for kind in prompt_kinds(bundle, choose_captions(chosen, 0)))
    lines = [f"## The split ({len(chosen)} items, {standing} with a standing caption in seed 0; the bundle's evaluator)",
             "", "| root sigma | FID | R-precision top-1 | top-3 |", "| --- | --- | --- | --- |"]
    for sigma in variants:
        mean = {k: float(np.mean([run[k] for run in runs[sigma]])) for k in runs[sigma][0]}
        lines.append(f"| {sigma:g} | {mean['fid']:.3f} | {mean['r_precision_top1']:.3f} | "
                     f"{mean['r_precision_top3']:.3f} |")
    return lines + [""]


def short_action_with(bundle: ModelBundle, sigma: float, seed: int) -> animator_subsets.ShortAction:
    """The short action after a walk generated by ``generate_timeline`` with standing-root sigma `sigma`."""
    timeline = Timeline.from_dict(animator_subsets.SHORT_ACTION_TIMELINE)
    feature_smoothing.STANDING_TORSO_SCALE = TORSO_SCALE  # generate_timeline's default torso scale
    result = generate_timeline(bundle, timeline, seed=seed, options=GenerationOptions(
        standing_root_sigma=sigma))[0]
    return animator_subsets.short_action(np.asarray(result.joints), int(result.segment_frames[1, 0]))


def main() -> int:
    global TORSO_SCALE, WANDER_KEEP, WANDER_SIGMA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--walking-items", type=int, default=32)
    parser.add_argument("--short-action-seeds", type=int, default=8)
    parser.add_argument("--split-items", type=int, default=128, help="items of the split for FID and R-precision")
    parser.add_argument("--only", choices=("subsets", "split"), help="measure only the two subsets or only the split")
    parser.add_argument("--torso-scale", type=float, default=TORSO_SCALE,
                        help="the torso chain's sigma as a share of the root's (0: smooth the root only)")
    parser.add_argument("--wander-keep", type=float, default=1.0,
                        help="candidate: share of the standing root's slow horizontal velocity kept (1: off)")
    parser.add_argument("--wander-sigma", type=float, default=WANDER_SIGMA,
                        help="candidate: frames of the Gaussian that defines the slow part")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "standing_root_smoothing.md")
    args = parser.parse_args()
    TORSO_SCALE = args.torso_scale
    WANDER_KEEP, WANDER_SIGMA = args.wander_keep, args.wander_sigma
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    folder = HumanML3DFolder(args.data)
    items = load_items(folder, EvaluationSettings(split=args.split))
    subsets = animator_subsets.select(items, limit=None)
    subsets["walking"] = animator_subsets.select(items, limit=args.walking_items)["walking"]
    window = window_reader(folder)
    variants = [0.0, *args.sigmas]
    lines = ["# Standing-root smoothing (shipped: a default generation step; `--no-standing-root-smoothing` is "
             "sigma 0)", "",
             f"`python benchmarks/measure_standing_root_smoothing.py --checkpoint {args.checkpoint} --data "
             f"{args.data} --split {args.split} --seeds {args.seeds} --sigmas {' '.join(map(str, args.sigmas))} "
             f"--walking-items {args.walking_items} --torso-scale {args.torso_scale:g}"
             f"{f' --wander-keep {args.wander_keep:g} --wander-sigma {args.wander_sigma:g}' if args.wander_keep != 1 else ''}"
             f"{' --only ' + args.only if args.only else ''}`.  Ratios of means to the real items (1.00 = as real), mean over "
             f"{args.seeds} seeds (min-max); sigma 0 = the step turned off.", ""]
    if args.only == "split":
        subsets = {}
    for name, chosen in subsets.items():
        real = [features_to_joints(window(item)) for item in chosen]
        real_measures = animator_subsets.measures(real, MODEL_FPS, name)
        per_variant: dict[float, list[dict[str, float]]] = {v: [] for v in variants}
        hands: dict[float, list[float]] = {v: [] for v in variants}
        for seed in range(args.seeds):
            captions = choose_captions(chosen, seed)
            raw = generate_features(bundle, captions, [item.frames for item in chosen], seed)
            for sigma in variants:
                features = [candidate(f, k, sigma) for f, k in zip(raw, prompt_kinds(bundle, captions), strict=True)]
                joints = cleaned_joints([features_to_joints(f) for f in features], features)
                per_variant[sigma].append(animator_subsets.ratios(
                    name, animator_subsets.measures(joints, MODEL_FPS, name), real_measures))
                raised = [run_check("hand_high", j, MODEL_FPS, side=label_side(item.content)).passed
                          for j, item in zip(joints, chosen, strict=True)
                          if item.content.startswith("raise") and checks_for_action(item.content)]
                if raised:
                    hands[sigma].append(float(np.mean(raised)))
        keys = list(per_variant[0.0][0])
        titles = [k.removeprefix(f"animator_{name}_").removesuffix("_ratio") for k in keys]
        lines += [f"## {animator_subsets.SUBSET_TITLES[name]} ({len(chosen)} items)", "",
                  "| root sigma | " + " | ".join(titles) + (" | raised hands passing hand_high |" if name ==
                                                               "calm_standing" else " |"),
                  "|" + " --- |" * (len(keys) + 1 + (name == "calm_standing"))]
        for sigma in variants:
            values = [[run[k] for run in per_variant[sigma]] for k in keys]
            cells = [f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in values]
            if name == "calm_standing":
                cells.append(f"{np.mean(hands[sigma]):.2f}" if hands[sigma] else "–")
            lines.append(f"| {sigma:g} | " + " | ".join(cells) + " |")
        lines.append("")
    if args.only == "subsets":
        save_report(args.out, lines)
        return 0
    if args.only == "split":
        lines += split_metrics(bundle, items, window, variants, args)
        save_report(args.out, lines)
        return 0
    # the held-out directional paraphrases the candidate touches (standing by their words: raised hands, waves)
    prompts = [p for _, p in paraphrase_prompts()]
    touched = [p for p, kind in zip(prompts, prompt_kinds(bundle, prompts), strict=True) if kind.standing >= 0.5]
    accuracy: dict[float, list[float]] = {v: [] for v in variants}
    for seed in range(args.seeds):
        raw = generate_features(bundle, touched, [PARAPHRASE_FRAMES] * len(touched), seed)
        for sigma in variants:
            features = [candidate(f, k, sigma) for f, k in zip(raw, prompt_kinds(bundle, touched), strict=True)]
            accuracy[sigma].append(directional_accuracy(touched, [features_to_joints(f) for f in features],
                                                        MODEL_FPS).overall_accuracy)
    lines += [f"## Directional paraphrases it touches: {len(touched)} of {len(paraphrase_prompts())} (standing by "
              "their words; the others are unchanged by construction)", "", "| root sigma | directional accuracy |",
              "| --- | --- |"]
    lines += [f"| {sigma:g} | {np.mean(accuracy[sigma]):.3f} |" for sigma in variants]
    lines += ["", f"## Short action after a walk ({args.short_action_seeds} seeds, the timeline of `kmm-train eval`)", "",
              "Through `generate_timeline` with `GenerationOptions(standing_root_sigma=sigma)`: the product path "
              "(the standing segment, \"raises the left hand\", fades the step in over its first frames).", "",
              "| root sigma | performed | left / right wrist rise (body heights, mean) |", "| --- | --- | --- |"]
    for sigma in variants:
        rises = [short_action_with(bundle, sigma, seed) for seed in range(args.short_action_seeds)]
        lines.append(f"| {sigma:g} | {sum(r.performed for r in rises)} of {len(rises)} | "
                     f"{np.mean([r.left_rise for r in rises]):.2f} / {np.mean([r.right_rise for r in rises]):.2f} |")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
