# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train eval-actions``: for every action word a model was trained on, does it produce that action?

::

    kmm-train eval-actions --checkpoint BUNDLE --data PREPARED --split test --out DIR
        [--evaluator FOLDER] [--prompts-per-action 4] [--generations-per-prompt 4] [--seed 0] [--top-k 3]
        [--pass-rate 0.5]

Writes ``DIR/actions.md`` and ``DIR/actions.json`` (``action_report.py``): one row per action word, passing or not.

**Actions.**  The rows are the distinct content labels of the bundle's ``vocabulary.json`` "actions" (its
``Vocabulary.action_words``): the same label in several datasets is ONE row (e.g. "walk" of Bandai-Namco 1, Bandai-Namco
2, CMU, CMU-iClone and DeepMimic), listing every dataset and the sum of their training takes, and its prompts and real
clips come from all of them.  Labels are compared exactly: "run" and CMU exp-map's "running" are two rows.

**Prompts.**  Up to ``--prompts-per-action`` clips of the action in the split (``--data``'s ``index.csv`` says each
clip's dataset and content; a caption with its own time span is a clip of its own, as in ``kmm-train eval``) are drawn
with ``--seed``, one caption each, more captions of the same clips when there are fewer clips than prompts; each
prompt is generated ``--generations-per-prompt`` times with its clip's length.  An action without clips in the split
falls back to the vocabulary's example prompts (training captions, generated 6 s long, no real clips): the table's
"prompts" column says "split" or "examples".

**Retrieval** (the evaluator: separately trained encoders, never the generator's aligner).  Each action is represented
by ONE text embedding: the normalised mean of its prompts' unit text embeddings (a prototype).  A motion (generated,
or a real clip of the split) is embedded by the evaluator's motion encoder and ranks every action by the cosine
similarity of its prototype; it "retrieves its action" at top-k when its own action is among the k most similar.
The prototype rather than the best of an action's texts: the maximum over texts grows with the number of texts, so
actions with more captions (and more styles in them) would win more often for reasons that have nothing to do with the
motion, and a single odd caption could not decide a row.  Real clips of the same split get the same measure: their
rate is the ceiling of what the evaluator can recognise for that action, so a low generated rate under a high real one
is the generator's fault, and a low real rate says the evaluator cannot tell that action apart.

**Geometric checks** (``action_checks.py``, one per action word: jump, kick, getup, spin, travel, wave, ...) on every
generated motion and every real clip; the **side** check (``directional.py``, as ``kmm-train eval``'s directional
accuracy) on every prompt that names one side-specific intent.  Generated joints are the model's decoded motion
(smoothed as generation does) WITHOUT the foot-contact cleanup unless ``--foot-lock``: the question is whether the
model produces the action, and the cleanup can fake one.  Measured with the shipped kmm-small, seed 0, 6 s of "a
person squats down and stands up": the model glides 1.5 m with both feet flagged in contact, the cleanup holds the
left foot where it started and lowers the pelvis to reach it, from 0.93 m (decoded) to 0.17 m, a 82 % "squat" the
model never made (``generate_timeline`` with and without ``GenerationOptions.foot_lock``).

**Pass.**  An action passes when its generated top-k rate is >= ``--pass-rate`` and, for every check that applies,
its generated pass rate is >= ``--pass-rate``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import ConfigError, InputFileError, KMMError
from ..common.limits import thread_count_problem
from ..common.progress import command_log
from ..generation.prompt_kinds import prompt_kinds
from ..humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_generated_features
from ..humanml3d.features import features_to_joints
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from .action_checks import checks_for_action, run_check
from .directional import decide, parse_directional_intent
from .settings import EvaluationError, EvaluationSettings
from .split_data import EvalItem

SIDE_CHECK = "side"
FALLBACK_SECONDS = 6.0


@dataclass(frozen=True)
class ActionEvaluationSettings:
    split: str = "test"
    prompts_per_action: int = 4
    generations_per_prompt: int = 4
    seed: int = 0
    top_k: int = 3
    pass_rate: float = 0.5
    min_frames: int = 40
    max_frames: int = 196
    batch_size: int = 32
    device: str = "cpu"
    foot_lock: bool = False   # measure the decoded motion; True: after the foot-contact cleanup
    smoothing: float = DECODED_SMOOTHING_SIGMA

    def __post_init__(self) -> None:
        checks = {"prompts_per_action": self.prompts_per_action >= 1,
                  "generations_per_prompt": self.generations_per_prompt >= 1, "top_k": self.top_k >= 1,
                  "pass_rate": 0.0 < self.pass_rate <= 1.0, "batch_size": self.batch_size >= 1}
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"eval-actions settings: invalid {', '.join(bad)} (counts >= 1, 0 < pass_rate <= 1)")
        # The window rules (min/max frames, device) are EvaluationSettings' own checks.
        self.window_settings()

    def window_settings(self) -> EvaluationSettings:
        return EvaluationSettings(split=self.split, min_frames=self.min_frames, max_frames=self.max_frames,
                                  device=self.device, smoothing=self.smoothing)


