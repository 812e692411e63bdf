// K-FAC (Martens & Grosse 2015) and EK-FAC (George et al. 2018) curvature
// factors of the GGN, as sums over any set of samples: a downdate subtracts
// the sums of the removed samples, and a chunked build adds the sums of each
// chunk. Normalising (by the number of samples) and factoring (eigh) are the
// caller's (docs/design.md, "Unlearner").
//
// Per layer l, with the Gauss-Newton factors of gn_rows.hpp (no sampling):
//   A_l = sum_i a~_i a~_i^T                 ((in_l + 1) x (in_l + 1))
//   G_l = sum_i sum_rho g_{i,rho} g_{i,rho}^T   (out_l x out_l)
// so that K-FAC's block is (G_l / n) (x) (A_l / n); for a network without a
// hidden layer whose per-sample output curvature is the same for every
// sample, that is the exact GGN. EK-FAC keeps the eigenbases Q_G, Q_A of
// these factors and replaces the Kronecker eigenvalues by the GGN's own
// diagonal in that basis:
//   S_l[o, j] = sum_i (sum_rho (Q_G^T g_{i,rho})_o^2) (Q_A^T a~_i)_j^2.
#pragma once

#include "gn_rows.hpp"
#include "objective.hpp"

namespace mlu {

struct KFACSums {
    std::vector<RowMat> A, G;  // per layer, symmetric
};

inline KFACSums zero_kfac_sums(const Architecture& arch) {
    KFACSums s;
    for (Index l = 0; l < arch.num_layers(); ++l) {
        s.A.push_back(RowMat::Zero(arch.in(l) + 1, arch.in(l) + 1));
        s.G.push_back(RowMat::Zero(arch.out(l), arch.out(l)));
    }
    return s;
}

// The K-FAC sums over all rows of X, in sample chunks on all threads (one
// accumulator per thread, summed in thread order: deterministic for a thread count).
inline KFACSums kfac_sums(const Architecture& arch, const double* theta, const MatRef& X) {
    std::vector<KFACSums> partial(num_threads(), zero_kfac_sums(arch));
    parallel_for_chunks(X.rows(), 512, [&](Index s, Index e) {
        KFACSums& acc = partial[omp_get_thread_num()];
        auto Xb = X.middleRows(s, e - s);
        Activations f;
        forward(arch, theta, Xb, f);
        for (Index l = 0; l < arch.num_layers(); ++l) {
            RowMat At = augmented_input(Xb, f, l);
            acc.A[l].selfadjointView<Eigen::Lower>().rankUpdate(At.transpose());  // half the flops
        }
        for_each_gn_factor(arch, theta, Xb, f, [&](Index l, Index, const RowMat& G) {
            acc.G[l].selfadjointView<Eigen::Lower>().rankUpdate(G.transpose());
        });
    });
    KFACSums total = zero_kfac_sums(arch);
    for (const auto& part : partial)
        for (Index l = 0; l < arch.num_layers(); ++l) {
            total.A[l] += part.A[l];
            total.G[l] += part.G[l];
        }
    for (Index l = 0; l < arch.num_layers(); ++l) {  // the sums filled the lower triangles only
        detail::symmetrize_from_lower(total.A[l]);
        detail::symmetrize_from_lower(total.G[l]);
    }
    return total;
}

// The EK-FAC corrections S_l (out_l x (in_l + 1)) over all rows of X in the
// given eigenbases (QA[l]: (in_l + 1) square, QG[l]: out_l square).
inline std::vector<RowMat> ekfac_sums(const Architecture& arch, const double* theta, const MatRef& X,
                                      const std::vector<MatRef>& QA, const std::vector<MatRef>& QG) {
    const Index L = arch.num_layers();
    auto zeros = [&] {
        std::vector<RowMat> S;
        for (Index l = 0; l < L; ++l) S.push_back(RowMat::Zero(arch.out(l), arch.in(l) + 1));
        return S;
    };
    std::vector<std::vector<RowMat>> partial(num_threads(), zeros());
    parallel_for_chunks(X.rows(), 512, [&](Index s, Index e) {
        auto& acc = partial[omp_get_thread_num()];
        const Index m = e - s;
        auto Xb = X.middleRows(s, m);
        Activations f;
        forward(arch, theta, Xb, f);
        std::vector<RowMat> Gsq;
        for (Index l = 0; l < L; ++l) Gsq.push_back(RowMat::Zero(m, arch.out(l)));
        for_each_gn_factor(arch, theta, Xb, f,
                           [&](Index l, Index, const RowMat& G) { Gsq[l].array() += (G * QG[l]).array().square(); });
        for (Index l = 0; l < L; ++l) {
            RowMat Asq = (augmented_input(Xb, f, l) * QA[l]).array().square().matrix();
            acc[l].noalias() += Gsq[l].transpose() * Asq;
        }
    });
    std::vector<RowMat> total = zeros();
    for (const auto& part : partial)
        for (Index l = 0; l < L; ++l) total[l] += part[l];
    return total;
}

}  // namespace mlu
