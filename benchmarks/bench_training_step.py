# SPDX-License-Identifier: GPL-3.0-or-later
"""One generator training step, bidirectional Mamba vs the equal-size transformer, side by side in one process.

The generator is built from the [generator] section of training/configs/small.toml (the shipped size, residual
predictor included) once per backbone. A step is what `kmm-train generator` does per batch: zero_grad,
``MaskedGenerator.training_loss`` (key-frame masker, dropout, condition dropout, base + residual cross-entropy),
backward, AdamW step. Inputs are random codes of the tokenizer's shape with random token embeddings for the masker,
the same for both backbones. A shape ``BATCHxTOKENS`` is a batch of full-length sequences; ``BATCHxdata`` (with
``--lengths-from DATA``, a prepared data folder) is a batch as the recipe draws them: each sequence's length drawn from
the train split's windows (``[data]`` min/max frames of the config, 4 frames a token), padded to the batch's longest
(random batches of 32 are about half padding). Each repeat of a ``data`` shape draws a new batch, the same batches for
every variant. Variants:

- ``mamba``: the Mamba backbone as shipped (on CPU: the scan ``selective_scan.cpu_scan_choice`` picks);
- ``mamba_numba``, ``mamba_compiled``, ``mamba_pure`` (with ``--scans numba compiled pure``; ``--pure`` = ``--scans
  pure``): the same model forced onto numba's loops, the C++ loop, or the pure-PyTorch chunked scan
  (``KMM_SELECTIVE_SCAN``);
- ``transformer``: the transformer backbone;
- ``mamba_scan_floor`` (with ``--scan-floor``): the Mamba model with the fused scan's work taken out (its loop replaced
  by a few elementwise products of the same inputs, so every other op, gradient included, runs as before). Its result
  is wrong; its time is what the rest of the Mamba step costs, the best that any speed-up of the scan can reach;
- ``mamba_baseline`` (with ``--baseline DIR``): the Mamba model of another checkout of the code (e.g. ``git archive
  COMMIT | tar -x -C DIR``: the code before a change), imported under another package name into this same process,
  so before and after are timed side by side.

Repeats are interleaved (mamba, transformer, mamba, ...) so that both see the same load of a shared machine; the
table reports wall-clock medians and the ratio of medians, plus each variant's median CPU time (less sensitive to
other jobs). The load average before and after is printed: on a loaded machine treat absolute times as upper bounds.

Against the machine's limit (``machine_limit.py``): each step's floating-point work is counted once per backbone and
shape (torch's FlopCounterMode plus the Mamba loops' work from their shapes), the machine's float32 matmul throughput
is measured in the same run (at the start and at the end; the higher is used), and each row gives its median time as
a multiple of the matmul-bound time (counted work / matmul throughput).

Run: ``python benchmarks/bench_training_step.py [--threads 1] [--repeats 7] [--scans numba compiled pure]
[--scan-floor] [--baseline DIR] [--shapes 8x50 32xdata] [--lengths-from data/prepared] [--out FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.machine_limit import WorkCounter, measure_matmul_throughput  # noqa: E402
from kmm_core.model import compiled_selective_scan, numba_selective_scan  # noqa: E402
from kmm_core.model.configs import GeneratorConfig  # noqa: E402
from kmm_core.model.masked_generator import MaskedGenerator  # noqa: E402
from kmm_core.model.selective_scan import SCAN_VARIABLE, cpu_scan_choice  # noqa: E402

SMALL_CONFIG = REPO_ROOT / "training" / "configs" / "small.toml"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "training_step.md"
SHAPES = ((8, 50), (8, 200), (32, 50), (32, 200))


def instruction_sets() -> str:
    """What each library computes with: torch's kernels, MKL/oneDNN's caps, the C++ loop's -march, numba's CPU (an
    AVX2 machine is imitated on an AVX-512 one with ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
    ONEDNN_MAX_CPU_ISA=AVX2 KMM_SCAN_MARCH=haswell NUMBA_CPU_NAME=haswell)."""
    def variable(name: str) -> str:
        return f"{name}={os.environ.get(name, '(host)')}"

    return (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, " + ", ".join(
        variable(name) for name in ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "KMM_SCAN_MARCH", "NUMBA_CPU_NAME")))


def small_generator_config(backbone: str, config_class=GeneratorConfig):
    with SMALL_CONFIG.open("rb") as handle:
        section = dict(tomllib.load(handle)["generator"])
    return config_class.from_dict({**section, "backbone": backbone})


def import_checkout(root: Path, package: str = "kmm_baseline_checkout"):
    """The checkout ``root`` imported as ``package`` (its modules import each other relatively), beside this one."""
    packages = Path(tempfile.mkdtemp(prefix="kmm_bench_packages_"))
    (packages / package).symlink_to(root.resolve(), target_is_directory=True)
    sys.path.insert(0, str(packages))
    return (importlib.import_module(f"{package}.kmm_core.model.masked_generator").MaskedGenerator,
            importlib.import_module(f"{package}.kmm_core.model.configs").GeneratorConfig)


def scan_free_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, lengths=None):
    """Stands in for a fused loop's ``fused_selective_scan`` in ``mamba_scan_floor``: same inputs and output shape,
    every input reached by the gradient, a few (B, L, D) passes instead of the (B, L, D, N) scan."""
    return u * z + delta * C.sum(-1, keepdim=True) + B.sum(-1, keepdim=True) + A.sum() + D


@contextlib.contextmanager
def scan_taken_out(active: bool):
    """While active, both fused CPU loops run ``scan_free_loop`` instead of their scan."""
    if not active:
        yield
        return
    modules = (compiled_selective_scan, numba_selective_scan)
    originals = [module.fused_selective_scan for module in modules]
    for module in modules:
        module.fused_selective_scan = scan_free_loop
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.fused_selective_scan = original


@contextlib.contextmanager
def scan_path(scan: str | None):
    """Force one CPU scan for the duration (``cpu_scan_choice`` reads KMM_SELECTIVE_SCAN on every call)."""
    if scan is None:
        yield
        return
    previous = os.environ.get(SCAN_VARIABLE)
    os.environ[SCAN_VARIABLE] = scan
    try:
        yield
    finally:
        if previous is None:
            del os.environ[SCAN_VARIABLE]
        else:
            os.environ[SCAN_VARIABLE] = previous


class Variant:
    def __init__(self, name: str, backbone: str, scan: str | None, seed: int = 0,
                 classes=(MaskedGenerator, GeneratorConfig), scan_floor: bool = False):
        torch.manual_seed(seed)
        self.name, self.scan, self.backbone, self.scan_floor = name, scan, backbone, scan_floor
        model_class, config_class = classes
        self.model = model_class(small_generator_config(backbone, config_class)).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def step(self, inputs: dict) -> None:
        with scan_path(self.scan), scan_taken_out(self.scan_floor):
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model.training_loss(inputs["codes"], inputs["valid"], sentence=inputs["sentence"],
                                           token_embeddings=inputs["embeddings"], generator=inputs["rng"])
            out.loss.backward()
            self.optimizer.step()

    def counted_work(self, inputs: dict) -> int:
        """The floating-point work of one step (an untimed step run under the counter)."""
        with WorkCounter(self.model, backward=True) as counter:
            self.step(inputs)
        return counter.total

    def timed_step(self, inputs: dict) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.step(inputs)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)


def make_inputs(config: GeneratorConfig, batch: int, length: int, seed: int,
                lengths: torch.Tensor | None = None) -> dict:
    """One batch of ``length`` tokens; ``lengths`` (batch,): each sequence's valid tokens (None: all)."""
    generator = torch.Generator().manual_seed(seed)
    valid = torch.ones(batch, length, dtype=torch.bool) if lengths is None else \
        torch.arange(length)[None] < lengths[:, None]
    return {
        "codes": torch.randint(0, config.codebook_size, (batch, length, config.num_quantizers), generator=generator),
        "valid": valid,
        "sentence": torch.randn(batch, config.cond_dim, generator=generator),
        "embeddings": torch.randn(batch, length, 128, generator=generator),
        "rng": torch.Generator().manual_seed(seed),
    }


