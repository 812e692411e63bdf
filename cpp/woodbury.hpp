// The exact GGN through its Gauss-Newton rows, for n*r < p (Woodbury): the
// rows b_{i,rho} (row i*r + rho, r = 1 for two classes, k otherwise) are never
// formed; each is held as its per-layer factors g_{i,rho,l} and a~_{i,l}
// (gn_rows.hpp), and
//   Gram   K = B B^T = sum_l (G_l G_l^T) .* (A~_l A~_l^T expanded to rows),
//   B v    per layer (A~_l V~_l^T) dotted with g_{i,rho,l},
//   B^T z  per layer (sum_rho z_{i,rho} g_{i,rho,l})^T A~_l,
// cost O(n r p) flops for a product and O((n r)^2 sum_l (in_l + out_l)) for K,
// memory O(n r sum_l out_l) besides X. The solves in the Gram space are the
// caller's (docs/design.md, "Unlearner").
#pragma once

#include "gn_rows.hpp"
#include "objective.hpp"

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

// B V^T for V (m x p): (n r) x m.
inline RowMat gn_jvp(const Architecture& arch, const MatRef& X, const std::vector<MatRef>& G,
                     const std::vector<MatRef>& hidden, const MatRef& V) {
    const Index n = X.rows(), nr = G[0].rows(), r = nr / n, m = V.rows();
    RowMat out = RowMat::Zero(nr, m);
    for (Index l = 0; l < arch.num_layers(); ++l) {
        auto in = gn_input(X, hidden, l);
        const Index o = arch.out(l), d = arch.in(l);
        RegionErrors errors;
        // One column (a single request): no region, so Eigen's product uses every thread.
#pragma omp parallel for schedule(dynamic, 1) if (m > 1)
        for (Index c = 0; c < m; ++c)
            errors.run([&] {
                check_interrupt();
                CMapRM W(V.row(c).data() + arch.w_off[l], o, d);
                RowMat Y = in * W.transpose();  // n x out_l
                Y.rowwise() += CMapVec(V.row(c).data() + arch.b_off[l], o).transpose();
                for (Index a = 0; a < nr; ++a) out(a, c) += G[l].row(a).dot(Y.row(a / r));
            });
        errors.rethrow();
    }
    return out;
}

// B^T Z for Z ((n r) x m): m x p.
inline RowMat gn_vjp(const Architecture& arch, const MatRef& X, const std::vector<MatRef>& G,
                     const std::vector<MatRef>& hidden, const MatRef& Z) {
    const Index n = X.rows(), nr = G[0].rows(), r = nr / n, m = Z.cols();
    RowMat out(m, arch.p);
    RegionErrors errors;
    // One column (a single request): no region, so Eigen's product uses every thread.
#pragma omp parallel for schedule(dynamic, 1) if (m > 1)
    for (Index c = 0; c < m; ++c)
        errors.run([&] {
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
    errors.rethrow();
    return out;
}

}  // namespace mlu
