# SPDX-License-Identifier: GPL-3.0-or-later
"""The generator training stage on the real data, per epoch: `kmm-train generator` as a user runs it, this checkout
beside a baseline checkout (and beside itself at other thread counts) in one run.

A run folder is built once from the shipped bundle's frozen tokenizer and aligner (``kmm_core/checkpoints/kmm-small``:
the generator trains on their codes and sentence vectors) and the default recipe
(``training/configs/small-all-data.toml``, ``data.root`` = ``--data``); one warm-up run encodes the training and
validation clips into the stage's own cache (``RUN/cache``). Then each timed run is a fresh ``kmm-train generator
--threads T`` process in a copy of that folder (cache included), running ``--steps`` steps with the recipe's batch
size, balanced sampling and residual predictor, validation and checkpoints at the end only. The runs alternate
between the variants (this checkout at each ``--threads``, then ``--baseline DIR`` if given: the code before a change,
e.g. ``git archive COMMIT | tar -x -C DIR``), so all see the same load.

Measured per run: s/step from the stage's own log (``log.jsonl``: elapsed time between the first logged step and the
last, over the steps between; start-up, encoding and the final save are left out), the process's CPU time per step,
and the epoch: steps per pass over the training clips (clips / batch size) x s/step.

``--length-buckets 0 8`` adds this checkout with ``[train.generator] length_buckets = 8`` (batches of similar length).

Run: ``python benchmarks/bench_generator_stage.py --data data/prepared-all [--steps 60] [--runs 3] [--threads 1 2]
[--length-buckets 0 8] [--baseline DIR] [--out benchmarks/results/generator_stage.md]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = REPO_ROOT / "training" / "configs" / "small-all-data.toml"
BUNDLE = REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"
LOG_EVERY = 10


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(code: Path, run: Path, data: Path, steps: int, threads: int, length_buckets: int = 0) -> float:
    """One `kmm-train generator` process from checkout ``code`` in ``run``; returns its CPU seconds."""
    overrides = {
        "data.root": str(data.resolve()),
        "train.generator.steps": str(steps),
        "train.generator.log_every": str(LOG_EVERY),
        "train.generator.eval_every": str(steps),
        "train.generator.checkpoint_every": str(steps),
    }
    if length_buckets:  # left out otherwise: a baseline checkout may not know the key
        overrides["train.generator.length_buckets"] = str(length_buckets)
    command = [sys.executable, "-m", "kmm_core.training.cli", "generator", "--config", str(RECIPE), "--out",
               str(run), "--threads", str(threads), "--no-progress"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    before = _children_cpu()
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kmm-train generator failed ({code}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return _children_cpu() - before


def seconds_per_step(run: Path) -> tuple[float, int]:
    """Elapsed seconds per step between the first and the last logged training step, and the steps between."""
    rows = [json.loads(line) for line in (run / "generator" / "log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == "train"]
    if len(rows) < 2:
        raise SystemExit(f"{run}: fewer than two logged training steps; raise --steps")
    first, last = rows[0], rows[-1]
    return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"]), last["step"] - first["step"]


def _encode(run: Path, data: Path, threads: int) -> None:
    """The run folder's tokenizer/aligner from the bundle, and the clips encoded by a 1-step run (then removed)."""
    run.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.safetensors", "tokenizer.json", "aligner.safetensors", "aligner.json"):
        shutil.copy(BUNDLE / name, run / name)
    started = time.perf_counter()
    shutil.rmtree(run / "generator", ignore_errors=True)
    train(REPO_ROOT, run, data, steps=1, threads=threads)
    print(f"encoding warm-up: {time.perf_counter() - started:.0f} s", flush=True)
    shutil.rmtree(run / "generator")
    (run / "generator.safetensors").unlink(missing_ok=True)
    (run / "generator.json").unlink(missing_ok=True)


