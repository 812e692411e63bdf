// Forward pass, per-sample losses and gradients.
#include "bindings/common.hpp"
#include "objective.hpp"

namespace mlu::bind {

void bind_model(py::module_& m) {
    m.def(
        "num_params", [](const std::vector<Index>& sizes) { return Architecture(sizes, Activation::ReLU).p; },
        py::arg("sizes"), "Number of parameters p of an MLP with layer sizes (d, h1, ..., k).");

    m.def(
        "logits",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
            Data d = bind_data(theta, sizes, act, X, nullptr);
            RowMat Z;
            {
                py::gil_scoped_release release;
                guarded("logits", pass_bytes(d.arch, d.X.rows(), kChunk), [&] { logits(d.arch, d.theta.data(), d.X, Z); });
            }
            return to_numpy(std::move(Z));
        },
        MLU_MODEL_ARGS, "Logits, shape (n, k).");

    m.def(
        "hidden_features",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
            Data d = bind_data(theta, sizes, act, X, nullptr);
            RowMat F;
            {
                py::gil_scoped_release release;
                const Index L = d.arch.num_layers();
                const double out_bytes = 8.0 * double(d.X.rows()) * double(d.arch.in(L - 1));
                guarded("hidden_features", pass_bytes(d.arch, d.X.rows(), kChunk, out_bytes), [&] {
                    F.resize(d.X.rows(), d.arch.in(L - 1));
                    parallel_for_chunks(d.X.rows(), kChunk, [&](Index s, Index e) {
                        Activations f;
                        forward(d.arch, d.theta.data(), d.X.middleRows(s, e - s), f);
                        F.middleRows(s, e - s) = L == 1 ? RowMat(d.X.middleRows(s, e - s)) : f.H[L - 2];
                    });
                });
            }
            return to_numpy(std::move(F));
        },
        MLU_MODEL_ARGS, "Input of the last layer (the features params='last' works on), shape (n, h_last).");

    m.def(
        "losses",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
           const IArr& y) {
            Data d = bind_data(theta, sizes, act, X, &y);
            Vec out;
            {
                py::gil_scoped_release release;
                guarded("losses", pass_bytes(d.arch, d.X.rows(), kChunk),
                        [&] { losses(d.arch, d.theta.data(), d.X, d.y, out); });
            }
            return to_numpy(std::move(out));
        },
        MLU_MODEL_ARGS, py::arg("y"), "Per-sample cross-entropy losses, shape (n,).");

    m.def(
        "gradient",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X, const IArr& y,
           double l2) {
            Data d = bind_data(theta, sizes, act, X, &y);
            Vec g;
            double loss = 0.0;
            {
                py::gil_scoped_release release;
                const double acc = 8.0 * double(num_threads() + 2) * double(d.arch.p);
                guarded("gradient", pass_bytes(d.arch, d.X.rows(), kChunk, acc),
                        [&] { g = mean_gradient(d.arch, d.theta.data(), d.X, d.y, l2, &loss); });
            }
            return py::make_tuple(to_numpy(std::move(g)), loss);
        },
        MLU_MODEL_ARGS, py::arg("y"), py::arg("l2"),
        "Gradient of the mean loss plus (l2/2)|theta|^2, shape (p,), and that objective's value.");

    m.def(
        "per_sample_gradients",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
           const IArr& y) {
            Data d = bind_data(theta, sizes, act, X, &y);
            auto G = empty_matrix(d.X.rows(), d.arch.p);
            double* out = G.mutable_data();
            {
                py::gil_scoped_release release;
                guarded("per_sample_gradients", pass_bytes(d.arch, d.X.rows(), 256),
                        [&] { per_sample_gradients(d.arch, d.theta.data(), d.X, d.y, out); });
            }
            return G;
        },
        MLU_MODEL_ARGS, py::arg("y"), "Per-sample loss gradients (no l2 term), shape (n, p).");
}

}  // namespace mlu::bind
