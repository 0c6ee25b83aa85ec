# SPDX-License-Identifier: GPL-3.0-or-later
"""Time the masked generator's forward pass, bidirectional Mamba vs transformer backbone, plus the bare selective scan.

Rows (CPU, 2 torch threads by default, wall-clock median of a few repeats after a warm-up):
- ``generator``: ``MaskedGenerator.forward`` (embedding -> backbone -> codebook logits) with backbone "mamba" and
  "transformer" at equal size: the [generator] section of training/configs/small.toml (d_model 256 / 4 layers if that
  file is missing), residual predictor left out (``forward`` never runs it).  Inference = batch 1 under no_grad in
  eval mode; training = batch 8, train mode (dropout on), cross-entropy on random targets, forward+backward.
- ``scan``: the bare selective scan at the generator's inner width (expand * d_model channels, d_state states), each
  candidate imported from benchmarks/bench_selective_scan.py (``custom_chunked_8`` is what the model ships).
Sequence lengths are motion tokens (4 frames each at 20 fps: 49 ~ 10 s, 196 ~ 39 s, 1024 ~ 3.4 min, 4096 ~ 13.7 min).

Memory: every (part, variant, mode) runs in its own subprocess over ascending lengths, and after each length reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss``.  The peak only grows, and lengths ascend, so each row's peak is that
length's peak; "+MB" is the growth over the subprocess's RSS after setup (imports, model, first inputs).
If the median call of a variant takes longer than --max-call-seconds, or the variant's share of --budget is used up, its
longer lengths are reported as skipped with the reason (never silently omitted).

Threads: the brief's setting is 2 torch threads (a 2-core user machine).  On a busy shared machine use --threads 1:
with 2, each of the scan's thousands of tiny kernels waits for a descheduled OpenMP thread (measured at load 9 on
2 cores: Mamba inference at 1024 tokens took 4.2 s with 2 threads, 0.33 s with 1).

Run: ``python benchmarks/bench_generator_forward.py [--repeats 3] [--out benchmarks/results/generator_forward.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
SMALL_CONFIG = REPO_ROOT / "training" / "configs" / "small.toml"
DEFAULT_OUT = BENCH_DIR / "results" / "generator_forward.md"
RESULT_PREFIX = "KMM_BENCH_ROW "
INFERENCE_LENGTHS = (49, 196, 1024, 4096)
TRAINING_LENGTHS = (49, 196, 1024)
INFERENCE_BATCH, TRAINING_BATCH = 1, 8
SCAN_CANDIDATES = ("custom_chunked_8", "custom_chunked_32", "autograd_chunked_8", "autograd_loop", "torchscript_loop")

sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH_DIR))


def generator_settings() -> tuple[dict, str]:
    """The generator section of small.toml (the shipped size) or the brief's fallback; plus where it came from."""
    if SMALL_CONFIG.exists():
        with SMALL_CONFIG.open("rb") as handle:
            section = dict(tomllib.load(handle).get("generator", {}))
        source = str(SMALL_CONFIG.relative_to(REPO_ROOT))
    else:
        section, source = {"d_model": 256, "n_layers": 4}, "fallback d_model 256, 4 layers (small.toml missing)"
    section["use_residual_predictor"] = False  # forward() never runs it; keeps the parameter counts comparable
    return section, source


def build_generator(backbone: str):
    from kmm_core.model.configs import GeneratorConfig
    from kmm_core.model.masked_generator import MaskedGenerator

    settings, _ = generator_settings()
    return MaskedGenerator(GeneratorConfig.from_dict({**settings, "backbone": backbone}))


def parameter_counts() -> dict[str, tuple[int, int]]:
    """backbone -> (whole generator, backbone only) parameter counts."""
    counts = {}
    for backbone in ("mamba", "transformer"):
        model = build_generator(backbone)
        counts[backbone] = (sum(p.numel() for p in model.parameters()),
                            sum(p.numel() for p in model.backbone.parameters()))
    return counts


