// The shape of an MLP and where each layer lives in the flat parameter vector.
// Layout (DESIGN.md): W1 (out x in, row-major), b1, W2, b2, ...
#pragma once

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.hpp"
#include "sizes.hpp"
#include "types.hpp"

namespace mlu {

struct Architecture {
    std::vector<Index> sizes;  // d, h1, ..., k
    std::vector<Activation> acts;  // one per hidden layer (layers 0 .. L-2)
    std::vector<Index> w_off, b_off;
    Index p = 0;

    Architecture(std::vector<Index> sizes_, Activation act_) : Architecture(std::move(sizes_), std::vector{act_}) {}

    // acts: one activation for every hidden layer, or one per hidden layer.
    Architecture(std::vector<Index> sizes_, std::vector<Activation> acts_)
        : sizes(std::move(sizes_)), acts(std::move(acts_)) {
        if (sizes.size() < 2) throw std::invalid_argument("an MLP needs at least input and output sizes");
        for (Index s : sizes)
            if (s < 1) throw std::invalid_argument("layer sizes must be positive");
        if (sizes.back() < 2) throw std::invalid_argument("softmax output needs k >= 2 classes");
        const auto hidden = static_cast<std::size_t>(num_layers() - 1);
        if (acts.empty()) throw std::invalid_argument("at least one activation is needed");
        if (acts.size() == 1) {
            acts.assign(std::max<std::size_t>(hidden, 1), acts.front());
        } else if (acts.size() != hidden) {
            throw std::invalid_argument("got " + std::to_string(acts.size()) + " activations for " +
                                        std::to_string(hidden) + " hidden layers: give one, or one per hidden layer");
        }
        for (Index l = 0; l < num_layers(); ++l) {
            // (in + 1) * out more parameters must still fit in an Index.
            if (out(l) > (std::numeric_limits<Index>::max() - p) / (in(l) + 1))
                throw std::invalid_argument("the layer sizes give more parameters than fit in 64 bits");
            w_off.push_back(p);
            p = checked_add(p, checked_mul(out(l), in(l), "the parameter count"), "the parameter count");
            b_off.push_back(p);
            p = checked_add(p, out(l), "the parameter count");
        }
        checked_bytes(p, "the parameter vector's size in bytes");
    }

    Index num_layers() const { return static_cast<Index>(sizes.size()) - 1; }
    Index in(Index l) const { return sizes[l]; }
    Index out(Index l) const { return sizes[l + 1]; }
    Index input_dim() const { return sizes.front(); }
    Index classes() const { return sizes.back(); }
    // The activation of hidden layer l (0 <= l < num_layers() - 1).
    Activation act(Index l) const { return acts[static_cast<std::size_t>(l)]; }
    bool curved(Index l) const { return is_curved(act(l)); }

    CMapRM W(const double* theta, Index l) const { return CMapRM(theta + w_off[l], out(l), in(l)); }
    CMapVec b(const double* theta, Index l) const { return CMapVec(theta + b_off[l], out(l)); }
    MapRM W(double* theta, Index l) const { return MapRM(theta + w_off[l], out(l), in(l)); }
    MapVec b(double* theta, Index l) const { return MapVec(theta + b_off[l], out(l)); }
};

}  // namespace mlu
