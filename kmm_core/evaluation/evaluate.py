# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train eval``: evaluate model bundles on a dataset split and write ``results.json`` + ``results.md``.

::

    kmm-train eval --checkpoint BUNDLE --data DATASET --split test [--replications 20] [--out results/]
    kmm-train eval --compare BUNDLE_A BUNDLE_B ... --data DATASET --out results/
    python -m kmm_core.evaluation.evaluate ...     (the same program)

What is measured (docs/evaluation.md explains each number):

* Text-to-motion metrics (R-precision, FID, Diversity, MM-Dist, MultiModality) through the **evaluator**: the
  separately trained text and motion encoders (``evaluator.safetensors``), never a generator's own aligner.  With
  ``--compare`` every row uses the same evaluator (``--evaluator FOLDER``, else the first bundle that has one), so the
  rows are comparable.
* Directional accuracy (geometric, ``directional.py``) on the split's own side-specific captions and on the
  held-out ``paraphrases.py`` prompts.
* Transition Peak Jerk / AUJ on multi-prompt timelines built from the split's captions, generated through the same
  ``generate_timeline`` the add-on uses; mean jerk over whole motions, foot skating and floor penetration of the
  text-to-motion generations, after the same foot-contact cleanup ``generate_timeline`` applies (``--no-foot-lock``:
  the raw decoded joints).  The evaluator-based metrics (R-precision, FID, ...) read the decoded features, which the
  cleanup does not change.
* Size and speed: parameter count, seconds to generate a 1-minute timeline on the chosen device; the tokenizer's
  reconstruction MPJPE (mm) and codebook perplexity on the split.

Protocol (Guo et al. 2022, adapted): every split clip is one item (a caption with its own time span is an item of its
own), its motion the first ``--max-frames`` frames (a multiple of 4) of its span.  Replication ``r`` uses seed
``base_seed + r`` for the caption chosen per item, the R-precision batches, the pairs of Diversity and
MultiModality and the generator's sampling; generated motions have the real motions' lengths.  The real motion
windows are fixed, so the ground-truth row's FID is 0 by construction: it is the floor, and its R-precision and
MM-Dist are the ceiling the evaluator can reach on real data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..bundle.model_bundle import ModelBundle
from ..common.errors import KMMError
from ..common.progress import command_log
from ..generation.timeline import TRANSITION_MODES
from ..humanml3d.dataset_folder import HumanML3DFolder
from ..humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA
from ..motion.model_timing import MODEL_FPS
from .bundle_metrics import ReplicationCache, evaluate_bundle, evaluate_ground_truth, r_precision_batch
from .evaluator import load_evaluator
from .paraphrases import paraphrase_prompts
from .report import RESULTS_FORMAT_VERSION, write_results
from .settings import GROUND_TRUTH, EvaluationError, EvaluationSettings
from .split_data import EvaluationData, spread


def checkpoint_name(path: Path, manifest: dict[str, Any]) -> str:
    """A row name: bundle.json's "name", else the folder name (with its parent for the usual RUN/bundle)."""
    name = manifest.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.name == "bundle" else path.name


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _all_metric_keys(rows: list[dict[str, Any]]) -> None:
    """Give every row every metric key (None where the metric does not apply), in table order."""
    from .report import METRIC_KEYS

    for row in rows:
        row["metrics"] = {key: row["metrics"].get(key) for key in METRIC_KEYS}


def _body_plot(path: Path, name: str, data: EvaluationData, kinds: list[str],
               examples: dict[str, list]) -> Path | None:
    """The body plot of one checkpoint: the split's first walking and first standing item (None when it has
    neither)."""
    from .body_plots import write_body_plot

    columns = []
    for kind in ("locomotion", "standing"):
        if kind in kinds and "generated" in examples:
            index = kinds.index(kind)
            motions = {"real": data.joints[index], "generated": examples["generated"][index]}
            if "tokenizer" in examples:
                motions["tokenizer"] = examples["tokenizer"][index]
            columns.append((f"{kind}: {data.items[index].captions[0]}", motions))
    if not columns:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_body_plot(path, name, columns, MODEL_FPS)


