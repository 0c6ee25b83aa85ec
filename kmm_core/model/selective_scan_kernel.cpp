// SPDX-License-Identifier: GPL-3.0-or-later
// Fused CPU kernels of the Mamba-1 block, compiled at first use by compiled_selective_scan.py:
//   * the selective scan with the D skip and the SiLU(z) gate folded in, and
//   * the causal depthwise convolution + SiLU,
// each with its backward. All (batch, length, channels) tensors are time-major ("B, L, D"), the layout the block's
// linear layers produce, so no transposes are needed around the kernels. delta arrives with its bias added and,
// when asked (`softplus`), before its softplus, which the loops apply themselves (forward) and differentiate
// (backward: times sigmoid(delta)): two passes less over (B, L, D) each way, and no call to PyTorch's softplus,
// whose log1p does not vectorise.
//
// Recurrence (Gu & Dao 2023), per batch b, channel d, state n:
//   h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t      h_0 = 0          y_t = (sum_n C_t h_t + D u_t) * silu(z_t)
//
// Vectorisation: LANES consecutive channels are processed together (one SIMD lane each), so the sums over states
// and the updates of every state are plain vector operations with no horizontal reductions. Each (batch, block of
// LANES channels) keeps its states in a small buffer while it walks over time: nothing of size (B, L, D, N) is ever
// written. The forward stores the state every CHUNK steps; the backward recomputes one chunk of states from that
// checkpoint, then runs the adjoint recurrence through it.
//
// Padding: lengths[b] is sample b's number of valid steps (valid steps first, then padding, the Mamba backbone's
// layout). The loops stop there: padded steps get zero outputs and zero input gradients and cost nothing. A padded
// step never reaches a valid one (the scan and the convolution are causal), so valid outputs, and every gradient when
// the padded outputs do not reach the loss, are those of the whole-length loops bit for bit.
//
// Layouts (row strides are given for the inputs that are views into a wider tensor, in elements):
//   u, delta, y, y_pre, grad_y, grad_u, grad_delta, grad_z : (B, L, D) contiguous
//   z : (B, L, D) with row stride z_stride (may be null: no gate);  Bm, Cm : (B, L, N) with row strides
//   b_stride, c_stride;  A : (D, N);  Dskip : (D) (may be null: no skip)
//   checkpoints : (B, blocks, n_chunks, N, LANES);  y_pre = sum_n C h + D u (saved for the z gradient)
//   grad_A_parts : (B, D, N);  grad_D_parts : (B, D);  grad_B_parts, grad_C_parts : (B, G, L, N)
// Build flags: -O3 -march=native -fno-trapping-math (the last lets GCC vectorise the clamps in exp_of).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// The block sizes (overridable at build time only for benchmarks/bench_scan_lanes.py, which measures others: on an
// AVX2-only CPU every size from 8 to 32 lanes was within 10% of these).
#ifndef KMM_SCAN_CHUNK
#define KMM_SCAN_CHUNK 16
#endif
#ifndef KMM_SCAN_LANES
#define KMM_SCAN_LANES 16
#endif
constexpr int64_t CHUNK = KMM_SCAN_CHUNK;
constexpr int64_t LANES = KMM_SCAN_LANES;

