// Shared by the binding files: array types, NumPy <-> Eigen conversion and the
// boundary checks that turn (theta, sizes, activation, X, y) into checked views.
// No math here.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "checks.hpp"
#include "parallel.hpp"

namespace mlu::bind {

namespace py = pybind11;

// C-contiguous float64 / int64; other dtypes and layouts are converted (copied).
using DArr = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IArr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using FArr = py::array_t<double, py::array::f_style | py::array::forcecast>;

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
inline py::array_t<double> empty_matrix(Index rows, Index cols) { return py::array_t<double>({rows, cols}); }

// activation: one name for every hidden layer ("tanh"), or one per hidden layer from the
// input up, comma-separated ("tanh,relu").
inline Architecture make_arch(const std::vector<Index>& sizes, const std::string& activation) {
    return Architecture(sizes, parse_activations(activation));
}

inline CMapRM matrix_view(const DArr& a, const char* name) {
    require(a.ndim() == 2, std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
    return CMapRM(a.data(), a.shape(0), a.shape(1));
}

inline CMapVec vector_view(const DArr& a, const char* name) {
    require(a.ndim() == 1, std::string(name) + " must be 1-D, got " + std::to_string(a.ndim()) + "-D");
    return CMapVec(a.data(), a.shape(0));
}

struct Data {
    Architecture arch;
    CMapVec theta;
    CMapRM X;
    Eigen::Map<const IVec> y;
};

inline Data bind_data(const DArr& theta, const std::vector<Index>& sizes, const std::string& activation,
                      const DArr& X, const IArr* y) {
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

// A failed allocation in the core, as Python's MemoryError (module.cpp registers
// it) naming the operation and roughly how much memory it needed.
struct OutOfMemory : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline std::string gib(double bytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(Index(1) << 30));
    return buf;
}

// Working memory of a chunked pass over n samples: per thread, the activations,
// errors and gradient rows of one chunk (about three values per unit), plus
// `extra` bytes (the result). An estimate for messages, not a bound.
inline double pass_bytes(const Architecture& arch, Index n, Index chunk, double extra = 0.0) {
    double width = 0.0;
    for (Index s : arch.sizes) width += double(s);
    const double rows = double(std::min(n, chunk)) * double(std::min<Index>(num_threads(), (n + chunk - 1) / chunk));
    return 3.0 * 8.0 * rows * width + extra;
}

// Runs the core's work; std::bad_alloc (from any thread: the parallel loops
// rethrow on the calling thread) becomes OutOfMemory naming `what` and `bytes`.
template <class Fn>
decltype(auto) guarded(const std::string& what, double bytes, Fn&& fn) {
    try {
        return fn();
    } catch (const std::bad_alloc&) {
        throw OutOfMemory("out of memory in " + what + ": it needs about " + gib(bytes) +
                          " of working memory and the allocation failed. Use fewer samples per call, "
                          "a smaller model, or free memory.");
    }
}

// The argument names shared by every model-level binding.
#define MLU_MODEL_ARGS py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("X")

// One function per binding file, called from the module body (module.cpp).
void bind_model(py::module_& m);
void bind_curvature(py::module_& m);
void bind_solvers(py::module_& m);
void bind_influence(py::module_& m);
void bind_train(py::module_& m);
void bind_unlearner(py::module_& m);
void bind_cpu(py::module_& m);

}  // namespace mlu::bind
