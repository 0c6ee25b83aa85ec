# SPDX-License-Identifier: GPL-3.0-or-later
"""What a run could have done at most on this machine: its counted floating-point work and the machine's measured
matmul throughput, so that a timing reads as a share of the machine's limit (comparable across machines).

- ``measure_matmul_throughput``: float32 square matmuls (torch.mm) at the torch thread count in use, best of a few
  repeats: the rate this CPU reaches on the densest work there is (FLOP/s).
- ``WorkCounter``: torch's ``FlopCounterMode`` (matmuls, convolutions, attention: what it counts) plus the work of
  the Mamba block's fused CPU loops, which run outside torch's dispatcher and are counted here from their shapes
  (forward hooks on every ``MambaBlock``): per element (batch, token, channel, state) the selective scan's
  forward does 7 flops (delta*A, exp counted as one, the decay times the state, the drive's multiply-add, the output's
  multiply-add) and its backward 20 (the 5 of the state recompute and 15 of the adjoint's multiply-adds); the causal
  depthwise convolution 2 * taps per element forward, twice that backward; valid tokens only where the block is told
  the batch's lengths (the loops skip the padding). The same count stands for every scan implementation of a model,
  so it is the model's work, not the code's.

``matmul-bound time = counted flops / matmul throughput``: the time the run would take if all its work ran at the
machine's matmul speed. A result's "x of matmul-bound" is its CPU time divided by that (CPU times throughout: the
machines these ran on were shared).
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

SCAN_FORWARD_FLOPS = 7
SCAN_BACKWARD_FLOPS = 20


def measure_matmul_throughput(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of float32 ``size x size`` matmuls (best of ``repeats`` timed batches after a warm-up), in CPU time:
    on a shared machine the wall clock also counts other jobs' turns, the process's CPU time only its own work."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(4):
            torch.mm(a, b, out=out)
        best = min(best, (time.process_time() - start) / 4)
    return 2 * size**3 / best


class WorkCounter:
    """Counts the floating-point work of the code run inside ``with counter:`` (see the module docstring); the
    Mamba blocks of ``model`` (any module, or None) add their fused loops' work."""

    def __init__(self, model: torch.nn.Module | None, backward: bool):
        self.backward = backward
        self.flop_mode = FlopCounterMode(display=False)
        self.loop_flops = 0
        self.handles = []
        if model is not None:
            from kmm_core.model.mamba import MambaBlock

            self.handles = [m.register_forward_hook(self._count_block) for m in model.modules()
                            if isinstance(m, MambaBlock)]

    def _count_block(self, block, inputs, output) -> None:
        batch, length, _ = inputs[0].shape
        lengths = inputs[1] if len(inputs) > 1 else None  # valid tokens: the loops skip the padding after them
        tokens = batch * length if lengths is None else int(lengths.sum())
        elements = tokens * block.d_inner
        scan = elements * block.d_state * (SCAN_FORWARD_FLOPS + (SCAN_BACKWARD_FLOPS if self.backward else 0))
        conv = elements * 2 * block.d_conv * (3 if self.backward else 1)
        self.loop_flops += scan + conv

    def __enter__(self):
        self.flop_mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.flop_mode.__exit__(*exc)
        for handle in self.handles:
            handle.remove()
        return False

    @property
    def torch_flops(self) -> int:
        return self.flop_mode.get_total_flops()

    @property
    def total(self) -> int:
        return self.torch_flops + self.loop_flops


def bound_text(flops: float, throughput: float) -> str:
    """One line: the counted work, the machine's matmul rate and the matmul-bound time it gives."""
    return (f"{flops / 1e9:.2f} GFLOP counted; matmul throughput {throughput / 1e9:.1f} GFLOP/s "
            f"-> matmul-bound time {flops / throughput * 1e3:.1f} ms")
