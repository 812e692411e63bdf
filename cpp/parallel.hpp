// Splitting work over samples between threads (OpenMP when the compiler has it,
// else serially: see the shim below). Reductions use one
// accumulator per thread, summed at the end, so results do not depend on the
// order in which chunks finish... up to floating-point summation order, which
// is fixed for a given thread count because the static schedule is used.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#else
// Built without OpenMP (e.g. Apple clang without libomp): one thread. The
// `#pragma omp` lines are then ignored and every loop runs serially, with the
// same static chunks as a one-thread OpenMP run, so results are identical.
inline int omp_get_max_threads() { return 1; }
inline int omp_get_num_threads() { return 1; }
inline int omp_get_thread_num() { return 0; }
inline int omp_in_parallel() { return 0; }
inline void omp_set_num_threads(int) {}
#endif

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

#include "interrupt.hpp"
#include "types.hpp"

namespace mlu {

inline int num_threads() { return omp_get_max_threads(); }

// An exception must not leave an OpenMP region (the process would abort). Run
// each iteration's body through run(): the first exception of any thread is
// kept, later iterations are skipped, and rethrow() raises it after the region.
class RegionErrors {
  public:
    template <class Fn>
    void run(Fn&& fn) noexcept {
        if (failed_.load(std::memory_order_relaxed)) return;
        try {
            fn();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
    }
    bool failed() const { return failed_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

  private:
    std::atomic<bool> failed_{false};
    std::mutex mutex_;
    std::exception_ptr error_;
};

// Contiguous [begin, end) sample ranges, at most `max_chunk` long, at least
// one per thread when there is enough work.
inline std::vector<std::pair<Index, Index>> sample_chunks(Index n, Index max_chunk, Index min_chunk = 32) {
    const Index threads = num_threads();
    Index chunk = (n + threads - 1) / std::max<Index>(threads, 1);
    chunk = std::clamp(chunk, std::min(min_chunk, std::max<Index>(n, 1)), max_chunk);
    std::vector<std::pair<Index, Index>> out;
    for (Index s = 0; s < n; s += chunk) out.emplace_back(s, std::min(n, s + chunk));
    return out;
}

// Run fn(begin, end, thread_id) over chunks in parallel, then sum the
// per-thread vectors (each of length m) into one.
template <class Fn>
Vec parallel_sum(Index n, Index m, Index max_chunk, Fn fn) {
    auto chunks = sample_chunks(n, max_chunk);
    const int threads = num_threads();
    std::vector<Vec> partial(threads, Vec::Zero(m));
    RegionErrors errors;
#pragma omp parallel for schedule(static)
    for (Index c = 0; c < static_cast<Index>(chunks.size()); ++c) {
        errors.run([&] {
            check_interrupt();
            fn(chunks[c].first, chunks[c].second, partial[omp_get_thread_num()]);
        });
    }
    errors.rethrow();
    Vec total = Vec::Zero(m);
    for (auto& v : partial) total += v;
    return total;
}

template <class Fn>
void parallel_for_chunks(Index n, Index max_chunk, Fn fn) {
    auto chunks = sample_chunks(n, max_chunk);
    RegionErrors errors;
#pragma omp parallel for schedule(static)
    for (Index c = 0; c < static_cast<Index>(chunks.size()); ++c)
        errors.run([&] {
            check_interrupt();
            fn(chunks[c].first, chunks[c].second);
        });
    errors.rethrow();
}

}  // namespace mlu
