// Which x86-64 micro-architecture level this CPU runs (cpuid), so the package
// can load the fastest build of the core that is safe here (python/mlu/_isa.py).
// Levels as defined by the x86-64 psABI: 1 = x86-64 (SSE2), 2 = x86-64-v2
// (SSE4.2, POPCNT), 3 = x86-64-v3 (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE, and
// an OS that saves the AVX registers); 0 on other architectures. This file
// must compile without any -m flag: it runs before we know what is allowed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#define MLU_X86_64 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace mlu {

#ifdef MLU_X86_64
namespace detail {

// {eax, ebx, ecx, edx} of cpuid(leaf, subleaf); zeros if the leaf is absent.
inline std::array<std::uint32_t, 4> cpuid(std::uint32_t leaf, std::uint32_t subleaf = 0) {
    std::array<std::uint32_t, 4> r{0, 0, 0, 0};
#if defined(_MSC_VER)
    int max_regs[4], regs[4];
    __cpuid(max_regs, static_cast<int>(leaf & 0x80000000u));
    if (static_cast<std::uint32_t>(max_regs[0]) < leaf) return r;
    __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
    for (int i = 0; i < 4; ++i) r[i] = static_cast<std::uint32_t>(regs[i]);
#else
    unsigned a, b, c, d;
    if (!__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) return r;
    r = {a, b, c, d};
#endif
    return r;
}

// The OS state-save mask (XCR0); only call when cpuid says OSXSAVE.
inline std::uint64_t xcr0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    std::uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // no -mxsave needed for asm
    return (std::uint64_t(hi) << 32) | lo;
#endif
}

inline bool bit(std::uint32_t reg, int b) { return (reg >> b) & 1u; }

}  // namespace detail
#endif

// The features that decide the level, by their /proc/cpuinfo-like names.
inline std::map<std::string, bool> cpu_features() {
    std::map<std::string, bool> f;
#ifdef MLU_X86_64
    using detail::bit;
    const auto l1 = detail::cpuid(1), l7 = detail::cpuid(7, 0), e1 = detail::cpuid(0x80000001u);
    f["sse3"] = bit(l1[2], 0);
    f["ssse3"] = bit(l1[2], 9);
    f["fma"] = bit(l1[2], 12);
    f["cx16"] = bit(l1[2], 13);
    f["sse4_1"] = bit(l1[2], 19);
    f["sse4_2"] = bit(l1[2], 20);
    f["movbe"] = bit(l1[2], 22);
    f["popcnt"] = bit(l1[2], 23);
    f["osxsave"] = bit(l1[2], 27);
    f["avx"] = bit(l1[2], 28);
    f["f16c"] = bit(l1[2], 29);
    f["bmi1"] = bit(l7[1], 3);
    f["avx2"] = bit(l7[1], 5);
    f["bmi2"] = bit(l7[1], 8);
    f["lahf_lm"] = bit(e1[2], 0);
    f["lzcnt"] = bit(e1[2], 5);
    // The CPU having AVX is not enough: the OS must save the YMM registers.
    f["os_avx"] = f["osxsave"] && (detail::xcr0() & 0x6) == 0x6;
#endif
    return f;
}

inline int x86_64_level() {
#ifdef MLU_X86_64
    auto f = cpu_features();
    auto all = [&f](std::initializer_list<const char*> names) {
        for (const char* n : names)
            if (!f[n]) return false;
        return true;
    };
    if (!all({"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm"})) return 1;
    if (!all({"avx", "os_avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe"})) return 2;
    return 3;
#else
    return 0;
#endif
}

}  // namespace mlu
