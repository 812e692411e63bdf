// Forward pass and softmax cross-entropy on a block of samples.
#pragma once

#include <vector>

#include "architecture.hpp"

namespace mlu {

// Activations of one block of samples: A[l] pre-activations (m x out_l) for
// every layer, H[l] = sigma(A[l]) for the hidden layers. The logits are A.back().
struct Activations {
    std::vector<RowMat> A, H;
};

// The input of layer l: X for l == 0, else H[l-1].
inline const RowMat* layer_input_hidden(const Activations& f, Index l) { return l == 0 ? nullptr : &f.H[l - 1]; }

template <class XType>
void forward(const Architecture& arch, const double* theta, const XType& X, Activations& f) {
    const Index L = arch.num_layers();
    f.A.resize(L);
    f.H.resize(L - 1);
    for (Index l = 0; l < L; ++l) {
        if (l == 0)
            f.A[l].noalias() = X * arch.W(theta, l).transpose();
        else
            f.A[l].noalias() = f.H[l - 1] * arch.W(theta, l).transpose();
        f.A[l].rowwise() += arch.b(theta, l).transpose();
        if (l < L - 1) activate(arch.act(l), f.A[l], f.H[l]);
    }
}

// Row-wise softmax probabilities and per-sample cross-entropy losses
// loss_i = logsumexp(z_i) - z_{i, y_i}, both computed stably from the row max.
template <class ZType, class YType>
void softmax_cross_entropy(const ZType& Z, const YType& y, RowMat& P, double* losses) {
    const Index m = Z.rows();
    P.resize(m, Z.cols());
    for (Index i = 0; i < m; ++i) {
        const double zmax = Z.row(i).maxCoeff();
        P.row(i) = (Z.row(i).array() - zmax).exp().matrix();
        const double s = P.row(i).sum();
        P.row(i) /= s;
        if (losses) losses[i] = std::log(s) + zmax - Z(i, y(i));
    }
}

// Output error of the cross-entropy: dl/dz = p - onehot(y).
template <class YType>
void output_error(const RowMat& P, const YType& y, RowMat& Delta) {
    Delta = P;
    for (Index i = 0; i < P.rows(); ++i) Delta(i, y(i)) -= 1.0;
}

}  // namespace mlu