# ---------------------------------------------------------------------------------------------------------------
# Worker side: one (part, variant, mode) in its own process, so its peak RSS is its own.

def _generator_step(variant: str, training: bool, batch: int):
    """A function length -> one timed call (with fresh inputs built outside the timed region)."""
    import torch
    import torch.nn.functional as F

    model = build_generator(variant)
    model.train(training)
    config = model.config
    generator = torch.Generator().manual_seed(0)

    def prepare(length: int):
        codes = torch.randint(0, config.codebook_size + 1, (batch, length), generator=generator)
        valid = torch.ones(batch, length, dtype=torch.bool)
        sentence = torch.randn(batch, config.cond_dim, generator=generator)
        targets = torch.randint(0, config.codebook_size, (batch, length), generator=generator)

        def call():
            if training:
                model.zero_grad(set_to_none=True)
                logits = model(codes, valid, sentence)
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
            else:
                with torch.no_grad():
                    model(codes, valid, sentence)

        return call

    return prepare


def _scan_step(variant: str, training: bool, batch: int):
    import torch
    from bench_selective_scan import candidates, make_inputs

    scan = candidates()[variant]
    settings, _ = generator_settings()
    from kmm_core.model.configs import GeneratorConfig

    config = GeneratorConfig.from_dict(settings)
    channels = config.expand * config.d_model

    def prepare(length: int):
        inputs = make_inputs(batch, channels, length, config.d_state, requires_grad=training)

        def call():
            if training:
                for tensor in inputs:
                    tensor.grad = None
                scan(*inputs).square().mean().backward()
            else:
                with torch.no_grad():
                    scan(*inputs)

        return call

    return prepare


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    training = spec["mode"] == "training"
    builder = _generator_step if spec["part"] == "generator" else _scan_step
    prepare = builder(spec["variant"], training, spec["batch"])
    first_call = prepare(spec["lengths"][0])
    for _ in range(2):  # warm-up: first-call allocations; TorchScript's profiling executor optimises on call 2
        first_call()
    setup_mb = _peak_rss_mb()
    too_slow_after = None
    for length in spec["lengths"]:
        row = {"length": length}
        if too_slow_after is not None:
            row["skipped"] = f"a call at L={too_slow_after[0]} took {too_slow_after[1]:.1f} s (median)"
        elif time.time() > spec["deadline"]:
            row["skipped"] = "this variant's share of the run's time budget was used up"
        else:
            repeats = spec["long_repeats"] if length >= 4096 else spec["repeats"]
            try:
                call = prepare(length)
                if length != spec["lengths"][0] and length < 4096:
                    call()  # warm-up at this length: allocator growth, not part of the timing
                times, cpu_times = [], []
                for _ in range(repeats):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    call()
                    times.append(time.perf_counter() - start)
                    cpu_times.append(time.process_time() - cpu_start)
                row.update(median_s=statistics.median(times), min_s=min(times), repeats=repeats,
                           cpu_s=statistics.median(cpu_times),
                           peak_mb=_peak_rss_mb(), setup_mb=setup_mb)
                if statistics.median(times) > spec["max_call_seconds"]:
                    too_slow_after = (length, statistics.median(times))
            except (RuntimeError, MemoryError) as error:  # e.g. attention matrix allocation failing
                row["skipped"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                too_slow_after = (length, float("nan"))
        print(RESULT_PREFIX + json.dumps(row), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Driver side

def run_variant(spec: dict, timeout_s: float) -> list[dict]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        output, failure = done.stdout, (done.stderr.strip().splitlines() or ["?"])[-1] if done.returncode else None
    except subprocess.TimeoutExpired as error:
        output = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        failure = f"subprocess timed out after {timeout_s:.0f} s"
    rows = [json.loads(line[len(RESULT_PREFIX):]) for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    reported = {row["length"] for row in rows}
    missing = [length for length in spec["lengths"] if length not in reported]
    rows += [{"length": length, "skipped": failure or "no result"} for length in missing]
    return rows


def format_row(spec: dict, row: dict) -> str:
    head = f"| {spec['part']} | {spec['variant']} | {spec['mode']} | {spec['batch']} | {row['length']} |"
    if "skipped" in row:
        return f"{head} — | — | — | — | — | skipped: {row['skipped']} |"
    tokens = spec["batch"] * row["length"]
    return (f"{head} {row['median_s'] * 1e3:.1f} | {row['cpu_s'] * 1e3:.1f} | {row['median_s'] * 1e6 / tokens:.1f} "
            f"| {row['peak_mb']:.0f} "
            f"| +{row['peak_mb'] - row['setup_mb']:.0f} | {row['repeats']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-repeats", type=int, default=1, help="repeats at 4096 tokens (no extra warm-up there)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-call-seconds", type=float, default=20.0,
                        help="a variant whose median call takes longer skips its longer lengths (reported)")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole run; each variant gets an equal share of what is left and "
                             "reports the lengths it had no time for as skipped")
    parser.add_argument("--parts", nargs="+", default=["generator", "scan"], choices=["generator", "scan"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.worker:
        run_worker(json.loads(args.worker))
        return

    import platform

    import torch

    settings, source = generator_settings()
    counts = parameter_counts()
    shown_keys = ("d_model", "n_layers", "d_state", "expand", "n_heads", "ff_mult", "codebook_size", "cond_dim")
    built = build_generator("mamba").config
    shown = ", ".join(f"{key} {getattr(built, key)}" for key in shown_keys)
    load_1min, cores = os.getloadavg()[0], os.cpu_count() or 1
    lines = [
        f"torch {torch.__version__}, {args.threads} torch threads, {platform.processor() or platform.machine()}, "
        f"wall-clock median of {args.repeats} ({args.long_repeats} at 4096 tokens) after a warm-up; "
        "CPU ms = process CPU time over all threads (less sensitive to other jobs on a shared machine, but it counts "
        "OpenMP spin-waits); treat small differences as noise.",
        "",
        f"Load average {load_1min:.1f} on {cores} cores at the start"
        + (" (the machine was busy: numbers are upper bounds)." if load_1min > cores else "."),
        "",
        f"Generator size from {source}: {shown} (residual predictor left out; forward() never runs it).",
        "",
    ]
    for backbone, (total, backbone_only) in counts.items():
        lines.append(f"- {backbone}: {total:,} parameters ({backbone_only:,} in the backbone)")
    lines += ["", "| part | variant | mode | B | L | median wall ms | median CPU ms | wall µs/token | peak RSS MB "
              "| +MB over setup | repeats |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)

    variants = {"generator": ("mamba", "transformer"), "scan": SCAN_CANDIDATES}
    jobs = [(part, variant, mode, batch, lengths) for part in args.parts for variant in variants[part]
            for mode, batch, lengths in (("inference", INFERENCE_BATCH, INFERENCE_LENGTHS),
                                         ("training", TRAINING_BATCH, TRAINING_LENGTHS))]
    run_deadline = time.time() + args.budget
    for index, (part, variant, mode, batch, lengths) in enumerate(jobs):
        share = max(0.0, run_deadline - time.time()) / (len(jobs) - index)
        spec = {"part": part, "variant": variant, "mode": mode, "batch": batch, "lengths": list(lengths),
                "repeats": args.repeats, "long_repeats": args.long_repeats, "threads": args.threads,
                "max_call_seconds": args.max_call_seconds, "deadline": time.time() + share}
        # The deadline is checked between lengths; the timeout stops a single length that runs far over it.
        for row in run_variant(spec, timeout_s=share + 2 * args.max_call_seconds + 30):
            lines.append(format_row(spec, row))
            print(lines[-1], flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Generator forward pass: Mamba vs transformer, and the selective scan\n\n"
                        f"Command: `python benchmarks/{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}` "
                        "(see the script's docstring).\n\n"
                        + "\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