// exp for the hot loops: Cody-Waite range reduction x = k ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial
// (truncation error < 6e-9 relative, below float32's 6e-8 rounding step) scaled by 2^k through the exponent bits.
// Written without library calls so that "omp simd" loops vectorise it inline. Inputs are clamped to [-87, 88]:
// exp(-87) = 1.6e-38 stands for anything smaller (the scan's decays), and the result stays a normal float.
inline float exp_of(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    // k = round(x / ln2) by the 1.5 * 2^23 trick: the low mantissa bits of `shifted` then hold k itself.
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const float k = shifted - 12582912.0f;
    int32_t k_bits;
    std::memcpy(&k_bits, &shifted, sizeof(k_bits));
    const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (k_bits - 0x4B400000 + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}
inline double exp_of(double x) { return std::exp(x); }
template <typename T>
inline T sigmoid(T x) { return T(1) / (T(1) + exp_of(-x)); }

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], for the forward-only scan (the
// generation path; training keeps PyTorch's softplus and its gradient). log1p(e) = 2 atanh(s), s = e / (2 + e) in
// (0, 1/3], as 2 s (1 + s^2/3 + ... + s^14/15): the next term is below 1.5e-9 relative, so the result is within a
// few float32 rounding steps of torch's softplus. No library call: "omp simd" loops vectorise it inline.
inline float softplus_of(float x) {
    const float e = exp_of(-std::fabs(x));
    const float s = e / (2.0f + e);
    const float s2 = s * s;
    float p = 1.0f / 15.0f;
    p = p * s2 + 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return std::max(x, 0.0f) + 2.0f * s * p;
}
inline double softplus_of(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }  // torch's threshold

struct ScanShape {
    int64_t batch, length, dim, nstate, b_stride, c_stride, z_stride;
    int64_t blocks() const { return (dim + LANES - 1) / LANES; }
    int64_t n_chunks() const { return (length + CHUNK - 1) / CHUNK; }
};

// rows[t][lane] = source[b, t, d0 + lane] of a (B, L, D) tensor with row stride `stride`, for the first `count`
// steps; zero past the last channel (zero delta and input keep a padded lane's states at zero).
template <typename T>
void load_rows(const ScanShape& s, const T* source, int64_t stride, int64_t b, int64_t d0, int64_t count, T* rows) {
    const int64_t lanes = std::min(LANES, s.dim - d0);
    for (int64_t t = 0; t < count; ++t) {
        T* row = rows + t * LANES;
        std::memcpy(row, source + (b * s.length + t) * stride + d0, sizeof(T) * lanes);
        std::fill(row + lanes, row + LANES, T(0));
    }
}

template <typename T>
void store_row(const T* lane_values, T* target, int64_t lanes) { std::memcpy(target, lane_values, sizeof(T) * lanes); }

// Zero rows [from, L) of sample b's channels d0 .. d0 + lanes - 1 in a contiguous (B, L, D) tensor (its padding).
template <typename T>
void zero_padding(const ScanShape& s, T* target, int64_t b, int64_t d0, int64_t from) {
    const int64_t lanes = std::min(LANES, s.dim - d0);
    for (int64_t t = from; t < s.length; ++t) std::fill_n(target + (b * s.length + t) * s.dim + d0, lanes, T(0));
}

template <typename T>
void load_A(const ScanShape& s, const T* A, int64_t d0, T* AL) {
    const int64_t lanes = std::min(LANES, s.dim - d0);
    for (int64_t n = 0; n < s.nstate; ++n)
        for (int64_t w = 0; w < LANES; ++w) AL[n * LANES + w] = w < lanes ? A[(d0 + w) * s.nstate + n] : T(0);
}

template <typename T>
void load_lanes(const T* source, int64_t d0, int64_t dim, T* lanes_out) {
    const int64_t lanes = std::min(LANES, dim - d0);
    for (int64_t w = 0; w < LANES; ++w) lanes_out[w] = source != nullptr && w < lanes ? source[d0 + w] : T(0);
}

template <typename T>
void scan_forward(const ScanShape s, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                  const T* Dskip, const T* z, const int64_t* lengths, T* y, T* y_pre, T* checkpoints, bool softplus,
                  int threads) {
    const int64_t N = s.nstate, blocks = s.blocks(), n_chunks = s.n_chunks();
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        std::vector<T> U(s.length * LANES), DT(s.length * LANES), Z(z != nullptr ? s.length * LANES : 0);
        std::vector<T> AL(N * LANES), H(N * LANES);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < s.batch * blocks; ++item) {
            const int64_t b = item / blocks, d0 = (item % blocks) * LANES;
            const int64_t lanes = std::min(LANES, s.dim - d0), valid = lengths[b];
            load_rows(s, u, s.dim, b, d0, valid, U.data());
            load_rows(s, delta, s.dim, b, d0, valid, DT.data());
            if (softplus) {
                T* dts = DT.data();
#pragma omp simd
                for (int64_t i = 0; i < valid * LANES; ++i) dts[i] = softplus_of(dts[i]);
            }
            if (z != nullptr) load_rows(s, z, s.z_stride, b, d0, valid, Z.data());
            load_A(s, A, d0, AL.data());
            T skip[LANES];
            load_lanes(Dskip, d0, s.dim, skip);
            T* h = H.data();
            const T* al = AL.data();
            std::fill(H.begin(), H.end(), T(0));
            for (int64_t t = 0; t < valid; ++t) {
                if (checkpoints != nullptr && t % CHUNK == 0)
                    std::memcpy(checkpoints + (item * n_chunks + t / CHUNK) * N * LANES, h, sizeof(T) * N * LANES);
                const T* dt = DT.data() + t * LANES;
                const T* ut = U.data() + t * LANES;
                const T* Bt = Bm + (b * s.length + t) * s.b_stride;
                const T* Ct = Cm + (b * s.length + t) * s.c_stride;
                T x[LANES], acc[LANES];
#pragma omp simd
                for (int64_t w = 0; w < LANES; ++w) {
                    x[w] = dt[w] * ut[w];
                    acc[w] = skip[w] * ut[w];
                }
                for (int64_t n = 0; n < N; ++n) {
                    const T bn = Bt[n], cn = Ct[n];
                    T* hn = h + n * LANES;
                    const T* an = al + n * LANES;
#pragma omp simd
                    for (int64_t w = 0; w < LANES; ++w) {
                        const T next = exp_of(dt[w] * an[w]) * hn[w] + x[w] * bn;
                        hn[w] = next;
                        acc[w] += next * cn;
                    }
                }
                const int64_t row = (b * s.length + t) * s.dim + d0;
                if (y_pre != nullptr) store_row(acc, y_pre + row, lanes);
                if (z != nullptr) {
                    const T* zt = Z.data() + t * LANES;
#pragma omp simd
                    for (int64_t w = 0; w < LANES; ++w) acc[w] *= zt[w] * sigmoid(zt[w]);
                }
                store_row(acc, y + row, lanes);
            }
            zero_padding(s, y, b, d0, valid);
            if (y_pre != nullptr) zero_padding(s, y_pre, b, d0, valid);
        }
    }
}

