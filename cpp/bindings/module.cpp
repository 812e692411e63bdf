// The module body: one bind_<concern>(m) call per binding file.
#include "bindings/common.hpp"
#include "parallel.hpp"
#include "solvers.hpp"

namespace py = pybind11;
using namespace mlu;

PYBIND11_MODULE(_core, m) {
    m.doc() = "mlu C++ core (Eigen): MLP forward/backward, Hessians, solvers. Private: use the mlu package.";

    py::register_exception<NotPositiveDefinite>(m, "NotPositiveDefiniteError",
                                                py::module_::import("numpy.linalg").attr("LinAlgError"));

    m.def("get_num_threads", &num_threads, "Number of threads the core's parallel loops use.");
    m.def(
        "set_num_threads",
        [](int t) {
            require(t >= 1, "number of threads must be >= 1");
            omp_set_num_threads(t);
            Eigen::setNbThreads(t);
        },
        py::arg("n"), "Set the number of threads of the core's parallel loops (and Eigen's).");

    bind::bind_model(m);
    bind::bind_curvature(m);
    bind::bind_solvers(m);
    bind::bind_influence(m);
    bind::bind_train(m);
    bind::bind_unlearner(m);
}
