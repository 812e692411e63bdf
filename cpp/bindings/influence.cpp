// Self-influence scores from a factored inverse curvature.
#include "bindings/common.hpp"
#include "influence.hpp"

namespace mlu::bind {

void bind_influence(py::module_& m) {
    m.def(
        "self_influence",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X, const IArr& y,
           const FArr& M, const std::string& form) {
            Data d = bind_data(theta, sizes, act, X, &y);
            require(M.ndim() == 2 && M.shape(0) == d.arch.p, "M must have p rows");
            require(form == "cholesky" || form == "projection", "form must be 'cholesky' or 'projection'");
            const QuadraticForm qf = form == "cholesky" ? QuadraticForm::CholeskyFactor : QuadraticForm::Projection;
            if (qf == QuadraticForm::CholeskyFactor) require(M.shape(1) == d.arch.p, "L must be p x p");
            Eigen::Map<const ColMat> Mm(M.data(), M.shape(0), M.shape(1));
            Vec s;
            {
                py::gil_scoped_release release;
                const double blocks = 2.0 * 8.0 * 256.0 * double(num_threads()) * double(std::max(Mm.rows(), Mm.cols()));
                guarded("self_influence", pass_bytes(d.arch, d.X.rows(), 256, blocks),
                        [&] { s = self_influence(d.arch, d.theta.data(), d.X, d.y, Mm, qf); });
            }
            return to_numpy(std::move(s));
        },
        MLU_MODEL_ARGS, py::arg("y"), py::arg("M"), py::arg("form"),
        "Self-influence g_i^T A g_i per sample, A given by a Cholesky factor or a projection; shape (n,).");
}

}  // namespace mlu::bind
