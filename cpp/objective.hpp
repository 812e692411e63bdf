// Whole-data quantities: logits, probabilities, per-sample losses, the mean
// gradient of the objective and per-sample gradients, each computed in
// sample chunks on all threads.
#pragma once

#include "backprop.hpp"
#include "parallel.hpp"

namespace mlu {

constexpr Index kChunk = 1024;  // samples per block: keeps activations in cache, GEMMs large

inline void logits(const Architecture& arch, const double* theta, const MatRef& X, RowMat& Z) {
    Z.resize(X.rows(), arch.classes());
    parallel_for_chunks(X.rows(), kChunk, [&](Index s, Index e) {
        Activations f;
        forward(arch, theta, X.middleRows(s, e - s), f);
        Z.middleRows(s, e - s) = f.A.back();
    });
}

inline void losses(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y, Vec& out) {
    out.resize(X.rows());
    parallel_for_chunks(X.rows(), kChunk, [&](Index s, Index e) {
        Activations f;
        forward(arch, theta, X.middleRows(s, e - s), f);
        RowMat P;
        softmax_cross_entropy(f.A.back(), y.segment(s, e - s), P, out.data() + s);
    });
}

// Mean gradient of (1/n) sum_i loss_i + (l2/2)|theta|^2; also returns the mean loss.
inline Vec mean_gradient(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y, double l2,
                         double* mean_loss) {
    const Index n = X.rows();
    // One extra slot carries the loss sum through the same reduction.
    Vec acc = parallel_sum(n, arch.p + 1, kChunk, [&](Index s, Index e, Vec& g) {
        Activations f;
        forward(arch, theta, X.middleRows(s, e - s), f);
        RowMat P, Delta;
        Vec loss(e - s);
        softmax_cross_entropy(f.A.back(), y.segment(s, e - s), P, loss.data());
        output_error(P, y.segment(s, e - s), Delta);
        backprop_sum(arch, theta, X.middleRows(s, e - s), f, std::move(Delta), g.data());
        g[arch.p] += loss.sum();
    });
    if (mean_loss) *mean_loss = acc[arch.p] / double(n);
    Vec g = acc.head(arch.p) / double(n);
    g += l2 * CMapVec(theta, arch.p);
    return g;
}

// Per-sample gradients of loss_i (no L2 term) for samples [s, e), written to
// rows (e - s) x p. Callers that only need reductions walk the data in such
// blocks and never hold n x p.
inline void per_sample_gradient_block(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                                      Index s, Index e, double* rows) {
    Activations f;
    auto Xb = X.middleRows(s, e - s);
    forward(arch, theta, Xb, f);
    RowMat P, Delta;
    softmax_cross_entropy(f.A.back(), y.segment(s, e - s), P, nullptr);
    output_error(P, y.segment(s, e - s), Delta);
    backprop_rows(arch, theta, Xb, f, std::move(Delta), rows, arch.p);
}

inline void per_sample_gradients(const Architecture& arch, const double* theta, const MatRef& X, const LabelRef& y,
                                 double* out) {
    parallel_for_chunks(
        X.rows(), 256, [&](Index s, Index e) { per_sample_gradient_block(arch, theta, X, y, s, e, out + s * arch.p); });
}

}  // namespace mlu