template <typename T>
void scan_backward(const ScanShape s, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                   const T* Dskip, const T* z, const int64_t* lengths, const T* y_pre, const T* checkpoints,
                   const T* grad_y, T* grad_u,
                   T* grad_delta, T* grad_z, T* grad_A_parts, T* grad_D_parts, T* grad_B_parts, T* grad_C_parts,
                   int64_t groups, bool softplus, int threads) {
    const int64_t N = s.nstate, L = s.length, blocks = s.blocks(), n_chunks = s.n_chunks();
    const int64_t per_group = (blocks + groups - 1) / groups;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        std::vector<T> U(L * LANES), DT(L * LANES), GYS(L * LANES), AL(N * LANES), SG(softplus ? L * LANES : 0);
        std::vector<T> Z(z != nullptr ? L * LANES : 0), YP(z != nullptr ? L * LANES : 0);
        std::vector<T> states((CHUNK + 1) * N * LANES), decays(CHUNK * N * LANES), carry(N * LANES), ga(N * LANES);
        std::vector<T> gB(L * N * LANES), gC(L * N * LANES);  // per-lane partial sums over this group's channels
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < s.batch * groups; ++item) {
            const int64_t b = item / groups, g = item % groups;
            std::fill(gB.begin(), gB.end(), T(0));
            std::fill(gC.begin(), gC.end(), T(0));
            const int64_t block_end = std::min(blocks, (g + 1) * per_group), valid = lengths[b];
            for (int64_t block = g * per_group; block < block_end; ++block) {
                const int64_t d0 = block * LANES, lanes = std::min(LANES, s.dim - d0);
                load_rows(s, u, s.dim, b, d0, valid, U.data());
                load_rows(s, delta, s.dim, b, d0, valid, DT.data());
                if (softplus) {  // delta arrived before its softplus: d softplus(x) / dx = sigmoid(x)
                    T* dts = DT.data();
                    T* sgs = SG.data();
#pragma omp simd
                    for (int64_t i = 0; i < valid * LANES; ++i) {
                        sgs[i] = sigmoid(dts[i]);
                        dts[i] = softplus_of(dts[i]);
                    }
                }
                load_rows(s, grad_y, s.dim, b, d0, valid, GYS.data());
                load_A(s, A, d0, AL.data());
                T skip[LANES];
                load_lanes(Dskip, d0, s.dim, skip);
                const T* al = AL.data();
                // Through the gate: dLoss/dy_pre = gy * silu(z), dLoss/dz = gy * y_pre * silu'(z).
                if (z != nullptr) {
                    load_rows(s, z, s.z_stride, b, d0, valid, Z.data());
                    load_rows(s, y_pre, s.dim, b, d0, valid, YP.data());
                    for (int64_t t = 0; t < valid; ++t) {
                        T* gys = GYS.data() + t * LANES;
                        const T* zt = Z.data() + t * LANES;
                        const T* yp = YP.data() + t * LANES;
                        T gz[LANES];
#pragma omp simd
                        for (int64_t w = 0; w < LANES; ++w) {
                            const T sg = sigmoid(zt[w]);
                            gz[w] = gys[w] * yp[w] * sg * (T(1) + zt[w] * (T(1) - sg));
                            gys[w] *= zt[w] * sg;
                        }
                        store_row(gz, grad_z + (b * L + t) * s.dim + d0, lanes);
                    }
                    zero_padding(s, grad_z, b, d0, valid);
                }
                T gD[LANES] = {};
                for (int64_t t = 0; t < valid; ++t) {
#pragma omp simd
                    for (int64_t w = 0; w < LANES; ++w) gD[w] += GYS[t * LANES + w] * U[t * LANES + w];
                }
                std::fill(carry.begin(), carry.end(), T(0));  // exp(delta_{t+1} A) * dLoss/dh_{t+1}
                std::fill(ga.begin(), ga.end(), T(0));
                for (int64_t chunk = (valid + CHUNK - 1) / CHUNK - 1; chunk >= 0; --chunk) {
                    const int64_t start = chunk * CHUNK, steps = std::min(CHUNK, valid - start);
                    std::memcpy(states.data(), checkpoints + ((b * blocks + block) * n_chunks + chunk) * N * LANES,
                                sizeof(T) * N * LANES);
                    for (int64_t k = 0; k < steps; ++k) {
                        const int64_t t = start + k;
                        const T* dt = DT.data() + t * LANES;
                        const T* ut = U.data() + t * LANES;
                        const T* Bt = Bm + (b * L + t) * s.b_stride;
                        T x[LANES];
#pragma omp simd
                        for (int64_t w = 0; w < LANES; ++w) x[w] = dt[w] * ut[w];
                        for (int64_t n = 0; n < N; ++n) {
                            const T bn = Bt[n];
                            const T* prev = states.data() + (k * N + n) * LANES;
                            T* next = states.data() + ((k + 1) * N + n) * LANES;
                            T* dec = decays.data() + (k * N + n) * LANES;
                            const T* an = al + n * LANES;
#pragma omp simd
                            for (int64_t w = 0; w < LANES; ++w) {
                                dec[w] = exp_of(dt[w] * an[w]);
                                next[w] = dec[w] * prev[w] + x[w] * bn;
                            }
                        }
                    }
                    for (int64_t k = steps - 1; k >= 0; --k) {
                        const int64_t t = start + k;
                        const T* dt = DT.data() + t * LANES;
                        const T* ut = U.data() + t * LANES;
                        const T* gys = GYS.data() + t * LANES;
                        const T* Bt = Bm + (b * L + t) * s.b_stride;
                        const T* Ct = Cm + (b * L + t) * s.c_stride;
                        T x[LANES], grad_dt[LANES], grad_x[LANES];
#pragma omp simd
                        for (int64_t w = 0; w < LANES; ++w) {
                            x[w] = dt[w] * ut[w];
                            grad_dt[w] = 0;
                            grad_x[w] = 0;
                        }
                        for (int64_t n = 0; n < N; ++n) {
                            const T bn = Bt[n], cn = Ct[n];
                            const T* prev = states.data() + (k * N + n) * LANES;
                            const T* cur = states.data() + ((k + 1) * N + n) * LANES;
                            const T* dec = decays.data() + (k * N + n) * LANES;
                            const T* an = al + n * LANES;
                            T* c = carry.data() + n * LANES;
                            T* gan = ga.data() + n * LANES;
                            T* gBt = gB.data() + (t * N + n) * LANES;
                            T* gCt = gC.data() + (t * N + n) * LANES;
#pragma omp simd
                            for (int64_t w = 0; w < LANES; ++w) {
                                const T lam = gys[w] * cn + c[w];  // dLoss/dh_t
                                gCt[w] += gys[w] * cur[w];
                                const T grad_exponent = lam * prev[w] * dec[w];  // dLoss/d(delta_t A)
                                grad_dt[w] += grad_exponent * an[w];
                                gan[w] += grad_exponent * dt[w];
                                grad_x[w] += lam * bn;
                                gBt[w] += lam * x[w];
                                c[w] = lam * dec[w];
                            }
                        }
                        T gdelta[LANES], gu[LANES];
#pragma omp simd
                        for (int64_t w = 0; w < LANES; ++w) {
                            gdelta[w] = grad_dt[w] + grad_x[w] * ut[w];
                            gu[w] = grad_x[w] * dt[w] + gys[w] * skip[w];
                        }
                        if (softplus) {
                            const T* sg = SG.data() + t * LANES;
#pragma omp simd
                            for (int64_t w = 0; w < LANES; ++w) gdelta[w] *= sg[w];
                        }
                        const int64_t row = (b * L + t) * s.dim + d0;
                        store_row(gdelta, grad_delta + row, lanes);
                        store_row(gu, grad_u + row, lanes);
                    }
                }
                zero_padding(s, grad_delta, b, d0, valid);
                zero_padding(s, grad_u, b, d0, valid);
                for (int64_t w = 0; w < lanes; ++w) {
                    const int64_t d = d0 + w;
                    for (int64_t n = 0; n < N; ++n) grad_A_parts[(b * s.dim + d) * N + n] = ga[n * LANES + w];
                    grad_D_parts[b * s.dim + d] = gD[w];
                }
            }
            T* gB_out = grad_B_parts + item * L * N;
            T* gC_out = grad_C_parts + item * L * N;
            for (int64_t tn = 0; tn < L * N; ++tn) {
                T sum_b = 0, sum_c = 0;
                for (int64_t w = 0; w < LANES; ++w) {
                    sum_b += gB[tn * LANES + w];
                    sum_c += gC[tn * LANES + w];
                }
                gB_out[tn] = sum_b;
                gC_out[tn] = sum_c;
            }
        }
    }
}

