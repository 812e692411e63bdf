// Hessian-vector products by Pearlmutter's R-operator: a forward pass of the
// directional derivative (tangents) followed by its backward pass.
//
// The exact Hessian of a network with hidden layers has, besides the
// Gauss-Newton part J^T H_out J, three terms that the R-operator keeps:
//   * delta_l (dH_{l-1})^T in the weight gradient (cross-layer terms),
//   * dW_l^T delta_l in the backward recursion (their transposes),
//   * sigma''(A) . dA . (delta W) for curved activations (zero for ReLU and identity),
//     layer by layer, each with its own activation.
// curvature = GGN drops all three, leaving the positive semi-definite
// generalized Gauss-Newton matrix.
//
// The operator caches the forward pass and the backpropagated errors of the
// whole data set, so that the many products of a CG solve cost two passes of
// tangents each and no recomputation of activations.
#pragma once

#include <vector>

#include "objective.hpp"

namespace mlu {

enum class Curvature { Hessian, GGN };

inline Curvature parse_curvature(const std::string& name) {
    if (name == "hessian") return Curvature::Hessian;
    if (name == "ggn") return Curvature::GGN;
    throw std::invalid_argument("curvature must be 'hessian' or 'ggn', got '" + name + "'");
}

class HessianOperator {
  public:
    HessianOperator(Architecture arch, const double* theta, const double* X, const std::int64_t* y, Index n,
                    double l2, Curvature curvature)
        : arch_(std::move(arch)), theta_(CMapVec(theta, arch_.p)), X_(X), y_(y), n_(n), l2_(l2),
          curvature_(curvature) {
        // Chunks are sized for a fixed thread count so that products are repeatable.
        chunks_ = sample_chunks(n_, kChunk);
        blocks_.resize(chunks_.size());
        RegionErrors errors;
#pragma omp parallel for schedule(static)
        for (Index c = 0; c < static_cast<Index>(chunks_.size()); ++c)
            errors.run([&] {
                check_interrupt();
                prepare(c);
            });
        errors.rethrow();
    }

    Index size() const { return arch_.p; }
    const Architecture& arch() const { return arch_; }

    // out = (H + l2 I) v, H the mean Hessian (or GGN) of the losses over the data.
    void apply(const double* v, double* out) const {
        const int threads = num_threads();
        std::vector<Vec> partial(threads, Vec::Zero(arch_.p));
        RegionErrors errors;
#pragma omp parallel for schedule(static)
        for (Index c = 0; c < static_cast<Index>(chunks_.size()); ++c)
            errors.run([&] {
                check_interrupt();
                apply_block(c, v, partial[omp_get_thread_num()].data());
            });
        errors.rethrow();
        MapVec result(out, arch_.p);
        result.setZero();
        for (auto& part : partial) result += part;
        result /= double(n_);
        result += l2_ * CMapVec(v, arch_.p);
    }

  private:
    struct Block {
        Activations f;
        std::vector<RowMat> D;      // sigma'(A_l), hidden layers
        std::vector<RowMat> C;      // sigma''(A_l) * (delta_{l+1} W_{l+1}), hidden layers (curved activations)
        std::vector<RowMat> Delta;  // dloss/dA_l for every layer
        RowMat P;                   // softmax probabilities
    };

    CMapRM X_block(Index c) const {
        return CMapRM(X_ + chunks_[c].first * arch_.input_dim(), chunks_[c].second - chunks_[c].first,
                      arch_.input_dim());
    }

    void prepare(Index c) {
        Block& b = blocks_[c];
        const Index s = chunks_[c].first, m = chunks_[c].second - s, L = arch_.num_layers();
        const double* th = theta_.data();
        Eigen::Map<const IVec> y(y_ + s, m);
        forward(arch_, th, X_block(c), b.f);
        softmax_cross_entropy(b.f.A.back(), y, b.P, nullptr);
        b.D.resize(L - 1);
        b.C.resize(L - 1);
        b.Delta.resize(L);
        output_error(b.P, y, b.Delta[L - 1]);
        for (Index l = L - 2; l >= 0; --l) {
            activation_derivative(arch_.act(l), b.f.A[l], b.f.H[l], b.D[l]);
            RowMat back = b.Delta[l + 1] * arch_.W(th, l + 1);
            if (curvature_ == Curvature::Hessian && arch_.curved(l)) {
                activation_second_derivative(arch_.act(l), b.f.H[l], b.C[l]);
                b.C[l].array() *= back.array();
            }
            b.Delta[l] = back.cwiseProduct(b.D[l]);
        }
    }

    void apply_block(Index c, const double* v, double* out) const {
        const Block& b = blocks_[c];
        const Index L = arch_.num_layers();
        const double* th = theta_.data();
        const bool exact = curvature_ == Curvature::Hessian;
        auto X = X_block(c);
        auto input = [&](Index l) -> Eigen::Ref<const RowMat> {
            return l == 0 ? Eigen::Ref<const RowMat>(X) : Eigen::Ref<const RowMat>(b.f.H[l - 1]);
        };

        // Forward tangents: dA_l = dH_{l-1} W_l^T + H_{l-1} dW_l^T + db_l.
        std::vector<RowMat> dA(L), dH(L - 1);
        for (Index l = 0; l < L; ++l) {
            CMapRM dW(v + arch_.w_off[l], arch_.out(l), arch_.in(l));
            dA[l].noalias() = input(l) * dW.transpose();
            if (l > 0) dA[l].noalias() += dH[l - 1] * arch_.W(th, l).transpose();
            dA[l].rowwise() += CMapVec(v + arch_.b_off[l], arch_.out(l)).transpose();
            if (l < L - 1) dH[l] = b.D[l].cwiseProduct(dA[l]);
        }

        // Output: d(delta_L) = H_out dz with H_out = diag(p) - p p^T per sample.
        RowMat dDelta = b.P.cwiseProduct(dA[L - 1]);
        Vec pdz = dDelta.rowwise().sum();
        dDelta -= b.P.cwiseProduct(pdz.replicate(1, arch_.classes()));

        for (Index l = L - 1; l >= 0; --l) {
            MapRM gW(out + arch_.w_off[l], arch_.out(l), arch_.in(l));
            gW.noalias() += dDelta.transpose() * input(l);
            if (exact && l > 0) gW.noalias() += b.Delta[l].transpose() * dH[l - 1];
            MapVec(out + arch_.b_off[l], arch_.out(l)) += dDelta.colwise().sum().transpose();
            if (l == 0) break;
            RowMat back = dDelta * arch_.W(th, l);
            if (exact) back.noalias() += b.Delta[l] * CMapRM(v + arch_.w_off[l], arch_.out(l), arch_.in(l));
            RowMat next = back.cwiseProduct(b.D[l - 1]);
            if (exact && arch_.curved(l - 1)) next += b.C[l - 1].cwiseProduct(dA[l - 1]);
            dDelta.swap(next);
        }
    }

    Architecture arch_;
    Vec theta_;
    const double* X_;
    const std::int64_t* y_;
    Index n_;
    double l2_;
    Curvature curvature_;
    std::vector<std::pair<Index, Index>> chunks_;
    std::vector<Block> blocks_;
};

}  // namespace mlu
