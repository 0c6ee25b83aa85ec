# SPDX-License-Identifier: GPL-3.0-or-later
"""Where one generator training step's time goes, operator by operator (issue 44: the Mamba step against the
transformer's).

The step and its inputs are ``bench_training_step.py``'s (the [generator] of training/configs/small.toml, random codes
of the tokenizer's shape, zero_grad + ``training_loss`` + backward + AdamW step); after 3 warm-up steps, torch.profiler
records N steps and prints the operators by self CPU time: the fused scan's forward and backward
(``FusedSelectiveScan``, ``FusedSelectiveScanBackward``), the causal convolution, the matrix products (``aten::mm``,
``aten::addmm``), the optimizer.  The profiler inflates small operators; read shares, not absolute times (those are
``bench_training_step.py``'s).

Run: ``python benchmarks/profile_training_step.py [--backbone mamba|transformer] [--batch 8] [--tokens 50]
[--steps 10] [--rows 25]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_training_step import Variant, make_inputs, small_generator_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mamba", choices=["mamba", "transformer"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variant = Variant(args.backbone, args.backbone, None)
    inputs = make_inputs(small_generator_config(args.backbone), args.batch, args.tokens, seed=0)
    for _ in range(3):
        variant.step(inputs)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            variant.step(inputs)
    print(f"{args.backbone}, batch {args.batch} x {args.tokens} tokens, {args.steps} steps, {args.threads} thread(s):")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
