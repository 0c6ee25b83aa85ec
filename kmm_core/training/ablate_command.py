# SPDX-License-Identifier: GPL-3.0-or-later
"""``kmm-train ablate``: the seed study of KMM's masking claim as one resumable command.

::

    kmm-train ablate --base runs/small --rows keyframe_gaussian,dpc_knn,random --seeds 0,1,2 \\
        --out runs/ablation-seeds [--config FILE] [--set KEY=VALUE ...] [--steps N] [--resume] [--shard K/N]

For every training seed, then every row, one generator is trained on the base run's frozen tokenizer and aligner
with the config's full generator schedule (``--steps`` shortens it), the row's masker (``keyframe_gaussian``: KMM's
Gaussian density peaks; ``dpc_knn``: the DPC-kNN density; ``random``) and ``train.generator.seed`` = the training
seed (weight initialisation, data order, mask draws); then it is bundled and evaluated through ``kmm-train eval``'s
own code with the base run's evaluator; after each run the table ``OUT/results.md`` / ``results.json``
(:mod:`..evaluation.seed_table`: mean ± 95% CI over training seeds, per-seed values, verdict lines) is rewritten
from every finished run.

The study folder::

    OUT/study.json                      what the study measures (base, config, evaluation settings): --resume checks it
    OUT/runs/<row>-seed<S>/             a run folder: the base's shared files (copied) + the generator stage
    OUT/bundles/<row>-seed<S>/          its bundle (rebuilt whenever its evaluation is missing)
    OUT/evaluations/<row>-seed<S>/      its results.json / results.md (the run is finished when these exist)
    OUT/results.json, OUT/results.md    the table over training seeds

``--shard K/N`` takes only every N-th planned run, starting with the K-th, so that N processes (one per core, each
``--threads 1``, each with ``--resume``) share one study folder; each rewrites the table from every finished run, and a
last ``--resume`` without ``--shard`` writes the final table (every run finished, nothing trained).

``--resume`` skips finished runs, continues the interrupted generator from its last checkpoint and starts the rest.
Ctrl-C / SIGTERM during training stop at a step boundary with a checkpoint; at any other moment nothing is
half-written (every file is written under a temporary name and renamed).  Exit codes as every ``kmm-train``
command: 0 done, 1 bad input, 130 stopped (continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..common.atomic_write import atomic_directory, atomic_path, write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import ConfigError, InputFileError, KMMError
from ..common.limits import thread_count_problem
from ..evaluation.evaluate import run_evaluation
from ..evaluation.report import RESULTS_JSON, read_results, write_results
from ..evaluation.seed_table import BASELINE_ROW, compare_rows, markdown_seed_table, summarise_seeds
from ..evaluation.settings import EvaluationSettings
from .config import ProjectConfig, config_from_dict, config_to_dict, load_config

EXIT_STOPPED = 130
STUDY_FILE = "study.json"
STUDY_FORMAT_VERSION = 1
#: Row name -> (GeneratorConfig.masker, title of the table row).
ROWS: dict[str, tuple[str, str]] = {
    "keyframe_gaussian": ("keyframe_gaussian", "Key-frame masking (Gaussian density)"),
    "dpc_knn": ("keyframe_knn", "Key-frame masking (DPC-kNN)"),
    "random": ("random", "Random masking"),
}
#: Files of the base run every study run reuses (the recipe of training/README.md, "Ablations").
SHARED_FILES = ("Mean.npy", "Std.npy", "dataset.json", "tokenizer.safetensors", "tokenizer.json",
                "aligner.safetensors", "aligner.json")
#: The generator stage's encoded-data cache: valid for every run of one tokenizer + aligner (its key checks that).
CACHE_FILES = ("generator_train.safetensors", "generator_val.safetensors")


class SeedStudyError(KMMError, ValueError):
    """The study cannot run as asked (bad rows or seeds, a base run lacking a stage, a changed study)."""


@dataclass(frozen=True)
class StudyRun:
    row: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row}-seed{self.seed}"


def parse_rows(text: str) -> list[str]:
    rows = [row.strip() for row in text.split(",") if row.strip()]
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise SeedStudyError(f"--rows: {', '.join(unknown) or 'nothing given'}: rows are {', '.join(ROWS)}")
    if len(set(rows)) != len(rows):
        raise SeedStudyError(f"--rows: a row is named twice in {text!r}")
    return rows


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise SeedStudyError(f"--seeds: {text!r} is not a comma-separated list of integers") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SeedStudyError(f"--seeds: need distinct seeds >= 0, got {text!r}")
    return seeds


def planned_runs(rows: Sequence[str], seeds: Sequence[int]) -> list[StudyRun]:
    """Seed by seed, every row: an interrupted study already has comparable rows at the first seeds."""
    return [StudyRun(row, seed) for seed in seeds for row in rows]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; ``None`` -> (1, 1), every run."""
    if text is None:
        return 1, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SeedStudyError(f"--shard: {text!r} is not K/N (e.g. 1/2)") from None
    if not 1 <= index <= count:
        raise SeedStudyError(f"--shard: {text!r} needs 1 <= K <= N")
    return index, count