def run_evaluation(checkpoints: Sequence[str | Path], data_root: str | Path, settings: EvaluationSettings,
                   evaluator_path: str | Path | None = None,
                   log: Callable[[str], None] = lambda _m: None,
                   plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate every checkpoint (bundle folder) on `data_root`'s split; returns the results document.  With
    `plot_dir`, each checkpoint's body plot (body_plots.py) is written there as `body-<n>.png`."""
    from ..bundle.model_bundle import read_manifest

    if not checkpoints:
        raise EvaluationError("no checkpoint to evaluate: give --checkpoint BUNDLE or --compare BUNDLE ...")
    # Check every path before any slow work, so a typo fails in a second.
    manifests = [read_manifest(path) for path in checkpoints]
    data_folder = HumanML3DFolder(data_root)
    data_folder.split_names(settings.split)
    if evaluator_path is None:
        with_evaluator = [Path(p) for p, m in zip(checkpoints, manifests, strict=True)
                          if "evaluator" in m.get("components", [])]
        if not with_evaluator:
            raise EvaluationError(f"no evaluator: none of {', '.join(map(str, checkpoints))} contains "
                                  f"evaluator.safetensors; train one with `kmm-train evaluator` and pass its run "
                                  f"folder with --evaluator FOLDER")
        evaluator_path = with_evaluator[0]
    evaluator = load_evaluator(evaluator_path, settings.device)
    log(f"loading {settings.split} split of {data_root}")
    data = EvaluationData.load(data_root, settings)
    cache = ReplicationCache(data, evaluator, settings)
    rows = [{"name": GROUND_TRUTH, "kind": "ground_truth", "checkpoint": None, "metrics": evaluate_ground_truth(cache)}]
    suffix = ("" if settings.foot_lock else " (no foot lock)") + (
        "" if settings.smoothing == DECODED_SMOOTHING_SIGMA else f" (smoothing {settings.smoothing:g})") + (
        "" if settings.standing_root_sigma is None else " (no standing-root smoothing)"
        if settings.standing_root_sigma == 0 else f" (standing-root sigma {settings.standing_root_sigma:g})")
    names = _unique([checkpoint_name(Path(p), m) + suffix for p, m in zip(checkpoints, manifests, strict=True)])
    plots = []
    for number, (name, path) in enumerate(zip(names, checkpoints, strict=True), start=1):
        log(f"evaluating {name} ({path})")
        bundle = ModelBundle.load(path, device=settings.device)
        examples: dict[str, list] = {}
        rows.append({"name": name, "kind": "checkpoint", "checkpoint": str(Path(path).resolve()),
                     "metrics": evaluate_bundle(bundle, cache, log, examples)})
        if plot_dir is not None:
            plot = _body_plot(Path(plot_dir) / f"body-{number}.png", name, data, cache.kinds, examples)
            if plot is not None:
                plots.append(f"{plot.name}: {name}")
    _all_metric_keys(rows)
    batch = r_precision_batch(len(data.items))
    notes = {
        "evaluator": str(Path(evaluator_path).resolve()),
        "items": f"{len(data.items)} of {len(data.all_items)} items of the split",
        "r_precision_chance": f"top-k chance level is k/{batch} (batches of {batch} pairs): "
                              + ", ".join(f"top-{k} {k / batch:.3f}" for k in range(1, min(3, batch) + 1)),
        "directional_prompts": f"{len(data.directional)} side-specific captions of the split; "
                               f"{len(spread(paraphrase_prompts(), settings.max_directional))} held-out paraphrases",
        "transitions": f"{settings.transition_timelines} timelines x {settings.transition_segments} captions per "
                       f"replication, 1-second windows; ground-truth jerk level {cache.jerk_level:.1f} m/s^3",
        "parameters": "tokenizer + generator (+ aligner when it conditions the generator); MiniLM not counted",
        "ground_truth": "real motion windows are fixed, so FID(ground truth) = 0; its R-precision and MM-Dist are the "
                        "evaluator's ceiling on real data",
        "subsets": "animator subsets of the split: " + ", ".join(
            f"{name.replace('_', ' ')} {len(items)} items" for name, items in cache.subsets.items()) + (
            "; short action after a walk: one timeline per replication" if settings.short_action else ""),
        "body_parts": f"items by caption: {cache.kinds.count('locomotion')} walking/running, "
                      f"{cache.kinds.count('standing')} standing, {cache.kinds.count('other')} other",
    }
    if plots:
        notes["body_plots"] = "; ".join(plots) + " (real vs generated and the tokenizer's reconstruction, one "\
                              "walking and one standing item: pelvis height, pelvis speed, head jerk)"
    subset_items = {"split": len(data.items), **{name: len(items) for name, items in cache.subsets.items()}}
    return {"format_version": RESULTS_FORMAT_VERSION, "subset_items": subset_items,
            "settings": {**asdict(settings), "data": str(Path(data_root).resolve()),
                         "checkpoints": [str(Path(p).resolve()) for p in checkpoints],
                         "r_precision_batch": batch},
            "notes": notes, "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    defaults = EvaluationSettings()
    parser = argparse.ArgumentParser(prog="kmm-train eval",
                                     description="Evaluate KMM model bundles; writes results.json and results.md.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="model to evaluate: default, open, a shipped bundle's name or a bundle "
                                            "folder")
    which.add_argument("--compare", nargs="+", metavar="BUNDLE",
                       help="several models (names or bundle folders): one table row each, all measured with the "
                            "same evaluator")
    parser.add_argument("--data", type=Path, required=True, help="HumanML3D-layout dataset folder")
    parser.add_argument("--split", default=defaults.split, help="split file to evaluate on (default: test)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    parser.add_argument("--evaluator",
                        help="a model name (default, open, ...) or a folder with evaluator.safetensors/.json + "
                             "Mean/Std.npy (default: the first bundle's)")
    parser.add_argument("--replications", type=int, default=defaults.replications)
    parser.add_argument("--seed", type=int, default=defaults.base_seed, help="seed of the first replication")
    parser.add_argument("--max-samples", type=int, default=None, help="use at most this many items of the split")
    parser.add_argument("--mm-texts", type=int, default=defaults.mm_texts)
    parser.add_argument("--mm-generations", type=int, default=defaults.mm_generations)
    parser.add_argument("--max-directional", type=int, default=None,
                        help="use at most this many directional split prompts and paraphrases")
    parser.add_argument("--transition-timelines", type=int, default=defaults.transition_timelines)
    parser.add_argument("--transition-segments", type=int, default=defaults.transition_segments)
    parser.add_argument("--timing-runs", type=int, default=defaults.timing_runs)
    parser.add_argument("--timing-seconds", type=float, default=defaults.timing_seconds,
                        help="length of the timed timeline (default 60; the result is scaled to seconds per minute)")
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, help="cpu (default), cuda, cuda:N, auto")
    parser.add_argument("--transitions", choices=TRANSITION_MODES, default=defaults.transitions,
                        help=f"how timeline prompts meet in the transition and timing metrics (default: "
                             f"{defaults.transitions}, the generation default)")
    parser.add_argument("--no-foot-lock", dest="foot_lock", action="store_false",
                        help="measure the raw decoded motion (default: after the foot-contact cleanup generation "
                             "applies); rows are named '... (no foot lock)'")
    parser.add_argument("--smoothing", type=float, default=defaults.smoothing, metavar="FRAMES",
                        help=f"Gaussian on decoded features, in 20 fps frames (default {defaults.smoothing:g}, as "
                             f"generation; 0: the raw decoder output); other values name the rows '... (smoothing S)'")
    standing = parser.add_mutually_exclusive_group()  # one rule: a sigma, or none, never both
    standing.add_argument("--standing-root-sigma", dest="standing_root_sigma", type=float, metavar="FRAMES",
                        help="the standing captions' second root Gaussian, in 20 fps frames (default: each model's "
                             "own, as generation; 0: off); rows are named '... (standing-root sigma S)'")
    standing.add_argument("--no-standing-root-smoothing", dest="standing_root_sigma", action="store_const",
                        const=0.0, help="keep the root of standing captions as decoded (--standing-root-sigma 0); "
                                        "rows are named '... (no standing-root smoothing)'")
    parser.add_argument("--subset-items", type=int, default=defaults.subset_items, metavar="N",
                        help=f"at most N items in each animator subset, calm standing and walking (default "
                             f"{defaults.subset_items}; 0: no subsets)")
    parser.add_argument("--no-short-action", dest="short_action", action="store_false",
                        help="skip the short action after a walk (one timeline per replication)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 bad input (message on stderr), 2 bad command line (argparse)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    log = command_log("kmm-train eval", args.quiet)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        settings = EvaluationSettings(
            split=args.split, replications=args.replications, base_seed=args.seed, max_samples=args.max_samples,
            mm_texts=args.mm_texts, mm_generations=args.mm_generations, max_directional=args.max_directional,
            transition_timelines=args.transition_timelines, transition_segments=args.transition_segments,
            timing_runs=args.timing_runs, timing_seconds=args.timing_seconds,
            max_frames=args.max_frames, batch_size=args.batch_size,
            device=device, transitions=args.transitions, foot_lock=args.foot_lock, smoothing=args.smoothing,
            standing_root_sigma=args.standing_root_sigma, subset_items=args.subset_items, short_action=args.short_action)
        from ..bundle.model_choice import resolve_model

        checkpoints = [resolve_model(c) for c in ([args.checkpoint] if args.checkpoint is not None else args.compare)]
        evaluator = resolve_model(args.evaluator) if args.evaluator else None
        results = run_evaluation(checkpoints, args.data, settings, evaluator, log, plot_dir=args.out)
        json_path, md_path = write_results(results, args.out)
    except KMMError as error:
        print(f"kmm-train eval: error: {error}", file=sys.stderr)
        return 1
    print(f"[kmm-train eval] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
