// One epoch of minibatch SGD with PyTorch-style momentum:
//   buf <- momentum * buf + g,  theta <- theta - lr * buf,
// g the minibatch-mean loss gradient plus l2 * theta. Samples are visited in
// a permutation drawn from a fixed generator (mt19937_64 and a multiply-shift
// bounded draw), so an epoch is bit-for-bit repeatable on every platform.
//
// A step at batch 32 is ~5 MFLOP (784-50-2), ~0.1 ms, so per-step overheads
// matter as much as the products: buffers are allocated once per epoch, and
// the first layer (nearly all the flops: its fan-in d is large) runs on the
// fused kernels of kernels.hpp, its gradient never stored. Threads split the
// first layer's units: each gathers its own copy of the batch rows, computes
// its units' pre-activations, and after the (small) upper layers have run on
// thread 0, its units' weight step. Two barriers a step and one parallel
// region per 16 steps (Eigen's own GEMM threading would fork and join per
// product, several times a step).
//
// The kernels sum every element in the same order however the units are
// split, so 1 and 2 threads give identical results. That makes it safe to
// drop to one thread when the partner keeps arriving late at the barrier (a
// loaded machine deschedules it for milliseconds, far longer than a step).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <vector>

#include "backprop.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

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

namespace detail {

// Threads worth using for a step: each thread's share of the first layer (two
// m x d x units products) should be well above the cost of two barriers.
inline int sgd_threads(const Architecture& arch, Index batch) {
    if (arch.num_layers() < 2) return 1;  // no hidden layer: the softmax needs every unit at once
    const double flops = 4.0 * double(batch) * double(arch.in(0)) * double(arch.out(0));
    const int useful = static_cast<int>(std::min<double>(double(arch.out(0)) / 4.0, flops / 4e5));
    return std::max(1, std::min(num_threads(), useful));
}

// Thread 0's clock: time spent at the barriers of a step against time spent
// computing. The others are late when thread 0 waited far longer than its own
// share of the step took (a loaded machine has descheduled them).
class LateWatch {
  public:
    using Clock = std::chrono::steady_clock;
    void computed() { worked_ += lap(); }
    void waited() { waited_ += lap(); }
    bool partner_late() {
        const bool late = waited_ > 2.0 * worked_ + 20e-6;
        waited_ = worked_ = 0.0;
        return late;
    }

  private:
    double lap() {
        const auto now = Clock::now();
        const double dt = std::chrono::duration<double>(now - mark_).count();
        mark_ = now;
        return dt;
    }
    double worked_ = 0.0, waited_ = 0.0;
    Clock::time_point mark_ = Clock::now();
};

// When to try the team again after it fell back to one thread: solo for
// 5 ms x 2^k after the k-th failed try in a row (k <= 6, about 0.3 s), so a
// burst of load costs one short solo stretch while a machine that stays loaded
// pays a failed try (a few scheduler time slices, ~30 ms) at most every 0.3 s.
// Kept across calls (the next epoch); benign races between concurrent calls.
class TeamRetry {
  public:
    using Clock = std::chrono::steady_clock;
    bool solo_now() const { return Clock::now().time_since_epoch().count() < until_.load(std::memory_order_relaxed); }
    void succeeded() { level_.store(0, std::memory_order_relaxed); }
    void failed() {
        const int k = std::min(level_.load(std::memory_order_relaxed), 6);
        level_.store(k + 1, std::memory_order_relaxed);
        const auto wait = std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(5000 << k));
        until_.store((Clock::now() + wait).time_since_epoch().count(), std::memory_order_relaxed);
    }

  private:
    std::atomic<Clock::rep> until_{0};
    std::atomic<int> level_{0};
};

inline TeamRetry& team_retry() {
    static TeamRetry state;
    return state;
}

