# SPDX-License-Identifier: GPL-3.0-or-later
"""The selective scan as one fused CPU loop (``selective_scan_kernel.cpp``), compiled with the system's C++ compiler.

Why: the pure-PyTorch scan has to write (chunk, B, D, N) tensors for every elementwise step (decay, drive, states,
adjoints), about twenty passes over B*D*L*N floats per forward+backward, which made the bidirectional-Mamba generator
train 5-9x slower than the equal-size transformer on CPU. The C++ loop keeps each (batch, channel) state in
registers while it walks over time: one pass forward, two backward (chunk recompute + adjoint), and the only stored
states are one checkpoint every ``kmm_scan_chunk()`` steps (B, D, L/16, N), so the long-sequence memory bound holds.
``benchmarks/bench_training_step.py`` measures the training step against the transformer's.

The library is built on first use (about 2 s) into a per-user cache folder and reused by every later process; the
cache key covers the source, the compiler, its flags and the CPU's feature flags (the build uses -march=native;
``KMM_SCAN_MARCH`` names another instruction set, e.g. haswell to see how AVX2-only CPUs run it). Without a
compiler, or when the build fails, ``kernel()`` returns None (``kernel_status()`` says why) and the caller keeps the
pure-PyTorch scan.  The library's SHA-256 is kept beside it and checked before each load: a cached library cut short
(a full disk, a killed copy) is removed and rebuilt instead of crashing the process in the dynamic loader
(``kernel_status()`` says so).  ``selective_scan.cpu_scan_choice`` decides whether this path or numba's runs
(``KMM_SELECTIVE_SCAN``); ``KMM_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from ..common.atomic_write import write_text_atomic
from ..common.errors import EnvironmentSettingError
from .fused_scan_autograd import ConvGradients, ScanGradients, channel_groups, row_lengths, run_fused_scan

SOURCE = Path(__file__).with_name("selective_scan_kernel.cpp")
BASE_FLAGS = ["-O3", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
# The instruction set the kernel is built for: the machine's own by default; another (e.g. ``haswell``, AVX2 only)
# to measure how the kernel runs on a CPU without AVX-512 (benchmarks/README.md, "AVX2 on an AVX-512 machine").
MARCH_VARIABLE = "KMM_SCAN_MARCH"
_MARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")

_status = {"reason": "not built yet"}


def cache_dir() -> Path:
    if os.environ.get("KMM_CACHE_DIR"):
        return Path(os.environ["KMM_CACHE_DIR"]) / "selective_scan"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmm" / "selective_scan"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_flags() -> list[str]:
    """The compiler flags: ``BASE_FLAGS`` and ``-march=`` the value of ``KMM_SCAN_MARCH`` (default ``native``)."""
    march = os.environ.get(MARCH_VARIABLE, "").strip() or "native"
    if not _MARCH_NAME.fullmatch(march):
        raise EnvironmentSettingError(f"{MARCH_VARIABLE}={march!r}: not a CPU name (letters, digits, '_', '.', '+', '-'; e.g. "
                          "native, haswell, skylake-avx512)")
    return [*BASE_FLAGS, f"-march={march}"]


def _build(compiler: str, target: Path) -> str | None:
    """Compile SOURCE into ``target`` (atomically: other processes may build the same key at once); error or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run([compiler, *build_flags(), str(SOURCE), "-o", scratch], capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        _write_checksum(Path(scratch), _checksum_path(target))
        os.replace(scratch, target)
        return None
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        Path(scratch).unlink(missing_ok=True)


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    pointer, size, flag = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("kmm_scan_chunk", "kmm_scan_lanes"):
        getattr(library, name).restype = ctypes.c_int64
        getattr(library, name).argtypes = []
    signatures = {
        "kmm_scan_forward": [pointer] * 11 + [size] * 7 + [flag, flag],
        "kmm_scan_backward": [pointer] * 18 + [size] * 8 + [flag, flag],
        "kmm_conv_forward": [pointer] * 5 + [size] * 5 + [flag],
        "kmm_conv_backward": [pointer] * 8 + [size] * 5 + [flag],
    }
    for name, argtypes in signatures.items():
        for suffix in ("f32", "f64"):
            function = getattr(library, f"{name}_{suffix}")
            function.restype = None
            function.argtypes = argtypes
    return library


@functools.cache
def kernel() -> ctypes.CDLL | None:
    """The compiled scan library (built on first use), or None when it cannot be built (``KMM_SELECTIVE_SCAN`` is
    read by ``selective_scan.cpu_scan_choice``, the one rule that picks a CPU scan)."""
    compiler = _compiler()
    if compiler is None:
        _status["reason"] = "no C++ compiler found (set CXX, or install g++ or clang++)"
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        _status["reason"] = f"{compiler} --version failed: {error}"
        return None
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), version, " ".join(build_flags()), _cpu_flags(), platform.machine()]).encode()
    ).hexdigest()[:20]
    target = cache_dir() / f"selective_scan_{key}.so"
    repaired = ""
    if target.exists() and not _intact(target):
        # cut short (a full disk, a killed copy) or changed: loading it could kill the process (SIGBUS)
        repaired = f"the cached {target.name} was damaged: removed and rebuilt; "
        for path in (target, _checksum_path(target)):
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                _status["reason"] = f"the cached {target} is damaged and cannot be removed ({error}): delete it"
                return None
    if not target.exists():
        try:
            failure = _build(compiler, target)
        except OSError as error:  # e.g. the cache folder is not writable
            failure = f"{type(error).__name__}: {error}"
        if failure is not None:
            _status["reason"] = f"{repaired}build failed: {failure}"
            return None
    try:
        library = _declare(ctypes.CDLL(str(target)))
    except (OSError, AttributeError) as error:
        _status["reason"] = f"could not load {target}: {error}"
        return None
    march = build_flags()[-1]
    _status["reason"] = f"{repaired}loaded {target}" + (f" (built with {march})" if march != "-march=native" else "")
    return library


