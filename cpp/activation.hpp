// Hidden-layer activations and their first and second derivatives.
// Derivatives are expressed through the pre-activation A and the output H
// (whichever is cheaper), elementwise on whole blocks.
#pragma once

#include <stdexcept>
#include <string>

#include "types.hpp"

namespace mlu {

enum class Activation { ReLU, Tanh, Sigmoid };

inline Activation parse_activation(const std::string& name) {
    if (name == "relu") return Activation::ReLU;
    if (name == "tanh") return Activation::Tanh;
    if (name == "sigmoid") return Activation::Sigmoid;
    throw std::invalid_argument("activation must be 'relu', 'tanh' or 'sigmoid', got '" + name + "'");
}

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
    }
}

// D = sigma'(A); ReLU'(0) = 0, as in PyTorch.
template <class AIn, class HIn, class Out>
inline void activation_derivative(Activation act, const AIn& A, const HIn& H, Out& D) {
    switch (act) {
        case Activation::ReLU: D = (A.array() > 0.0).template cast<double>().matrix(); break;
        case Activation::Tanh: D = (1.0 - H.array().square()).matrix(); break;
        case Activation::Sigmoid: D = (H.array() * (1.0 - H.array())).matrix(); break;
    }
}

// D2 = sigma''(A) (zero for ReLU; callers skip the term then).
template <class HIn, class Out>
inline void activation_second_derivative(Activation act, const HIn& H, Out& D2) {
    switch (act) {
        case Activation::ReLU: D2.setZero(H.rows(), H.cols()); break;
        case Activation::Tanh: D2 = (-2.0 * H.array() * (1.0 - H.array().square())).matrix(); break;
        case Activation::Sigmoid:
            D2 = (H.array() * (1.0 - H.array()) * (1.0 - 2.0 * H.array())).matrix();
            break;
    }
}

}  // namespace mlu
