# SPDX-License-Identifier: GPL-3.0-or-later
"""The selective scan as two Triton kernels (forward and backward) for CUDA tensors, when Triton imports.

The same recurrence as ``selective_scan.selective_scan_pure`` (its docstring has the equations).  One program holds
the states h (BLOCK_D channels x d_state) of one batch row in registers and walks the sequence once: the forward
writes y and, when a gradient is wanted, the state each step starts from, h_{t-1} (a (B, D, L, N) float32 buffer:
39 MB at the training step's batch 32 x 50 tokens x 384 channels); the backward walks back once, recomputing h_t from
it, running the adjoint recurrence lam_t = g_t C_t + exp(delta_{t+1} A) lam_{t+1} and writing du, ddelta and
per-program partial sums of dA, dB and dC (summed afterwards, so the result does not depend on the order programs
finish in).

Float32 only: ``selective_scan.selective_scan_triton`` wraps this core with the bias, softplus, D skip and gate
(half precision scanned in float32, as mamba-ssm does; float64 takes the pure core), and
``selective_scan.cuda_scan_choice`` picks it for training on CUDA tensors when mamba-ssm does not import and
``selective_scan.triton_availability(device)`` holds.  Under ``TRITON_INTERPRET=1`` the same kernels run on CPU
tensors, which is how the tests prove them against the float64 reference on a machine without a GPU.
"""

from __future__ import annotations

import functools

import torch

BLOCK_D = 32  # channels per program: 32 x 16 states keeps h, the decay and the adjoint in registers


@functools.cache
def _kernels():
    """The two jitted kernels (Triton imported on first use: the CPU paths never import it)."""
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, y_ptr, states_ptr, channels, length, state,
                       STATE: tl.constexpr, BLOCK: tl.constexpr, SAVE_STATES: tl.constexpr):
        batch = tl.program_id(0).to(tl.int64)
        d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        n = tl.arange(0, STATE)
        d_ok, n_ok = d < channels, n < state
        both = d_ok[:, None] & n_ok[None, :]
        a = tl.load(a_ptr + d[:, None] * state + n[None, :], mask=both, other=0.0)
        row = (batch * channels + d) * length  # (BLOCK,) start of each channel's sequence
        column = (batch * state + n) * length  # (STATE,) start of each state's B and C sequence
        h = tl.zeros((BLOCK, STATE), dtype=tl.float32)
        for t in range(length):
            u = tl.load(u_ptr + row + t, mask=d_ok, other=0.0)
            dt = tl.load(dt_ptr + row + t, mask=d_ok, other=0.0)
            b = tl.load(b_ptr + column + t, mask=n_ok, other=0.0)
            c = tl.load(c_ptr + column + t, mask=n_ok, other=0.0)
            if SAVE_STATES:  # h_{t-1}, the state this step starts from (zero at t = 0)
                tl.store(states_ptr + (row[:, None] + t) * state + n[None, :], h, mask=both)
            h = tl.exp(dt[:, None] * a) * h + (dt * u)[:, None] * b[None, :]
            tl.store(y_ptr + row + t, tl.sum(h * c[None, :], axis=1), mask=d_ok)

    @triton.jit
    def backward_kernel(u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, g_ptr, states_ptr, du_ptr, ddt_ptr, da_ptr, db_ptr,
                        dc_ptr, channels, length, state, blocks,
                        STATE: tl.constexpr, BLOCK: tl.constexpr):
        batch = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        d = block * BLOCK + tl.arange(0, BLOCK)
        n = tl.arange(0, STATE)
        d_ok, n_ok = d < channels, n < state
        both = d_ok[:, None] & n_ok[None, :]
        a = tl.load(a_ptr + d[:, None] * state + n[None, :], mask=both, other=0.0)
        row = (batch * channels + d) * length
        column = (batch * state + n) * length
        partial = ((batch * blocks + block) * state + n) * length  # (STATE,) this program's dB, dC partial rows
        carry = tl.zeros((BLOCK, STATE), dtype=tl.float32)  # exp(delta_{t+1} A) lam_{t+1}
        grad_a = tl.zeros((BLOCK, STATE), dtype=tl.float32)
        for step in range(length):
            t = length - 1 - step
            u = tl.load(u_ptr + row + t, mask=d_ok, other=0.0)
            dt = tl.load(dt_ptr + row + t, mask=d_ok, other=0.0)
            g = tl.load(g_ptr + row + t, mask=d_ok, other=0.0)
            b = tl.load(b_ptr + column + t, mask=n_ok, other=0.0)
            c = tl.load(c_ptr + column + t, mask=n_ok, other=0.0)
            h_before = tl.load(states_ptr + (row[:, None] + t) * state + n[None, :], mask=both, other=0.0)
            decay = tl.exp(dt[:, None] * a)
            h = decay * h_before + (dt * u)[:, None] * b[None, :]  # h_t again, from the state it started from
            lam = g[:, None] * c[None, :] + carry
            through_decay = lam * h_before * decay  # dLoss/d(delta_t A)
            grad_a += through_decay * dt[:, None]
            lam_b = tl.sum(lam * b[None, :], axis=1)
            tl.store(ddt_ptr + row + t, tl.sum(through_decay * a, axis=1) + lam_b * u, mask=d_ok)
            tl.store(du_ptr + row + t, lam_b * dt, mask=d_ok)
            tl.store(db_ptr + partial + t, tl.sum((dt * u)[:, None] * lam, axis=0), mask=n_ok)
            tl.store(dc_ptr + partial + t, tl.sum(g[:, None] * h, axis=0), mask=n_ok)
            carry = decay * lam
        tl.store(da_ptr + (batch * channels + d[:, None]) * state + n[None, :], grad_a, mask=both)

    return forward_kernel, backward_kernel


def _launch_shape(u: torch.Tensor, A: torch.Tensor) -> tuple[tuple[int, int], int]:
    import triton

    batch, channels, _ = u.shape
    return (batch, triton.cdiv(channels, BLOCK_D)), triton.next_power_of_2(A.shape[1])


class TritonSelectiveScan(torch.autograd.Function):
    """y_t = sum_n C_t h_t (no D, z, bias or softplus: ``_scan_with_core`` adds those), float32 tensors."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        forward_kernel, _ = _kernels()
        u, delta, A, B, C = (t.float().contiguous() for t in (u, delta, A, B, C))
        batch, channels, length = u.shape
        state = A.shape[1]
        save = any(ctx.needs_input_grad)
        y = torch.empty_like(u)
        states = u.new_empty((batch, channels, length, state) if save else (1,))
        grid, padded = _launch_shape(u, A)
        forward_kernel[grid](u, delta, A, B, C, y, states, channels, length, state,
                             STATE=padded, BLOCK=BLOCK_D, SAVE_STATES=save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, states)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        _, backward_kernel = _kernels()
        u, delta, A, B, C, states = ctx.saved_tensors
        batch, channels, length = u.shape
        state = A.shape[1]
        grid, padded = _launch_shape(u, A)
        blocks = grid[1]
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_a = u.new_empty(batch, channels, state)
        grad_b = u.new_empty(batch, blocks, state, length)
        grad_c = u.new_empty(batch, blocks, state, length)
        backward_kernel[grid](u, delta, A, B, C, grad_y.float().contiguous(), states, grad_u, grad_delta, grad_a,
                              grad_b, grad_c, channels, length, state, blocks, STATE=padded, BLOCK=BLOCK_D)
        return grad_u, grad_delta, grad_a.sum(0), grad_b.sum(1), grad_c.sum(1)
