// Backpropagation of an output error through the network: summed gradients
// (for reductions) and one gradient row per sample (per-sample gradients and
// the rows of the Gauss-Newton factor).
#pragma once

#include "forward.hpp"

namespace mlu {

// Input block of layer l for a block of samples.
template <class XType>
inline auto layer_input(const XType& X, const Activations& f, Index l) -> Eigen::Ref<const RowMat> {
    if (l == 0) return Eigen::Ref<const RowMat>(X);
    return Eigen::Ref<const RowMat>(f.H[l - 1]);
}

// Push the error at the output of layer l+1 (Delta, m x out_{l+1}) back to
// the output of layer l: Delta <- (Delta W_{l+1}) * sigma'(A_l).
inline void backprop_step(const Architecture& arch, const double* theta, const Activations& f, Index l,
                          RowMat& Delta) {
    RowMat D;
    activation_derivative(arch.act(l), f.A[l], f.H[l], D);
    RowMat prev = (Delta * arch.W(theta, l + 1)).cwiseProduct(D);
    Delta.swap(prev);
}

// g += sum over the block of d(sum_i e_i . z_i)/dtheta, where Delta = e is the
// output error (m x k). With e = p - onehot(y) this is the summed loss gradient.
template <class XType>
void backprop_sum(const Architecture& arch, const double* theta, const XType& X, const Activations& f,
                  RowMat Delta, double* g) {
    for (Index l = arch.num_layers() - 1; l >= 0; --l) {
        auto in = layer_input(X, f, l);
        MapRM(g + arch.w_off[l], arch.out(l), arch.in(l)).noalias() += Delta.transpose() * in;
        MapVec(g + arch.b_off[l], arch.out(l)) += Delta.colwise().sum().transpose();
        if (l > 0) backprop_step(arch, theta, f, l - 1, Delta);
    }
}

// Row i of `rows` (stride row_stride) <- d(e_i . z_i)/dtheta for every sample
// of the block: per-sample gradients without the sum.
template <class XType>
void backprop_rows(const Architecture& arch, const double* theta, const XType& X, const Activations& f,
                   RowMat Delta, double* rows, Index row_stride) {
    const Index m = Delta.rows();
    for (Index l = arch.num_layers() - 1; l >= 0; --l) {
        auto in = layer_input(X, f, l);
        const Index out = arch.out(l), fan_in = arch.in(l);
        for (Index i = 0; i < m; ++i) {
            double* row = rows + i * row_stride;
            MapRM(row + arch.w_off[l], out, fan_in).noalias() = Delta.row(i).transpose() * in.row(i);
            MapVec(row + arch.b_off[l], out) = Delta.row(i).transpose();
        }
        if (l > 0) backprop_step(arch, theta, f, l - 1, Delta);
    }
}

}  // namespace mlu
