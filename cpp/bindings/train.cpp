// Training: seeded permutations and one SGD+momentum epoch.
#include "bindings/common.hpp"
#include "train.hpp"

namespace mlu::bind {

void bind_train(py::module_& m) {
    m.def(
        "permutation",
        [](Index n, std::uint64_t seed) {
            auto order = permutation(n, seed);
            return py::array_t<Index>(order.size(), order.data());
        },
        py::arg("n"), py::arg("seed"), "The platform-independent shuffle of range(n) that sgd_epoch uses.");

    m.def(
        "sgd_epoch",
        [](const DArr& theta, const DArr& velocity, const std::vector<Index>& sizes, const std::string& act,
           const DArr& X, const IArr& y, std::uint64_t seed, double lr, double momentum, Index batch_size,
           double l2) {
            Data d = bind_data(theta, sizes, act, X, &y);
            auto vel = vector_view(velocity, "velocity");
            require(vel.size() == d.arch.p, "velocity must have p entries");
            require(batch_size >= 1, "batch_size must be >= 1");
            Vec th, v;
            double mean_loss = 0.0;
            {
                py::gil_scoped_release release;
                const Index bs = std::min(batch_size, d.X.rows());
                const double state = 8.0 * (3.0 * double(d.arch.p) + double(num_threads() * bs) * double(d.arch.in(0)));
                guarded("sgd_epoch", pass_bytes(d.arch, bs, bs, state), [&] {
                    th = d.theta;  // the caller's arrays are never modified
                    v = vel;
                    auto order = permutation(d.X.rows(), seed);
                    mean_loss =
                        sgd_epoch(d.arch, th.data(), v.data(), d.X, d.y, order, lr, momentum, batch_size, l2);
                });
            }
            return py::make_tuple(to_numpy(std::move(th)), to_numpy(std::move(v)), mean_loss);
        },
        py::arg("theta"), py::arg("velocity"), py::arg("sizes"), py::arg("activation"), py::arg("X"), py::arg("y"),
        py::arg("seed"), py::arg("lr"), py::arg("momentum"), py::arg("batch_size"), py::arg("l2"),
        "One epoch of minibatch SGD with momentum; returns new (theta, velocity, mean loss). Inputs unchanged.");
}

}  // namespace mlu::bind
