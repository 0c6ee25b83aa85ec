# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train``: prepare data, train the KMM stages, assemble a model bundle.

Examples::

    kmm-train prepare --out data/prepared --bandai-namco ... --cmu ...
    kmm-train tokenizer --config training/configs/small.toml --out runs/small
    kmm-train decoder --config training/configs/small-all-data.toml --out runs/small-all   # smoother decoder only
    kmm-train all --config training/configs/small.toml --out runs/small          # bundle in runs/small/bundle
    kmm-train all --config training/configs/small.toml --out runs/small --resume # continue after Ctrl-C
    kmm-train vocabulary --dataset data/prepared --bundle runs/small/bundle      # what the model knows
    kmm-train gait-cycles --dataset data/prepared --bundle runs/small/bundle     # real strides under its walks
    kmm-train ablate --base runs/small --rows keyframe_gaussian,dpc_knn,random --seeds 0,1,2 --out runs/seeds
    torchrun --nproc_per_node 4 -m kmm_core.training.cli generator --config training/configs/full.toml --out runs/full
    python -m kmm_core.training.cli --help

Every stage takes ``--config``, ``--out`` (the run folder shared by all stages), ``--resume``, ``--set key=value``
(repeatable, e.g. ``--set train.tokenizer.steps=100``) and ``--device`` (auto, cpu, cuda, cuda:1).
Exit codes: 0 done, 1 bad input or a failed stage (message on stderr), 130 stopped by Ctrl-C / SIGTERM (resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..common.errors import KMMError
from ..common.limits import thread_count_problem

STAGE_COMMANDS = ("tokenizer", "aligner", "evaluator", "generator", "decoder")
EXIT_STOPPED = 130


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="TOML config (see training/configs/)")
    parser.add_argument("--out", required=True, type=Path, help="run folder shared by all stages")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoints in --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.tokenizer.steps=100 (repeatable)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is fastest for tiny models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmm-train", description="Train KMM (Key Frame Mask Mamba) models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("prepare", help="build a HumanML3D-layout dataset from BVH (see kmm-train prepare --help)",
                        add_help=False)
    for stage in STAGE_COMMANDS:
        help_text = (f"train the {stage}" if stage != "decoder" else
                     "retrain the tokenizer's decoder alone for smoothness ([decoder] jerk_weight; codes unchanged)")
        _add_training_options(commands.add_parser(stage, help=help_text))
    every = commands.add_parser("all", help="train every stage in order, then assemble the model bundle")
    _add_training_options(every)
    every.add_argument("--stages", default=",".join(STAGE_COMMANDS),
                       help="comma-separated stages to run (default: all; decoder only when [decoder] jerk_weight > 0)")
    every.add_argument("--bundle", type=Path, help="bundle folder (default: OUT/bundle)")
    every.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="bundle weight precision")
    every.add_argument("--name", help="model name stored in the bundle (kmm-train eval's row name)")
    every.add_argument("--action-results", type=Path, metavar="FILE",
                       help="per-action results markdown (kmm-train eval-actions) for the model card")
    bundle = commands.add_parser("bundle", help="assemble a model bundle from a finished run folder")
    bundle.add_argument("--run", required=True, type=Path, help="run folder written by the stages")
    bundle.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    bundle.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    bundle.add_argument("--name", help="model name stored in the bundle (kmm-train eval's row name)")
    bundle.add_argument("--action-results", type=Path, metavar="FILE",
                        help="per-action results markdown (kmm-train eval-actions' actions.md), included verbatim "
                             "in the model card's Per-action results section")
    vocabulary = commands.add_parser("vocabulary", help="add what a model was trained on (vocabulary.json) and the "
                                     "out-of-vocabulary check's caption embeddings to a bundle")
    vocabulary.add_argument("--dataset", type=Path, help="the prepared data the model trained on (required but with "
                            "--conditions-only)")
    vocabulary.add_argument("--bundle", required=True, type=Path, help="bundle folder (only vocabulary files are "
                            "written into it)")
    vocabulary.add_argument("--name", help="model name (default: bundle.json's name)")
    vocabulary.add_argument("--motion-only", action="store_true",
                            help="only measure what each action's training clips do (walk, walk steadily, stand: "
                                 "which decoding a prompt gets) and write it into the bundle's vocabulary.json, "
                                 "keeping its captions and embeddings")
    vocabulary.add_argument("--conditions-only", action="store_true",
                            help="only write the generator's conditions of the training captions into the bundle's "
                                 "vocabulary.safetensors (a bundle made before they were stored: a prompt far from "
                                 "every caption is then conditioned as its nearest captions are)")
    cycles = commands.add_parser("gait-cycles", help="add real gait cycles, cut from the walks and runs of the "
                                 "training split, which generation plays under a generated walk")
    cycles.add_argument("--dataset", required=True, type=Path, help="the prepared data the model trained on")
    cycles.add_argument("--bundle", required=True, type=Path, help="bundle folder (only the gait cycle files are "
                        "written into it)")
    standing = _prompt_decoder_parser(commands, "standing-decoder", "(e.g. with [decoder] still_weight) to decode its "
                                      "standing prompts' frames")
    standing.add_argument("--standing-root-sigma", type=float, metavar="FRAMES", help="also store the standing-root "
                          "smoothing chosen against this decoder as the bundle's decoding.standing_root_sigma")
    _prompt_decoder_parser(commands, "walking-decoder", "(e.g. with a lighter [decoder] jerk_weight) to decode its "
                           "walks' and runs' frames")
    _bundle_and_run_parser(commands, "refined-decoder", "put into a bundle the tokenizer whose decoder a `kmm-train "
                           "decoder` run refined from it (e.g. with [decoder] hand_weight): it decodes every frame no "
                           "prompt decoder makes", "bundle folder the decoder was refined from (its encoder and "
                           "codebooks must be the run's)", "run folder of the decoder stage (RUN/decoder.safetensors)")
    _prompt_decoder_parser(commands, "gesture-decoder", "(e.g. with [decoder] hand_weight) to decode its standing "
                           "prompts' arms")
    _bundle_and_run_parser(commands, "fine-tuned-generator", "put into a bundle the generator a `kmm-train generator` "
                           "run fine-tuned from it ([train.generator] init_weights), with the run's data summary, "
                           "licence and vocabulary", "bundle folder the generator was fine-tuned from (its tokenizer, "
                           "aligner and Mean/Std must be the run's)", "run folder of the fine-tune "
                           "(RUN/generator.safetensors)")
    results = commands.add_parser("action-results", help="put the per-action results `kmm-train eval-actions` "
                                  "measured on a bundle (its actions.md) into that bundle's model card")
    results.add_argument("--bundle", required=True, type=Path, help="bundle folder whose card gets them")
    results.add_argument("--results", required=True, type=Path, metavar="FILE", help="actions.md of `kmm-train "
                         "eval-actions --checkpoint BUNDLE`")
    average = commands.add_parser("average-generators", help="average the generators of fine-tunes of one start "
                                  "(e.g. one recipe at several seeds) into a run folder that `kmm-train "
                                  "fine-tuned-generator` puts into their bundle")
    average.add_argument("--runs", required=True, nargs="+", type=Path, metavar="RUN",
                         help="two or more `kmm-train generator` fine-tune folders of one start")
    average.add_argument("--out", required=True, type=Path, help="run folder to write (a new one)")
    average.add_argument("--start-weight", type=float, default=0.0, metavar="W",
                         help="mix the runs' start back in: W x the start + (1 - W) x the runs' mean (default 0; "
                         "one run is enough when W > 0)")
    average.add_argument("--start", type=Path, default=None, metavar="FILE",
                         help="a copy of the start's generator.safetensors (default: the runs' init_weights); "
                         "its SHA-256 must be the one the runs recorded when they began")
    commands.add_parser("eval", help="evaluate a model bundle (see kmm-train eval --help)", add_help=False)
    commands.add_parser("eval-actions", help="per-action results: does the model produce each action word it was "
                        "trained on (see kmm-train eval-actions --help)", add_help=False)
    commands.add_parser("check-words", help="check every action word of a bundle on generated motion; writes "
                        "BUNDLE/word_checks.json (see kmm-train check-words --help)", add_help=False)
    commands.add_parser("check-captions", help="generate every train caption of a bundle once and judge it by its "
                        "action's check; writes BUNDLE/caption_checks.json, from which the prompt warnings predict "
                        "what the model will not perform (see kmm-train check-captions --help)", add_help=False)
    commands.add_parser("ablate", help="seed study: masking rows x training seeds, trained, evaluated, tabulated "
                        "(see kmm-train ablate --help)", add_help=False)
    return parser