def template_run(folder: Path, data: Path, threads: int) -> tuple[Path, int, int]:
    """A run folder with the bundle's tokenizer/aligner and the encoded clips; the clip count and batch size."""
    run = folder / "template"
    if not (run / "cache" / "generator_train.safetensors").is_file():
        _encode(run, data, threads)
    from safetensors import safe_open

    with safe_open(str(run / "cache" / "generator_train.safetensors"), "np") as handle:
        clips = handle.get_slice("code_offsets").get_shape()[0] - 1
    import tomllib

    with RECIPE.open("rb") as handle:
        batch_size = int(tomllib.load(handle)["train"]["generator"]["batch_size"])
    return run, clips, batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared data (kmm-train prepare), e.g. data/prepared-all")
    parser.add_argument("--steps", type=int, default=60, help="steps per timed run (logged every 10)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant, interleaved")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts for this checkout")
    parser.add_argument("--length-buckets", type=int, nargs="+", default=[0],
                        help="[train.generator] length_buckets values for this checkout (0 = the recipe's random batches)")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout of the code (run at the first "
                        "--threads value)")
    parser.add_argument("--work", type=Path, default=None, help="keep the encoded run folder here and reuse it on "
                        "later runs (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "generator_stage.md")
    args = parser.parse_args()
    variants = [(f"this checkout, {t} thread(s)" + (f", length_buckets {b}" if b else ""), REPO_ROOT, t, b)
                for b in args.length_buckets for t in args.threads]
    if args.baseline is not None:
        variants.append((f"baseline `{args.baseline}`, {args.threads[0]} thread(s)", args.baseline.resolve(),
                         args.threads[0], 0))
    load_before = os.getloadavg()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in variants}
    with tempfile.TemporaryDirectory(prefix="kmm-stage-") as scratch:
        folder = args.work.resolve() if args.work is not None else Path(scratch)
        template, clips, batch_size = template_run(folder, args.data, args.threads[0])
        for _repeat in range(args.runs):
            for name, code, threads, buckets in variants:
                run = folder / f"run-{len(results[name])}-{threads}-{abs(hash(name)) % 10**6}"
                shutil.copytree(template, run)
                cpu = train(code, run, args.data, args.steps, threads, buckets)
                per_step, counted = seconds_per_step(run)
                results[name].append((per_step, cpu / args.steps))
                print(f"{name}: {per_step:.3f} s/step over {counted} steps, {cpu / args.steps:.3f} CPU s/step",
                      flush=True)
                shutil.rmtree(run)
    load_after = os.getloadavg()
    steps_per_epoch = math.ceil(clips / batch_size)
    reference = statistics.median(r[0] for r in results[variants[-1][0]])
    lines = [
        f"Recipe `{RECIPE.relative_to(REPO_ROOT)}` (batch {batch_size}), data `{args.data}`: {clips} training clips, "
        f"{steps_per_epoch} steps per epoch. {args.runs} interleaved runs per variant of {args.steps} steps each; "
        f"s/step from the stage's log over steps {LOG_EVERY}-{args.steps}; CPU s/step = the process's whole CPU time "
        "(start-up included) / steps.",
        f"Load average at the start: {load_before[0]:.1f} (1 min) on {os.cpu_count()} cores"
        + (" — shared machine: wall times are upper bounds." if load_before[0] > 1 else "."),
        "",
        "| variant | median s/step | min s/step | median CPU s/step | s per epoch | ratio to last row |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, *_ in variants:
        per_step = statistics.median(r[0] for r in results[name])
        lines.append(f"| {name} | {per_step:.3f} | {min(r[0] for r in results[name]):.3f} | "
                     f"{statistics.median(r[1] for r in results[name]):.3f} | {per_step * steps_per_epoch:.0f} | "
                     f"{per_step / reference:.2f} |")
    lines += ["", f"Load average at the end: {load_after[0]:.1f} (1 min)."]
    print("\n".join(lines))
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Generator training stage per epoch\n\n"
                        f"Command: `{command}` (see the script's docstring).\n\n" + "\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
