# SPDX-License-Identifier: GPL-3.0-or-later
"""The Mamba block's fused CPU loops alone: the selective scan and the causal conv + SiLU, forward (no gradient) and
forward + backward, on the C++ loop and numba's, at training shapes; with ``--baseline DIR`` also the loops of
another checkout (e.g. ``git archive COMMIT | tar -x -C DIR``: the code before a change) imported into this same
process, so before and after are timed interleaved on the same inputs and their results compared.

Inputs are time-major as the block passes them: u, delta (before softplus), z (B, L, D); A (D, N); B, C (B, L, N);
conv weight (D, 4). Each cell is the median wall time of the repeats (one torch thread, the loops on one thread);
"same result" compares every output and gradient with this checkout's own loop of the same name, bit for bit.

Run: ``python benchmarks/bench_fused_cpu_loops.py [--shapes 32x50x384] [--repeats 15] [--baseline DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_training_step import import_checkout, instruction_sets  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.model import compiled_selective_scan, numba_selective_scan  # noqa: E402

STATE = 16
TAPS = 4


def make_inputs(batch: int, length: int, channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=generator)

    return {"u": normal(batch, length, channels), "delta": normal(batch, length, channels) - 3.0,
            "z": normal(batch, length, channels), "A": -torch.exp(0.5 * normal(channels, STATE)),
            "B": normal(batch, length, STATE), "C": normal(batch, length, STATE), "D": normal(channels),
            "weight": normal(channels, TAPS), "bias": normal(channels), "grad": normal(batch, length, channels)}


def scan_forward(loops, x):
    with torch.no_grad():
        return [loops.fused_selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"],
                                           delta_softplus=True)]


def scan_backward(loops, x):
    leaves = {name: x[name].clone().requires_grad_() for name in ("u", "delta", "A", "B", "C", "D", "z")}
    y = loops.fused_selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                   D=leaves["D"], z=leaves["z"], delta_softplus=True)
    y.backward(x["grad"])
    return [y.detach()] + [leaf.grad for leaf in leaves.values()]


def conv_forward(loops, x):
    with torch.no_grad():
        return [loops.causal_conv_silu(x["u"], x["weight"], x["bias"])]


def conv_backward(loops, x):
    leaves = [x[name].clone().requires_grad_() for name in ("u", "weight", "bias")]
    y = loops.causal_conv_silu(*leaves)
    y.backward(x["grad"])
    return [y.detach()] + [leaf.grad for leaf in leaves]


KERNELS = {"scan forward": scan_forward, "scan forward + backward": scan_backward,
           "conv + SiLU forward": conv_forward, "conv + SiLU forward + backward": conv_backward}


def loop_modules(baseline: Path | None) -> dict[str, object]:
    """The loops to time: this checkout's C++ and numba loops, and the baseline checkout's (when given)."""
    modules: dict[str, object] = {}
    if compiled_selective_scan.kernel() is not None:
        modules["compiled"] = compiled_selective_scan
    if numba_selective_scan.kernels() is not None:
        modules["numba"] = numba_selective_scan
    if baseline is not None:
        if not (baseline / "kmm_core" / "model" / "numba_selective_scan.py").is_file():
            raise SystemExit(f"--baseline {baseline}: no kmm_core/model/numba_selective_scan.py there")
        package = "kmm_baseline_loops"
        import_checkout(baseline, package)
        for name, module in (("compiled", "compiled_selective_scan"), ("numba", "numba_selective_scan")):
            loops = importlib.import_module(f"{package}.kmm_core.model.{module}")
            available = loops.kernel() if name == "compiled" else loops.kernels()
            if available is not None:
                modules[f"baseline {name}"] = loops
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["32x50x384"], help="BATCHxTOKENSxCHANNELS")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout: its loops timed beside these")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "fused_cpu_loops.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    modules = loop_modules(args.baseline)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    lines = ["# The fused CPU loops alone: scan and conv, C++ and numba", "", f"Command: `{command}`", "",
             f"torch {torch.__version__}, 1 thread; {instruction_sets()}; {STATE} states, {TAPS} taps.", "",
             "| shape (B x L x D) | kernel | loop | median ms | same result as this checkout's |",
             "| --- | --- | --- | ---: | --- |"]
    for shape in args.shapes:
        batch, length, channels = (int(value) for value in shape.split("x"))
        inputs = make_inputs(batch, length, channels)
        for kernel_name, kernel in KERNELS.items():
            times: dict[str, list[float]] = {name: [] for name in modules}
            results = {name: kernel(loops, inputs) for name, loops in modules.items()}  # also the warm-up
            for _ in range(args.repeats):  # interleaved: every loop sees the same load
                for name, loops in modules.items():
                    start = time.perf_counter()
                    kernel(loops, inputs)
                    times[name].append(time.perf_counter() - start)
            for name in modules:
                own = name.removeprefix("baseline ")
                same = "–" if name == own else ("bit for bit" if all(
                    torch.equal(a, b) for a, b in zip(results[name], results[own], strict=True)) else "no")
                lines.append(f"| {shape} | {kernel_name} | {name} | {statistics.median(times[name]) * 1e3:.2f} "
                             f"| {same} |")
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
