// Hessian / GGN assembly and the Hessian-vector-product operator (with CG).
#include "bindings/common.hpp"
#include "hessian.hpp"
#include "solvers.hpp"

namespace mlu::bind {

namespace {

// Keeps the NumPy arrays alive for as long as the operator reads them.
struct PyHessianOperator {
    DArr theta, X;
    IArr y;
    std::unique_ptr<HessianOperator> op;

    PyHessianOperator(DArr theta_, const std::vector<Index>& sizes, const std::string& activation, DArr X_, IArr y_,
                      double l2, const std::string& curvature)
        : theta(std::move(theta_)), X(std::move(X_)), y(std::move(y_)) {
        Data d = bind_data(theta, sizes, activation, X, &y);
        Curvature c = parse_curvature(curvature);
        py::gil_scoped_release release;
        guarded("HessianOperator (its cached forward pass)", pass_bytes(d.arch, d.X.rows(), d.X.rows()), [&] {
            op = std::make_unique<HessianOperator>(d.arch, d.theta.data(), d.X.data(), d.y.data(), d.X.rows(), l2, c);
        });
    }

    py::array_t<double> matvec(const DArr& v) const {
        auto vv = vector_view(v, "v");
        require(vv.size() == op->size(),
                "v has " + std::to_string(vv.size()) + " entries, expected " + std::to_string(op->size()));
        Vec out(op->size());
        {
            py::gil_scoped_release release;
            guarded("HessianOperator.matvec", 8.0 * double(num_threads() + 2) * double(op->size()),
                    [&] { op->apply(vv.data(), out.data()); });
        }
        return to_numpy(std::move(out));
    }

    py::dict cg(const DArr& b, double damping, double tol, Index maxiter, bool true_residual) const {
        auto bv = vector_view(b, "b");
        require(bv.size() == op->size(),
                "b has " + std::to_string(bv.size()) + " entries, expected " + std::to_string(op->size()));
        require(tol > 0 && maxiter > 0, "cg needs tol > 0 and maxiter > 0");
        CGResult r;
        {
            py::gil_scoped_release release;
            guarded("HessianOperator.cg", 8.0 * double(num_threads() + 6) * double(op->size()),
                    [&] { r = conjugate_gradient(*op, bv, damping, tol, maxiter, true_residual); });
        }
        py::dict out;
        out["x"] = to_numpy(std::move(r.x));
        out["iterations"] = r.iterations;
        out["relative_residual"] = r.relative_residual;
        out["converged"] = r.converged;
        out["negative_curvature"] = r.negative_curvature;
        return out;
    }
};

}  // namespace

void bind_curvature(py::module_& m) {
    m.def(
        "hessian",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X, const IArr& y,
           double l2, const std::string& curvature) {
            Data d = bind_data(theta, sizes, act, X, &y);
            Curvature c = parse_curvature(curvature);
            auto H = empty_matrix(d.arch.p, d.arch.p);
            MapRM out(H.mutable_data(), d.arch.p, d.arch.p);
            {
                py::gil_scoped_release release;
                const double extra = 8.0 * double(d.arch.p) * double(d.arch.p) * (d.arch.num_layers() > 2 ? 1.0 : 0.1);
                guarded("hessian", pass_bytes(d.arch, d.X.rows(), d.X.rows(), extra),
                        [&] { assemble_hessian(d.arch, d.theta.data(), d.X, d.y, l2, c, out); });
            }
            return H;
        },
        MLU_MODEL_ARGS, py::arg("y"), py::arg("l2"), py::arg("curvature"),
        "Exact Hessian or GGN of the mean loss plus (l2/2)|theta|^2, shape (p, p).");

    py::class_<PyHessianOperator>(m, "HessianOperator",
                                  "Curvature-vector products at fixed (theta, X, y); the forward pass is cached.")
        .def(py::init<DArr, const std::vector<Index>&, const std::string&, DArr, IArr, double, const std::string&>(),
             py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("X"), py::arg("y"), py::arg("l2"),
             py::arg("curvature"))
        .def_property_readonly(
            "size", [](const PyHessianOperator& o) { return o.op->size(); }, "Dimension p.")
        .def("matvec", &PyHessianOperator::matvec, py::arg("v"), "H v, shape (p,).")
        .def("cg", &PyHessianOperator::cg, py::arg("b"), py::arg("damping"), py::arg("tol"), py::arg("maxiter"),
             py::arg("true_residual") = true,
             "Solve (H + damping I) x = b by conjugate gradients; returns a dict with x and diagnostics.");
}

}  // namespace mlu::bind
