// Argument checks at the C++ boundary. The Python layer validates first and
// gives friendlier messages; these keep the core from ever reading out of
// bounds when called directly.
#pragma once

#include <stdexcept>
#include <string>

#include "architecture.hpp"

namespace mlu {

inline void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

inline std::string shape_str(Index r, Index c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; }

inline void check_theta(const Architecture& arch, Index len) {
    require(len == arch.p,
            "theta has " + std::to_string(len) + " entries, the architecture needs " + std::to_string(arch.p));
}

inline void check_X(const Architecture& arch, Index rows, Index cols) {
    require(rows > 0, "X is empty: need at least one sample");
    require(cols == arch.input_dim(),
            "X has shape " + shape_str(rows, cols) + ", expected (n, " + std::to_string(arch.input_dim()) + ")");
}

inline void check_y(const Architecture& arch, Index n, Index len, const std::int64_t* y) {
    require(len == n, "y has " + std::to_string(len) + " labels for " + std::to_string(n) + " samples");
    for (Index i = 0; i < len; ++i)
        require(y[i] >= 0 && y[i] < arch.classes(), "label y[" + std::to_string(i) + "] = " + std::to_string(y[i]) +
                                                        " is outside [0, " + std::to_string(arch.classes()) + ")");
}

inline void check_square(Index r, Index c, const std::string& name) {
    require(r == c && r > 0, name + " must be a non-empty square matrix, got shape " + shape_str(r, c));
}

}  // namespace mlu
