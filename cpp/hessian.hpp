// Assembly of the p x p Hessian (exact or generalized Gauss-Newton) of the
// objective (1/n) sum_i loss_i + (l2/2)|theta|^2.
//
// GGN = (1/n) sum_i J_i^T H_out,i J_i. With H_out = diag(p) - p p^T = A A^T,
// A = diag(sqrt p) - p sqrt(p)^T, each sample contributes the rows A^T J_i:
// the backpropagation of the k output errors sqrt(p_c) (e_c - p) (one row,
// sqrt(p0 p1) (e_0 - e_1), for two classes). The GGN is then a symmetric
// rank-k update B^T B over those rows, done in blocks of rows and, within a
// block, over column panels of the lower triangle on all threads.
//
// The exact Hessian adds the residual terms. For one hidden layer (the
// paper's network) they are assembled directly:
//   S: d2/(dW2[j,q] d(W1[q,:], b1[q])) = sum_i delta2_ij sigma'_iq [x_i; 1]
//   D: d2/d(W1[q,:],b1[q])^2 += sum_i c_iq [x_i;1][x_i;1]^T,
//      c = sigma''(A1) * (delta2 W2)  (zero for ReLU).
// For deeper networks the exact Hessian is assembled column by column from
// Hessian-vector products.
#pragma once

#include <algorithm>

#include "hvp.hpp"

