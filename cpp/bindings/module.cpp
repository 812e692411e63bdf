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
    py::register_exception<bind::OutOfMemory>(m, "CoreMemoryError", PyExc_MemoryError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Interrupted&) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
        } catch (const std::bad_alloc&) {  // outside a guarded call: still MemoryError, with a hint
            PyErr_SetString(PyExc_MemoryError, "out of memory in the mlu core (a failed allocation)");
        }
    });
    // Long loops ask Python, every ~100 ms, whether Ctrl-C (or another signal) is pending.
    set_interrupt_hook([]() -> bool {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() == 0) return false;
        PyErr_Clear();  // re-raised as KeyboardInterrupt by the translator above
        return true;
    });

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
