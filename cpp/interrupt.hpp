// Ctrl-C in long loops. The core knows nothing of Python: the bindings install
// a hook that asks the interpreter whether a signal is pending. Loops call
// check_interrupt() often; it costs one clock read, and calls the hook at most
// every kPollMs, on the calling thread only (thread 0 of a parallel region,
// the thread Python signal handlers run on). When the hook says yes the loop
// ends with Interrupted, which the bindings turn into KeyboardInterrupt; the
// results under construction are discarded, so nothing is left half-done.
#pragma once

#include <omp.h>

#include <atomic>
#include <chrono>
#include <stdexcept>

namespace mlu {

struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted") {}
};

using InterruptHook = bool (*)();

namespace detail {
inline std::atomic<InterruptHook>& interrupt_hook() {
    static std::atomic<InterruptHook> hook{nullptr};
    return hook;
}
inline std::atomic<std::int64_t>& last_poll_ns() {
    static std::atomic<std::int64_t> ns{0};
    return ns;
}
}  // namespace detail

constexpr std::int64_t kPollMs = 100;

inline void set_interrupt_hook(InterruptHook hook) { detail::interrupt_hook().store(hook); }

inline void check_interrupt() {
    const InterruptHook hook = detail::interrupt_hook().load(std::memory_order_relaxed);
    if (!hook || omp_get_thread_num() != 0) return;
    const std::int64_t now =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    auto& last = detail::last_poll_ns();
    if (now - last.load(std::memory_order_relaxed) < kPollMs * 1000000) return;
    last.store(now, std::memory_order_relaxed);
    if (hook()) throw Interrupted();
}

}  // namespace mlu
