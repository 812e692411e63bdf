// The exact GGN through its Gauss-Newton rows, for n*r < p (Woodbury): the
// rows b_{i,rho} (row i*r + rho, r = 1 for two classes, k otherwise) are never
// formed; each is held as its per-layer factors g_{i,rho,l} and a~_{i,l}
// (gn_rows.hpp), and
//   Gram   K = B B^T = sum_l (G_l G_l^T) .* (A~_l A~_l^T expanded to rows),
//   B v    per layer (A~_l V~_l^T) dotted with g_{i,rho,l},
//   B^T z  per layer (sum_rho z_{i,rho} g_{i,rho,l})^T A~_l,
// cost O(n r p) flops for a product and O((n r)^2 sum_l (in_l + out_l)) for K,
// memory O(n r sum_l out_l) besides X. The Gram-space solve of a request, with
// samples removed, is gram_retained_solve (docs/design.md, "Unlearner").
#pragma once

#include "gn_rows.hpp"
#include "objective.hpp"
#include "solvers.hpp"

namespace mlu {

struct GNTerms {
    std::vector<RowMat> G;       // per layer: n*r x out_l, pre-activation factors
    std::vector<RowMat> hidden;  // per hidden layer: n x out_l, its output (the next layer's input)
};

inline GNTerms gn_terms(const Architecture& arch, const double* theta, const MatRef& X) {
    const Index n = X.rows(), r = ggn_rows_per_sample(arch), L = arch.num_layers();
    GNTerms t;
    for (Index l = 0; l < L; ++l) t.G.emplace_back(checked_mul(n, r, "Gauss-Newton rows"), arch.out(l));
    for (Index l = 0; l + 1 < L; ++l) t.hidden.emplace_back(n, arch.out(l));
    parallel_for_chunks(n, 512, [&](Index s, Index e) {
        auto Xb = X.middleRows(s, e - s);
        Activations f;
        forward(arch, theta, Xb, f);
        for (Index l = 0; l + 1 < L; ++l) t.hidden[l].middleRows(s, e - s) = f.H[l];
        for_each_gn_factor(arch, theta, Xb, f, [&](Index l, Index rho, const RowMat& G) {
            for (Index i = 0; i < e - s; ++i) t.G[l].row((s + i) * r + rho) = G.row(i);
        });
    });
    return t;
}

// Layer l's input for all samples: X or a hidden output (without the bias 1).
inline MatRef gn_input(const MatRef& X, const std::vector<MatRef>& hidden, Index l) {
    return l == 0 ? X : hidden[l - 1];
}

// K = B B^T, (n r) x (n r), symmetric.
inline RowMat woodbury_gram(const Architecture& arch, const MatRef& X, const std::vector<MatRef>& G,
                            const std::vector<MatRef>& hidden) {
    const Index n = X.rows(), nr = G[0].rows(), r = nr / n;
    checked_bytes(checked_mul(nr, nr, "Gram matrix"), "Gram matrix");
    RowMat K = RowMat::Zero(nr, nr);
    for (Index l = 0; l < arch.num_layers(); ++l) {
        auto in = gn_input(X, hidden, l);
        RowMat Aa = RowMat::Ones(n, n);
        Aa.noalias() += in * in.transpose();
        RowMat GG = G[l] * G[l].transpose();
        RegionErrors errors;  // no exception may leave an OpenMP region: rethrown below
#pragma omp parallel for schedule(static)
        for (Index a = 0; a < nr; ++a)
            errors.run([&] {
                if (a % 256 == 0) check_interrupt();
                for (Index b = 0; b < nr; ++b) K(a, b) += GG(a, b) * Aa(a / r, b / r);
            });
        errors.rethrow();
    }
    return K;
}

// fn(c) for the m columns of a product: one column per thread, or for a single
// column (one request) fn(0) outside any OpenMP construct, so that Eigen's own
// parallel product inside it is a top-level region on the threads of the
// others. Inside even an inactive region (`if (m > 1)`) it would start a
// nested team whose threads compete for the cores with the idle, still
// spinning threads of the previous region (gn_vjp took 2x as long after any
// other region of the core).
template <class Fn>
void columns_in_parallel(Index m, Fn fn) {
    if (m == 1) {
        fn(0);
        return;
    }
    RegionErrors errors;
#pragma omp parallel for schedule(dynamic, 1)
    for (Index c = 0; c < m; ++c) errors.run([&] { fn(c); });
    errors.rethrow();
}

// B V^T for V (m x p): (n r) x m.
inline RowMat gn_jvp(const Architecture& arch, const MatRef& X, const std::vector<MatRef>& G,
                     const std::vector<MatRef>& hidden, const MatRef& V) {
    const Index n = X.rows(), nr = G[0].rows(), r = nr / n, m = V.rows();
    RowMat out = RowMat::Zero(nr, m);
    for (Index l = 0; l < arch.num_layers(); ++l) {
        auto in = gn_input(X, hidden, l);
        const Index o = arch.out(l), d = arch.in(l);
        auto column = [&](Index c) {
            check_interrupt();
            CMapRM W(V.row(c).data() + arch.w_off[l], o, d);
            RowMat Y = in * W.transpose();  // n x out_l
            Y.rowwise() += CMapVec(V.row(c).data() + arch.b_off[l], o).transpose();
            for (Index a = 0; a < nr; ++a) out(a, c) += G[l].row(a).dot(Y.row(a / r));
        };
        columns_in_parallel(m, column);
    }
    return out;
}

// B^T Z for Z ((n r) x m): m x p.
inline RowMat gn_vjp(const Architecture& arch, const MatRef& X, const std::vector<MatRef>& G,
                     const std::vector<MatRef>& hidden, const MatRef& Z) {
    const Index n = X.rows(), nr = G[0].rows(), r = nr / n, m = Z.cols();
    RowMat out(m, arch.p);
    columns_in_parallel(m, [&](Index c) {
        check_interrupt();
        for (Index l = 0; l < arch.num_layers(); ++l) {
            auto in = gn_input(X, hidden, l);
            const Index o = arch.out(l), d = arch.in(l);
            RowMat D = RowMat::Zero(n, o);
            for (Index a = 0; a < nr; ++a) D.row(a / r) += Z(a, c) * G[l].row(a);
            MapRM(out.row(c).data() + arch.w_off[l], o, d).noalias() = D.transpose() * in;
            MapVec(out.row(c).data() + arch.b_off[l], o) = D.colwise().sum().transpose();
        }
    });
    return out;
}

// (s I + K_RR)^{-1} W on the retained rows R, zero on the removed rows F
// (`removed`: distinct, in range), from the eigendecomposition K = V diag(w) V^T
// of the whole Gram matrix (N x N; the columns of V are the eigenvectors). With
// M = s I + K, M^{-1} = V diag(1 / (w + s)) V^T and
//   (M_RR)^{-1} = (M^{-1})_RR - (M^{-1})_RF ((M^{-1})_FF)^{-1} (M^{-1})_FR,
// neither a new shift s (it scales with the retained count) nor a longer F
// needs K_RR factored again: O(N^2 m + N |F| (|F| + m) + |F|^3) flops, the
// products split between the threads (no BLAS pool beside OpenMP's).
inline RowMat gram_retained_solve(const MatRef& V, const VecRef& w, double s, const std::vector<Index>& removed,
                                  const MatRef& W) {
    const Index N = V.rows(), m = W.cols(), d = Index(removed.size()), block = 64;
    const Vec inv = (w.array() + s).inverse().matrix();
    RowMat Wr = W;
    for (Index i : removed) Wr.row(i).setZero();
    // V^T Wr = sum over blocks of V's rows (read in memory order), one partial sum per
    // thread; the static schedule fixes the summation order for a given thread count
    std::vector<RowMat> partial(std::size_t(num_threads()), RowMat::Zero(N, m));
    RegionErrors errors;
#pragma omp parallel for schedule(static)
    for (Index i0 = 0; i0 < N; i0 += block)
        errors.run([&] {
            const Index b = std::min(block, N - i0);
            partial[std::size_t(omp_get_thread_num())].noalias() +=
                V.middleRows(i0, b).transpose() * Wr.middleRows(i0, b);
        });
    errors.rethrow();
    RowMat t = partial[0];
    for (std::size_t k = 1; k < partial.size(); ++k) t += partial[k];
    if (d > 0) {
        check_interrupt();
        RowMat VF(d, N);
        for (Index k = 0; k < d; ++k) VF.row(k) = V.row(removed[k]);
        const RowMat VFs = VF * inv.cwiseSqrt().asDiagonal();
        ColMat MFF(d, d);  // (M^{-1})_FF = VFs VFs^T: its lower triangle, by column panels
#pragma omp parallel for schedule(dynamic, 1)
        for (Index j0 = 0; j0 < d; j0 += block)
            errors.run([&] {
                const Index b = std::min(block, d - j0);
                MFF.block(j0, j0, d - j0, b).noalias() = VFs.middleRows(j0, d - j0) * VFs.middleRows(j0, b).transpose();
            });
        errors.rethrow();
        // VF has orthonormal rows and inv > 0: MFF is positive definite up to rounding
        if (!cholesky_inplace(MFF))
            throw std::runtime_error("the removed rows' block of the Gram inverse is not positive definite");
        const ColMat rhs = VF * (inv.asDiagonal() * t);  // (M^{-1} W)_F
        t.noalias() -= VF.transpose() * cholesky_solve(MFF, rhs);
    }
    t = inv.asDiagonal() * t;
    RowMat Y(N, m);  // V t, by blocks of V's rows
#pragma omp parallel for schedule(dynamic, 1)
    for (Index i0 = 0; i0 < N; i0 += block)
        errors.run([&] {
            const Index b = std::min(block, N - i0);
            Y.middleRows(i0, b).noalias() = V.middleRows(i0, b) * t;
        });
    errors.rethrow();
    for (Index i : removed) Y.row(i).setZero();
    return Y;
}

}  // namespace mlu