// Causal depthwise convolution + SiLU: out[b, t, d] = silu(bias[d] + sum_k weight[k, d] x[b, t - (K-1) + k, d]),
// x read with row stride x_stride (a view into the block's in_proj output), out contiguous (B, L, D); weight is
// the transposed (K, D) copy of Conv1d's (D, 1, K) weight.
// pre[d] = bias[d] + sum_k weight[k, d] x[b, t - (K-1) + k, d] for one (b, t).
template <typename T>
void conv_pre(const T* x, const T* weight, const T* bias, int64_t b, int64_t t, int64_t length, int64_t dim,
              int64_t taps, int64_t x_stride, T* pre) {
    std::memcpy(pre, bias, sizeof(T) * dim);
    for (int64_t k = 0; k < taps; ++k) {
        const int64_t source = t - (taps - 1) + k;
        if (source < 0) continue;
        const T* xs = x + (b * length + source) * x_stride;
        const T* wk = weight + k * dim;
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) pre[d] += wk[d] * xs[d];
    }
}

template <typename T>
void conv_forward(const T* x, const T* weight, const T* bias, const int64_t* lengths, T* out, int64_t batch,
                  int64_t length, int64_t dim, int64_t taps, int64_t x_stride, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int64_t bt = 0; bt < batch * length; ++bt) {
        T* o = out + bt * dim;
        if (bt % length >= lengths[bt / length]) {  // padding
            std::fill_n(o, dim, T(0));
            continue;
        }
        conv_pre(x, weight, bias, bt / length, bt % length, length, dim, taps, x_stride, o);
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) o[d] *= sigmoid(o[d]);
    }
}