def _checksum_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksum(library: Path, checksum: Path) -> None:
    """The library's SHA-256 beside it (written before the library is moved into place)."""
    write_text_atomic(checksum, _file_digest(library) + "\n")


def _intact(target: Path) -> bool:
    """Whether the cached library is whole: its SHA-256 is the one written when it was built (a library cut short
    by a full disk or a killed copy is never handed to the dynamic loader, which would die of SIGBUS)."""
    try:
        recorded = _checksum_path(target).read_text().strip()
        return bool(recorded) and _file_digest(target) == recorded
    except OSError:
        return False


def kernel_status() -> str:
    """Why ``kernel()`` returned what it did (for `kmm doctor` and error messages)."""
    return _status["reason"]


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _suffix(dtype: torch.dtype) -> str:
    return {torch.float32: "f32", torch.float64: "f64"}[dtype]


def _rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``tensor`` (B, L, X) as the kernels read it: unit stride along X, rows of a fixed stride; and that stride."""
    batch, length, _ = tensor.shape
    if tensor.stride(2) != 1 or (batch > 1 and tensor.stride(0) != length * tensor.stride(1)):
        tensor = tensor.contiguous()
    return tensor, tensor.stride(1) if length > 1 else tensor.shape[2]


class _ScanInputs:
    """The fused scan's inputs, checked for the kernel's layout; time-major (B, L, D) like the Mamba block's, with each
    sample's number of valid steps (``row_lengths``)."""

    def __init__(self, u, delta, A, B, C, D, z, lengths=None):
        self.u, self.delta, self.A = u.contiguous(), delta.contiguous(), A.contiguous()
        (self.B, self.b_stride), (self.C, self.c_stride) = _rows(B), _rows(C)
        self.D = None if D is None else D.contiguous()
        self.z, self.z_stride = (None, 0) if z is None else _rows(z)
        self.lengths = row_lengths(lengths, u)

    def tensors(self) -> tuple:
        return self.u, self.delta, self.A, self.B, self.C, self.D, self.z, self.lengths

    def restore(self, tensors) -> _ScanInputs:
        """These inputs with the tensors saved for backward (the same objects, version-checked by autograd)."""
        self.u, self.delta, self.A, self.B, self.C, self.D, self.z, self.lengths = tensors
        return self

    def pointers(self):
        return [_address(t) for t in self.tensors()]

    def sizes(self):
        batch, length, channels = self.u.shape
        return [batch, length, channels, self.A.shape[1], self.b_stride, self.c_stride, self.z_stride]


