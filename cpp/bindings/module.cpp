// The module body: one bind_<concern>(m) call per binding file.
#include "bindings/common.hpp"
#include "parallel.hpp"
#include "solvers.hpp"

namespace py = pybind11;
using namespace mlu;

// The same sources are built once per instruction set (CMakeLists.txt), each as
// its own module: MLU_MODULE is its name (_core_baseline, _core_x86_64_v3) and
// MLU_ISA the instruction set it was compiled for; mlu/_isa.py picks one.
#ifndef MLU_MODULE
#define MLU_MODULE _core
#endif
#ifndef MLU_ISA
#define MLU_ISA "unknown"
#endif

PYBIND11_MODULE(MLU_MODULE, m) {
    m.doc() = "mlu C++ core (Eigen): MLP forward/backward, Hessians, solvers. Private: use the mlu package.";
    m.attr("isa") = MLU_ISA;
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif

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
    bind::bind_cpu(m);
}