// grad_x (B, L, D) contiguous; grad_weight_parts (B, K, D) and grad_bias_parts (B, D), summed over b by the caller.
template <typename T>
void conv_backward(const T* x, const T* weight, const T* bias, const int64_t* lengths, const T* grad_out, T* grad_x,
                   T* grad_weight_parts, T* grad_bias_parts, int64_t batch, int64_t length, int64_t dim, int64_t taps,
                   int64_t x_stride, int threads) {
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        std::vector<T> grad_pre(length * dim);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; ++b) {
            const int64_t valid = lengths[b];
            for (int64_t t = 0; t < valid; ++t) {
                const T* go = grad_out + (b * length + t) * dim;
                T* gp = grad_pre.data() + t * dim;
                conv_pre(x, weight, bias, b, t, length, dim, taps, x_stride, gp);
#pragma omp simd
                for (int64_t d = 0; d < dim; ++d) {
                    const T sg = sigmoid(gp[d]);
                    gp[d] = go[d] * sg * (T(1) + gp[d] * (T(1) - sg));
                }
            }
            T* gw = grad_weight_parts + b * dim * taps;
            T* gb = grad_bias_parts + b * dim;
            std::fill(gw, gw + dim * taps, T(0));
            std::fill(gb, gb + dim, T(0));
            std::fill(grad_x + (b * length + valid) * dim, grad_x + (b + 1) * length * dim, T(0));
            for (int64_t s = 0; s < valid; ++s) {
                T* gx = grad_x + (b * length + s) * dim;
                const T* xs = x + (b * length + s) * x_stride;
                const T* gps = grad_pre.data() + s * dim;
#pragma omp simd
                for (int64_t d = 0; d < dim; ++d) {
                    gb[d] += gps[d];
                    gx[d] = 0;
                }
                for (int64_t k = 0; k < taps; ++k) {
                    const int64_t t = s + (taps - 1) - k;  // the output that read x[s] through tap k
                    if (t >= valid) continue;
                    const T* gpt = grad_pre.data() + t * dim;
#pragma omp simd
                    for (int64_t d = 0; d < dim; ++d) {
                        gx[d] += weight[k * dim + d] * gpt[d];
                        gw[k * dim + d] += gpt[d] * xs[d];
                    }
                }
            }
        }
    }
}

}  // namespace