def fused_scan_forward(library, inputs: _ScanInputs, for_backward: bool, softplus: bool = False):
    """y (B, L, D) and, for the backward, y before the gate and the state checkpoints; ``softplus``: the loop takes
    softplus(delta) itself (the forward-only path)."""
    batch, length, channels = inputs.u.shape
    y = torch.empty_like(inputs.u)
    y_pre = checkpoints = None
    if for_backward:
        lanes = library.kmm_scan_lanes()
        blocks, chunks = -(-channels // lanes), -(-length // library.kmm_scan_chunk())
        y_pre = torch.empty_like(inputs.u) if inputs.z is not None else None
        checkpoints = inputs.u.new_empty(batch, blocks, chunks, inputs.A.shape[1], lanes)
    getattr(library, f"kmm_scan_forward_{_suffix(inputs.u.dtype)}")(
        *inputs.pointers(), _address(y), _address(y_pre), _address(checkpoints), *inputs.sizes(), int(softplus),
        torch.get_num_threads())
    return y, y_pre, checkpoints


class FusedSelectiveScan(torch.autograd.Function):
    """y = (sum_n C_t h_t + D u_t) * silu(z_t), time-major, on the C++ loop (delta positive, or taken through
    softplus by the loop when ``softplus``)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, softplus, lengths):
        inputs = _ScanInputs(u, delta, A, B, C, D, z, lengths)
        y, y_pre, checkpoints = fused_scan_forward(kernel(), inputs, True, softplus)
        ctx.softplus = softplus
        ctx.save_for_backward(*inputs.tensors(), y_pre, checkpoints)
        inputs.restore((None,) * 8)
        ctx.inputs = inputs  # strides only; the tensors go through save_for_backward
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        library = kernel()
        *saved, y_pre, checkpoints = ctx.saved_tensors
        inputs = ctx.inputs.restore(saved)
        u = inputs.u
        batch, _, channels = u.shape
        threads = torch.get_num_threads()
        groups = channel_groups(-(-channels // library.kmm_scan_lanes()), batch, threads)
        grad_y = grad_y.to(u.dtype).contiguous()
        grads = ScanGradients(u, inputs.A.shape[1], groups, with_z=inputs.z is not None)
        getattr(library, f"kmm_scan_backward_{_suffix(u.dtype)}")(
            *inputs.pointers(), _address(y_pre), _address(checkpoints), _address(grad_y), _address(grads.u),
            _address(grads.delta), _address(grads.z), _address(grads.A_parts), _address(grads.D_parts),
            _address(grads.B_parts), _address(grads.C_parts), *inputs.sizes(), groups, int(ctx.softplus), threads)
        return *grads.result(with_D=inputs.D is not None), None, None


def fused_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         lengths=None) -> torch.Tensor:
    """Time-major selective scan on the compiled loop (``kernel()`` must not be None); arguments and layout as
    ``fused_scan_autograd.run_fused_scan`` says."""
    return run_fused_scan(
        FusedSelectiveScan,
        lambda tensors, softplus: fused_scan_forward(kernel(), _ScanInputs(*tensors), False, softplus)[0],
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, lengths)


class CausalConvSiLU(torch.autograd.Function):
    """silu(causal depthwise conv1d(x)) over time, time-major: x (B, L, D) (a view with unit channel stride is read
    in place), weight (D, K) as Conv1d's (D, 1, K) weight without its middle axis, bias (D,); ``lengths`` (B,) each
    sample's valid steps or None (all): padded steps come out zero."""

    @staticmethod
    def forward(ctx, x, weight, bias, lengths):
        x, stride = _rows(x)
        weight_t = weight.t().contiguous()
        bias = bias.contiguous()
        lengths = row_lengths(lengths, x)
        batch, length, channels = x.shape
        out = x.new_empty(batch, length, channels)
        getattr(kernel(), f"kmm_conv_forward_{_suffix(x.dtype)}")(
            _address(x), _address(weight_t), _address(bias), _address(lengths), _address(out), batch, length,
            channels, weight.shape[1], stride, torch.get_num_threads())
        ctx.save_for_backward(x, weight_t, bias, lengths)
        ctx.stride = stride
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight_t, bias, lengths = ctx.saved_tensors
        batch, length, channels = x.shape
        taps = weight_t.shape[0]
        grad_out = grad_out.to(x.dtype).contiguous()
        grads = ConvGradients(x, taps)
        getattr(kernel(), f"kmm_conv_backward_{_suffix(x.dtype)}")(
            _address(x), _address(weight_t), _address(bias), _address(lengths), _address(grad_out), _address(grads.x),
            _address(grads.weight_parts), _address(grads.bias_parts), batch, length, channels, taps, ctx.stride,
            torch.get_num_threads())
        return *grads.result(), None


def causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                     lengths: torch.Tensor | None = None) -> torch.Tensor:
    """silu(causal depthwise conv(x)) on the compiled loop (``kernel()`` must not be None); see CausalConvSiLU."""
    return CausalConvSiLU.apply(x, weight, bias, lengths)
