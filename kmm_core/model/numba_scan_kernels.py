# SPDX-License-Identifier: GPL-3.0-or-later
"""The Mamba-1 block's CPU loops, compiled by numba (LLVM shipped inside its wheels: no system compiler needed).

Four kernels, each with its backward's counterpart:
  * ``scan_forward`` / ``scan_backward``: the selective scan with the D skip and the SiLU(z) gate folded in;
  * ``conv_forward`` / ``conv_backward``: the causal depthwise convolution + SiLU.

Recurrence (Gu & Dao 2023), per batch b, channel d, state n:
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t      h_0 = 0          y_t = (sum_n C_t h_t + D u_t) * silu(z_t)

Vectorisation: ``LANES`` consecutive channels are processed together, one SIMD lane each, so the sums over states
and every state's update are plain vector operations with no horizontal reductions; LLVM turns each
``for w in range(LANES)`` loop into whole-register operations for the CPU it runs on (32 float32 lanes = four AVX2
registers, two AVX-512 registers, eight NEON registers: enough independent work per step to hide the latency of
each multiply-add; 16 lanes measured 1.2x slower on AVX2, 8 lanes 4x). Each work item (a batch row and a block of LANES channels)
keeps its states in a small (N, LANES) buffer while it walks over time: nothing of size (B, L, D, N) is ever
written. The forward stores the state every ``CHUNK`` steps; the backward recomputes one chunk of states from that
checkpoint, then runs the adjoint recurrence through it.

Padding: ``lengths[b]`` is sample b's number of valid steps (valid steps first, then padding, the Mamba backbone's
layout). The loops stop there: padded steps get zero outputs and zero input gradients and cost nothing. A padded step
never reaches a valid one (the scan and the convolution are causal), so valid outputs, and every gradient when the
padded outputs do not reach the loss, are those of the whole-length loops bit for bit.

Layout: every (batch, length, X) tensor arrives as a flat one-dimensional array with its row stride in elements
(row (b, t) starts at ``(b * length + t) * stride``), so views into a wider linear output are read in place and each
inner loop reads unit-stride memory. u, delta, y, y_pre, grad_y, grad_u, grad_delta, grad_z have row stride D;
checkpoints are (items, n_chunks, N, LANES); grad_A_parts (B, D, N); grad_D_parts (B, D); grad_B_parts,
grad_C_parts (B, groups, L, N). Every kernel takes the range of work items [first, stop) it runs, so that several
threads can share one call's items (the kernels release the GIL).

Compiled on first use and cached on disk (numba's cache: beside this file, or in the user's cache folder when this
folder is read-only), for the CPU at hand: the cache is keyed by the CPU's name and features.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# A checkpoint every 8 steps: the backward's recomputed states and decays of one chunk (2 * 8 + 1 rows of
# N x LANES: 35 KiB in float32 at N = 16, about an L1 cache; 67 KiB with 16 steps, which measured the forward +
# backward about 1.2x slower).
CHUNK = 8
LANES = 32
# The most SSM states the loops take: their per-item buffers live on the stack, (2 CHUNK + 5) * MAX_STATE * LANES
# scalars in the backward (168 KiB in float64), within the smallest default thread stack (512 KiB on macOS).
MAX_STATE = 32
# FMA contraction only (as GCC's default for C++): no reassociation, so results do not depend on the vector width.
_JIT = {"nogil": True, "cache": True, "fastmath": {"contract"}, "error_model": "numpy"}

_LOG2_E = np.float32(1.44269504088896341)
_ROUNDER = np.float32(12582912.0)  # 1.5 * 2^23: adding it rounds a float32 of magnitude < 2^22 to an integer
_LN2_HIGH = np.float32(0.693145751953125)
_LN2_LOW = np.float32(1.428606765330187045e-06)
_EXP_LOW, _EXP_HIGH = np.float32(-87.0), np.float32(88.0)
_TAYLOR = tuple(np.float32(c) for c in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0))


@intrinsic
def _times_power_of_two(typingctx, value, exponent):
    """value * 2**exponent for float32 ``value`` and a float32 ``exponent`` holding an integer in [-126, 127]: the
    exponent is written straight into a float's exponent bits (a bit cast numba has no Python spelling for)."""
    if value != types.float32 or exponent != types.float32:
        return None

    def codegen(context, builder, signature, args):
        int32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[1], int32), ir.Constant(int32, 127))
        scale = builder.bitcast(builder.shl(biased, ir.Constant(int32, 23)), ir.FloatType())
        return builder.fmul(args[0], scale)

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _stack_lanes(typingctx, like):
    """Pointer to LANES uninitialised scalars of ``like``'s type on the stack (in the function's entry block)."""
    if not isinstance(like, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(like), size=LANES)

    return types.CPointer(like)(like), codegen