namespace mlu {

namespace detail {

// H_lower += B^T B, B (m x p) row-major, lower triangle of H (plus the
// diagonal panels in full), column panels in parallel.
inline void syrk_lower(const RowMat& B, RowMat& H) {
    const Index p = H.rows(), panel = 192;
    const Index panels = (p + panel - 1) / panel;
#pragma omp parallel for schedule(dynamic, 1)
    for (Index t = 0; t < panels; ++t) {
        const Index j0 = t * panel, w = std::min(panel, p - j0);
        H.block(j0, j0, p - j0, w).noalias() += B.middleCols(j0, p - j0).transpose() * B.middleCols(j0, w);
    }
}

inline void symmetrize_from_lower(RowMat& H) {
    const Index p = H.rows();
#pragma omp parallel for schedule(dynamic, 64)
    for (Index i = 0; i < p; ++i)
        for (Index j = i + 1; j < p; ++j) H(i, j) = H(j, i);
}

}  // namespace detail

// Rows of the Gauss-Newton factor for samples [s, e) into B (r*(e-s) x p).
inline Index ggn_rows_per_sample(const Architecture& arch) { return arch.classes() == 2 ? 1 : arch.classes(); }

inline void ggn_factor_rows(const Architecture& arch, const double* theta, const MatRef& X, Index s, Index e,
                            RowMat& B) {
    const Index m = e - s, k = arch.classes(), r = ggn_rows_per_sample(arch);
    auto Xb = X.middleRows(s, e - s);
    Activations f;
    forward(arch, theta, Xb, f);
    RowMat P;
    IVec dummy = IVec::Zero(m);
    softmax_cross_entropy(f.A.back(), dummy, P, nullptr);
    B.resize(r * m, arch.p);
    for (Index c = 0; c < r; ++c) {
        RowMat U(m, k);
        for (Index i = 0; i < m; ++i) {
            if (k == 2) {
                const double a = std::sqrt(P(i, 0) * P(i, 1));
                U(i, 0) = a;
                U(i, 1) = -a;
            } else {
                const double a = std::sqrt(P(i, c));
                U.row(i) = -a * P.row(i);
                U(i, c) += a;
            }
        }
        backprop_rows(arch, theta, Xb, f, std::move(U), B.data() + c * m * arch.p, arch.p);
    }
}

// Exact-Hessian residual terms of a one-hidden-layer network, added to the
// lower triangle of Hsum (a sum over samples, not yet divided by n).
inline void one_hidden_residual(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                                RowMat& Hsum) {
    const Index n = X.rows(), d = arch.in(0), h = arch.out(0), k = arch.classes();
    const bool curved = arch.act != Activation::ReLU;
    RowMat S = RowMat::Zero(k * h, d + 1);             // rows (j, q), cols (x, 1)
    std::vector<RowMat> Dq(curved ? h : 0, RowMat::Zero(d + 1, d + 1));
    for (auto [s, e] : sample_chunks(n, kChunk)) {
        const Index m = e - s;
        auto Xb = X.middleRows(s, m);
        Activations f;
        forward(arch, theta, Xb, f);
        RowMat P, Delta2, D1;
        softmax_cross_entropy(f.A.back(), y.segment(s, m), P, nullptr);
        output_error(P, y.segment(s, m), Delta2);
        activation_derivative(arch.act, f.A[0], f.H[0], D1);
        RowMat Xt(m, d + 1);
        Xt.leftCols(d) = Xb;
        Xt.col(d).setOnes();
        RowMat E(m, k * h);  // E[i, j*h + q] = delta2_ij sigma'_iq
        for (Index j = 0; j < k; ++j) E.middleCols(j * h, h) = D1.array().colwise() * Delta2.col(j).array();
        // Parallel inside Eigen's GEMM (we are not in a parallel region here).
        S.noalias() += E.transpose() * Xt;
        if (curved) {
            RowMat C;
            activation_second_derivative(arch.act, f.H[0], C);
            C.array() *= (Delta2 * arch.W(theta, 1)).array();
#pragma omp parallel for schedule(dynamic, 1)
            for (Index q = 0; q < h; ++q) {
                RowMat Xw = Xt.array().colwise() * C.col(q).array();
                Dq[q].noalias() += Xw.transpose() * Xt;
            }
        }
    }
    const Index w2 = arch.w_off[1], b1 = arch.b_off[0];
    for (Index j = 0; j < k; ++j)
        for (Index q = 0; q < h; ++q) {
            const Index row = w2 + j * h + q;  // W2[j, q] comes after every W1/b1 entry: lower triangle
            Hsum.row(row).segment(q * d, d) += S.row(j * h + q).head(d);
            Hsum(row, b1 + q) += S(j * h + q, d);
        }
    if (curved) {
        for (Index q = 0; q < h; ++q) {
            // Indices of unit q: W1[q, 0..d-1] then b1[q]; write the lower triangle only.
            for (Index a = 0; a <= d; ++a) {
                const Index ia = a < d ? q * d + a : b1 + q;
                for (Index c = 0; c <= d; ++c) {
                    const Index ic = c < d ? q * d + c : b1 + q;
                    if (ic <= ia) Hsum(ia, ic) += Dq[q](a, c);
                }
            }
        }
    }
}

// Full p x p Hessian (or GGN) of the objective, symmetric.
inline RowMat assemble_hessian(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                               double l2, Curvature curvature) {
    const Index n = X.rows(), p = arch.p;
    RowMat H = RowMat::Zero(p, p);
    const bool exact = curvature == Curvature::Hessian;
    if (exact && arch.num_layers() > 2) {
        // Deep networks: H e_j for every j, from the cached operator.
        HessianOperator op(arch, theta, X.data(), y.data(), n, l2, curvature);
        Vec e = Vec::Zero(p), col(p);
        for (Index j = 0; j < p; ++j) {
            e[j] = 1.0;
            op.apply(e.data(), col.data());
            H.col(j) = col;
            e[j] = 0.0;
        }
        // Average the two triangles: exact symmetry, error at round-off level.
        RowMat Ht = H.transpose();
        H = 0.5 * (H + Ht);
        return H;
    }
    // Rows of the GGN factor in blocks of ~64 MB.
    const Index r = ggn_rows_per_sample(arch);
    const Index block = std::clamp<Index>((Index(8) << 20) / std::max<Index>(p * r, 1), 16, 2048);
    RowMat B;
    for (Index s = 0; s < n; s += block) {
        const Index e = std::min(n, s + block);
        ggn_factor_rows(arch, theta, X, s, e, B);
        detail::syrk_lower(B, H);
    }
    if (exact && arch.num_layers() == 2) one_hidden_residual(arch, theta, X, y, H);
    H /= double(n);
    H.diagonal().array() += l2;
    detail::symmetrize_from_lower(H);
    return H;
}

}  // namespace mlu
