// Solvers for (H + damping I) x = b: Cholesky, an eigendecomposition with a
// thresholded pseudo-inverse, and conjugate gradients on Hessian-vector
// products (never forming H).
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <stdexcept>
#include <string>

#include "hvp.hpp"

namespace mlu {

struct NotPositiveDefinite : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using ColMat = Eigen::MatrixXd;

// In-place lower Cholesky factor of a symmetric positive definite A (only the
// lower triangle is read and written). Right-looking and blocked like Eigen's
// LLT, but the two O(p^3) parts of every step run on all threads: the panel
// solve A21 <- A21 L11^{-T} in blocks of rows, and the trailing update
// A22 -= A21 A21^T (lower triangle) in column panels. Returns false if A is
// not positive definite.
inline bool cholesky_inplace(Eigen::Ref<ColMat> A) {
    const Index p = A.rows(), nb = 256, panel = 128, rows = 256;
    for (Index k = 0; k < p; k += nb) {
        const Index b = std::min(nb, p - k), rest = p - k - b;
        auto A11 = A.block(k, k, b, b);
        Eigen::LLT<Eigen::Ref<ColMat>, Eigen::Lower> diag(A11);  // in place
        if (diag.info() != Eigen::Success) return false;
        if (rest == 0) break;
        const auto L11 = A11.triangularView<Eigen::Lower>();
        auto A21 = A.block(k + b, k, rest, b);
        auto A22 = A.block(k + b, k + b, rest, rest);
        check_interrupt();
        RegionErrors errors;
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (Index r0 = 0; r0 < rest; r0 += rows)
                errors.run([&] {
                    auto block = A21.middleRows(r0, std::min(rows, rest - r0));
                    L11.transpose().solveInPlace<Eigen::OnTheRight>(block);
                });
#pragma omp for schedule(dynamic, 1)
            for (Index j0 = 0; j0 < rest; j0 += panel)
                errors.run([&] {
                    const Index w = std::min(panel, rest - j0), below = rest - j0 - w;
                    const auto Aj = A21.middleRows(j0, w);
                    A22.block(j0, j0, w, w).triangularView<Eigen::Lower>() -= Aj * Aj.transpose();
                    if (below > 0) A22.block(j0 + w, j0, below, w).noalias() -= A21.bottomRows(below) * Aj.transpose();
                });
        }
        errors.rethrow();
    }
    return true;
}

// L <- the lower Cholesky factor of H + damping I (H symmetric p x p, L a
// p x p column-major buffer; its strictly upper part is zeroed).
inline void cholesky_factor(const MatRef& H, double damping, Eigen::Ref<ColMat> L) {
    L = H.transpose();  // H is symmetric: the transposed view copies in memory order
    L.diagonal().array() += damping;
    if (!cholesky_inplace(L)) {
        throw NotPositiveDefinite("H + damping*I is not positive definite (damping = " + std::to_string(damping) +
                                  "): the Hessian of a non-convex network is indefinite away from a strict minimum. "
                                  "Raise damping, use curvature='ggn' (positive semi-definite), or solver='eigh'.");
    }
    L.triangularView<Eigen::StrictlyUpper>().setZero();
}

// x = (L L^T)^{-1} B for a lower factor L; B is p x m.
inline ColMat cholesky_solve(const Eigen::Ref<const ColMat>& L, const Eigen::Ref<const ColMat>& B) {
    ColMat X = L.triangularView<Eigen::Lower>().solve(B);
    L.triangularView<Eigen::Lower>().transpose().solveInPlace(X);
    return X;
}

struct Eigh {
    Vec values;      // ascending
    ColMat vectors;  // columns
};

inline Eigh symmetric_eig(const MatRef& H) {
    Eigen::SelfAdjointEigenSolver<ColMat> es(ColMat(H), Eigen::ComputeEigenvectors);
    if (es.info() != Eigen::Success) throw std::runtime_error("eigendecomposition did not converge");
    return {es.eigenvalues(), es.eigenvectors()};
}

// x = sum over kept eigenpairs of u (u^T b) / (lambda + damping); pairs with
// lambda + damping <= rcond * max|lambda + damping| are dropped (pinv).
struct PinvResult {
    ColMat x;
    Index dropped;
};