@intrinsic
def _stack_buffer(typingctx, like, count):
    """Pointer to ``count`` uninitialised scalars of ``like``'s type on the stack, for the rest of the call: call it
    only at a kernel's top level, outside every loop (each call takes more stack)."""
    if not isinstance(like, types.Float) or not isinstance(count, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        size = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.alloca(context.get_value_type(like), size=size)

    return types.CPointer(like)(like, count), codegen


@njit(inline="always", **_JIT)
def _horner8(c, x):
    """c[0] x^7 + c[1] x^6 + ... + c[7] for the eight coefficients ``c``, by Horner's rule, written out (a loop over
    the tuple would not be unrolled inside the vectorised loops)."""
    p = c[0]
    p = p * x + c[1]
    p = p * x + c[2]
    p = p * x + c[3]
    p = p * x + c[4]
    p = p * x + c[5]
    p = p * x + c[6]
    return p * x + c[7]


def exp_of(x):
    """exp for the hot loops (float32: a polynomial that vectorises inline; float64: the library's exp)."""
    return math.exp(x)


@overload(exp_of, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _exp_of_typed(x):
    if x == types.float32:
        def exp_float32(x):
            # Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial (truncation error
            # < 6e-9 relative, below float32's rounding step) scaled by 2^k. Inputs clamped to [-87, 88]: exp(-87) =
            # 1.6e-38 stands for anything smaller (the scan's decays), and the result stays a normal float.
            x = _EXP_LOW if x < _EXP_LOW else (_EXP_HIGH if x > _EXP_HIGH else x)
            k = (x * _LOG2_E + _ROUNDER) - _ROUNDER
            r = (x - k * _LN2_HIGH) - k * _LN2_LOW
            return _times_power_of_two(_horner8(_TAYLOR, r), k)

        return exp_float32
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


_ATANH_SERIES = tuple(np.float32(1 / k) for k in (15, 13, 11, 9, 7, 5, 3, 1))


def softplus_of(x):
    """softplus for the forward-only scan (float32: inline polynomial; float64: torch's formula)."""
    return x if x > 20.0 else math.log1p(math.exp(x))


@overload(softplus_of, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _softplus_of_typed(x):
    if x == types.float32:
        def softplus_float32(x):
            # max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log1p(e) = 2 atanh(s), s = e / (2 + e) in (0, 1/3],
            # as 2 s (1 + s^2/3 + ... + s^14/15): the next term is below 1.5e-9 relative (the C++ loop's formula).
            e = exp_of(-abs(x))
            s = e / (np.float32(2) + e)
            return (x if x > np.float32(0) else np.float32(0)) + np.float32(2) * s * _horner8(_ATANH_SERIES, s * s)

        return softplus_float32
    if x == types.float64:
        return lambda x: x if x > 20.0 else math.log1p(math.exp(x))
    return None


@njit(inline="always", **_JIT)
def _softplus_rows(rows, length):
    """rows = softplus(rows) over the first ``length`` rows, as one flat loop (vectorised whole)."""
    flat_rows = rows.reshape(rows.shape[0] * LANES)
    for i in range(length * LANES):
        flat_rows[i] = softplus_of(flat_rows[i])


@njit(inline="always", **_JIT)
def _sigmoid(x):
    one = type(x)(1)
    return one / (one + exp_of(-x))


@njit(inline="always", **_JIT)
def _softplus_slopes(rows, slopes, length):
    """slopes = sigmoid(rows), then rows = softplus(rows), over the first ``length`` rows as one flat loop."""
    flat_rows = rows.reshape(rows.shape[0] * LANES)
    flat_slopes = slopes.reshape(slopes.shape[0] * LANES)
    for i in range(length * LANES):
        flat_slopes[i] = _sigmoid(flat_rows[i])
        flat_rows[i] = softplus_of(flat_rows[i])


@njit(inline="always", **_JIT)
def _scale_rows(rows, scales, length):
    """rows *= scales over the first ``length`` rows, as one flat loop."""
    flat_rows = rows.reshape(rows.shape[0] * LANES)
    flat_scales = scales.reshape(scales.shape[0] * LANES)
    for i in range(length * LANES):
        flat_rows[i] *= flat_scales[i]


@njit(inline="always", **_JIT)
def _load_rows(source, stride, b, d0, dim, length, count, rows):
    """rows[t, w] = source row (b, t), channel d0 + w, for the first ``count`` steps; zero past the last channel (zero
    delta and input keep a padded lane's states at zero)."""
    lanes = min(LANES, dim - d0)
    first_row = b * length
    if lanes == LANES:
        for t in range(count):
            base = (first_row + t) * stride + d0
            for w in range(LANES):
                rows[t, w] = source[base + w]
    else:
        zero = rows.dtype.type(0)
        for t in range(count):
            base = (first_row + t) * stride + d0
            for w in range(LANES):
                rows[t, w] = source[base + w] if w < lanes else zero


@njit(inline="always", **_JIT)
def _zero_rows(rows, first, length):
    """rows[first:length] = 0 (a sample's padded steps)."""
    zero = rows.dtype.type(0)
    for t in range(first, length):
        for w in range(LANES):
            rows[t, w] = zero


@njit(inline="always", **_JIT)
def _store_rows(rows, target, b, d0, dim, length):
    """The inverse of ``_load_rows`` for a contiguous (B, L, D) target: only the block's real channels are written."""
    lanes = min(LANES, dim - d0)
    for t in range(length):
        base = (b * length + t) * dim + d0
        if lanes == LANES:
            for w in range(LANES):
                target[base + w] = rows[t, w]
        else:
            for w in range(lanes):
                target[base + w] = rows[t, w]


@njit(inline="always", **_JIT)
def _gate_rows(rows, gates, length):
    """rows *= silu(gates) over the first ``length`` rows, as one flat loop (vectorised whole; a loop of LANES steps
    inside the time loop would be unrolled into scalar code)."""
    flat_rows = rows.reshape(rows.shape[0] * LANES)
    flat_gates = gates.reshape(gates.shape[0] * LANES)
    for i in range(length * LANES):
        flat_rows[i] *= flat_gates[i] * _sigmoid(flat_gates[i])


@njit(inline="always", **_JIT)
def _load_block(A, Dskip, has_skip, d0, dim, lanes_A, skip):
    """A's and D's values of channels d0 .. d0 + LANES - 1 as (N, LANES) and (LANES,); zero past the last channel."""
    lanes = min(LANES, dim - d0)
    zero = lanes_A.dtype.type(0)
    for n in range(A.shape[1]):
        for w in range(LANES):
            lanes_A[n, w] = A[d0 + w, n] if w < lanes else zero
    for w in range(LANES):
        skip[w] = Dskip[d0 + w] if (has_skip and w < lanes) else zero


@njit(**_JIT)
def scan_forward(u, delta, A, Bm, Cm, Dskip, z, lengths, y, y_pre, checkpoints, batch, length, dim, b_stride,
                 c_stride, z_stride, has_skip, has_gate, save, softplus, first, stop):
    """y (and, when ``save``, y_pre and the state checkpoints) of work items [first, stop); ``softplus``: delta is
    taken through softplus first (the forward-only path); sample b's steps from ``lengths[b]`` on are padding."""
    N = A.shape[1]
    blocks = (dim + LANES - 1) // LANES
    dtype = u.dtype
    zero = dtype.type(0)
    U = np.empty((length, LANES), dtype)
    DT = np.empty((length, LANES), dtype)
    Z = np.empty((length if has_gate else 0, LANES), dtype)
    Y = np.empty((length, LANES), dtype)
    AL = carray(_stack_buffer(zero, N * LANES), (N, LANES))
    H = carray(_stack_buffer(zero, N * LANES), (N, LANES))
    skip = carray(_stack_lanes(zero), LANES)
    x = carray(_stack_lanes(zero), LANES)
    acc = carray(_stack_lanes(zero), LANES)
    for item in range(first, stop):
        b = item // blocks
        d0 = (item % blocks) * LANES
        valid = lengths[b]
        _load_rows(u, dim, b, d0, dim, length, valid, U)
        _load_rows(delta, dim, b, d0, dim, length, valid, DT)
        if softplus:
            _softplus_rows(DT, valid)
        if has_gate:
            _load_rows(z, z_stride, b, d0, dim, length, valid, Z)
        _load_block(A, Dskip, has_skip, d0, dim, AL, skip)
        for n in range(N):
            for w in range(LANES):
                H[n, w] = zero
        for t in range(valid):
            if save and t % CHUNK == 0:
                for n in range(N):
                    for w in range(LANES):
                        checkpoints[item, t // CHUNK, n, w] = H[n, w]
            b_row = (b * length + t) * b_stride
            c_row = (b * length + t) * c_stride
            for w in range(LANES):
                x[w] = DT[t, w] * U[t, w]
                acc[w] = skip[w] * U[t, w]
            for n in range(N):
                bn = Bm[b_row + n]
                cn = Cm[c_row + n]
                for w in range(LANES):
                    following = exp_of(DT[t, w] * AL[n, w]) * H[n, w] + x[w] * bn
                    H[n, w] = following
                    acc[w] += following * cn
            # Full LANES-wide rows only (the real channels are copied out after the item): every access to the
            # running sums then has a constant index, and LLVM keeps them in registers.
            for w in range(LANES):
                Y[t, w] = acc[w]
        _zero_rows(Y, valid, length)
        if has_gate:
            if save:
                _store_rows(Y, y_pre, b, d0, dim, length)
            _gate_rows(Y, Z, valid)
        _store_rows(Y, y, b, d0, dim, length)
    return stop


@njit(**_JIT)
def scan_backward(u, delta, A, Bm, Cm, Dskip, z, lengths, y_pre, checkpoints, grad_y, grad_u, grad_delta, grad_z,
                  grad_A_parts, grad_D_parts, grad_B_parts, grad_C_parts, batch, length, dim, b_stride, c_stride,
                  z_stride, has_skip, has_gate, groups, softplus, first, stop):
    """Gradients of work items [first, stop): item = (batch row, group of channel blocks); each group writes its own
    dB/dC part (summed over groups by the caller).  ``softplus``: delta arrived before its softplus, which is taken
    here too, and its gradient is multiplied by d softplus(x) / dx = sigmoid(x)."""
    N = A.shape[1]
    L = length
    blocks = (dim + LANES - 1) // LANES
    per_group = (blocks + groups - 1) // groups
    dtype = u.dtype
    zero = dtype.type(0)
    one = dtype.type(1)
    U = np.empty((L, LANES), dtype)
    DT = np.empty((L, LANES), dtype)
    GYS = np.empty((L, LANES), dtype)
    Z = np.empty((L if has_gate else 0, LANES), dtype)
    YP = np.empty((L if has_gate else 0, LANES), dtype)
    GZ = np.empty((L if has_gate else 0, LANES), dtype)
    GU = np.empty((L, LANES), dtype)
    GDELTA = np.empty((L, LANES), dtype)
    SG = np.empty((L if softplus else 0, LANES), dtype)  # sigmoid(delta before its softplus)
    gB = np.empty((L, N, LANES), dtype)  # per-lane partial sums over this group's channels
    gC = np.empty((L, N, LANES), dtype)
    AL = carray(_stack_buffer(zero, N * LANES), (N, LANES))
    states = carray(_stack_buffer(zero, (CHUNK + 1) * N * LANES), (CHUNK + 1, N, LANES))
    decays = carray(_stack_buffer(zero, CHUNK * N * LANES), (CHUNK, N, LANES))
    carry = carray(_stack_buffer(zero, N * LANES), (N, LANES))  # exp(delta_{t+1} A) * dLoss/dh_{t+1}
    ga = carray(_stack_buffer(zero, N * LANES), (N, LANES))
    skip = carray(_stack_lanes(zero), LANES)
    gD = carray(_stack_lanes(zero), LANES)
    x = carray(_stack_lanes(zero), LANES)
    grad_dt = carray(_stack_lanes(zero), LANES)
    grad_x = carray(_stack_lanes(zero), LANES)
    for item in range(first, stop):
        b = item // groups
        g = item % groups
        valid = lengths[b]
        gB[:, :, :] = 0
        gC[:, :, :] = 0
        block_end = min(blocks, (g + 1) * per_group)
        for block in range(g * per_group, block_end):
            d0 = block * LANES
            lanes = min(LANES, dim - d0)
            _load_rows(u, dim, b, d0, dim, L, valid, U)
            _load_rows(delta, dim, b, d0, dim, L, valid, DT)
            if softplus:
                _softplus_slopes(DT, SG, valid)
            _load_rows(grad_y, dim, b, d0, dim, L, valid, GYS)
            _load_block(A, Dskip, has_skip, d0, dim, AL, skip)
            # Through the gate: dLoss/dy_pre = gy * silu(z), dLoss/dz = gy * y_pre * silu'(z).
            if has_gate:
                _load_rows(z, z_stride, b, d0, dim, L, valid, Z)
                _load_rows(y_pre, dim, b, d0, dim, L, valid, YP)
                flat_z, flat_gys = Z.reshape(L * LANES), GYS.reshape(L * LANES)
                flat_yp, flat_gz = YP.reshape(L * LANES), GZ.reshape(L * LANES)
                for i in range(valid * LANES):  # one flat loop: vectorised whole
                    sg = _sigmoid(flat_z[i])
                    flat_gz[i] = flat_gys[i] * flat_yp[i] * sg * (one + flat_z[i] * (one - sg))
                    flat_gys[i] *= flat_z[i] * sg
                _zero_rows(GZ, valid, L)
                _store_rows(GZ, grad_z, b, d0, dim, L)
            for w in range(LANES):
                gD[w] = zero
            for t in range(valid):
                for w in range(LANES):
                    gD[w] += GYS[t, w] * U[t, w]
            for n in range(N):
                for w in range(LANES):
                    carry[n, w] = zero
                    ga[n, w] = zero
            item_block = b * blocks + block
            for chunk in range((valid + CHUNK - 1) // CHUNK - 1, -1, -1):
                start = chunk * CHUNK
                steps = min(CHUNK, valid - start)
                for n in range(N):
                    for w in range(LANES):
                        states[0, n, w] = checkpoints[item_block, chunk, n, w]
                for k in range(steps):
                    t = start + k
                    b_row = (b * L + t) * b_stride
                    for w in range(LANES):
                        x[w] = DT[t, w] * U[t, w]
                    for n in range(N):
                        bn = Bm[b_row + n]
                        for w in range(LANES):
                            decay = exp_of(DT[t, w] * AL[n, w])
                            decays[k, n, w] = decay
                            states[k + 1, n, w] = decay * states[k, n, w] + x[w] * bn
                for k in range(steps - 1, -1, -1):
                    t = start + k
                    b_row = (b * L + t) * b_stride
                    c_row = (b * L + t) * c_stride
                    for w in range(LANES):
                        x[w] = DT[t, w] * U[t, w]
                        grad_dt[w] = zero
                        grad_x[w] = zero
                    for n in range(N):
                        bn = Bm[b_row + n]
                        cn = Cm[c_row + n]
                        for w in range(LANES):
                            lam = GYS[t, w] * cn + carry[n, w]  # dLoss/dh_t
                            gC[t, n, w] += GYS[t, w] * states[k + 1, n, w]
                            grad_exponent = lam * states[k, n, w] * decays[k, n, w]  # dLoss/d(delta_t A)
                            grad_dt[w] += grad_exponent * AL[n, w]
                            ga[n, w] += grad_exponent * DT[t, w]
                            grad_x[w] += lam * bn
                            gB[t, n, w] += lam * x[w]
                            carry[n, w] = lam * decays[k, n, w]
                    for w in range(LANES):
                        GDELTA[t, w] = grad_dt[w] + grad_x[w] * U[t, w]
                        GU[t, w] = grad_x[w] * DT[t, w] + GYS[t, w] * skip[w]
            if softplus:
                _scale_rows(GDELTA, SG, valid)
            _zero_rows(GDELTA, valid, L)
            _zero_rows(GU, valid, L)
            _store_rows(GDELTA, grad_delta, b, d0, dim, L)
            _store_rows(GU, grad_u, b, d0, dim, L)
            for w in range(LANES):  # LANES, not lanes: constant indices keep gD in registers
                if w < lanes:
                    for n in range(N):
                        grad_A_parts[b, d0 + w, n] = ga[n, w]
                    grad_D_parts[b, d0 + w] = gD[w]
        for t in range(L):
            for n in range(N):
                sum_b = zero
                sum_c = zero
                for w in range(LANES):
                    sum_b += gB[t, n, w]
                    sum_c += gC[t, n, w]
                grad_B_parts[b, g, t, n] = sum_b
                grad_C_parts[b, g, t, n] = sum_c
    return stop


@njit(inline="always", **_JIT)
def _conv_pre(x, weight, bias, b, t, length, dim, taps, x_stride, pre):
    """pre[d] = bias[d] + sum_k weight[k, d] x[b, t - (K-1) + k, d] for one (b, t), the taps in order (as the C++
    loop sums them). Whole channel rows, a trip count known only at run time: LLVM's loop vectoriser takes them,
    where a loop of LANES steps would be unrolled into scalar code."""
    for d in range(dim):
        pre[d] = bias[d]
    for k in range(taps):
        source = t - (taps - 1) + k
        if source < 0:
            continue
        base = (b * length + source) * x_stride
        weights, row = weight[k], x[base:base + dim]
        for d in range(dim):
            pre[d] += weights[d] * row[d]


@njit(**_JIT)
def conv_forward(x, weight, bias, lengths, out, length, dim, taps, x_stride, first, stop):
    """out[b, t, d] = silu(bias[d] + sum_k weight[k, d] x[b, t - (K-1) + k, d]) for rows bt in [first, stop), zero
    from step ``lengths[b]`` on (padding); weight is the transposed (K, D) copy of Conv1d's (D, 1, K) weight, out
    contiguous (B, L, D) (flat)."""
    zero = out.dtype.type(0)
    pre = carray(_stack_buffer(zero, dim), dim)
    for bt in range(first, stop):
        row = out[bt * dim:(bt + 1) * dim]
        if bt % length >= lengths[bt // length]:
            for d in range(dim):
                row[d] = zero
            continue
        _conv_pre(x, weight, bias, bt // length, bt % length, length, dim, taps, x_stride, pre)
        for d in range(dim):
            row[d] = pre[d] * _sigmoid(pre[d])
    return stop


@njit(**_JIT)
def conv_backward(x, weight, bias, lengths, grad_out, grad_x, grad_weight_parts, grad_bias_parts, length, dim, taps,
                  x_stride, first, stop):
    """grad_x (B, L, D) (flat) of batch rows [first, stop), zero on padding; grad_weight_parts (B, K, D) and
    grad_bias_parts (B, D), summed over b by the caller. Every inner loop indexes a whole channel row (a slice) by its channel alone, as in
    ``_conv_pre``: LLVM vectorises those; the sums of a sample run in stack buffers, written out once."""
    dtype = grad_x.dtype
    zero = dtype.type(0)
    one = dtype.type(1)
    grad_pre = np.empty((length, dim), dtype)
    pre = carray(_stack_buffer(zero, dim), dim)
    gx = carray(_stack_buffer(zero, dim), dim)
    gb = carray(_stack_buffer(zero, dim), dim)
    gw = carray(_stack_buffer(zero, taps * dim), (taps, dim))
    for b in range(first, stop):
        valid = lengths[b]
        for t in range(valid):
            _conv_pre(x, weight, bias, b, t, length, dim, taps, x_stride, pre)
            go_base = (b * length + t) * dim
            go, gp = grad_out[go_base:go_base + dim], grad_pre[t]
            for d in range(dim):  # dLoss/dpre = go * silu'(pre)
                sg = _sigmoid(pre[d])
                gp[d] = go[d] * sg * (one + pre[d] * (one - sg))
        for k in range(taps):
            gwk = gw[k]
            for d in range(dim):
                gwk[d] = zero
        for d in range(dim):
            gb[d] = zero
        for s in range(valid, length):
            out_base = (b * length + s) * dim
            target = grad_x[out_base:out_base + dim]
            for d in range(dim):
                target[d] = zero
        for s in range(valid):
            x_base = (b * length + s) * x_stride
            xs, gps = x[x_base:x_base + dim], grad_pre[s]
            for d in range(dim):
                gb[d] += gps[d]
                gx[d] = zero
            for k in range(taps):
                t = s + (taps - 1) - k  # the output that read x[s] through tap k
                if t >= valid:
                    continue
                gpt, weights, gwk = grad_pre[t], weight[k], gw[k]
                for d in range(dim):
                    gx[d] += weights[d] * gpt[d]
                    gwk[d] += gpt[d] * xs[d]
            out_base = (b * length + s) * dim
            target = grad_x[out_base:out_base + dim]
            for d in range(dim):
                target[d] = gx[d]
        weight_part, bias_part = grad_weight_parts[b], grad_bias_parts[b]
        for k in range(taps):
            gwk, target_k = gw[k], weight_part[k]
            for d in range(dim):
                target_k[d] = gwk[d]
        for d in range(dim):
            bias_part[d] = gb[d]
    return stop
