// Self-influence s_i = g_i^T (H + damping I)^{-1} g_i for every sample, from a
// factorisation computed once: ||L^{-1} g_i||^2 with the Cholesky factor, or
// ||M^T g_i||^2 with M = U diag((lambda + damping)^{-1/2}) from the
// eigendecomposition. Per-sample gradients are formed in blocks, each solved
// for all its samples at once (a triangular solve with many right-hand sides).
#pragma once

#include "objective.hpp"
#include "solvers.hpp"

namespace mlu {

enum class QuadraticForm { CholeskyFactor, Projection };

inline Vec self_influence(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                          const Eigen::Ref<const ColMat>& M, QuadraticForm form) {
    const Index n = X.rows();
    Vec s(n);
    parallel_for_chunks(n, 256, [&](Index b, Index e) {
        RowMat G(e - b, arch.p);
        per_sample_gradient_block(arch, theta, X, y, b, e, G.data());
        if (form == QuadraticForm::CholeskyFactor) {
            // G row-major is G^T column-major: solve in place, no transposed copy.
            Eigen::Map<ColMat> Z(G.data(), arch.p, e - b);
            M.triangularView<Eigen::Lower>().solveInPlace(Z);
            s.segment(b, e - b) = Z.colwise().squaredNorm().transpose();
        } else {
            RowMat Z = G * M;
            s.segment(b, e - b) = Z.rowwise().squaredNorm();
        }
    });
    return s;
}

}  // namespace mlu