inline PinvResult eig_pinv_solve(const Eigh& e, const ColMat& B, double damping, double rcond) {
    Vec shifted = e.values.array() + damping;
    const double cutoff = rcond * shifted.cwiseAbs().maxCoeff();
    Vec inv(shifted.size());
    Index dropped = 0;
    for (Index i = 0; i < shifted.size(); ++i) {
        if (shifted[i] > cutoff) {
            inv[i] = 1.0 / shifted[i];
        } else {
            inv[i] = 0.0;
            ++dropped;
        }
    }
    ColMat coeff = e.vectors.transpose() * B;
    coeff = inv.asDiagonal() * coeff;
    return {e.vectors * coeff, dropped};
}

struct CGResult {
    Vec x;
    Index iterations = 0;
    double relative_residual = 0.0;
    bool converged = false;
    bool negative_curvature = false;
    bool stopped = false;  // the caller's `stop` held at an iterate (see below)
};

// The one conjugate-gradient loop of mlu (docs/design.md, "Solvers"): every CG, on the core's
// operator, on a dask operator or preconditioned by a factored curvature, runs this.
// Solves (A + damping I) x = b with A given by `apply(v, Av)` (v, Av of size p), from x0 (or
// zero), preconditioned by `precondition(r, z)` (z ≈ (A + damping I)⁻¹ r; `identity`: none).
// Stops at |r| <= tol |b|, after maxiter products, when a direction of non-positive curvature
// is met (the iterate is returned and the flag set), or, every `stop_every` iterations, when
// `stop(x)` holds. true_residual: report |b - (A + damping I) x| / |b| from one more product;
// otherwise the recursively updated residual (a truncated solve of a few products saves one).
struct NoPreconditioner {
    void operator()(const Vec& r, Vec& z) const { z = r; }
};
struct NeverStop {
    bool operator()(const Vec&) const { return false; }
};

template <class Apply, class Precondition = NoPreconditioner, class Stop = NeverStop>
CGResult conjugate_gradient(Index p, Apply&& apply, const VecRef& b, double damping, double tol, Index maxiter,
                            bool true_residual = true, const Vec* x0 = nullptr,
                            Precondition&& precondition = NoPreconditioner{}, Index stop_every = 0,
                            Stop&& stop = NeverStop{}) {
    CGResult res;
    const double bnorm = b.norm();
    if (bnorm == 0.0) {  // x = 0 solves it exactly, whatever the start
        res.x = Vec::Zero(p);
        res.converged = true;
        return res;
    }
    res.x = x0 ? *x0 : Vec::Zero(p);
    Vec r = b, Ad(p), z(p);
    if (x0) {
        apply(res.x.data(), Ad.data());
        Ad += damping * res.x;
        r -= Ad;
    }
    double rnorm = r.norm();
    if (rnorm <= tol * bnorm) {
        res.converged = true;
        res.relative_residual = bnorm > 0.0 ? rnorm / bnorm : 0.0;
        return res;
    }
    precondition(r, z);
    Vec d = z;
    double rz = r.dot(z);
    while (res.iterations < maxiter) {
        check_interrupt();
        apply(d.data(), Ad.data());
        Ad += damping * d;
        const double curv = d.dot(Ad);
        ++res.iterations;
        if (!(curv > 0.0)) {
            res.negative_curvature = true;
            break;
        }
        const double alpha = rz / curv;
        res.x += alpha * d;
        r -= alpha * Ad;
        rnorm = r.norm();
        if (rnorm <= tol * bnorm) {
            res.converged = true;
            break;
        }
        if (stop_every > 0 && res.iterations % stop_every == 0 && stop(res.x)) {
            res.stopped = true;
            break;
        }
        precondition(r, z);
        const double rz_new = r.dot(z);
        d = z + (rz_new / rz) * d;
        rz = rz_new;
    }
    if (!true_residual) {
        res.relative_residual = rnorm / bnorm;
        return res;
    }
    // Report the true residual of the returned x, not the recursively updated one.
    Vec Ax(p);
    apply(res.x.data(), Ax.data());
    Ax += damping * res.x;
    res.relative_residual = (b - Ax).norm() / bnorm;
    return res;
}

// CG on the core's curvature operator.
inline CGResult conjugate_gradient(const HessianOperator& op, const VecRef& b, double damping, double tol,
                                   Index maxiter, bool true_residual = true) {
    return conjugate_gradient(
        op.size(), [&op](const double* v, double* out) { op.apply(v, out); }, b, damping, tol, maxiter, true_residual);
}

}  // namespace mlu