@dataclass
class ActionPlan:
    """One row: an action word, where it comes from, the prompts to generate and the real clips to compare."""

    action: str
    datasets: tuple[str, ...]
    train_takes: int
    checks: tuple[str, ...]
    prompt_source: str                      # "split" or "examples"
    prompts: list[str]
    frames: list[int]
    real_items: list[EvalItem] = field(default_factory=list)
    real_prompts: list[str] = field(default_factory=list)   # the caption of each real item used for its side check


# ---------------------------------------------------------------------------------------------------------------
# planning: actions, prompts, real clips
# ---------------------------------------------------------------------------------------------------------------

def _clip_labels(data_root: Path) -> dict[str, tuple[str, str]]:
    from ..data.prepare import INDEX_CSV, read_index

    if not (data_root / INDEX_CSV).is_file():
        raise InputFileError(data_root / INDEX_CSV, "not found: eval-actions needs a folder written by "
                                                    "`kmm-train prepare` (its index.csv names each clip's action)")
    return {row["name"]: (row["dataset"], row["content"]) for row in read_index(data_root)}


def plan_actions(vocabulary, items: Sequence[EvalItem], labels: dict[str, tuple[str, str]],
                 settings: ActionEvaluationSettings) -> list[ActionPlan]:
    """One plan per distinct action word of the vocabulary, in alphabetical order."""
    grouped: dict[str, list] = {}
    for action in vocabulary.actions:
        grouped.setdefault(action.content, []).append(action)
    by_pair: dict[tuple[str, str], list[EvalItem]] = {}
    for item in items:
        pair = labels.get(item.name.split("@")[0])
        if pair is not None:
            by_pair.setdefault(pair, []).append(item)
    fallback_frames = int(round(FALLBACK_SECONDS * MODEL_FPS)) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    plans = []
    for word in sorted(grouped):
        entries = grouped[word]
        datasets = tuple(sorted({entry.dataset for entry in entries}))
        candidates = [item for dataset in datasets for item in by_pair.get((dataset, word), [])]
        rng = np.random.default_rng([settings.seed, 23, *word.encode("utf-8")])
        plan = ActionPlan(action=word, datasets=datasets, train_takes=sum(entry.train_takes for entry in entries),
                          checks=checks_for_action(word), prompt_source="split", prompts=[], frames=[])
        if candidates:
            count = min(settings.prompts_per_action, len(candidates))
            chosen = [candidates[int(i)] for i in np.sort(rng.choice(len(candidates), size=count, replace=False))]
            queues = [list(item.captions) for item in chosen]
            for queue in queues:
                rng.shuffle(queue)
            plan.real_items = chosen
            plan.real_prompts = [queue[0] for queue in queues]
            # One caption per clip, then further captions of the same clips round-robin, without repeating one.
            round_index = 0
            while len(plan.prompts) < settings.prompts_per_action and round_index < max(map(len, queues)):
                for item, queue in zip(chosen, queues, strict=True):
                    if round_index < len(queue) and len(plan.prompts) < settings.prompts_per_action:
                        plan.prompts.append(queue[round_index])
                        plan.frames.append(item.frames)
                round_index += 1
        else:
            examples = [example for entry in entries for example in entry.examples]
            if not examples:
                raise EvaluationError(f"action {word!r}: no clip in the {settings.split!r} split and no example "
                                      f"prompts in the vocabulary ({vocabulary.path or 'vocabulary.json'})")
            plan.prompt_source = "examples"
            plan.prompts = examples[:settings.prompts_per_action]
            plan.frames = [fallback_frames] * len(plan.prompts)
        plans.append(plan)
    return plans


# ---------------------------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------------------------

def retrieval_ranks(motion_embeddings: np.ndarray, prototypes: np.ndarray, own: Sequence[int]) -> np.ndarray:
    """(N,) rank (1 = most similar) of each motion's own action among all prototypes by cosine similarity; ties
    count against the motion (its action ranks below every prototype at least as similar)."""
    motions = motion_embeddings / np.maximum(np.linalg.norm(motion_embeddings, axis=1, keepdims=True), 1e-12)
    similarity = motions @ prototypes.T
    own = np.asarray(own, dtype=np.int64)
    own_similarity = similarity[np.arange(len(own)), own]
    return (similarity >= own_similarity[:, None]).sum(axis=1)


