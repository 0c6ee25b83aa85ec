# SPDX-License-Identifier: GPL-3.0-or-later
"""Decoding settings measured where the animator looks: the calm-standing and walking subsets of `kmm-train eval`
(kmm_core/evaluation/animator_subsets.py), the held-out directional paraphrases and the short action after a walk.

Each variant is a JSON object of ``[decoding]`` overrides on top of the bundle's own settings (``{}``: as shipped),
e.g. ``'{"repeat_penalty": 2}'``; the key ``best_of`` (not a decoding setting) draws N candidates per prompt and
keeps the one the bundle's aligner (the generator's own text-motion model, not the evaluator) finds closest to the
prompt (best-of-N re-ranking; the short action after a walk is generated without it); with ``"best_of_by": "gait"``
the candidates of a walk or run prompt (walking share over 0.5: ``generation/prompt_kinds.py``) are ranked instead by their stride
regularity as the product shows them (``animator_subsets``' measure: a plausibility score of the step), the
others' still by the aligner.  Every variant sees the same captions and seeds; generated features go through
the product's smoothing (``smooth_generated_features``, standing-root step on) and the foot-contact clean-up, as
`kmm-train eval` does.  Ratios of means to the real items (1.00 = as real), mean over the seeds (min-max).

Run: ``python benchmarks/measure_decoding_variants.py --checkpoint default --data DATA --split test --seeds 2
--variants '{}' '{"repeat_penalty": 2}' [--items 32] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.body_motion import gait_regularity  # noqa: E402
from kmm_core.evaluation.directional import directional_accuracy  # noqa: E402
from kmm_core.evaluation.evaluator import Evaluator  # noqa: E402
from kmm_core.evaluation.generated_motions import cleaned_joints, generate_features  # noqa: E402
from kmm_core.evaluation.paraphrases import paraphrase_prompts  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import choose_captions, load_items, window_reader  # noqa: E402
from kmm_core.generation.prompt_kinds import prompt_kinds  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import smooth_generated_features  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.model.configs import DecodingConfig  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PARAPHRASE_FRAMES = int(round(EvaluationSettings().directional_seconds * MODEL_FPS))


def product_joints(bundle: ModelBundle, features: list[np.ndarray], prompts: list[str],
                   standing_sigma: float = DecodingConfig().standing_root_sigma) -> list[np.ndarray]:
    """Joints as the product shows them: generation's smoothing (the standing-root step at `standing_sigma`, a
    variant's ``standing_root_sigma``), then the foot-contact clean-up."""
    smoothed = [smooth_generated_features(f, kind, standing_sigma=standing_sigma)
                for f, kind in zip(features, prompt_kinds(bundle, prompts), strict=True)]
    return cleaned_joints([features_to_joints(f) for f in smoothed], smoothed)


def generate(bundle: ModelBundle, config: DecodingConfig, best_of: int | tuple[int, str], prompts: list[str],
             frames: list[int], seed: int) -> list[np.ndarray]:
    """Features for each prompt with `config`; with `best_of` > 1 (or (N, "aligner" / "gait")) the candidate ranked
    first (module docstring)."""
    bundle.decoding = config
    best_of, ranked_by = best_of if isinstance(best_of, tuple) else (best_of, "aligner")
    if best_of <= 1:
        return generate_features(bundle, prompts, frames, seed)
    scorer = Evaluator(bundle.aligner, bundle.normalizer, Path("."), bundle.device)
    text = scorer.embed_texts(prompts)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    candidates = [generate_features(bundle, prompts, frames, seed * 1000 + k) for k in range(best_of)]
    similarity = []
    for features in candidates:
        motion = scorer.embed_motions(features)
        similarity.append((motion / np.linalg.norm(motion, axis=1, keepdims=True) * text).sum(axis=1))
    score = np.array(similarity)
    if ranked_by == "gait":
        walks = [i for i, kind in enumerate(prompt_kinds(bundle, prompts)) if kind.walking > 0.5]
        for k, features in enumerate(candidates):
            joints = product_joints(bundle, [features[i] for i in walks], [prompts[i] for i in walks])
            score[k, walks] = [gait_regularity(j, MODEL_FPS) for j in joints]  # the subsets' stride regularity
    best = np.argmax(score, axis=0)
    return [candidates[k][i] for i, k in enumerate(best)]


