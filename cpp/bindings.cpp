// pybind11 bindings of the C++ core: argument conversion, checks and GIL
// release only; the math lives in the headers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "checks.hpp"
#include "hessian.hpp"
#include "influence.hpp"
#include "objective.hpp"
#include "solvers.hpp"
#include "train.hpp"

namespace py = pybind11;
using namespace mlu;

namespace {

// C-contiguous float64 / int64; other dtypes and layouts are converted (copied).
using DArr = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IArr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

template <class M>
py::array_t<double> to_numpy(M&& mat) {
    using Plain = std::decay_t<M>;
    auto* heap = new Plain(std::forward<M>(mat));
    py::capsule owner(heap, [](void* ptr) { delete static_cast<Plain*>(ptr); });
    if constexpr (Plain::ColsAtCompileTime == 1) {
        return py::array_t<double>({heap->size()}, {sizeof(double)}, heap->data(), owner);
    } else if constexpr (Plain::IsRowMajor) {
        return py::array_t<double>({heap->rows(), heap->cols()},
                                   {heap->cols() * Index(sizeof(double)), Index(sizeof(double))}, heap->data(),
                                   owner);
    } else {
        return py::array_t<double>({heap->rows(), heap->cols()},
                                   {Index(sizeof(double)), heap->rows() * Index(sizeof(double))}, heap->data(),
                                   owner);
    }
}

// Large results are allocated by NumPy and filled in place: its allocator asks
// the kernel for transparent huge pages, which makes the first touch of a
// multi-GB array ~3x cheaper than 4 KB page faults (the core's own malloc).
py::array_t<double> empty_matrix(Index rows, Index cols) { return py::array_t<double>({rows, cols}); }

Architecture make_arch(const std::vector<Index>& sizes, const std::string& activation) {
    return Architecture(sizes, parse_activation(activation));
}

CMapRM matrix_view(const DArr& a, const char* name) {
    require(a.ndim() == 2, std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
    return CMapRM(a.data(), a.shape(0), a.shape(1));
}

CMapVec vector_view(const DArr& a, const char* name) {
    require(a.ndim() == 1, std::string(name) + " must be 1-D, got " + std::to_string(a.ndim()) + "-D");
    return CMapVec(a.data(), a.shape(0));
}

struct Data {
    Architecture arch;
    CMapVec theta;
    CMapRM X;
    Eigen::Map<const IVec> y;
};

Data bind_data(const DArr& theta, const std::vector<Index>& sizes, const std::string& activation, const DArr& X,
               const IArr* y) {
    Architecture arch = make_arch(sizes, activation);
    auto th = vector_view(theta, "theta");
    check_theta(arch, th.size());
    auto Xv = matrix_view(X, "X");
    check_X(arch, Xv.rows(), Xv.cols());
    const std::int64_t* yp = nullptr;
    if (y) {
        require(y->ndim() == 1, "y must be 1-D");
        check_y(arch, Xv.rows(), y->shape(0), y->data());
        yp = y->data();
    }
    return {std::move(arch), th, Xv, Eigen::Map<const IVec>(yp, yp ? Xv.rows() : 0)};
}

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
        op = std::make_unique<HessianOperator>(d.arch, d.theta.data(), d.X.data(), d.y.data(), d.X.rows(), l2, c);
    }

    py::array_t<double> matvec(const DArr& v) const {
        auto vv = vector_view(v, "v");
        require(vv.size() == op->size(), "v has " + std::to_string(vv.size()) + " entries, expected " +
                                             std::to_string(op->size()));
        Vec out(op->size());
        {
            py::gil_scoped_release release;
            op->apply(vv.data(), out.data());
        }
        return to_numpy(std::move(out));
    }