def _bundle_and_run_parser(commands: argparse._SubParsersAction, command: str, help_text: str, bundle_help: str,
                           run_help: str) -> argparse.ArgumentParser:
    """The parser of a command that puts what a run trained into a bundle (`--bundle B --run R`)."""
    parser = commands.add_parser(command, help=help_text)
    parser.add_argument("--bundle", required=True, type=Path, help=bundle_help)
    parser.add_argument("--run", required=True, type=Path, help=run_help)
    return parser


def _prompt_decoder_parser(commands: argparse._SubParsersAction, command: str, purpose: str) -> argparse.ArgumentParser:
    """The parser of a command that adds a prompt decoder to a bundle (`kmm-train standing-decoder`, ...)."""
    return _bundle_and_run_parser(commands, command, f"add to a bundle the decoder a `kmm-train decoder` run refined "
                                  f"{purpose}", "bundle folder (its tokenizer decodes the rest)", "run folder whose "
                                  "decoder stage refined the bundle's tokenizer (RUN/decoder.safetensors)")


def bundle_licence(path: Path) -> str:
    from ..bundle.model_bundle import read_manifest

    return str(read_manifest(path).get("licence"))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # prepare / eval own their options: hand everything after the command word to them untouched.
    if argv and argv[0] == "prepare":
        from .prepare_command import main as prepare_main

        return prepare_main(argv[1:])
    if argv and argv[0] == "eval":
        from ..evaluation.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv and argv[0] == "eval-actions":
        from ..evaluation.action_evaluation import main as action_evaluation_main

        return action_evaluation_main(argv[1:])
    if argv and argv[0] == "check-words":
        from ..evaluation.word_checks import main as word_checks_main

        return word_checks_main(argv[1:])
    if argv and argv[0] == "check-captions":
        from .caption_checks_command import main as caption_checks_main

        return caption_checks_main(argv[1:])
    if argv and argv[0] == "ablate":
        from .ablate_command import main as ablate_main

        return ablate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KMMError as error:
        print(f"kmm-train {args.command}: error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from .bundle_vocabulary import (
        add_action_motion,
        add_caption_conditions,
        add_vocabulary,
        add_vocabulary_after_bundle,
    )
    from .bundle_writer import assemble_bundle

    threads = getattr(args, "threads", None)
    if threads is not None and (problem := thread_count_problem(threads)) is not None:
        raise KMMError(problem)  # before any work: torch's thread pool crashed (SIGSEGV) on 100,000
    if getattr(args, "action_results", None) is not None:  # a bad file fails now, not after hours of training
        from .model_card import read_action_results

        read_action_results(args.action_results)
    if args.command == "bundle":
        path = assemble_bundle(args.run, args.out, dtype=args.dtype, model_name=args.name,
                               action_results=args.action_results)
        print(f"[kmm-train] bundle written to {path} (licence: {bundle_licence(path)})")
        print(f"[kmm-train] {add_vocabulary_after_bundle(path, args.run, args.name)}")
        return 0
    if args.command in ("standing-decoder", "walking-decoder", "gesture-decoder"):
        from .bundle_writer import attach_prompt_decoder

        name = args.command.replace("-", "_")
        manifest = attach_prompt_decoder(args.bundle, args.run, name, getattr(args, "standing_root_sigma", None))
        print(f"[kmm-train] {name.replace('_', ' ')} from {args.run} added to {args.bundle} "
              f"(components: {', '.join(manifest['components'])}; word checks removed: run `kmm-train check-words "
              f"--checkpoint {args.bundle}` to measure the new decoder's motion)")
        return 0
    if args.command == "refined-decoder":
        from .bundle_writer import replace_tokenizer_decoder

        replace_tokenizer_decoder(args.bundle, args.run)
        print(f"[kmm-train] tokenizer with the decoder refined in {args.run} put into {args.bundle} (word checks "
              f"removed: run `kmm-train check-words --checkpoint {args.bundle}` to measure the new decoder's motion)")
        return 0
    if args.command == "fine-tuned-generator":
        from .bundle_writer import replace_generator

        manifest = replace_generator(args.bundle, args.run)
        print(f"[kmm-train] generator of {args.run} put into {args.bundle} (licence: {manifest.get('licence')})")
        print(f"[kmm-train] {add_vocabulary_after_bundle(args.bundle, args.run, manifest.get('name'))}")
        return 0
    if args.command == "action-results":
        from .model_card import read_action_results, set_action_results

        if set_action_results(args.bundle, read_action_results(args.results)) is None:
            raise KMMError(f"{args.bundle}: no model card with a per-action results section (README.md)")
        print(f"[kmm-train] per-action results of {args.results} put into {args.bundle / 'README.md'}")
        return 0
    if args.command == "average-generators":
        from .generator_average import average_generators

        out = average_generators(args.runs, args.out, start_weight=args.start_weight, start=args.start)
        mixed = f", {args.start_weight:.12g} of the way back to their start," if args.start_weight > 0 else ""
        what = f"the mean of {len(args.runs)} generators" if len(args.runs) > 1 else "the run's generator"
        print(f"[kmm-train] {what}{mixed} written to {out}: put it into their bundle with `kmm-train "
              f"fine-tuned-generator --bundle BUNDLE --run {out}`")
        return 0
    if args.command == "vocabulary" and args.conditions_only:
        count = add_caption_conditions(args.bundle)
        print(f"[kmm-train] the conditions of {count} training captions written to "
              f"{args.bundle / 'vocabulary.safetensors'}")
        return 0
    if args.command == "vocabulary" and args.dataset is None:
        raise KMMError("--dataset is required (the prepared data the model trained on), but with --conditions-only")
    if args.command == "vocabulary" and args.motion_only:
        motion = add_action_motion(args.bundle, args.dataset)
        print(f"[kmm-train] action motion of {len(motion)} actions written to {args.bundle / 'vocabulary.json'}")
        return 0
    if args.command == "gait-cycles":
        from .gait_cycle_library import add_gait_cycles

        print(f"[kmm-train] {add_gait_cycles(args.bundle, args.dataset)}")
        return 0
    if args.command == "vocabulary":
        report = add_vocabulary(args.bundle, args.dataset, args.name)
        print(f"[kmm-train] vocabulary written to {args.bundle}: {json.dumps(report, indent=1)}")
        return 0
    import torch

    from .stages import load_project_config

    config = load_project_config(args.config, args.overrides)
    check_run_folders(args)
    previous_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _train(args, config)
    finally:
        torch.set_num_threads(previous_threads)  # matters when main() is called in-process (tests)