def shard_runs(runs: Sequence[StudyRun], shard: tuple[int, int]) -> list[StudyRun]:
    """The runs of shard (K, N): the K-th planned run and every N-th after it."""
    index, count = shard
    return list(runs[index - 1::count])


def study_config(base: Path, config_path: Path | None, overrides: Sequence[str], steps: int | None) -> ProjectConfig:
    """The study's ProjectConfig: ``--config`` (else the base run's resolved ``config.json``) + ``--set`` + ``--steps``."""
    overrides = list(overrides) + ([f"train.generator.steps={steps}"] if steps is not None else [])
    if config_path is not None:
        return load_config(config_path, ProjectConfig, overrides)
    table = read_json(base / "config.json", "base run's resolved config", allow_non_finite=True)
    return config_from_dict(ProjectConfig, table, source=str(base / "config.json"), overrides=overrides)


def run_config(config: ProjectConfig, run: StudyRun) -> ProjectConfig:
    """The study config with the row's masker and the training seed."""
    return config_from_dict(ProjectConfig, config_to_dict(config), source=f"study run {run.name}",
                            overrides=[f"generator.masker={ROWS[run.row][0]}", f"train.generator.seed={run.seed}"])


def check_base(base: Path, config: ProjectConfig) -> None:
    needed = ["Mean.npy", "Std.npy", "tokenizer.safetensors", "tokenizer.json", "evaluator.safetensors",
              "evaluator.json"]
    if config.generator.condition_source == "aligner":
        needed += ["aligner.safetensors", "aligner.json"]
    for name in needed:
        if not (base / name).is_file():
            raise InputFileError(base / name, "not found: --base must be a finished run folder (kmm-train all)")


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def prepare_run_folder(base: Path, out: Path, run_dir: Path) -> None:
    """Copy the base's shared files (and a generator cache, if one exists yet) into a study run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        if (base / name).is_file() and not (run_dir / name).is_file():
            _copy_atomic(base / name, run_dir / name)
    sources = [base / "cache", *sorted((out / "runs").glob("*/cache"))]
    for name in CACHE_FILES:
        if (run_dir / "cache" / name).is_file():
            continue
        found = next((folder / name for folder in sources if (folder / name).is_file()), None)
        if found is not None:
            (run_dir / "cache").mkdir(exist_ok=True)
            _copy_atomic(found, run_dir / "cache" / name)


def _first_difference(stored: Any, current: Any, where: str = "") -> str | None:
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in sorted(set(stored) | set(current)):
            found = _first_difference(stored.get(key), current.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if stored == current else f"{where}: {stored!r} then, {current!r} now"


def open_study(out: Path, record: dict[str, Any], resume: bool) -> None:
    """Write OUT/study.json, or with ``resume`` check that the stored study measures the same as this one."""
    path = out / STUDY_FILE
    if path.is_file():
        if not resume:
            raise SeedStudyError(f"{out}: already holds a seed study ({STUDY_FILE}); continue it with --resume or "
                                 f"choose another --out")
        stored = read_json(path, "seed study record", allow_non_finite=True)
        difference = _first_difference({k: stored.get(k) for k in record}, record)
        if difference:
            raise SeedStudyError(f"{path}: --resume must measure the same study; {difference} (rows and seeds may "
                                 f"change, not the base, config, data or evaluation settings)")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def study_table(out: Path, runs: Sequence[StudyRun], config: ProjectConfig, base: Path) -> dict[str, Any]:
    """The table document from every finished run of ``runs`` (their evaluations' results.json)."""
    per_row: dict[str, dict[int, dict[str, Any]]] = {}
    ground_truth: dict[str, Any] = {}
    for run in runs:
        results_path = out / "evaluations" / run.name / RESULTS_JSON
        if not results_path.is_file():
            continue
        results = read_results(results_path)
        ground_truth = ground_truth or results["rows"][0]["metrics"]
        per_row.setdefault(run.row, {})[run.seed] = results["rows"][1]["metrics"]
    rows = [{"row": row, "masker": ROWS[row][0], "title": ROWS[row][1], "seeds": sorted(per_seed),
             "metrics": summarise_seeds(dict(sorted(per_seed.items())))}
            for row, per_seed in per_row.items()]
    by_name = {row["row"]: row for row in rows}
    verdicts = []
    if BASELINE_ROW in by_name:
        for row in rows:
            if row["row"] != BASELINE_ROW:
                verdicts += compare_rows(row["metrics"], by_name[BASELINE_ROW]["metrics"], ground_truth, row["row"])
    return {"format_version": STUDY_FORMAT_VERSION, "planned_runs": len(runs),
            "finished_runs": sum(len(row["seeds"]) for row in rows),
            "generator_steps": config.train.generator.steps, "evaluator": str(base.resolve()),
            "ground_truth": ground_truth, "rows": rows, "verdicts": verdicts}


def write_study_table(out: Path, table: dict[str, Any]) -> tuple[Path, Path]:
    json_path, md_path = out / "results.json", out / "results.md"
    write_text_atomic(json_path, json.dumps(table, indent=2, allow_nan=False) + "\n")
    write_text_atomic(md_path, markdown_seed_table(table))
    return json_path, md_path


def build_parser() -> argparse.ArgumentParser:
    defaults = EvaluationSettings()
    parser = argparse.ArgumentParser(
        prog="kmm-train ablate",
        description="Seed study: train each masking row with several training seeds on a finished base run, "
                    "evaluate each with the base's evaluator, tabulate mean ± 95% CI over training seeds.")
    parser.add_argument("--base", required=True, type=Path,
                        help="finished run folder: its tokenizer, aligner, evaluator, Mean/Std are reused")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    parser.add_argument("--out", required=True, type=Path, help="study folder")
    parser.add_argument("--config", type=Path, help="TOML config (default: the base run's config.json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--steps", type=int, help="generator steps (default: the config's full schedule)")
    parser.add_argument("--resume", action="store_true", help="continue the study in --out")
    parser.add_argument("--shard", metavar="K/N",
                        help="run only the K-th planned run and every N-th after it (N processes share --out; give "
                             "each --resume); the table covers every finished run")
    parser.add_argument("--device", default="auto", help="training device: auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (1 is fastest here)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="bundle precision")
    evaluation = parser.add_argument_group("evaluation (as kmm-train eval; defaults: the README recipe)")
    evaluation.add_argument("--data", type=Path, help="dataset to evaluate on (default: the config's data.root)")
    evaluation.add_argument("--split", default=defaults.split)
    evaluation.add_argument("--replications", type=int, default=10)
    evaluation.add_argument("--eval-seed", type=int, default=defaults.base_seed, help="first replication's seed")
    evaluation.add_argument("--max-samples", type=int, default=256)
    evaluation.add_argument("--mm-texts", type=int, default=20)
    evaluation.add_argument("--mm-generations", type=int, default=5)
    evaluation.add_argument("--max-directional", type=int, default=None)
    evaluation.add_argument("--transition-timelines", type=int, default=8)
    evaluation.add_argument("--timing-runs", type=int, default=1)
    evaluation.add_argument("--timing-seconds", type=float, default=defaults.timing_seconds)
    evaluation.add_argument("--eval-device", default="cpu", help="evaluation device: cpu, cuda, cuda:N")
    return parser


def _settings(args: argparse.Namespace) -> EvaluationSettings:
    return EvaluationSettings(split=args.split, replications=args.replications, base_seed=args.eval_seed,
                              max_samples=args.max_samples, mm_texts=args.mm_texts,
                              mm_generations=args.mm_generations, max_directional=args.max_directional,
                              transition_timelines=args.transition_timelines, timing_runs=args.timing_runs,
                              timing_seconds=args.timing_seconds, device=args.eval_device)


def run_study(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    import torch

    from .bundle_writer import assemble_bundle
    from .stages import train_generator

    rows, seeds, shard = parse_rows(args.rows), parse_seeds(args.seeds), parse_shard(args.shard)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.threads is not None and (problem := thread_count_problem(args.threads)) is not None:
        raise ConfigError(problem)
    base, out = args.base, args.out
    config = study_config(base, args.config, args.overrides, args.steps)
    check_base(base, config)
    settings = _settings(args)
    data = Path(args.data if args.data is not None else config.data.root)
    common = config_to_dict(config)
    common["generator"].pop("masker")  # the row's
    common["train"]["generator"].pop("seed")  # the training seed
    open_study(out, {"format_version": STUDY_FORMAT_VERSION, "base": str(base.resolve()), "config": common,
                     "data": str(data.resolve()), "evaluation": asdict(settings), "dtype": args.dtype}, args.resume)
    runs = planned_runs(rows, seeds)
    mine = shard_runs(runs, shard)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for run in mine:
        where = f"run {runs.index(run) + 1}/{len(runs)} {run.name}"
        evaluation_dir = out / "evaluations" / run.name
        if (evaluation_dir / RESULTS_JSON).is_file():
            log(f"{where}: finished earlier, skipped")
            continue
        run_dir = out / "runs" / run.name
        if not (run_dir / "generator.safetensors").is_file():
            prepare_run_folder(base, out, run_dir)
            resume = args.resume and (run_dir / "generator" / "checkpoints").is_dir()
            log(f"{where}: training the generator ({config.train.generator.steps} steps"
                f"{', resumed' if resume else ''})")
            result = train_generator(run_config(config, run), run_dir, resume=resume, device=args.device,
                                     progress=not args.no_progress)
            if result.train.stopped_by is not None:
                log(f"{where}: stopped by {result.train.stopped_by} at step {result.train.step}")
                return EXIT_STOPPED
        bundle_dir = out / "bundles" / run.name
        with atomic_directory(bundle_dir, replace=True) as partial:
            assemble_bundle(run_dir, partial, dtype=args.dtype,
                            model_name=f"{ROWS[run.row][1]}, training seed {run.seed}")
        log(f"{where}: evaluating {bundle_dir}")
        results = run_evaluation([bundle_dir], data, settings, evaluator_path=base, log=log)
        write_results(results, evaluation_dir)
        json_path, md_path = write_study_table(out, study_table(out, runs, config, base))
        log(f"{where}: finished; table {md_path}")
    json_path, md_path = write_study_table(out, study_table(out, runs, config, base))
    print(f"[kmm-train ablate] wrote {json_path} and {md_path}")
    return 0


def _log(message: str) -> None:
    print(f"[kmm-train ablate] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    previous_threads = None
    try:
        import torch

        previous_threads = torch.get_num_threads()
        code = run_study(args, _log)
    except KMMError as error:
        print(f"kmm-train ablate: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        code = EXIT_STOPPED
    finally:
        if previous_threads is not None:
            torch.set_num_threads(previous_threads)  # matters when main() is called in-process (tests)
    if code == EXIT_STOPPED:
        print("[kmm-train ablate] stopped; continue with --resume", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
