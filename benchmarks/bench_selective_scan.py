# SPDX-License-Identifier: GPL-3.0-or-later
"""Time pure-PyTorch selective-scan candidates (forward, and forward+backward) and print a Markdown table.

Candidates (all exact; they differ only in speed and memory):
- ``autograd_loop``: one step at a time, autograd records every step (saves a (B, D, N) state per step).
- ``autograd_chunked``: per chunk, exp(delta*A) and delta*u*B vectorised, then a loop of one multiply-add per step;
  autograd still records every step.
- ``custom_chunked_K``: the shipped ``kmm_core.model.selective_scan.selective_scan_pure`` with chunk size K
  (hand-written backward, states recomputed per chunk).
- ``torchscript_loop``: the plain loop compiled by TorchScript (deprecated in torch 2.x; needs no C++ compiler).
torch.compile is not a candidate: on CPU its Inductor backend needs a C++ compiler at run time.

Run: ``python benchmarks/bench_selective_scan.py [--repeats 3] [--lengths 49 196 1024 4096]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kmm_core.model.selective_scan import selective_scan_pure  # noqa: E402


def autograd_loop(u, delta, A, B, C):
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + (dt * u[:, :, t, None]) * B[:, None, :, t]
        outputs.append(torch.matmul(h, C[:, :, t, None]).squeeze(-1))
    return torch.stack(outputs, dim=-1)


def autograd_chunked(u, delta, A, B, C, chunk_size=8):
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for start in range(0, u.shape[2], chunk_size):
        stop = min(start + chunk_size, u.shape[2])
        dt = delta[:, :, start:stop].permute(2, 0, 1)
        decay = torch.exp(dt.unsqueeze(-1) * A)
        drive = (dt * u[:, :, start:stop].permute(2, 0, 1)).unsqueeze(-1) * B[:, :, start:stop].permute(
            2, 0, 1
        ).unsqueeze(2)
        states = []
        for k in range(stop - start):
            h = torch.addcmul(drive[k], decay[k], h)
            states.append(h)
        states = torch.stack(states)
        y = torch.matmul(states, C[:, :, start:stop].permute(2, 0, 1).unsqueeze(-1)).squeeze(-1)
        outputs.append(y.permute(1, 2, 0))
    return torch.cat(outputs, dim=-1)


def _scripted_loop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(autograd_loop)


def candidates():
    found = {
        "autograd_loop": autograd_loop,
        "autograd_chunked_8": lambda u, d, A, B, C: autograd_chunked(u, d, A, B, C, chunk_size=8),
    }
    for chunk in (8, 32):
        found[f"custom_chunked_{chunk}"] = lambda u, d, A, B, C, chunk=chunk: selective_scan_pure(
            u, d, A, B, C, chunk_size=chunk
        )
    try:
        found["torchscript_loop"] = _scripted_loop()
    except Exception as error:  # TorchScript may be removed in a future torch
        print(f"torchscript_loop skipped: {error}", file=sys.stderr)
    return found


def make_inputs(batch, channels, length, state, requires_grad):
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(batch, channels, length, generator=generator)
    delta = torch.nn.functional.softplus(torch.randn(batch, channels, length, generator=generator) - 3)
    A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(channels, 1)
    B = torch.randn(batch, state, length, generator=generator)
    C = torch.randn(batch, state, length, generator=generator)
    tensors = [u, delta, A, B, C]
    return [t.requires_grad_(requires_grad) for t in tensors]


def time_call(function, repeats):
    """Best of ``repeats`` CPU seconds of this thread (with one torch thread all work runs here, so the number
    does not depend on what else the shared machine is running)."""
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        function()
        best = min(best, time.thread_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[49, 196, 1024, 4096])
    parser.add_argument("--configs", nargs="+", default=["2x512", "8x256"], help="BATCHxCHANNELS pairs")
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is only exact with 1)")
    parser.add_argument("--max-loop-length", type=int, default=4096, help="skip autograd_loop/torchscript above this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), N = {args.state}, best of {args.repeats} (CPU ms)\n"
    )
    print("| B x D | L | candidate | forward ms | forward+backward ms | fwd+bwd µs/step |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for config in args.configs:
        batch, channels = (int(v) for v in config.split("x"))
        for length in args.lengths:
            for name, scan in candidates().items():
                if name in ("autograd_loop", "torchscript_loop") and length > args.max_loop_length:
                    continue
                inputs = make_inputs(batch, channels, length, args.state, requires_grad=True)

                def forward_only(scan=scan, inputs=inputs):
                    with torch.no_grad():
                        scan(*inputs)

                def forward_backward(scan=scan, inputs=inputs):
                    scan(*inputs).square().mean().backward()

                forward_s = time_call(forward_only, args.repeats)
                total_s = time_call(forward_backward, args.repeats)
                print(
                    f"| {batch} x {channels} | {length} | {name} | {forward_s * 1e3:.1f} | {total_s * 1e3:.1f} "
                    f"| {total_s * 1e6 / length:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