def train_window_tokens(data: Path) -> list[int]:
    """Each train clip's window in tokens as the generator's training draws them (``TokenClips``): the clip's frames
    up to ``[data] max_frames``, 4 a token (rounded up), clips under ``min_frames`` left out (small.toml's limits)."""
    with SMALL_CONFIG.open("rb") as handle:
        limits = tomllib.load(handle)["data"]
    index = data / "index.csv"
    if not index.is_file():
        raise SystemExit(f"--lengths-from {data}: no index.csv there (a folder written by `kmm-train prepare`)")
    with index.open(newline="") as handle:
        frames = [int(row["frames"]) for row in csv.DictReader(handle) if row["split"] == "train"]
    tokens = [math.ceil(min(f, limits["max_frames"]) / 4) for f in frames if f >= limits["min_frames"]]
    if not tokens:
        raise SystemExit(f"--lengths-from {data}: no train clip of {limits['min_frames']} frames or more")
    return tokens


def shape_batches(config: GeneratorConfig, shape: str, count: int, windows: list[int] | None) -> tuple[list, str]:
    """The batches one shape is timed on (one for ``BxL``; ``count`` drawn batches for ``Bxdata``) and the table's
    tokens cell."""
    batch_text, tokens_text = shape.split("x")
    batch = int(batch_text)
    if tokens_text != "data":
        length = int(tokens_text)
        return [make_inputs(config, batch, length, seed=batch * 1000 + length)], str(length)
    if windows is None:
        raise SystemExit(f"--shapes {shape}: needs --lengths-from DATA")
    generator = torch.Generator().manual_seed(batch)
    batches = []
    for index in range(count):
        picks = torch.randperm(len(windows), generator=generator)[:batch]
        lengths = torch.tensor([windows[i] for i in picks])
        batches.append(make_inputs(config, batch, int(lengths.max()), seed=batch * 1000 + index, lengths=lengths))
    longest = statistics.mean(b["valid"].shape[1] for b in batches)
    valid = statistics.mean(float(b["valid"].float().mean()) for b in batches)
    return batches, f"data: longest {longest:.1f}, {valid:.0%} valid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the training recipe uses 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per variant and shape (after 2 warm-ups)")
    parser.add_argument("--pure", action="store_true", help="also time the Mamba model on the pure-PyTorch scan")
    parser.add_argument("--scans", nargs="*", default=[], choices=["numba", "compiled", "pure"],
                        help="also time the Mamba model forced onto these CPU scans")
    parser.add_argument("--pure-repeats", type=int, default=3)
    parser.add_argument("--scan-floor", action="store_true", help="also time the Mamba model with its scan's work "
                        "taken out (mamba_scan_floor: the best any faster scan could reach)")
    parser.add_argument("--shapes", nargs="+", default=[f"{b}x{n}" for b, n in SHAPES],
                        help="BATCHxTOKENS, or BATCHxdata (lengths drawn as training draws them; needs --lengths-from)")
    parser.add_argument("--lengths-from", type=Path, default=None, help="a prepared data folder (its index.csv): the "
                        "train windows the BATCHxdata shapes draw their lengths from")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout: its Mamba model as one more "
                        "variant, timed in this process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    scans = list(dict.fromkeys(args.scans + (["pure"] if args.pure else [])))
    chosen, why = cpu_scan_choice()
    throughput_before = measure_matmul_throughput()
    load_before = os.getloadavg()
    lines = [
        f"torch {torch.__version__}, {args.threads} torch thread(s), {platform.machine()}, {os.cpu_count()} cores; "
        f"CPU scan of `mamba`: {chosen} ({why}); {instruction_sets()}.",
        f"Generator: [generator] of {SMALL_CONFIG.relative_to(REPO_ROOT)} (residual predictor included); a step = "
        "training_loss + backward + AdamW step. Wall-clock median of "
        f"{args.repeats} interleaved repeats after 2 warm-ups" + (f" ({args.pure_repeats} for mamba_pure)" if
                                                                   "pure" in scans else "")
        + "; ratio = median / transformer median; x of matmul-bound = median CPU time / (counted work / matmul "
        "throughput).",
        f"Load average at the start: {load_before[0]:.1f} (1 min), {load_before[1]:.1f} (5 min) on {os.cpu_count()} cores"
        + (" — the machine was shared; absolute times are upper bounds, the interleaved ratios are the result."
           if load_before[0] > 1 else "."),
        "",
        "| batch | tokens | variant | median wall ms | ratio to transformer | median CPU ms | CPU ratio to transformer "
        "| counted GFLOP | x of matmul-bound |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    variants = [Variant("mamba", "mamba", scan=None), Variant("transformer", "transformer", scan=None)]
    for scan in scans:
        variants.insert(-1, Variant(f"mamba_{scan}", "mamba", scan=scan))
    if args.scan_floor:
        if cpu_scan_choice()[0] == "pure":
            raise SystemExit("--scan-floor: the Mamba model runs the pure scan here (no fused loop to take out)")
        variants.insert(-1, Variant("mamba_scan_floor", "mamba", scan=None, scan_floor=True))
    if args.baseline is not None:
        if not (args.baseline / "kmm_core" / "model" / "masked_generator.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no kmm_core/model/masked_generator.py there")
        variants.insert(1, Variant("mamba_baseline", "mamba", scan=None, classes=import_checkout(args.baseline)))
    rows = []
    config = variants[0].model.config
    windows = train_window_tokens(args.lengths_from) if args.lengths_from is not None else None
    for shape in args.shapes:
        batches, tokens = shape_batches(config, shape, args.repeats + 2, windows)
        batch = batches[0]["valid"].shape[0]
        work = {}
        for variant in variants:
            variant.wall, variant.cpu = [], []
            for warm_up in range(2):
                variant.step(batches[warm_up % len(batches)])
            if variant.backbone not in work:  # the model's work: the same for every scan of one backbone
                work[variant.backbone] = statistics.mean(variant.counted_work(b) for b in batches)
        for repeat in range(args.repeats):
            for variant in variants:
                if variant.scan == "pure" and repeat >= args.pure_repeats:
                    continue
                variant.timed_step(batches[(repeat + 2) % len(batches)])
        rows.append((batch, tokens, work, [(v.name, v.backbone, statistics.median(v.wall),
                                            statistics.median(v.cpu)) for v in variants]))
    throughput = max(throughput_before, measure_matmul_throughput())
    for batch, length, work, medians in rows:
        reference, cpu_reference = medians[-1][2], medians[-1][3]
        for name, backbone, wall, cpu in medians:
            bound = work[backbone] / throughput
            row = (f"| {batch} | {length} | {name} | {wall * 1e3:.1f} | {wall / reference:.2f} | {cpu * 1e3:.1f} "
                   f"| {cpu / cpu_reference:.2f} | {work[backbone] / 1e9:.2f} | {cpu / bound:.1f} |")
            lines.append(row)
            print(row, flush=True)
    lines += ["", f"Matmul throughput (float32 1024x1024 torch.mm, {args.threads} thread(s), CPU time): "
              f"{throughput_before / 1e9:.1f} GFLOP/s at the start, {throughput / 1e9:.1f} GFLOP/s the higher of "
              "start and end (used above)."]
    load_after = os.getloadavg()
    lines += ["", f"Load average at the end: {load_after[0]:.1f} (1 min), {load_after[1]:.1f} (5 min)."]
    print(lines[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.write_text("# Generator training step: Mamba vs transformer, against the machine's matmul limit\n\n"
                        f"Command: `{command}` (see the script's docstring).\n\n" + "\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
