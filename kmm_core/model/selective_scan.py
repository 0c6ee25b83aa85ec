# SPDX-License-Identifier: GPL-3.0-or-later
"""Mamba-1 selective scan: the rule that picks a CUDA kernel, a fused CPU loop or the pure scan; the pure scan.

The recurrence (Gu & Dao 2023), per batch b, channel d and state n:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        h_0 = 0
    y_t = sum_n C_t * h_t  +  D * u_t,    then  y_t * silu(z_t)

Shapes follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``: u, delta, z (B, D, L); A (D, N);
B, C (B, N, L); D and delta_bias (D,).

Why the pure path is a hand-written autograd function: letting autograd record a Python loop over time saves one
(B, D, N) state per step (a (B, D, L, N) tensor in total) and replays ~10 tiny kernels per step backwards. Here the
forward keeps only the state at chunk boundaries; the backward recomputes one chunk of states at a time
(materialising (chunk, B, D, N), never (B, D, L, N)) and runs the adjoint recurrence with one in-place kernel per
step, computing every parameter gradient with whole-chunk tensor operations. ``benchmarks/bench_selective_scan.py``
measured it against the alternatives on CPU (torch.compile is not an option: on CPU it needs a C++ compiler at run
time, which Blender users do not have).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..common.errors import EnvironmentSettingError, InputTensorError

# Measured on CPU (benchmarks/bench_selective_scan.py): 8 steps per chunk keeps the (chunk, B, D, N) buffers in
# cache for training-sized batches; larger chunks lose up to 3x, smaller ones pay Python overhead per chunk.
DEFAULT_CHUNK_SIZE = 8


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are scanned in float32 (as the CUDA kernel does); float32/float64 keep their dtype."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _chunk_tensors(u, delta, A, B, start, stop):
    """Discretised decay exp(delta*A) and input delta*u*B of one chunk, time-major: (K, B, D, N) each."""
    # Time-major *contiguous* copies: every per-step slice [k] below is then one dense block of memory, which
    # made the per-step kernels ~3x faster than on strided views.
    dt = delta[:, :, start:stop].permute(2, 0, 1).contiguous()  # (K, B, D)
    dt_u = dt * u[:, :, start:stop].permute(2, 0, 1)  # (K, B, D)
    b_chunk = B[:, :, start:stop].permute(2, 0, 1).contiguous()  # (K, B, N)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (K, B, D, N)
    drive = dt_u.unsqueeze(-1) * b_chunk.unsqueeze(2)  # (K, B, D, N), freshly allocated: safe to scan in place
    return dt, dt_u, b_chunk, decay, drive


def _scan_in_place(decay: torch.Tensor, drive: torch.Tensor, h_start: torch.Tensor) -> torch.Tensor:
    """Turn ``drive`` into the chunk's states h_1..h_K in place: one fused multiply-add per time step."""
    drive[0].addcmul_(decay[0], h_start)
    for k in range(1, drive.shape[0]):
        drive[k].addcmul_(decay[k], drive[k - 1])
    return drive


