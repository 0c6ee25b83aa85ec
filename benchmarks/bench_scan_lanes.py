# SPDX-License-Identifier: GPL-3.0-or-later
"""The C++ scan loop's block sizes on the machine at hand: how many channels it keeps in SIMD lanes at once
(``KMM_SCAN_LANES``, 16 as shipped) and every how many steps the forward stores the state (``KMM_SCAN_CHUNK``, 16).

The shipped sizes were chosen on an AVX-512 CPU; this measures whether an AVX2-only CPU (or any other) would be
served better by others (issue 44).  Each LANESxCHUNK runs in its own process, which builds the loop with
``-DKMM_SCAN_LANES=.. -DKMM_SCAN_CHUNK=..`` added to the usual flags (the build cache keys on the flags) and times the
scan at training shapes (forward + backward) and at a generation shape (forward, no gradient), delta before its
softplus as the Mamba block passes it; medians of the repeats, one thread.  The variants run one after another, each
process alone on the machine: compare rows of one run only.

Run: ``python benchmarks/bench_scan_lanes.py [--variants 16x16 32x16 32x8 8x16] [--repeats 25] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402

# (batch, tokens, with gradient): the generator's training windows and a guided 5-segment generation batch.
SHAPES = ((8, 50, True), (32, 50, True), (8, 200, True), (10, 60, False))
CHANNELS, STATE = 384, 16
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "scan_lanes.md"


def time_variant(lanes: int, chunk: int, repeats: int) -> dict[str, float]:
    """Milliseconds per call at each of SHAPES, on the loop built with these sizes (run in a child process)."""
    import torch

    from kmm_core.model import compiled_selective_scan as compiled

    compiled.BASE_FLAGS = [*compiled.BASE_FLAGS, f"-DKMM_SCAN_LANES={lanes}", f"-DKMM_SCAN_CHUNK={chunk}"]
    if compiled.kernel() is None:
        raise SystemExit(f"the C++ loop does not build here: {compiled.kernel_status()}")
    if (compiled.kernel().kmm_scan_lanes(), compiled.kernel().kmm_scan_chunk()) != (lanes, chunk):
        raise SystemExit("the loop was not built with the sizes asked for")
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    return {f"{batch}x{length}{' fwd+bwd' if with_gradient else ' fwd'}":
            _median_ms(compiled, _scan_inputs(generator, batch, length, with_gradient), with_gradient, repeats)
            for batch, length, with_gradient in SHAPES}


def _scan_inputs(generator, batch: int, length: int, with_gradient: bool) -> dict:
    """The scan's time-major inputs, delta before its softplus, and a gradient for its output."""
    import torch

    def normal(*shape):
        return torch.randn(*shape, generator=generator)

    inputs = {"u": normal(batch, length, CHANNELS), "delta": normal(batch, length, CHANNELS) - 3,
              "A": -torch.rand(CHANNELS, STATE, generator=generator) - 0.5, "B": normal(batch, length, STATE),
              "C": normal(batch, length, STATE), "D": normal(CHANNELS), "z": normal(batch, length, CHANNELS)}
    for tensor in inputs.values():
        tensor.requires_grad_(with_gradient)
    return {**inputs, "grad": normal(batch, length, CHANNELS)}


def _median_ms(compiled, inputs: dict, with_gradient: bool, repeats: int) -> float:
    import torch

    grad = inputs.pop("grad")

    def step():
        with torch.set_grad_enabled(with_gradient):
            y = compiled.fused_selective_scan(**inputs, delta_softplus=True)
            if with_gradient:
                y.backward(grad)

    for _ in range(3):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def cpu_description() -> str:
    """The CPU's model name and its widest vector instructions (from /proc/cpuinfo where there is one)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    march = os.environ.get("KMM_SCAN_MARCH", "native")
    return f"{name}, {widest} (the loop built with -march={march})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["16x16", "32x16", "32x8", "8x16"], help="LANESxCHUNK")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the variants (each a process of its "
                        "own, in turn); each cell is the median of the rounds' medians")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        lanes, chunk = (int(part) for part in args.child.split("x"))
        print(json.dumps(time_variant(lanes, chunk, args.repeats)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            done = subprocess.run([sys.executable, __file__, "--child", variant, "--repeats", str(args.repeats)],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise SystemExit(f"{variant}: {done.stderr.strip() or done.stdout.strip()}")
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    shapes = list(runs[args.variants[0]][0])
    rows = {variant: {shape: statistics.median(run[shape] for run in found) for shape in shapes}
            for variant, found in runs.items()}
    first = args.variants[0]
    command = " ".join(["python benchmarks/bench_scan_lanes.py", *sys.argv[1:]])
    lines = ["# The C++ scan loop's block sizes on this machine", "", f"Command: `{command}` (see the script's "
             "docstring).", "", f"CPU: {cpu_description()}; one thread; each cell the median over {args.rounds} "
             f"rounds of the median ms of {args.repeats} calls; ratio to {first} (the shipped sizes) in brackets; "
             f"{CHANNELS} channels, {STATE} states.", "", "| LANESxCHUNK | " + " | ".join(shapes) + " |",
             "| --- |" + " ---: |" * len(shapes)]
    for variant, times in rows.items():
        lines.append(f"| {variant} | " + " | ".join(f"{times[s]:.2f} ({times[s] / rows[first][s]:.2f})"
                                                   for s in shapes) + " |")
    save_report(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
