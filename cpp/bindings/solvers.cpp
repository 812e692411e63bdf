// Dense factorizations and solves: Cholesky, eigendecomposition, pseudo-inverse; the one CG
// loop on an operator given from Python.
#include "solvers.hpp"

#include <optional>

#include "bindings/common.hpp"

namespace mlu::bind {

namespace {

// f(v) for a Python callable on a vector of size p: a fresh array in, a checked 1-D array of
// p floats out (a callable that keeps its argument cannot see the loop's buffers change).
Vec call_vector_fn(const py::function& f, const double* v, Index p, const char* what) {
    py::array_t<double> arg(p);
    std::copy(v, v + p, arg.mutable_data());
    py::object out = f(arg);
    DArr a = DArr::ensure(out);  // null (no error set) when out is no array of numbers
    require(a && a.ndim() == 1 && a.shape(0) == p,
            std::string(what) + " must return a 1-D array of " + std::to_string(p) + " floats");
    return Eigen::Map<const Vec>(a.data(), p);
}

py::dict cg_dict(CGResult&& r) {
    py::dict out;
    out["x"] = to_numpy(std::move(r.x));
    out["iterations"] = r.iterations;
    out["relative_residual"] = r.relative_residual;
    out["converged"] = r.converged;
    out["negative_curvature"] = r.negative_curvature;
    out["stopped"] = r.stopped;
    return out;
}

}  // namespace

void bind_solvers(py::module_& m) {
    m.def(
        "cholesky",
        [](const DArr& H, double damping) {
            auto Hv = matrix_view(H, "H");
            check_square(Hv.rows(), Hv.cols(), "H");
            const Index p = Hv.rows();
            py::array_t<double, py::array::f_style> L({p, p});
            Eigen::Map<ColMat> out(L.mutable_data(), p, p);
            {
                py::gil_scoped_release release;
                guarded("cholesky", 8.0 * double(p) * double(p), [&] { cholesky_factor(Hv, damping, out); });
            }
            return L;
        },
        py::arg("H"), py::arg("damping"),
        "Lower Cholesky factor L of H + damping I (Fortran order); raises NotPositiveDefiniteError.");

    m.def(
        "cholesky_solve",
        [](const FArr& L, const FArr& B) {
            require(L.ndim() == 2 && L.shape(0) == L.shape(1), "L must be square");
            require(B.ndim() == 2 && B.shape(0) == L.shape(0), "B must have as many rows as L");
            Eigen::Map<const ColMat> Lm(L.data(), L.shape(0), L.shape(1)), Bm(B.data(), B.shape(0), B.shape(1));
            ColMat X;
            {
                py::gil_scoped_release release;
                guarded("cholesky_solve", 8.0 * double(Bm.rows()) * double(Bm.cols()),
                        [&] { X = cholesky_solve(Lm, Bm); });
            }
            return to_numpy(std::move(X));
        },
        py::arg("L"), py::arg("B"), "Solve L L^T X = B, shape of B.");

    m.def(
        "eigh",
        [](const DArr& H) {
            auto Hv = matrix_view(H, "H");
            check_square(Hv.rows(), Hv.cols(), "H");
            Eigh e;
            {
                py::gil_scoped_release release;
                guarded("eigh", 3.0 * 8.0 * double(Hv.rows()) * double(Hv.rows()), [&] { e = symmetric_eig(Hv); });
            }
            return py::make_tuple(to_numpy(std::move(e.values)), to_numpy(std::move(e.vectors)));
        },
        py::arg("H"), "Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.");

    m.def(
        "eig_pinv_solve",
        [](const DArr& w, const FArr& U, const FArr& B, double damping, double rcond) {
            auto wv = vector_view(w, "w");
            require(U.ndim() == 2 && U.shape(0) == wv.size() && U.shape(1) == wv.size(), "U must be p x p");
            require(B.ndim() == 2 && B.shape(0) == wv.size(), "B must have p rows");
            Eigh e{wv, Eigen::Map<const ColMat>(U.data(), U.shape(0), U.shape(1))};
            Eigen::Map<const ColMat> Bm(B.data(), B.shape(0), B.shape(1));
            PinvResult r;
            {
                py::gil_scoped_release release;
                guarded("eig_pinv_solve", 2.0 * 8.0 * double(Bm.rows()) * double(Bm.cols()),
                        [&] { r = eig_pinv_solve(e, Bm, damping, rcond); });
            }
            return py::make_tuple(to_numpy(std::move(r.x)), r.dropped);
        },
        py::arg("w"), py::arg("U"), py::arg("B"), py::arg("damping"), py::arg("rcond"),
        "Thresholded pseudo-inverse solve (U diag(w + damping) U^T)^+ B; returns (X, number dropped).");

    // The loop's own work is O(p) per product; the products are Python calls (a dask map-reduce,
    // two core operators, a factored solve), so the GIL stays held and each call pays no
    // re-acquisition. check_interrupt() and the callables themselves answer Ctrl-C.
    m.def(
        "cg",
        [](const py::function& matvec, const DArr& b, double damping, double tol, Index maxiter, bool true_residual,
           const std::optional<DArr>& x0, const std::optional<py::function>& precondition, Index stop_every,
           const std::optional<py::function>& stop) {
            auto bv = vector_view(b, "b");
            const Index p = bv.size();
            require(tol > 0 && maxiter >= 0, "cg needs tol > 0 and maxiter >= 0 (0: x0 is returned)");
            require(stop_every >= 0, "cg needs stop_every >= 0");
            require(stop_every == 0 || stop.has_value(), "cg: stop_every > 0 needs a stop callable");
            Vec start;
            if (x0) {
                auto xv = vector_view(*x0, "x0");
                require(xv.size() == p,
                        "x0 has " + std::to_string(xv.size()) + " entries, expected " + std::to_string(p));
                start = xv;
            }
            auto apply = [&](const double* v, double* out) {
                Eigen::Map<Vec>(out, p) = call_vector_fn(matvec, v, p, "matvec");
            };
            auto pre = [&](const Vec& r, Vec& z) {
                if (precondition) {
                    z = call_vector_fn(*precondition, r.data(), p, "precondition");
                } else {
                    z = r;
                }
            };
            auto holds = [&](const Vec& x) {
                py::array_t<double> arg(p);
                std::copy(x.data(), x.data() + p, arg.mutable_data());
                return (*stop)(arg).cast<bool>();
            };
            return cg_dict(conjugate_gradient(p, apply, bv, damping, tol, maxiter, true_residual, x0 ? &start : nullptr,
                                              pre, stop_every, holds));
        },
        py::arg("matvec"), py::arg("b"), py::arg("damping"), py::arg("tol"), py::arg("maxiter"),
        py::arg("true_residual") = true, py::arg("x0") = py::none(), py::arg("precondition") = py::none(),
        py::arg("stop_every") = 0, py::arg("stop") = py::none(),
        "Solve (A + damping I) x = b by (preconditioned) conjugate gradients with A v = matvec(v), "
        "from x0 (or zero), z = precondition(r) ~ (A + damping I)^-1 r; every stop_every iterations "
        "stop early when stop(x) is true. Returns a dict: x, iterations, relative_residual, converged, "
        "negative_curvature, stopped.");
}

}  // namespace mlu::bind