class _ChunkedSelectiveScan(torch.autograd.Function):
    """y_t = sum_n C_t h_t for the recurrence above (no D, z, bias or softplus: those are plain autograd ops)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size: int):
        batch, channels, length = u.shape
        y = u.new_empty(batch, channels, length)
        h = u.new_zeros(batch, channels, A.shape[1])
        chunk_starts = list(range(0, length, chunk_size))
        chunk_initial_states = []
        for start in chunk_starts:
            stop = min(start + chunk_size, length)
            chunk_initial_states.append(h)
            _, _, _, decay, drive = _chunk_tensors(u, delta, A, B, start, stop)
            states = _scan_in_place(decay, drive, h)
            c_chunk = C[:, :, start:stop].permute(2, 0, 1)  # (K, B, N)
            y[:, :, start:stop] = torch.matmul(states, c_chunk.unsqueeze(-1)).squeeze(-1).permute(1, 2, 0)
            h = states[-1].clone()
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(chunk_initial_states))
        ctx.chunk_size = chunk_size
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, chunk_initial_states = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        length = u.shape[2]
        grad_y = grad_y.to(u.dtype)
        grad_u = torch.empty_like(u)
        grad_delta = torch.empty_like(delta)
        grad_A = torch.zeros_like(A)
        grad_B = torch.empty_like(B)
        grad_C = torch.empty_like(C)
        # carry = exp(delta_{t+1} A) * dLoss/dh_{t+1}: what the first step of the later chunk sends back.
        carry = torch.zeros_like(chunk_initial_states[0])
        for index in reversed(range(chunk_initial_states.shape[0])):
            start = index * chunk_size
            stop = min(start + chunk_size, length)
            h_start = chunk_initial_states[index]
            dt, dt_u, b_chunk, decay, drive = _chunk_tensors(u, delta, A, B, start, stop)
            states = _scan_in_place(decay, drive, h_start)
            previous_states = torch.cat([h_start.unsqueeze(0), states[:-1]])
            c_chunk = C[:, :, start:stop].permute(2, 0, 1)  # (K, B, N)
            gy = grad_y[:, :, start:stop].permute(2, 0, 1)  # (K, B, D)

            # Adjoint recurrence: lam_t = dLoss/dh_t = gy_t C_t + exp(delta_{t+1} A) lam_{t+1}.
            lam = gy.unsqueeze(-1) * c_chunk.unsqueeze(2)
            lam[-1] += carry
            for k in range(lam.shape[0] - 2, -1, -1):
                lam[k].addcmul_(decay[k + 1], lam[k + 1])
            carry = decay[0] * lam[0]

            # Through the decay: dLoss/d(delta*A) = lam * h_{t-1} * exp(delta*A).
            grad_exponent = lam * previous_states * decay
            grad_A += torch.einsum("kbdn,kbd->dn", grad_exponent, dt)
            grad_dt_from_decay = (grad_exponent * A).sum(-1)
            # Through the drive delta*u*B.
            lam_dot_b = torch.matmul(lam, b_chunk.unsqueeze(-1)).squeeze(-1)  # (K, B, D)
            grad_delta[:, :, start:stop] = (
                grad_dt_from_decay + lam_dot_b * u[:, :, start:stop].permute(2, 0, 1)
            ).permute(1, 2, 0)
            grad_u[:, :, start:stop] = (lam_dot_b * dt).permute(1, 2, 0)
            grad_B[:, :, start:stop] = torch.matmul(dt_u.unsqueeze(2), lam).squeeze(2).permute(1, 2, 0)
            grad_C[:, :, start:stop] = torch.matmul(gy.unsqueeze(2), states).squeeze(2).permute(1, 2, 0)
        return grad_u, grad_delta, grad_A, grad_B, grad_C, None


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise InputTensorError(f"selective_scan: u must be (batch, channels, length), got shape {tuple(u.shape)}")
    batch, channels, length = u.shape
    if A.dim() != 2 or A.shape[0] != channels:
        raise InputTensorError(f"selective_scan: A must be ({channels}, d_state), got shape {tuple(A.shape)}")
    state = A.shape[1]
    expected = {
        "delta": (delta, (batch, channels, length)),
        "B": (B, (batch, state, length)),
        "C": (C, (batch, state, length)),
        "D": (D, (channels,)),
        "z": (z, (batch, channels, length)),
        "delta_bias": (delta_bias, (channels,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise InputTensorError(f"selective_scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")


def selective_scan_pure(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Pure-PyTorch selective scan (any device); same arguments and result as mamba_ssm's ``selective_scan_fn``."""
    if chunk_size < 1:
        raise InputTensorError(f"selective_scan: chunk_size must be >= 1, got {chunk_size}")

    def core(u_c, delta_c, A_c, B_c, C_c):
        return _ChunkedSelectiveScan.apply(u_c, delta_c, A_c, B_c, C_c, chunk_size)

    return _scan_with_core(core, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _selective_scan_on_loops(name, u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> torch.Tensor:
    """The scan on the fused CPU loop ``name`` (``numba_selective_scan`` or ``compiled_selective_scan``: both have a
    time-major ``fused_selective_scan``), keeping mamba_ssm's (B, D, L) signature around it."""
    library, loops, why = _fused_cpu_module(name)
    if loops is None:
        raise InputTensorError(f"selective_scan: the {name} CPU scan is not available ({why})")
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if u.is_cuda:
        raise InputTensorError("selective_scan: the fused CPU scans run on CPU tensors only")
    dtype = _compute_dtype(u.dtype)

    def time_major(tensor):
        return None if tensor is None else tensor.to(dtype).transpose(1, 2)

    y = library.fused_selective_scan(
        time_major(u), time_major(delta), A.to(dtype), time_major(B), time_major(C),
        D=None if D is None else D.to(dtype), z=time_major(z),
        delta_bias=None if delta_bias is None else delta_bias.to(dtype), delta_softplus=delta_softplus)
    return y.transpose(1, 2).to(u.dtype)


def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """The same scan on the numba-compiled CPU loops of ``numba_selective_scan`` (CPU tensors; numba must import,
    d_state at most ``numba_scan_kernels.MAX_STATE``)."""
    return _selective_scan_on_loops("numba", u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """The same scan on the fused C++ loop of ``compiled_selective_scan`` (CPU tensors; its kernel must build)."""
    return _selective_scan_on_loops("compiled", u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _scan_with_core(core, u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> torch.Tensor:
    """Bias, softplus, the D skip and the SiLU(z) gate around ``core(u, delta, A, B, C) = sum_n C_t h_t``."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u.dtype)
    u_c, delta_c = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        delta_c = delta_c + delta_bias.to(dtype).unsqueeze(-1)
    if delta_softplus:
        delta_c = F.softplus(delta_c)
    # Autocast off inside the scan: under torch.autocast its state contraction (a matmul) would run in bf16/fp16,
    # 0.3 off in y at the shipped size (measured on an H200, benchmarks/results/cuda_check_h200.md).
    with torch.autocast(device_type=u.device.type, enabled=False):
        y = core(u_c, delta_c, A.to(dtype), B.to(dtype), C.to(dtype))
    if D is not None:
        y = y + u_c * D.to(dtype).unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """The same scan on our Triton kernels (``triton_selective_scan``; float32 compute, float64 takes the pure scan):
    CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``."""
    if _compute_dtype(u.dtype) == torch.float64:
        return selective_scan_pure(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    from .triton_selective_scan import TritonSelectiveScan

    return _scan_with_core(TritonSelectiveScan.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@functools.cache
def triton_availability(device: str) -> tuple[bool, str]:
    """(whether the Triton scan runs on ``device``, why): Triton imports, and on a small input the compiled kernels'
    output and input gradient agree with the pure scan's to 1e-4 (a compiler or driver that cannot build them leaves
    the pure scan in charge, never a failed training)."""
    try:
        import triton
    except Exception as error:  # noqa: BLE001 - not installed, or a broken install
        return False, f"Triton does not import ({type(error).__name__}: {error})"
    try:
        generator = torch.Generator().manual_seed(0)
        shapes = {"u": (2, 40, 7), "delta": (2, 40, 7), "B": (2, 5, 7), "C": (2, 5, 7), "z": (2, 40, 7)}
        tensors = {name: torch.randn(*shape, generator=generator).to(device) for name, shape in shapes.items()}
        tensors["A"] = (-torch.rand(40, 5, generator=generator) - 0.2).to(device)
        tensors["D"] = torch.randn(40, generator=generator).to(device)
        results = []
        for scan in (selective_scan_triton, selective_scan_pure):
            u = tensors["u"].clone().requires_grad_()
            y = scan(u, tensors["delta"], tensors["A"], tensors["B"], tensors["C"], D=tensors["D"], z=tensors["z"],
                     delta_softplus=True)
            y.square().sum().backward()
            results.append((y.detach(), u.grad))
        gap = max((mine - theirs).abs().max().item() for mine, theirs in zip(*results, strict=True))
    except Exception as error:  # noqa: BLE001 - a compiler or driver that cannot build the kernels
        return False, f"the Triton {triton.__version__} scan does not run on {device} ({type(error).__name__}: {error})"
    if not gap < 1e-4:
        return False, f"the Triton {triton.__version__} scan disagrees with the pure scan on {device} by {gap:.2e}"
    return True, f"the Triton {triton.__version__} scan (agrees with the pure scan on {device} to {gap:.1e})"


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """Deliberately plain float64 loop over time, written straight from the equations. For tests only."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    u64, delta64, A64, B64, C64 = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta64 = delta64 + delta_bias.double()[:, None]
    if delta_softplus:
        delta64 = torch.log1p(torch.exp(delta64))
    batch, channels, length = u.shape
    h = torch.zeros(batch, channels, A.shape[1], dtype=torch.float64, device=u.device)
    outputs = []
    for t in range(length):
        dt = delta64[:, :, t, None]  # (B, D, 1)
        h = torch.exp(dt * A64) * h + dt * u64[:, :, t, None] * B64[:, None, :, t]
        y_t = (h * C64[:, None, :, t]).sum(-1)
        if D is not None:
            y_t = y_t + D.double() * u64[:, :, t]
        if z is not None:
            z_t = z.double()[:, :, t]
            y_t = y_t * z_t * torch.sigmoid(z_t)
        outputs.append(y_t)
    return torch.stack(outputs, dim=-1).to(u.dtype)


@functools.cache
def _fused_selective_scan_fn() -> Callable | None:
    """mamba_ssm's CUDA kernel if the package imports (it cannot be built or imported without CUDA)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or OSError/RuntimeError from a broken CUDA extension: fall back silently
        return None
    return selective_scan_fn


SCAN_VARIABLE = "KMM_SELECTIVE_SCAN"
SCAN_CHOICES = ("auto", "numba", "compiled", "pure")
# The order "auto" tries on the CPU, fastest first: the C++ loop (built with -march=native where a C++ compiler
# exists) trains 1.2x faster than numba's loops on an AMD EPYC with AVX-512 and 1.03-1.05x on AVX2, though 0.83x as
# fast on an Intel Xeon with AVX-512 (training_step_recipe_batches_xeon_avx512.md); they generate about as fast
# (numba 0.91x the C++ loop's CPU time on AVX2; benchmarks/results/training_step.md, training_step_avx2.md,
# timeline_speed_cpu_scans.md, timeline_speed_cpu_scans_avx2.md).
AUTO_ORDER = ("compiled", "numba")


def _fused_cpu_module(name: str):
    """The module of a fused CPU loop and (its loops or None, why)."""
    if name == "numba":
        from . import numba_selective_scan as module

        return module, module.kernels(), module.kernels_status()
    from . import compiled_selective_scan as module

    return module, module.kernel(), module.kernel_status()


def cpu_scan_choice() -> tuple[str, str]:
    """The one rule that picks the CPU selective scan: ("numba" | "compiled" | "pure", why).

    ``KMM_SELECTIVE_SCAN`` (default ``auto``): ``auto`` takes the first of ``AUTO_ORDER`` that loads (numba's loops
    need only the numba package; the C++ loop needs a system C++ compiler), else the pure-PyTorch scan; ``numba``
    or ``compiled`` ask for that loop (the pure scan when it cannot load, saying why); ``pure`` the pure scan."""
    wanted = os.environ.get(SCAN_VARIABLE, "auto").strip().lower() or "auto"
    if wanted not in SCAN_CHOICES:
        raise EnvironmentSettingError(f"{SCAN_VARIABLE}={os.environ[SCAN_VARIABLE]!r}: must be one of {', '.join(SCAN_CHOICES)}")
    if wanted == "pure":
        return "pure", f"{SCAN_VARIABLE}=pure"
    reasons = []
    for name in AUTO_ORDER if wanted == "auto" else (wanted,):
        _, loops, why = _fused_cpu_module(name)
        if loops is not None:
            skipped = f" (not {'; '.join(reasons)})" if reasons else ""
            return name, (f"{SCAN_VARIABLE}={wanted}: " if wanted != "auto" else "") + why + skipped
        reasons.append(f"{name}: {why}")
    return "pure", "; ".join(reasons)


def _cpu_scan_for(state: int) -> str:
    """``cpu_scan_choice``'s scan for a model with ``state`` SSM states (numba's loops keep at most MAX_STATE on the
    stack; a larger state takes the pure scan)."""
    name, _ = cpu_scan_choice()
    if name == "numba" and state > _fused_cpu_module("numba")[1].MAX_STATE:
        return "pure"
    return name


def fused_cpu_loops(u: torch.Tensor, state: int):
    """The module whose fused loops (``fused_selective_scan``, ``causal_conv_silu``) run the Mamba block on these
    CPU tensors, or None (CUDA tensors, other dtypes, a state too large for the loops, or the pure scan chosen)."""
    if u.is_cuda or u.dtype not in (torch.float32, torch.float64):
        return None
    name = _cpu_scan_for(state)
    return None if name == "pure" else _fused_cpu_module(name)[0]


def cuda_scan_choice(device: str = "cuda", gradients: bool = True) -> tuple[str, str]:
    """The rule for CUDA tensors: ("mamba_ssm" | "triton" | "pure", why).  mamba_ssm's fused kernel when it imports;
    else, where a gradient flows through the scan (training), our Triton kernels (``triton_selective_scan``) when
    ``triton_availability(device)`` holds; else the pure scan.  Generation (no gradient)
    keeps the pure scan: on an H200 the Triton kernels generated no faster (0.95-1.05x, up to a 10-minute timeline)
    and would first be compiled, while they trained the generator 2.3-6x faster; mamba_ssm's kernel, which needs no
    compiling at run time, generated at the CPU's speed and trained 2.8-6x faster
    (benchmarks/results/cuda_check_h200*.md).  ``KMM_SELECTIVE_SCAN=pure`` takes the pure scan here too."""
    if os.environ.get(SCAN_VARIABLE, "auto").strip().lower() == "pure":
        return "pure", f"{SCAN_VARIABLE}=pure"
    if _fused_selective_scan_fn() is not None:
        return "mamba_ssm", "mamba_ssm imports"
    if not gradients:
        return "pure", "generation: the pure scan, as fast there as the Triton kernels (those train)"
    works, why = triton_availability(device)
    return ("triton" if works else "pure"), why


def choose_selective_scan(u: torch.Tensor, state: int = 0) -> Callable:
    """The dispatch rule: CUDA tensors take the scan ``cuda_scan_choice`` names; CPU tensors the scan
    ``cpu_scan_choice`` names (for a model with ``state`` SSM states); everything else the pure scan."""
    if u.is_cuda:
        name, _ = cuda_scan_choice(str(u.device), gradients=torch.is_grad_enabled() and u.requires_grad)
        if name == "mamba_ssm":
            return _fused_selective_scan_fn()
        return selective_scan_triton if name == "triton" else selective_scan_pure
    name = _cpu_scan_for(state)
    return {"numba": selective_scan_numba, "compiled": selective_scan_compiled}.get(name, selective_scan_pure)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """Selective scan with mamba_ssm's signature, running on whichever implementation ``choose_selective_scan`` picks."""
    implementation = choose_selective_scan(u, A.shape[1])
    return implementation(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
