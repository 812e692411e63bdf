// Small dense kernels for the first layer of a training step (m = batch rows,
// d = fan-in, a range of units): A = X W^T + b in dot-product form, and the
// sums D^T X handed tile by tile to a caller's epilogue (here a momentum
// step, so the gradient is never stored). Each output element is summed in
// one fixed order whatever range of units a call is given, so training gives
// bit-identical results on 1 or 2 threads (Eigen's GEMM picks its blocking
// from the matrix sizes, so splitting the units would change the rounding).
// At 32 x 784 x 50 they also skip GEMM packing and its heap buffers, as costly
// there as the arithmetic. (On large blocks of rows they only match Eigen's
// GEMM, so the HVP and the forward pass keep using Eigen.)
//
// SIMD through Eigen's packet primitives (AVX-512, AVX2, SSE or scalar, as
// Eigen detects), FMA via pmadd / std::fma.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "types.hpp"

namespace mlu::kernels {

using Packet = Eigen::internal::packet_traits<double>::type;
constexpr Index PS = Eigen::internal::packet_traits<double>::size;

// out(a, b) = bias[b] + X.row(a) . W.row(b) for an RI x RQ tile. The dot
// product runs over d in packets (lane-wise partial sums, then one fixed
// horizontal reduction) and a scalar tail.
template <int RI, int RQ>
inline void dot_tile(const double* X, Index ldx, const double* W, Index ldw, Index d, const double* bias, double* out,
                     Index ldo) {
    using namespace Eigen::internal;
    Packet acc[RI][RQ];
    for (int a = 0; a < RI; ++a)
        for (int b = 0; b < RQ; ++b) acc[a][b] = pset1<Packet>(0.0);
    const Index dv = d - d % PS;
    for (Index j = 0; j < dv; j += PS) {
        Packet w[RQ];
        for (int b = 0; b < RQ; ++b) w[b] = ploadu<Packet>(W + b * ldw + j);
        for (int a = 0; a < RI; ++a) {
            const Packet x = ploadu<Packet>(X + a * ldx + j);
            for (int b = 0; b < RQ; ++b) acc[a][b] = pmadd(x, w[b], acc[a][b]);
        }
    }
    for (int a = 0; a < RI; ++a)
        for (int b = 0; b < RQ; ++b) {
            double s = predux(acc[a][b]);
            for (Index j = dv; j < d; ++j) s = std::fma(X[a * ldx + j], W[b * ldw + j], s);
            out[a * ldo + b] = bias[b] + s;
        }
}

// A(i, q) = b[q] + X.row(i) . W.row(q) for i < m and q in [q0, q1); A has row
// stride lda and is indexed by the absolute unit q. Rows are taken in blocks
// that stay in L2 while every tile of units passes over them.
inline void linear_units(const double* X, Index ldx, Index m, Index d, const double* W, const double* b, Index q0,
                         Index q1, double* A, Index lda) {
    constexpr int R = 4;
    const Index block = std::max<Index>(R, ((Index(256) << 10) / (8 * std::max<Index>(d, 1))) / R * R);
    for (Index i0 = 0; i0 < m; i0 += block) {
        const Index i1 = std::min(m, i0 + block);
        for (Index q = q0; q < q1; q += R) {
            const bool full_q = q + R <= q1;
            for (Index i = i0; i < i1; i += (i + R <= i1 ? R : 1)) {
                const double* Xi = X + i * ldx;
                double* Ai = A + i * lda + q;
                if (i + R <= i1) {
                    if (full_q)
                        dot_tile<R, R>(Xi, ldx, W + q * d, d, d, b + q, Ai, lda);
                    else
                        for (Index u = q; u < q1; ++u)
                            dot_tile<R, 1>(Xi, ldx, W + u * d, d, d, b + u, Ai + (u - q), lda);
                } else {
                    if (full_q)
                        dot_tile<1, R>(Xi, ldx, W + q * d, d, d, b + q, Ai, lda);
                    else
                        for (Index u = q; u < q1; ++u)
                            dot_tile<1, 1>(Xi, ldx, W + u * d, d, d, b + u, Ai + (u - q), lda);
                }
            }
        }
    }
}

// Momentum SGD on one packet of parameters: buf <- mu buf + (g + l2 theta),
// theta <- theta - lr buf. The scalar version below computes the same.
inline void momentum_packet(double* theta, double* buf, const Packet& g, const Packet& lr, const Packet& mu,
                            const Packet& l2) {
    using namespace Eigen::internal;
    const Packet t = ploadu<Packet>(theta);
    const Packet v = pmadd(mu, ploadu<Packet>(buf), pmadd(l2, t, g));
    pstoreu(buf, v);
    pstoreu(theta, psub(t, pmul(lr, v)));
}

inline void momentum_scalar(double* theta, double* buf, double g, double lr, double mu, double l2) {
    const double v = std::fma(mu, *buf, std::fma(l2, *theta, g));
    *buf = v;
    *theta = *theta - lr * v;
}

// s(a, v) = sum_i D(i, a) X(i, v-th packet), i = 0..m-1 in order, for an RQ
// units x NV packets tile; put(a, j, s) receives each packet of sums.
template <int RQ, int NV, class Put>
inline void outer_tile(const double* D, Index ldd, const double* X, Index ldx, Index m, Put& put) {
    using namespace Eigen::internal;
    Packet acc[RQ][NV];
    for (int a = 0; a < RQ; ++a)
        for (int v = 0; v < NV; ++v) acc[a][v] = pset1<Packet>(0.0);
    for (Index i = 0; i < m; ++i) {
        Packet x[NV];
        for (int v = 0; v < NV; ++v) x[v] = ploadu<Packet>(X + i * ldx + v * PS);
        for (int a = 0; a < RQ; ++a) {
            const Packet c = pset1<Packet>(D[i * ldd + a]);
            for (int v = 0; v < NV; ++v) acc[a][v] = pmadd(c, x[v], acc[a][v]);
        }
    }
    for (int a = 0; a < RQ; ++a)
        for (int v = 0; v < NV; ++v) put(a, v * PS, acc[a][v]);
}

// For units q in [q0, q1) and columns j < d: s(q, j) = sum_i D(i, q) X(i, j),
// i = 0..m-1 in order (D is m x units with row stride ldd, indexed by the
// absolute unit q). Whole packets go to put(q, j, Packet), the last d % PS
// columns to put_scalar(q, j, double). Nothing is stored otherwise: the
// callers fuse what they do with the sums (accumulate, or a momentum step).
template <class Put, class PutScalar>
inline void outer_units(const double* D, Index ldd, const double* X, Index ldx, Index m, Index d, Index q0, Index q1,
                        Put&& put, PutScalar&& put_scalar) {
    constexpr int R = 4, NV = 4;
    const Index wide = NV * PS, dw = d - d % wide, dv = d - d % PS;
    for (Index j = 0; j < dw; j += wide)
        for (Index q = q0; q < q1; q += R) {
            if (q + R <= q1) {
                auto at = [&](int a, Index jj, const Packet& s) { put(q + a, j + jj, s); };
                outer_tile<R, NV>(D + q, ldd, X + j, ldx, m, at);
            } else {
                for (Index u = q; u < q1; ++u) {
                    auto at = [&](int, Index jj, const Packet& s) { put(u, j + jj, s); };
                    outer_tile<1, NV>(D + u, ldd, X + j, ldx, m, at);
                }
            }
        }
    for (Index j = dw; j < dv; j += PS)
        for (Index u = q0; u < q1; ++u) {
            auto at = [&](int, Index jj, const Packet& s) { put(u, j + jj, s); };
            outer_tile<1, 1>(D + u, ldd, X + j, ldx, m, at);
        }
    for (Index u = q0; u < q1; ++u)
        for (Index j = dv; j < d; ++j) {
            double s = 0.0;
            for (Index i = 0; i < m; ++i) s = std::fma(D[i * ldd + u], X[i * ldx + j], s);
            put_scalar(u, j, s);
        }
}

// The first layer's momentum step for units [q0, q1): W(q, :) along the
// gradient D(:, q)^T X and b(q) along sum_i D(i, q); D is the batch-mean error
// at the layer's output. The gradient itself is never stored.
inline void outer_update_units(const double* D, Index ldd, const double* X, Index ldx, Index m, Index d, Index q0,
                               Index q1, double* W, double* Wbuf, double* b, double* bbuf, double lr, double mu,
                               double l2) {
    using namespace Eigen::internal;
    const Packet plr = pset1<Packet>(lr), pmu = pset1<Packet>(mu), pl2 = pset1<Packet>(l2);
    outer_units(
        D, ldd, X, ldx, m, d, q0, q1,
        [&](Index q, Index j, const Packet& s) { momentum_packet(W + q * d + j, Wbuf + q * d + j, s, plr, pmu, pl2); },
        [&](Index q, Index j, double s) { momentum_scalar(W + q * d + j, Wbuf + q * d + j, s, lr, mu, l2); });
    for (Index u = q0; u < q1; ++u) {
        double s = 0.0;
        for (Index i = 0; i < m; ++i) s += D[i * ldd + u];
        momentum_scalar(b + u, bbuf + u, s, lr, mu, l2);
    }
}

}  // namespace mlu::kernels
