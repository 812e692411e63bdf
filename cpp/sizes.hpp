// Sizes computed from user-given dimensions (layer widths, n, p) are checked
// for overflow: a wrapped product would allocate a tiny buffer and write far
// past it. Both helpers throw std::overflow_error naming the quantity.
#pragma once

#include <stdexcept>
#include <string>

#include "types.hpp"

namespace mlu {

inline Index checked_mul(Index a, Index b, const char* what) {
    Index r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
        throw std::overflow_error(std::string(what) + " overflows: " + std::to_string(a) + " x " +
                                  std::to_string(b) + " is not representable");
    return r;
}

inline Index checked_add(Index a, Index b, const char* what) {
    Index r;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
        throw std::overflow_error(std::string(what) + " overflows: " + std::to_string(a) + " + " +
                                  std::to_string(b) + " is not representable");
    return r;
}

// Bytes of `count` doubles; also refuses counts no allocation could hold.
inline Index checked_bytes(Index count, const char* what) { return checked_mul(count, Index(sizeof(double)), what); }

}  // namespace mlu
