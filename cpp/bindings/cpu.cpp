// Bindings of cpu.hpp: what this CPU can run. Also the body of the tiny _cpu
// module (cpu_module.cpp), which is always built for the baseline ISA.
#include "cpu.hpp"

#include "bindings/common.hpp"

namespace mlu::bind {

void bind_cpu(py::module_& m) {
    m.def("x86_64_level", &x86_64_level,
          "The x86-64 micro-architecture level this CPU (and OS) runs, by cpuid: 1 = x86-64, "
          "2 = x86-64-v2, 3 = x86-64-v3 (AVX2, FMA, ...) or higher; 0 on other architectures.");
    m.def("cpu_features", &cpu_features,
          "The cpuid features that decide x86_64_level, by name (empty on other architectures).");
}

}  // namespace mlu::bind
