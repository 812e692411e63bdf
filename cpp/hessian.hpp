// Assembly of the p x p Hessian (exact or generalized Gauss-Newton) of the
// objective (1/n) sum_i loss_i + (l2/2)|theta|^2.
//
// GGN = (1/n) sum_i J_i^T H_out,i J_i. With H_out = diag(p) - p p^T = A A^T,
// A = diag(sqrt p) - p sqrt(p)^T, each sample contributes the rows A^T J_i:
// the backpropagation of the r output errors u_rho = sqrt(p_c) (e_c - p)
// (one row, sqrt(p0 p1) (e_0 - e_1), for two classes).
//
// One hidden layer (the paper's network), exact or GGN, is assembled from its
// structure instead of from those rows. With x~ = [x; 1], h~ = [h; 1] and
// v_rho = (u_rho W2) . sigma'(a) the first layer's share of a row:
//   W1b1 x W1b1: sum_i M_i (x) x~_i x~_i^T,  M_i = sum_rho v_rho v_rho^T
//                (+ diag(sigma''(a) . (delta2 W2)) for the exact Hessian),
//                so the block of hidden units (q, q') is X~^T diag(M[q,q']) X~:
//                symmetric, and summed only over the samples where M_i[q,q']
//                is not zero (for ReLU: both units active). One triangular
//                product per pair q <= q', pairs spread over the threads:
//                h(h+1)/2 (d+1)^2 n_active flops instead of the (h(d+1))^2 n
//                of a rank-n update with the full rows.
//   W2b2 x W1b1: sum_i E_i x~_i^T with E_i[(c,s), q] = T_i[c,q] h~_is
//                (+ delta2_ic sigma'_iq [s == q] for the exact Hessian),
//                T_i = sum_rho u_rho v_rho^T: one GEMM.
//   W2b2 x W2b2: sum_i sum_rho (u_rho (x) h~_i)(u_rho (x) h~_i)^T: small.
// Each block goes straight into both triangles of H (a pair's block is
// symmetric), so the p x p result is written once and never zeroed or
// re-read.
// Other depths: the GGN by a rank-k update over the rows, in blocks of rows
// and column panels on all threads; the exact Hessian column by column from
// Hessian-vector products.
#pragma once

#include <algorithm>

#include "hvp.hpp"

