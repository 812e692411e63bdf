// Hidden-layer activations and their first and second derivatives.
// Derivatives are expressed through the pre-activation A and the output H
// (whichever is cheaper), elementwise on whole blocks.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "types.hpp"

namespace mlu {

enum class Activation { ReLU, Tanh, Sigmoid, Identity };

inline Activation parse_activation(const std::string& name) {
    if (name == "relu") return Activation::ReLU;
    if (name == "tanh") return Activation::Tanh;
    if (name == "sigmoid") return Activation::Sigmoid;
    if (name == "identity") return Activation::Identity;
    throw std::invalid_argument("activation must be 'relu', 'tanh', 'sigmoid' or 'identity', got '" + name + "'");
}

// "tanh" (every hidden layer) or "tanh,relu" (one name per hidden layer, from
// the input up); the count is checked against the architecture.
inline std::vector<Activation> parse_activations(const std::string& names) {
    std::vector<Activation> acts;
    std::string::size_type start = 0;
    while (true) {
        const auto comma = names.find(',', start);
        acts.push_back(parse_activation(names.substr(start, comma == std::string::npos ? comma : comma - start)));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return acts;
}

// Whether sigma'' is not identically zero (ReLU and identity are piecewise linear).
inline bool is_curved(Activation act) { return act == Activation::Tanh || act == Activation::Sigmoid; }

// H = sigma(A)
template <class In, class Out>
inline void activate(Activation act, const In& A, Out& H) {
    switch (act) {
        case Activation::ReLU: H = A.cwiseMax(0.0); break;
        case Activation::Tanh: H = A.array().tanh().matrix(); break;
        case Activation::Sigmoid:
            // 1 / (1 + exp(-a)) is stable for all finite a in float64 (exp overflows to inf -> 0).
            H = (1.0 / (1.0 + (-A.array()).exp())).matrix();
            break;
        case Activation::Identity: H = A; break;
    }
}

// D = sigma'(A); ReLU'(0) = 0, as in PyTorch.
template <class AIn, class HIn, class Out>
inline void activation_derivative(Activation act, const AIn& A, const HIn& H, Out& D) {
    switch (act) {
        case Activation::ReLU: D = (A.array() > 0.0).template cast<double>().matrix(); break;
        case Activation::Tanh: D = (1.0 - H.array().square()).matrix(); break;
        case Activation::Sigmoid: D = (H.array() * (1.0 - H.array())).matrix(); break;
        case Activation::Identity: D.setOnes(A.rows(), A.cols()); break;
    }
}

// D2 = sigma''(A) (zero for ReLU and identity; callers skip the term then).
template <class HIn, class Out>
inline void activation_second_derivative(Activation act, const HIn& H, Out& D2) {
    switch (act) {
        case Activation::ReLU:
        case Activation::Identity: D2.setZero(H.rows(), H.cols()); break;
        case Activation::Tanh: D2 = (-2.0 * H.array() * (1.0 - H.array().square())).matrix(); break;
        case Activation::Sigmoid:
            D2 = (H.array() * (1.0 - H.array()) * (1.0 - 2.0 * H.array())).matrix();
            break;
    }
}

}  // namespace mlu
