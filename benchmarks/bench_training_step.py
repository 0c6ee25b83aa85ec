# SPDX-License-Identifier: GPL-3.0-or-later
"""One generator training step, bidirectional Mamba vs the equal-size transformer, side by side in one process.

The generator is built from the [generator] section of training/configs/small.toml (the shipped size, residual
predictor included) once per backbone. A step is what `kmm-train generator` does per batch: zero_grad,
``MaskedGenerator.training_loss`` (key-frame masker, dropout, condition dropout, base + residual cross-entropy),
backward, AdamW step. Inputs are random codes of the tokenizer's shape with random token embeddings for the masker,
the same for both backbones. Variants:

- ``mamba``: the Mamba backbone as shipped (on CPU: the compiled scan of ``compiled_selective_scan`` when it builds);
- ``mamba_pure`` (with ``--pure``): the same model forced onto the pure-PyTorch chunked scan (``KMM_SELECTIVE_SCAN=pure``);
- ``transformer``: the transformer backbone;
- ``mamba_baseline`` (with ``--baseline DIR``): the Mamba model of another checkout of the code (e.g. ``git archive
  COMMIT | tar -x -C DIR``: the code before a change), imported under another package name into this same process,
  so before and after are timed side by side.

Repeats are interleaved (mamba, transformer, mamba, ...) so that both see the same load of a shared machine; the
table reports wall-clock medians and the ratio of medians, plus each variant's median CPU time (less sensitive to
other jobs). The load average before and after is printed: on a loaded machine treat absolute times as upper bounds.

Run: ``python benchmarks/bench_training_step.py [--threads 1] [--repeats 7] [--pure] [--baseline DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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

from kmm_core.model import compiled_selective_scan  # noqa: E402
from kmm_core.model.configs import GeneratorConfig  # noqa: E402
from kmm_core.model.masked_generator import MaskedGenerator  # noqa: E402

SMALL_CONFIG = REPO_ROOT / "training" / "configs" / "small.toml"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "training_step.md"
SHAPES = ((8, 50), (8, 200), (32, 50), (32, 200))


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


@contextlib.contextmanager
def scan_path(pure: bool):
    """Force the pure-PyTorch scan for the duration (the dispatch reads KMM_SELECTIVE_SCAN through kernel())."""
    if not pure:
        yield
        return
    previous = os.environ.get("KMM_SELECTIVE_SCAN")
    os.environ["KMM_SELECTIVE_SCAN"] = "pure"
    compiled_selective_scan.kernel.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["KMM_SELECTIVE_SCAN"]
        else:
            os.environ["KMM_SELECTIVE_SCAN"] = previous
        compiled_selective_scan.kernel.cache_clear()


class Variant:
    def __init__(self, name: str, backbone: str, pure: bool, seed: int = 0, classes=(MaskedGenerator, GeneratorConfig)):
        torch.manual_seed(seed)
        self.name, self.pure = name, pure
        model_class, config_class = classes
        self.model = model_class(small_generator_config(backbone, config_class)).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def step(self, inputs: dict) -> None:
        with scan_path(self.pure):
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model.training_loss(inputs["codes"], inputs["valid"], sentence=inputs["sentence"],
                                           token_embeddings=inputs["embeddings"], generator=inputs["rng"])
            out.loss.backward()
            self.optimizer.step()

    def timed_step(self, inputs: dict) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.step(inputs)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)


def make_inputs(config: GeneratorConfig, batch: int, length: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "codes": torch.randint(0, config.codebook_size, (batch, length, config.num_quantizers), generator=generator),
        "valid": torch.ones(batch, length, dtype=torch.bool),
        "sentence": torch.randn(batch, config.cond_dim, generator=generator),
        "embeddings": torch.randn(batch, length, 128, generator=generator),
        "rng": torch.Generator().manual_seed(seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the training recipe uses 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per variant and shape (after 2 warm-ups)")
    parser.add_argument("--pure", action="store_true", help="also time the Mamba model on the pure-PyTorch scan")
    parser.add_argument("--pure-repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=[f"{b}x{n}" for b, n in SHAPES], help="BATCHxTOKENS")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout: its Mamba model as one more "
                        "variant, timed in this process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    kernel = compiled_selective_scan.kernel()
    load_before = os.getloadavg()
    lines = [
        f"torch {torch.__version__}, {args.threads} torch thread(s), {platform.machine()}, {os.cpu_count()} cores; "
        f"compiled scan: {'yes' if kernel is not None else 'no'} ({compiled_selective_scan.kernel_status()}).",
        f"Generator: [generator] of {SMALL_CONFIG.relative_to(REPO_ROOT)} (residual predictor included); a step = "
        "training_loss + backward + AdamW step. Wall-clock median of "
        f"{args.repeats} interleaved repeats after 2 warm-ups" + (f" ({args.pure_repeats} for mamba_pure)" if args.pure
                                                                   else "") + "; ratio = median / transformer median.",
        f"Load average at the start: {load_before[0]:.1f} (1 min), {load_before[1]:.1f} (5 min) on {os.cpu_count()} cores"
        + (" — the machine was shared; absolute times are upper bounds, the interleaved ratios are the result."
           if load_before[0] > 1 else "."),
        "",
        "| batch | tokens | variant | median wall ms | ratio to transformer | median CPU ms |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    variants = [Variant("mamba", "mamba", pure=False), Variant("transformer", "transformer", pure=False)]
    if args.pure:
        variants.insert(1, Variant("mamba_pure", "mamba", pure=True))
    if args.baseline is not None:
        if not (args.baseline / "kmm_core" / "model" / "masked_generator.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no kmm_core/model/masked_generator.py there")
        variants.insert(1, Variant("mamba_baseline", "mamba", pure=False, classes=import_checkout(args.baseline)))
    config = variants[0].model.config
    for shape in args.shapes:
        batch, length = (int(v) for v in shape.split("x"))
        inputs = make_inputs(config, batch, length, seed=batch * 1000 + length)
        for variant in variants:
            variant.wall, variant.cpu = [], []
            for _ in range(2):
                variant.step(inputs)
        for repeat in range(args.repeats):
            for variant in variants:
                if variant.pure and repeat >= args.pure_repeats:
                    continue
                variant.timed_step(inputs)
        reference = statistics.median(variants[-1].wall)
        for variant in variants:
            wall = statistics.median(variant.wall)
            row = (f"| {batch} | {length} | {variant.name} | {wall * 1e3:.1f} | {wall / reference:.2f} "
                   f"| {statistics.median(variant.cpu) * 1e3:.1f} |")
            lines.append(row)
            print(row, flush=True)
    load_after = os.getloadavg()
    lines += ["", f"Load average at the end: {load_after[0]:.1f} (1 min), {load_after[1]:.1f} (5 min)."]
    print(lines[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.write_text("# Generator training step: Mamba vs transformer\n\n"
                        f"Command: `{command}` (see the script's docstring).\n\n" + "\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