def check_run_folders(args: argparse.Namespace) -> None:
    """`--out` (and `all --bundle`) name folders: a file there, or a folder that cannot be made or written, is one
    line now, before any data is read or any model built."""
    from ..common.atomic_write import check_output_folder

    for option, folder in (("--out", args.out), ("--bundle", getattr(args, "bundle", None))):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise KMMError(f"{option} {folder}: is a file, not a folder; name a run folder (a new one, or the one to "
                           "continue with --resume)" if option == "--out" else
                           f"{option} {folder}: is a file, not a folder; name a new bundle folder")
    try:
        check_output_folder(args.out)
    except KMMError as error:
        raise KMMError(f"--out: {error}") from None


def _train(args: argparse.Namespace, config) -> int:
    from .bundle_vocabulary import add_vocabulary_after_bundle
    from .bundle_writer import assemble_bundle
    from .stages import run_stages

    stages = [args.command] if args.command in STAGE_COMMANDS else [s.strip() for s in args.stages.split(",") if s]
    started = time.perf_counter()
    results = run_stages(config, args.out, stages, resume=args.resume, device=args.device,
                         progress=not args.no_progress)
    for result in results if os.environ.get("RANK", "0") == "0" else ():
        loss = "n/a" if result.train.train_loss is None else f"{result.train.train_loss:.4f}"
        print(f"[kmm-train] {result.stage}: step {result.train.step}, loss {loss}, weights {result.weights}")
    if any(result.train.stopped_by for result in results):
        print("[kmm-train] stopped; continue with --resume", file=sys.stderr)
        return EXIT_STOPPED
    if args.command == "all" and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes the bundle
        bundle = assemble_bundle(args.out, args.bundle or Path(args.out) / "bundle", dtype=args.dtype,
                                 model_name=args.name, action_results=args.action_results)
        print(f"[kmm-train] bundle written to {bundle} ({time.perf_counter() - started:.1f} s in all; licence: "
              f"{bundle_licence(bundle)})")
        print(f"[kmm-train] {add_vocabulary_after_bundle(bundle, args.out, args.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