def action_prototypes(text_embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """(A, D) unit prototypes: the normalised mean of each action's unit text embeddings."""
    rows = []
    for embeddings in text_embeddings:
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        mean = unit.mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(rows)


def _rate(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _check_rates(plan: ActionPlan, prompts: Sequence[str], joints: Sequence[np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per check that applies: pass rate and count over the motions (side: only prompts with an intent)."""
    out: dict[str, dict[str, Any]] = {}
    for name in plan.checks:
        results = [run_check(name, motion, MODEL_FPS) for motion in joints]
        out[name] = {"rate": _rate([r.passed for r in results]), "count": len(results),
                     "median": float(np.median([r.value for r in results])) if results else None}
    side = [decide(prompt, intent, motion, MODEL_FPS).correct
            for prompt, motion in zip(prompts, joints, strict=True)
            if (intent := parse_directional_intent(prompt)) is not None]
    if side:
        out[SIDE_CHECK] = {"rate": _rate(side), "count": len(side), "median": None}
    return out


def evaluate_actions(bundle, evaluator, plans: Sequence[ActionPlan], real_features: Sequence[Sequence[np.ndarray]],
                     settings: ActionEvaluationSettings,
                     log: Callable[[str], None] = lambda _m: None) -> list[dict[str, Any]]:
    """Generate every plan's prompts, measure retrieval and checks for generated and real motions: one row each."""
    from .generated_motions import generate_features, generated_joints

    repeats = settings.generations_per_prompt
    prompts = [prompt for plan in plans for prompt in plan.prompts for _ in range(repeats)]
    frames = [count for plan in plans for count in plan.frames for _ in range(repeats)]
    owners = [index for index, plan in enumerate(plans) for _ in range(len(plan.prompts) * repeats)]
    log(f"generating {len(prompts)} motions ({len(plans)} actions)")
    started = time.perf_counter()
    features = [smooth_generated_features(f, kind, settings.smoothing) for f, kind in
                zip(generate_features(bundle, prompts, frames, settings.seed, settings.batch_size),
                    prompt_kinds(bundle, prompts), strict=True)]
    joints = generated_joints(features, settings.foot_lock)
    log(f"generated in {time.perf_counter() - started:.1f} s; embedding")
    prototypes = action_prototypes([evaluator.embed_texts(plan.prompts) for plan in plans])
    generated_ranks = retrieval_ranks(evaluator.embed_motions(features, settings.batch_size), prototypes, owners)
    real_flat = [clip for clips in real_features for clip in clips]
    real_owners = [index for index, clips in enumerate(real_features) for _ in clips]
    real_ranks = (retrieval_ranks(evaluator.embed_motions(real_flat, settings.batch_size), prototypes, real_owners)
                  if real_flat else np.zeros(0, dtype=np.int64))
    log("geometric checks")
    rows = []
    for index, plan in enumerate(plans):
        mine = [i for i, owner in enumerate(owners) if owner == index]
        real_mine = [i for i, owner in enumerate(real_owners) if owner == index]
        ranks, real = generated_ranks[mine], real_ranks[real_mine]
        generated_checks = _check_rates(plan, [prompts[i] for i in mine], [joints[i] for i in mine])
        real_joints = [features_to_joints(clip) for clip in real_features[index]]
        real_checks = _check_rates(plan, plan.real_prompts, real_joints) if real_joints else {}
        top1, topk = _rate(list(ranks <= 1)), _rate(list(ranks <= settings.top_k))
        passed = topk is not None and topk >= settings.pass_rate and all(
            entry["rate"] is not None and entry["rate"] >= settings.pass_rate for entry in generated_checks.values())
        rows.append({
            "action": plan.action, "datasets": list(plan.datasets), "train_takes": plan.train_takes,
            "prompt_source": plan.prompt_source, "prompts": list(plan.prompts), "generations": len(mine),
            "real_clips": len(real_mine),
            "generated": {"top1": top1, "topk": topk, "median_rank": float(np.median(ranks)),
                          "checks": generated_checks},
            "real": {"top1": _rate(list(real <= 1)), "topk": _rate(list(real <= settings.top_k)),
                     "median_rank": float(np.median(real)) if len(real) else None, "checks": real_checks},
            "passed": bool(passed),
        })
    return rows


def run_action_evaluation(checkpoint: str | Path, data_root: str | Path, settings: ActionEvaluationSettings,
                          evaluator_path: str | Path | None = None,
                          log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The whole evaluation of one bundle: returns the actions document (``action_report.write_action_results``)."""
    from ..bundle.model_bundle import ModelBundle, read_manifest
    from ..bundle.model_choice import resolve_model
    from ..bundle.vocabulary import read_vocabulary
    from ..humanml3d.dataset_folder import HumanML3DFolder
    from .evaluate import checkpoint_name
    from .evaluator import load_evaluator
    from .split_data import load_items, window_reader

    checkpoint, data_root = resolve_model(str(checkpoint)), Path(data_root)
    manifest = read_manifest(checkpoint)
    vocabulary = read_vocabulary(checkpoint)
    if not vocabulary.actions:
        raise EvaluationError(f"{vocabulary.path}: the vocabulary lists no actions")
    folder = HumanML3DFolder(data_root)
    labels = _clip_labels(data_root)
    items = load_items(folder, settings.window_settings())
    plans = plan_actions(vocabulary, items, labels, settings)
    if evaluator_path is None:
        if "evaluator" not in manifest.get("components", []):
            raise EvaluationError(f"{checkpoint}: no evaluator.safetensors in this bundle; pass --evaluator FOLDER "
                                  f"(a bundle or run folder with evaluator.safetensors/.json + Mean/Std.npy)")
        evaluator_path = checkpoint
    started = time.perf_counter()
    evaluator = load_evaluator(evaluator_path, settings.device)
    bundle = ModelBundle.load(checkpoint, device=settings.device)
    window = window_reader(folder)
    real_features = [[window(item) for item in plan.real_items] for plan in plans]
    rows = evaluate_actions(bundle, evaluator, plans, real_features, settings, log)
    seconds = time.perf_counter() - started
    return {
        "format_version": 1,
        "model": checkpoint_name(checkpoint, manifest),
        "settings": {**asdict(settings), "checkpoint": str(checkpoint.resolve()), "data": str(data_root.resolve()),
                     "evaluator": str(Path(evaluator_path).resolve())},
        "seconds": round(seconds, 1),
        "passing": sum(row["passed"] for row in rows),
        "actions": rows,
    }


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    defaults = ActionEvaluationSettings()
    parser = argparse.ArgumentParser(prog="kmm-train eval-actions",
                                     description="Per-action results of a model bundle: for every action word it "
                                                 "was trained on, whether it produces it; writes actions.md and "
                                                 "actions.json.")
    parser.add_argument("--checkpoint", required=True,
                        help="model: default, open, a shipped bundle name, or a bundle folder (with vocabulary.json)")
    parser.add_argument("--data", type=Path, required=True, help="folder written by kmm-train prepare")
    parser.add_argument("--split", default=defaults.split, help="split whose clips give prompts and real motions "
                                                                "(default: test)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    parser.add_argument("--evaluator", type=Path, help="folder with evaluator.safetensors/.json + Mean/Std.npy "
                                                       "(default: the bundle's)")
    parser.add_argument("--prompts-per-action", type=int, default=defaults.prompts_per_action)
    parser.add_argument("--generations-per-prompt", type=int, default=defaults.generations_per_prompt)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the clip and caption draws and of "
                                                                        "generation")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="retrieval counts the action's prototype "
                                                                          "among the k most similar (default 3)")
    parser.add_argument("--pass-rate", type=float, default=defaults.pass_rate,
                        help="rate the retrieval and every check must reach for PASS (default 0.5)")
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, help="cpu (default), cuda, cuda:N")
    parser.add_argument("--foot-lock", action="store_true",
                        help="measure the joints after the foot-contact cleanup generation applies (default: the "
                             "decoded motion, which the cleanup can change into an action it is not)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is fastest for small models")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 bad input (message on stderr), 2 bad command line (argparse)."""
    from .action_report import write_action_results

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    log = command_log("kmm-train eval-actions", args.quiet)
    if args.threads is not None:
        if (problem := thread_count_problem(args.threads)) is not None:
            print(f"kmm-train eval-actions: error: {problem}", file=sys.stderr)
            return 1
        import torch

        torch.set_num_threads(args.threads)
    try:
        settings = ActionEvaluationSettings(
            split=args.split, prompts_per_action=args.prompts_per_action,
            generations_per_prompt=args.generations_per_prompt, seed=args.seed, top_k=args.top_k,
            pass_rate=args.pass_rate, max_frames=args.max_frames, batch_size=args.batch_size, device=args.device,
            foot_lock=args.foot_lock)
        results = run_action_evaluation(args.checkpoint, args.data, settings, args.evaluator, log)
        results["command"] = "kmm-train eval-actions " + " ".join(argv)
        json_path, md_path = write_action_results(results, args.out)
    except KMMError as error:
        print(f"kmm-train eval-actions: error: {error}", file=sys.stderr)
        return 1
    print(f"[kmm-train eval-actions] {results['passing']} of {len(results['actions'])} actions pass; wrote "
          f"{json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
