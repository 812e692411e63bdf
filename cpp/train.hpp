// One epoch of minibatch SGD with PyTorch-style momentum:
//   buf <- momentum * buf + g,  theta <- theta - lr * buf,
// g the minibatch-mean loss gradient plus l2 * theta. Samples are visited in
// a permutation drawn from a fixed generator (mt19937_64 and a multiply-shift
// bounded draw), so an epoch is bit-for-bit repeatable on every platform.
#pragma once

#include <random>
#include <vector>

#include "backprop.hpp"

namespace mlu {

inline std::vector<Index> permutation(Index n, std::uint64_t seed) {
    std::vector<Index> order(n);
    for (Index i = 0; i < n; ++i) order[i] = i;
    std::mt19937_64 rng(seed);
    for (Index i = n - 1; i > 0; --i) {
        const std::uint64_t bound = static_cast<std::uint64_t>(i) + 1;
        const Index j = static_cast<Index>((static_cast<unsigned __int128>(rng()) * bound) >> 64);
        std::swap(order[i], order[j]);
    }
    return order;
}

// Returns the mean over batches of the minibatch loss before each step.
inline double sgd_epoch(const Architecture& arch, double* theta, double* velocity, const MatRef& X,
                        const LabelRef& y, const std::vector<Index>& order, double lr, double momentum,
                        Index batch_size, double l2) {
    const Index n = X.rows(), d = arch.input_dim(), p = arch.p;
    RowMat Xb(batch_size, d);
    IVec yb(batch_size);
    Vec g(p), loss(batch_size);
    Activations f;
    RowMat P, Delta;
    MapVec th(theta, p), buf(velocity, p);
    double loss_sum = 0.0;
    Index batches = 0;
    for (Index s = 0; s < n; s += batch_size) {
        const Index m = std::min(batch_size, n - s);
        if (Xb.rows() != m) {
            Xb.resize(m, d);
            yb.resize(m);
        }
        for (Index i = 0; i < m; ++i) {
            Xb.row(i) = X.row(order[s + i]);
            yb[i] = y[order[s + i]];
        }
        forward(arch, theta, Xb, f);
        softmax_cross_entropy(f.A.back(), yb, P, loss.data());
        loss_sum += loss.head(m).mean();
        ++batches;
        output_error(P, yb, Delta);
        g.setZero();
        backprop_sum(arch, theta, Xb, f, std::move(Delta), g.data());
        g /= double(m);
        g += l2 * th;
        buf = momentum * buf + g;
        th -= lr * buf;
    }
    return batches ? loss_sum / double(batches) : 0.0;
}

}  // namespace mlu
