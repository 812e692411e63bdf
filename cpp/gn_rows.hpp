// Per-sample Gauss-Newton rows, split by layer. The GGN of the mean loss is
// (1/n) sum_i sum_rho b_{i,rho} b_{i,rho}^T (hessian.hpp), and the share of
// one row b_{i,rho} in layer l (weights and bias, as the out_l x (in_l + 1)
// matrix [W_l | b_l]) is the outer product g_{i,rho,l} a~_{i,l}^T of
//   g: the row's output factor u_rho backpropagated to layer l's pre-activation,
//   a~ = [a; 1]: the layer's input with a bias 1.
// K-FAC, EK-FAC and the Woodbury Gram matrix (kfac.hpp, woodbury.hpp) are all
// sums of products of these two factors; this header produces them for a
// block of samples.
#pragma once

#include <limits>

#include "hessian.hpp"
#include "sizes.hpp"

namespace mlu {

// [layer input | 1] of layer l for the block (m x (in_l + 1)).
template <class XType>
inline RowMat augmented_input(const XType& Xb, const Activations& f, Index l) {
    auto in = layer_input(Xb, f, l);
    RowMat At(in.rows(), in.cols() + 1);
    At.leftCols(in.cols()) = in;
    At.col(in.cols()).setOnes();
    return At;
}

// fn(l, rho, G) for every layer l and Gauss-Newton row rho of the block, with G
// (m x out_l) the pre-activation factors g_{i,rho,l} of its m samples; f is
// the block's forward pass.
template <class XType, class Fn>
void for_each_gn_factor(const Architecture& arch, const double* theta, const XType& Xb, const Activations& f, Fn&& fn) {
    const Index m = Xb.rows(), k = arch.classes(), r = ggn_rows_per_sample(arch);
    RowMat P;
    IVec dummy = IVec::Zero(m);
    softmax_cross_entropy(f.A.back(), dummy, P, nullptr);
    RowMat U(m * r, k);
    for (Index i = 0; i < m; ++i) detail::output_factor(P.row(i), U.middleRows(i * r, r));
    for (Index rho = 0; rho < r; ++rho) {
        RowMat G(m, k);
        for (Index i = 0; i < m; ++i) G.row(i) = U.row(i * r + rho);
        for (Index l = arch.num_layers() - 1; l >= 0; --l) {
            fn(l, rho, static_cast<const RowMat&>(G));
            if (l > 0) backprop_step(arch, theta, f, l - 1, G);
        }
    }
}

}  // namespace mlu