namespace mlu {

namespace detail {

// H_lower += B^T B, B (m x p) row-major, lower triangle of H (plus the
// diagonal panels in full), column panels in parallel.
inline void syrk_lower(const RowMat& B, MapRM& H) {
    const Index p = H.rows(), panel = 192;
    const Index panels = (p + panel - 1) / panel;
    RegionErrors errors;
#pragma omp parallel for schedule(dynamic, 1)
    for (Index t = 0; t < panels; ++t)
        errors.run([&] {
            check_interrupt();
            const Index j0 = t * panel, w = std::min(panel, p - j0);
            H.block(j0, j0, p - j0, w).noalias() += B.middleCols(j0, p - j0).transpose() * B.middleCols(j0, w);
        });
    errors.rethrow();
}

// Upper triangle <- lower, in 64 x 64 tiles (a row-major column walk would
// miss the cache on every element of a large matrix); on all threads unless
// called from a parallel region.
inline void symmetrize_from_lower(Eigen::Ref<RowMat> H) {
    const Index p = H.rows(), tile = 64, tiles = (p + tile - 1) / tile;
#pragma omp parallel for schedule(dynamic, 1) if (tiles > 4 && !omp_in_parallel())
    for (Index bi = 0; bi < tiles; ++bi)
        for (Index bj = bi; bj < tiles; ++bj)
            for (Index i = bi * tile; i < std::min(p, (bi + 1) * tile); ++i)
                for (Index j = std::max(i + 1, bj * tile); j < std::min(p, (bj + 1) * tile); ++j) H(i, j) = H(j, i);
}

// The r rows u_rho of A^T (H_out = A A^T) for one sample's probabilities p.
template <class Prob, class Out>
inline void output_factor(const Prob& p, Out&& U) {
    const Index k = p.size();
    if (k == 2) {
        const double a = std::sqrt(p[0] * p[1]);
        U(0, 0) = a;
        U(0, 1) = -a;
        return;
    }
    for (Index c = 0; c < k; ++c) {
        const double a = std::sqrt(p[c]);
        U.row(c) = -a * p;
        U(c, c) += a;
    }
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
    RowMat Ui(r, k);
    for (Index c = 0; c < r; ++c) {
        RowMat U(m, k);
        for (Index i = 0; i < m; ++i) {
            detail::output_factor(P.row(i), Ui);
            U.row(i) = Ui.row(c);
        }
        backprop_rows(arch, theta, Xb, f, std::move(U), B.data() + c * m * arch.p, arch.p);
    }
}

// Per-sample terms of a one-hidden-layer network (d -> h -> k) that every block
// of its Hessian is built from (see the top of this file).
struct OneHiddenTerms {
    Index r = 1;  // GGN rows per sample
    RowMat H;     // n x h      hidden outputs
    RowMat U;     // n*r x k    output factor rows u_rho (row i*r + rho)
    RowMat V;     // n*r x h    v_rho = (u_rho W2) . sigma'
    RowMat S;     // n x (k h)  exact only: delta2_ic sigma'_iq at [i, c*h + q]
    RowMat C;     // n x h      exact, curved activations only: sigma'' . (delta2 W2)
};

inline OneHiddenTerms one_hidden_terms(const Architecture& arch, const double* theta, const MatRef& X,
                                       const LabelRef& y, bool exact) {
    const Index n = X.rows(), h = arch.out(0), k = arch.classes();
    const bool curved = exact && arch.curved(0);
    OneHiddenTerms t;
    t.r = ggn_rows_per_sample(arch);
    const Index r = t.r;
    t.H.resize(n, h);
    t.U.resize(n * r, k);
    t.V.resize(n * r, h);
    if (exact) t.S.resize(n, k * h);
    if (curved) t.C.resize(n, h);
    const auto W2 = arch.W(theta, 1);
    parallel_for_chunks(n, kChunk, [&](Index s, Index e) {
        const Index m = e - s;
        Activations f;
        forward(arch, theta, X.middleRows(s, m), f);
        RowMat P, D1, Delta2;
        softmax_cross_entropy(f.A[1], y.segment(s, m), P, nullptr);
        activation_derivative(arch.act(0), f.A[0], f.H[0], D1);
        t.H.middleRows(s, m) = f.H[0];
        for (Index i = 0; i < m; ++i) detail::output_factor(P.row(i), t.U.middleRows((s + i) * r, r));
        t.V.middleRows(s * r, m * r).noalias() = t.U.middleRows(s * r, m * r) * W2;
        for (Index i = 0; i < m; ++i) t.V.middleRows((s + i) * r, r).array().rowwise() *= D1.row(i).array();
        if (!exact) return;
        output_error(P, y.segment(s, m), Delta2);
        for (Index c = 0; c < k; ++c)
            t.S.block(s, c * h, m, h) = D1.array().colwise() * Delta2.col(c).array();
        if (curved) {
            RowMat D2;
            activation_second_derivative(arch.act(0), f.H[0], D2);
            t.C.middleRows(s, m).noalias() = Delta2 * W2;
            t.C.middleRows(s, m).array() *= D2.array();
        }
    });
    return t;
}

// W1b1 x W1b1 (scaled by inv_n): one triangular product X~_S^T (c . X~_S) per
// pair of hidden units q <= q', over the samples S where the pair's
// coefficient c_i = M_i[q, q'] is not zero, gathered in blocks; pairs are
// spread over the threads.
inline void one_hidden_first_block(const Architecture& arch, const MatRef& X, const OneHiddenTerms& t, double inv_n,
                                   MapRM& Hm) {
    const Index n = X.rows(), d = arch.in(0), h = arch.out(0), r = t.r, b1 = arch.b_off[0];
    std::vector<std::pair<Index, Index>> pairs;  // diagonal pairs (the most samples) first
    for (Index q = 0; q < h; ++q) pairs.emplace_back(q, q);
    for (Index q = 0; q < h; ++q)
        for (Index q2 = q + 1; q2 < h; ++q2) pairs.emplace_back(q, q2);
    constexpr Index kRows = 512;  // gathered samples per product: the GEMM depth
    RegionErrors errors;

#pragma omp parallel
    {
        RowMat Xs, Cs, S;  // allocated by the first task (inside the error guard)
#pragma omp for schedule(dynamic, 1)
        for (Index task = 0; task < static_cast<Index>(pairs.size()); ++task) errors.run([&] {
            check_interrupt();
            if (S.size() == 0) {
                Xs.resize(kRows, d + 1);
                Cs.resize(kRows, d + 1);
                S.resize(d + 1, d + 1);
            }
            const auto [q, q2] = pairs[task];
            S.triangularView<Eigen::Lower>().setZero();
            Index m = 0;
            auto flush = [&] {
                if (m > 0) S.triangularView<Eigen::Lower>() += Xs.topRows(m).transpose() * Cs.topRows(m);
                m = 0;
            };
            for (Index i = 0; i < n; ++i) {
                double c = 0.0;
                for (Index rho = 0; rho < r; ++rho) c += t.V(i * r + rho, q) * t.V(i * r + rho, q2);
                if (q == q2 && t.C.size()) c += t.C(i, q);
                if (c == 0.0) continue;  // ReLU: a unit of the pair is off for this sample
                Xs.row(m).head(d) = X.row(i);
                Xs(m, d) = 1.0;
                Cs.row(m) = (c * inv_n) * Xs.row(m);
                if (++m == kRows) flush();
            }
            flush();
            // Both triangles of H are written here (no later pass over all of
            // H): the pair's block is S and, S being symmetric, so is its mirror.
            detail::symmetrize_from_lower(S);
            const auto Sd = S.topLeftCorner(d, d);
            const auto sb = S.row(d).head(d);  // against b1
            Hm.block(q2 * d, q * d, d, d) = Sd;
            Hm.row(b1 + q2).segment(q * d, d) = sb;
            Hm.col(b1 + q2).segment(q * d, d) = sb.transpose();
            if (q != q2) {
                Hm.block(q * d, q2 * d, d, d) = Sd;
                Hm.row(b1 + q).segment(q2 * d, d) = sb;
                Hm.col(b1 + q).segment(q2 * d, d) = sb.transpose();
            }
            Hm(b1 + q2, b1 + q) = Hm(b1 + q, b1 + q2) = S(d, d);
        });
    }
    errors.rethrow();
}

// W2b2 rows and columns: against W1b1 by products over sample chunks (each
// thread sums its own chunks: no fork/join inside a product), against
// themselves by a small rank update. Both triangles are written.
inline void one_hidden_second_block(const Architecture& arch, const MatRef& X, const OneHiddenTerms& t, bool exact,
                                    double inv_n, MapRM& Hm) {
    const Index n = X.rows(), d = arch.in(0), h = arch.out(0), k = arch.classes(), r = t.r;
    const Index w2 = arch.w_off[1], b1 = arch.b_off[0], p2 = arch.p - w2, ne = k * (h + 1) * h;
    // Rows (c, s) of W2b2 in theta order: W2[c, s] = c*h + s, then b2[c] = k*h + c.
    auto row_of = [&](Index c, Index s) { return w2 + (s < h ? c * h + s : k * h + c); };
    std::vector<RowMat> partial(num_threads(), RowMat::Zero(ne, d + 1));  // rows ((c, s), q), columns x~
    parallel_for_chunks(n, kChunk, [&](Index s0, Index e0) {
        const Index m = e0 - s0;
        RowMat E = RowMat::Zero(m, ne);
        for (Index i = 0; i < m; ++i) {
            const Index si = s0 + i;
            for (Index rho = 0; rho < r; ++rho)
                for (Index c = 0; c < k; ++c) {
                    const double u = t.U(si * r + rho, c);
                    for (Index s = 0; s <= h; ++s) {
                        const double hs = s < h ? t.H(si, s) : 1.0;
                        E.row(i).segment((c * (h + 1) + s) * h, h) += (u * hs) * t.V.row(si * r + rho);
                    }
                }
            if (exact)
                for (Index c = 0; c < k; ++c)
                    for (Index q = 0; q < h; ++q) E(i, (c * (h + 1) + q) * h + q) += t.S(si, c * h + q);
        }
        RowMat& cross = partial[omp_get_thread_num()];
        cross.leftCols(d).noalias() += E.transpose() * X.middleRows(s0, m);
        cross.col(d) += E.colwise().sum().transpose();
    });
    RowMat cross = RowMat::Zero(ne, d + 1);
    for (const auto& part : partial) cross += part;
    cross *= inv_n;
    for (Index c = 0; c < k; ++c)
        for (Index s = 0; s <= h; ++s)
            for (Index q = 0; q < h; ++q) {
                const Index row = (c * (h + 1) + s) * h + q, at = row_of(c, s);
                Hm.row(at).segment(q * d, d) = cross.row(row).head(d);
                Hm.col(at).segment(q * d, d) = cross.row(row).head(d).transpose();
                Hm(at, b1 + q) = Hm(b1 + q, at) = cross(row, d);
            }
    // W2b2 x W2b2: rows u_rho (x) h~_i in theta order.
    RowMat R(n * r, p2);
    for (Index i = 0; i < n; ++i)
        for (Index rho = 0; rho < r; ++rho)
            for (Index c = 0; c < k; ++c) {
                const double u = t.U(i * r + rho, c);
                R.row(i * r + rho).segment(c * h, h) = u * t.H.row(i);
                R(i * r + rho, k * h + c) = u;
            }
    RowMat G2 = RowMat::Zero(p2, p2);
    G2.selfadjointView<Eigen::Lower>().rankUpdate(R.transpose(), inv_n);
    detail::symmetrize_from_lower(G2);
    Hm.block(w2, w2, p2, p2) = G2;
}

inline void one_hidden_hessian(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                               double l2, Curvature curvature, MapRM& H) {
    const bool exact = curvature == Curvature::Hessian;
    const double inv_n = 1.0 / double(X.rows());
    OneHiddenTerms t = one_hidden_terms(arch, theta, X, y, exact);
    // Every entry is written once below: no zeroing.
    one_hidden_first_block(arch, X, t, inv_n, H);
    one_hidden_second_block(arch, X, t, exact, inv_n, H);
    H.diagonal().array() += l2;
}

// H <- the full p x p Hessian (or GGN) of the objective, symmetric. H is the
// caller's p x p buffer (uninitialised: a fresh NumPy array, whose huge pages
// make the first touch of a large matrix cheap).
inline void assemble_hessian(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                             double l2, Curvature curvature, MapRM H) {
    const Index n = X.rows(), p = arch.p;
    const bool exact = curvature == Curvature::Hessian;
    if (arch.num_layers() == 2) return one_hidden_hessian(arch, theta, X, y, l2, curvature, H);
    H.setZero();
    if (exact && arch.num_layers() > 2) {
        // Deep networks: H e_j for every j, from the cached operator.
        HessianOperator op(arch, theta, X.data(), y.data(), n, l2, curvature);
        Vec e = Vec::Zero(p), col(p);
        for (Index j = 0; j < p; ++j) {
            check_interrupt();
            e[j] = 1.0;
            op.apply(e.data(), col.data());
            H.col(j) = col;
            e[j] = 0.0;
        }
        // Average the two triangles: exact symmetry, error at round-off level.
        RowMat Ht = H.transpose();
        H = 0.5 * (H + Ht);
        return;
    }
    // No hidden layer (where the Hessian is the GGN) or a deep GGN: a rank-k
    // update over the GGN rows, in blocks of ~64 MB.
    const Index r = ggn_rows_per_sample(arch);
    const Index block =
        std::clamp<Index>((Index(8) << 20) / std::max<Index>(checked_mul(p, r, "the GGN rows per sample"), 1), 16, 2048);
    RowMat B;
    for (Index s = 0; s < n; s += block) {
        check_interrupt();
        const Index e = std::min(n, s + block);
        ggn_factor_rows(arch, theta, X, s, e, B);
        detail::syrk_lower(B, H);
    }
    H /= double(n);
    H.diagonal().array() += l2;
    detail::symmetrize_from_lower(H);
}

}  // namespace mlu
