// mlu._cpu: the CPU check alone, built for the baseline ISA so that it loads on
// any CPU; python/mlu/_isa.py asks it which build of the core to load.
#include "bindings/common.hpp"

PYBIND11_MODULE(_cpu, m) {
    m.doc() = "Which instruction sets this CPU runs (cpuid). Private: used by mlu._isa.";
    mlu::bind::bind_cpu(m);
}