// The state of one epoch. Shared: the first layer's pre-activations, outputs
// and (batch-mean) errors, whose columns belong to the thread of those units.
class SgdEpoch {
  public:
    SgdEpoch(const Architecture& arch, double* theta, double* velocity, const MatRef& X, const LabelRef& y,
             const std::vector<Index>& order, double lr, double momentum, Index batch, double l2, int threads)
        : arch_(arch), theta_(theta), vel_(velocity), X_(X), y_(y), order_(order), lr_(lr), mu_(momentum),
          l2_(l2), bs_(batch), L_(arch.num_layers()), d_(arch.input_dim()), h0_(arch.out(0)),
          A0_(batch, h0_), H0_(batch, h0_), Delta0_(batch, h0_), Xb_(threads, RowMat(batch, d_)), yb_(batch),
          A_(L_), H_(L_), Delta_(L_), Dact_(L_), g_(arch.p), loss_(batch) {}

    // Steps over samples [s, e) of the permutation on a team of `threads`.
    // Returns false if the team fell back to thread 0 alone on the way.
    bool run(Index s, Index e, int threads) {
        bool go_solo = false;  // set by thread 0 between the barriers, read by all after the second
        bool stop = false;     // likewise: a thread failed (out of memory), all leave together
        RegionErrors errors;
#pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            Index u0 = h0_ * t / T, u1 = h0_ * (t + 1) / T;  // this thread's units
            bool solo = T == 1;  // the same in every thread: barriers are met by all or by none
            LateWatch watch;
            for (Index b = s; b < e; b += bs_) {
                const Index m = std::min(bs_, e - b);
                errors.run([&] { forward_first(t, b, m, u0, u1); });
                if (!solo) {
                    if (t == 0) watch.computed();
#pragma omp barrier
                    if (t == 0) watch.waited();
                }
                if (t == 0) errors.run([&] { upper_layers(b, m); });
                bool switched = false;
                if (t == 0) stop = errors.failed();
                if (!solo) {
                    // Decided before the barrier, read by all after it.
                    if (t == 0) {
                        watch.computed();
                        go_solo = watch.partner_late();
                    }
#pragma omp barrier
                    solo = switched = go_solo;
                    if (t == 0) watch.waited();
                }
                if (stop) break;  // the same in every thread (set before the barrier)
                errors.run([&] { step_first(t, m, u0, u1); });
                if (switched) {
                    // Every unit's step is done before thread 0 goes on alone with all of them.
#pragma omp barrier
                    if (t != 0) break;
                    u0 = 0;
                    u1 = h0_;
                }
            }
        }
        errors.rethrow();
        return !go_solo;
    }

    double mean_loss() const { return batches_ ? loss_sum_ / double(batches_) : 0.0; }

  private:
    // Gather this thread's copy of the batch rows; A0 = X W0^T + b0 (and H0 =
    // sigma(A0) below a hidden layer) for units [u0, u1).
    void forward_first(int t, Index b, Index m, Index u0, Index u1) {
        RowMat& Xb = Xb_[t];
        for (Index i = 0; i < m; ++i) Xb.row(i) = X_.row(order_[b + i]);
        kernels::linear_units(Xb.data(), d_, m, d_, theta_ + arch_.w_off[0], theta_ + arch_.b_off[0], u0, u1,
                              A0_.data(), h0_);
        if (L_ > 1) {
            auto H0t = H0_.block(0, u0, m, u1 - u0);
            activate(arch_.act(0), A0_.block(0, u0, m, u1 - u0), H0t);
        }
    }

    // Thread 0: the layers above the first, forward and backward, their step,
    // and the first layer's error Delta0. Small products, so coefficient-based
    // (lazyProduct): no GEMM blocking, and no Eigen threading inside a team.
    void upper_layers(Index b, Index m) {
        const double* th = theta_;
        for (Index i = 0; i < m; ++i) yb_[i] = y_[order_[b + i]];
        auto input = [&](Index l) -> Eigen::Ref<const RowMat> {
            return l == 1 ? Eigen::Ref<const RowMat>(H0_.topRows(m)) : Eigen::Ref<const RowMat>(H_[l - 1]);
        };
        for (Index l = 1; l < L_; ++l) {
            A_[l].noalias() = input(l).lazyProduct(arch_.W(th, l).transpose());
            A_[l].rowwise() += arch_.b(th, l).transpose();
            if (l < L_ - 1) activate(arch_.act(l), A_[l], H_[l]);
        }
        const auto logits = L_ > 1 ? Eigen::Ref<const RowMat>(A_[L_ - 1]) : Eigen::Ref<const RowMat>(A0_.topRows(m));
        softmax_cross_entropy(logits, yb_.head(m), P_, loss_.data());
        loss_sum_ += loss_.head(m).mean();
        ++batches_;
        // Batch-mean output error (P - Y) / m.
        RowMat& top = L_ > 1 ? Delta_[L_ - 1] : Delta0_;
        if (L_ > 1) top.resize(m, arch_.classes());
        top.topRows(m) = P_ / double(m);
        for (Index i = 0; i < m; ++i) top(i, yb_[i]) -= 1.0 / double(m);
        for (Index l = L_ - 1; l >= 1; --l) {
            MapRM(g_.data() + arch_.w_off[l], arch_.out(l), arch_.in(l)).noalias() =
                Delta_[l].transpose().lazyProduct(input(l));
            MapVec(g_.data() + arch_.b_off[l], arch_.out(l)) = Delta_[l].colwise().sum().transpose();
            // The error one layer down, with the weights from before this step.
            const auto Wl = arch_.W(th, l);
            if (l > 1) {
                activation_derivative(arch_.act(l - 1), A_[l - 1], H_[l - 1], Dact_[l - 1]);
                Delta_[l - 1].noalias() = Delta_[l].lazyProduct(Wl);
                Delta_[l - 1].array() *= Dact_[l - 1].array();
            } else {
                activation_derivative(arch_.act(0), A0_.topRows(m), H0_.topRows(m), Dact_[0]);
                Delta0_.topRows(m).noalias() = Delta_[1].lazyProduct(Wl);
                Delta0_.topRows(m).array() *= Dact_[0].array();
            }
        }
        for (Index j = arch_.b_off[0] + h0_; j < arch_.p; ++j)
            kernels::momentum_scalar(theta_ + j, vel_ + j, g_[j], lr_, mu_, l2_);
    }

    // Units [u0, u1) of the first layer: their step along Delta0(:, u)^T X.
    void step_first(int t, Index m, Index u0, Index u1) {
        kernels::outer_update_units(Delta0_.data(), h0_, Xb_[t].data(), d_, m, d_, u0, u1, theta_ + arch_.w_off[0],
                                    vel_ + arch_.w_off[0], theta_ + arch_.b_off[0], vel_ + arch_.b_off[0], lr_, mu_,
                                    l2_);
    }

    const Architecture& arch_;
    double *theta_, *vel_;
    const MatRef& X_;
    const LabelRef& y_;
    const std::vector<Index>& order_;
    const double lr_, mu_, l2_;
    const Index bs_, L_, d_, h0_;
    RowMat A0_, H0_, Delta0_;
    std::vector<RowMat> Xb_;
    IVec yb_;
    std::vector<RowMat> A_, H_, Delta_, Dact_;
    RowMat P_;
    Vec g_, loss_;
    double loss_sum_ = 0.0;
    Index batches_ = 0;
};

}  // namespace detail

// Returns the mean over batches of the minibatch loss before each step.
inline double sgd_epoch(const Architecture& arch, double* theta, double* velocity, const MatRef& X,
                        const LabelRef& y, const std::vector<Index>& order, double lr, double momentum,
                        Index batch_size, double l2) {
    const Index n = X.rows(), bs = std::min(batch_size, n);
    const int threads = detail::sgd_threads(arch, bs);
    detail::SgdEpoch epoch(arch, theta, velocity, X, y, order, lr, momentum, bs, l2, threads);
    // Chunks of 16 steps, each on the team unless a recent one fell back to
    // one thread (see TeamRetry). Results do not depend on the team.
    constexpr Index kSteps = 16;
    auto& retry = detail::team_retry();
    for (Index s = 0; s < n; s += kSteps * bs) {
        check_interrupt();
        const Index e = std::min(n, s + kSteps * bs);
        if (threads == 1 || retry.solo_now())
            epoch.run(s, e, 1);
        else if (epoch.run(s, e, threads))
            retry.succeeded();
        else
            retry.failed();
    }
    return epoch.mean_loss();
}

}  // namespace mlu