def subset_rows(bundle: ModelBundle, name: str, chosen: list, window, variants: list[tuple[DecodingConfig, tuple[int, str]]],
                seeds: int) -> list[list[dict[str, float]]]:
    real = animator_subsets.measures([features_to_joints(window(item)) for item in chosen], MODEL_FPS, name)
    rows: list[list[dict[str, float]]] = [[] for _ in variants]
    for seed in range(seeds):
        captions = choose_captions(chosen, seed)
        for row, (config, best_of) in zip(rows, variants, strict=True):
            raw = generate(bundle, config, best_of, captions, [item.frames for item in chosen], seed)
            joints = product_joints(bundle, raw, captions, config.standing_root_sigma)
            row.append(animator_subsets.ratios(name, animator_subsets.measures(joints, MODEL_FPS, name), real))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--items", type=int, default=32, help="items per subset (calm standing, walking)")
    parser.add_argument("--variants", nargs="+", default=["{}"], help="JSON objects of [decoding] overrides")
    parser.add_argument("--short-action-seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "decoding_variants.md")
    args = parser.parse_args()
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    shipped = bundle.decoding
    overrides = [json.loads(v) for v in args.variants]
    variants = [(replace(shipped, **{k: v for k, v in o.items() if k not in ("best_of", "best_of_by")}),
                 (int(o.get("best_of", 1)), str(o.get("best_of_by", "aligner")))) for o in overrides]
    names = [json.dumps(o) if o else "as shipped" for o in overrides]
    folder = HumanML3DFolder(args.data)
    items = load_items(folder, EvaluationSettings(split=args.split))
    window = window_reader(folder)
    lines = ["# Decoding variants on the animator's subsets", "",
             f"`python benchmarks/measure_decoding_variants.py --checkpoint {args.checkpoint} --data {args.data} "
             f"--split {args.split} --seeds {args.seeds} --items {args.items} --variants "
             + " ".join(f"'{v}'" for v in args.variants) + "`", "",
             f"Shipped decoding: {shipped}.  Ratios of means to the real items (1.00 = as real), mean over "
             f"{args.seeds} seeds (min-max).", ""]
    for name, chosen in animator_subsets.select(items, limit=args.items).items():
        rows = subset_rows(bundle, name, chosen, window, variants, args.seeds)
        keys = list(rows[0][0])
        titles = [k.removeprefix(f"animator_{name}_").removesuffix("_ratio") for k in keys]
        lines += [f"## {animator_subsets.SUBSET_TITLES[name]} ({len(chosen)} items)", "",
                  "| decoding | " + " | ".join(titles) + " |", "|" + " --- |" * (len(keys) + 1)]
        for label, row in zip(names, rows, strict=True):
            values = [[run[k] for run in row] for k in keys]
            lines.append(f"| {label} | " + " | ".join(f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                                                      for v in values) + " |")
        lines.append("")
        print("\n".join(lines[-len(names) - 4:]), flush=True)
    prompts = [p for _, p in paraphrase_prompts()]
    lines += [f"## Directional paraphrases ({len(prompts)} prompts x {args.seeds} seeds) and the short action after a "
              f"walk ({args.short_action_seeds} seeds)", "",
              "| decoding | directional accuracy | short action performed | left wrist rise (body heights) |",
              "| --- | --- | --- | --- |"]
    timeline = Timeline.from_dict(animator_subsets.SHORT_ACTION_TIMELINE)
    for label, (config, best_of) in zip(names, variants, strict=True):
        accuracy = [directional_accuracy(prompts, product_joints(bundle,
            generate(bundle, config, best_of, prompts, [PARAPHRASE_FRAMES] * len(prompts), seed), prompts),
            MODEL_FPS).overall_accuracy for seed in range(args.seeds)]
        bundle.decoding = config
        actions = []
        for seed in range(args.short_action_seeds):
            result = generate_timeline(bundle, timeline, seed=seed)[0]
            actions.append(animator_subsets.short_action(np.asarray(result.joints), int(result.segment_frames[1, 0])))
        lines.append(f"| {label} | {np.mean(accuracy):.3f} | {sum(a.performed for a in actions)} of {len(actions)} | "
                     f"{np.mean([a.left_rise for a in actions]):.2f} |")
        print(lines[-1], flush=True)
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
