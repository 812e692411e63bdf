// Dense factorizations and solves: Cholesky, eigendecomposition, pseudo-inverse.
#include "bindings/common.hpp"
#include "solvers.hpp"

namespace mlu::bind {

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
                guarded("cholesky_solve", 8.0 * double(Bm.rows()) * double(Bm.cols()), [&] { X = cholesky_solve(Lm, Bm); });
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
}

}  // namespace mlu::bind