#define KMM_EXPORT(T, SUFFIX)                                                                                        \
    void kmm_scan_forward_##SUFFIX(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* Dskip, \
                                   const T* z, const int64_t* lengths, T* y, T* y_pre, T* checkpoints,               \
                                   int64_t batch, int64_t length,                                                    \
                                   int64_t dim, int64_t nstate, int64_t b_stride, int64_t c_stride,                  \
                                   int64_t z_stride, int softplus, int threads) {                                    \
        scan_forward<T>({batch, length, dim, nstate, b_stride, c_stride, z_stride}, u, delta, A, Bm, Cm, Dskip, z,   \
                        lengths, y, y_pre, checkpoints, softplus != 0, threads);                                              \
    }                                                                                                                \
    void kmm_scan_backward_##SUFFIX(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,                \
                                    const T* Dskip, const T* z, const int64_t* lengths, const T* y_pre,              \
                                    const T* checkpoints,                                                            \
                                    const T* grad_y, T* grad_u, T* grad_delta, T* grad_z, T* grad_A_parts,           \
                                    T* grad_D_parts, T* grad_B_parts, T* grad_C_parts, int64_t batch,                \
                                    int64_t length, int64_t dim, int64_t nstate, int64_t b_stride,                   \
                                    int64_t c_stride, int64_t z_stride, int64_t groups, int softplus,                \
                                    int threads) {                                                                   \
        scan_backward<T>({batch, length, dim, nstate, b_stride, c_stride, z_stride}, u, delta, A, Bm, Cm, Dskip, z,  \
                         lengths, y_pre, checkpoints, grad_y, grad_u, grad_delta, grad_z, grad_A_parts, grad_D_parts,         \
                         grad_B_parts, grad_C_parts, groups, softplus != 0, threads);                                \
    }                                                                                                                \
    void kmm_conv_forward_##SUFFIX(const T* x, const T* weight, const T* bias, const int64_t* lengths, T* out,       \
                                   int64_t batch, int64_t length, int64_t dim, int64_t taps, int64_t x_stride,       \
                                   int threads) {                                                                    \
        conv_forward<T>(x, weight, bias, lengths, out, batch, length, dim, taps, x_stride, threads);                 \
    }                                                                                                                \
    void kmm_conv_backward_##SUFFIX(const T* x, const T* weight, const T* bias, const int64_t* lengths,              \
                                    const T* grad_out, T* grad_x, T* grad_weight_parts, T* grad_bias_parts,          \
                                    int64_t batch, int64_t length, int64_t dim, int64_t taps, int64_t x_stride,      \
                                    int threads) {                                                                   \
        conv_backward<T>(x, weight, bias, lengths, grad_out, grad_x, grad_weight_parts, grad_bias_parts, batch,      \
                         length, dim, taps, x_stride, threads);                                                      \
    }

extern "C" {
int64_t kmm_scan_chunk() { return CHUNK; }
int64_t kmm_scan_lanes() { return LANES; }
KMM_EXPORT(float, f32)
KMM_EXPORT(double, f64)
}