    py::dict cg(const DArr& b, double damping, double tol, Index maxiter) const {
        auto bv = vector_view(b, "b");
        require(bv.size() == op->size(), "b has " + std::to_string(bv.size()) + " entries, expected " +
                                             std::to_string(op->size()));
        require(tol > 0 && maxiter > 0, "cg needs tol > 0 and maxiter > 0");
        CGResult r;
        {
            py::gil_scoped_release release;
            r = conjugate_gradient(*op, bv, damping, tol, maxiter);
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

PYBIND11_MODULE(_core, m) {
    m.doc() = "mlu C++ core (Eigen): MLP forward/backward, Hessians, solvers. Private: use the mlu package.";

    py::register_exception<NotPositiveDefinite>(m, "NotPositiveDefiniteError",
                                                py::module_::import("numpy.linalg").attr("LinAlgError"));

    m.def("get_num_threads", &num_threads);
    m.def("set_num_threads", [](int t) {
        require(t >= 1, "number of threads must be >= 1");
        omp_set_num_threads(t);
        Eigen::setNbThreads(t);
    });
    m.def("num_params", [](const std::vector<Index>& sizes) { return Architecture(sizes, Activation::ReLU).p; });

    m.def("logits", [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
        Data d = bind_data(theta, sizes, act, X, nullptr);
        RowMat Z;
        {
            py::gil_scoped_release release;
            logits(d.arch, d.theta.data(), d.X, Z);
        }
        return to_numpy(std::move(Z));
    });

    m.def("hidden_features",
          [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
              // Input of the last layer: the features that params='last' works on.
              Data d = bind_data(theta, sizes, act, X, nullptr);
              RowMat F;
              {
                  py::gil_scoped_release release;
                  const Index L = d.arch.num_layers();
                  F.resize(d.X.rows(), d.arch.in(L - 1));
                  parallel_for_chunks(d.X.rows(), kChunk, [&](Index s, Index e) {
                      Activations f;
                      forward(d.arch, d.theta.data(), d.X.middleRows(s, e - s), f);
                      F.middleRows(s, e - s) = L == 1 ? RowMat(d.X.middleRows(s, e - s)) : f.H[L - 2];
                  });
              }
              return to_numpy(std::move(F));
          });

    m.def("losses", [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
                       const IArr& y) {
        Data d = bind_data(theta, sizes, act, X, &y);
        Vec out;
        {
            py::gil_scoped_release release;
            losses(d.arch, d.theta.data(), d.X, d.y, out);
        }
        return to_numpy(std::move(out));
    });

    m.def("gradient", [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
                         const IArr& y, double l2) {
        Data d = bind_data(theta, sizes, act, X, &y);
        Vec g;
        double loss = 0.0;
        {
            py::gil_scoped_release release;
            g = mean_gradient(d.arch, d.theta.data(), d.X, d.y, l2, &loss);
        }
        return py::make_tuple(to_numpy(std::move(g)), loss);
    });

    m.def("per_sample_gradients", [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act,
                                     const DArr& X, const IArr& y) {
        Data d = bind_data(theta, sizes, act, X, &y);
        auto G = empty_matrix(d.X.rows(), d.arch.p);
        double* out = G.mutable_data();
        {
            py::gil_scoped_release release;
            per_sample_gradients(d.arch, d.theta.data(), d.X, d.y, out);
        }
        return G;
    });

    m.def("hessian", [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
                        const IArr& y, double l2, const std::string& curvature) {
        Data d = bind_data(theta, sizes, act, X, &y);
        Curvature c = parse_curvature(curvature);
        auto H = empty_matrix(d.arch.p, d.arch.p);
        MapRM out(H.mutable_data(), d.arch.p, d.arch.p);
        {
            py::gil_scoped_release release;
            assemble_hessian(d.arch, d.theta.data(), d.X, d.y, l2, c, out);
        }
        return H;
    });

    py::class_<PyHessianOperator>(m, "HessianOperator")
        .def(py::init<DArr, const std::vector<Index>&, const std::string&, DArr, IArr, double, const std::string&>(),
             py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("X"), py::arg("y"), py::arg("l2"),
             py::arg("curvature"))
        .def_property_readonly("size", [](const PyHessianOperator& o) { return o.op->size(); })
        .def("matvec", &PyHessianOperator::matvec)
        .def("cg", &PyHessianOperator::cg, py::arg("b"), py::arg("damping"), py::arg("tol"), py::arg("maxiter"));

    m.def("cholesky", [](const DArr& H, double damping) {
        auto Hv = matrix_view(H, "H");
        check_square(Hv.rows(), Hv.cols(), "H");
        const Index p = Hv.rows();
        py::array_t<double, py::array::f_style> L({p, p});
        Eigen::Map<ColMat> out(L.mutable_data(), p, p);
        {
            py::gil_scoped_release release;
            cholesky_factor(Hv, damping, out);
        }
        return L;
    });

    m.def("cholesky_solve", [](const py::array_t<double, py::array::f_style | py::array::forcecast>& L,
                               const py::array_t<double, py::array::f_style | py::array::forcecast>& B) {
        require(L.ndim() == 2 && L.shape(0) == L.shape(1), "L must be square");
        require(B.ndim() == 2 && B.shape(0) == L.shape(0), "B must have as many rows as L");
        Eigen::Map<const ColMat> Lm(L.data(), L.shape(0), L.shape(1)), Bm(B.data(), B.shape(0), B.shape(1));
        ColMat X;
        {
            py::gil_scoped_release release;
            X = cholesky_solve(Lm, Bm);
        }
        return to_numpy(std::move(X));
    });

    m.def("eigh", [](const DArr& H) {
        auto Hv = matrix_view(H, "H");
        check_square(Hv.rows(), Hv.cols(), "H");
        Eigh e;
        {
            py::gil_scoped_release release;
            e = symmetric_eig(Hv);
        }
        return py::make_tuple(to_numpy(std::move(e.values)), to_numpy(std::move(e.vectors)));
    });

    m.def("eig_pinv_solve", [](const DArr& w, const py::array_t<double, py::array::f_style | py::array::forcecast>& U,
                               const py::array_t<double, py::array::f_style | py::array::forcecast>& B,
                               double damping, double rcond) {
        auto wv = vector_view(w, "w");
        require(U.ndim() == 2 && U.shape(0) == wv.size() && U.shape(1) == wv.size(), "U must be p x p");
        require(B.ndim() == 2 && B.shape(0) == wv.size(), "B must have p rows");
        Eigh e{wv, Eigen::Map<const ColMat>(U.data(), U.shape(0), U.shape(1))};
        Eigen::Map<const ColMat> Bm(B.data(), B.shape(0), B.shape(1));
        PinvResult r;
        {
            py::gil_scoped_release release;
            r = eig_pinv_solve(e, Bm, damping, rcond);
        }
        return py::make_tuple(to_numpy(std::move(r.x)), r.dropped);
    });

    m.def("self_influence",
          [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X, const IArr& y,
             const py::array_t<double, py::array::f_style | py::array::forcecast>& M, const std::string& form) {
              Data d = bind_data(theta, sizes, act, X, &y);
              require(M.ndim() == 2 && M.shape(0) == d.arch.p, "M must have p rows");
              require(form == "cholesky" || form == "projection", "form must be 'cholesky' or 'projection'");
              const QuadraticForm qf = form == "cholesky" ? QuadraticForm::CholeskyFactor : QuadraticForm::Projection;
              if (qf == QuadraticForm::CholeskyFactor) require(M.shape(1) == d.arch.p, "L must be p x p");
              Eigen::Map<const ColMat> Mm(M.data(), M.shape(0), M.shape(1));
              Vec s;
              {
                  py::gil_scoped_release release;
                  s = self_influence(d.arch, d.theta.data(), d.X, d.y, Mm, qf);
              }
              return to_numpy(std::move(s));
          });

    m.def("permutation", [](Index n, std::uint64_t seed) {
        auto order = permutation(n, seed);
        return py::array_t<Index>(order.size(), order.data());
    });

    m.def("sgd_epoch", [](const DArr& theta, const DArr& velocity, const std::vector<Index>& sizes,
                          const std::string& act, const DArr& X, const IArr& y, std::uint64_t seed, double lr,
                          double momentum, Index batch_size, double l2) {
        Data d = bind_data(theta, sizes, act, X, &y);
        auto vel = vector_view(velocity, "velocity");
        require(vel.size() == d.arch.p, "velocity must have p entries");
        require(batch_size >= 1, "batch_size must be >= 1");
        Vec th = d.theta, v = vel;  // the caller's arrays are never modified
        double mean_loss = 0.0;
        {
            py::gil_scoped_release release;
            auto order = permutation(d.X.rows(), seed);
            mean_loss = sgd_epoch(d.arch, th.data(), v.data(), d.X, d.y, order, lr, momentum, batch_size, l2);
        }
        return py::make_tuple(to_numpy(std::move(th)), to_numpy(std::move(v)), mean_loss);
    });
}
