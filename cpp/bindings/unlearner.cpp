// Curvature factors of the Unlearner (K-FAC, EK-FAC, Woodbury) over any set of
// samples; the factoring and solves are done by the caller.
#include <cmath>

#include "bindings/common.hpp"
#include "kfac.hpp"
#include "woodbury.hpp"

namespace mlu::bind {

namespace {

py::list to_list(std::vector<RowMat>&& mats) {
    py::list out;
    for (auto& M : mats) out.append(to_numpy(std::move(M)));
    return out;
}

// Checked views of a list of per-layer matrices with the given shapes.
std::vector<MatRef> layer_views(const std::vector<DArr>& mats, const std::vector<std::pair<Index, Index>>& shapes,
                                const std::string& name) {
    require(mats.size() == shapes.size(),
            name + " must hold " + std::to_string(shapes.size()) + " matrices, got " + std::to_string(mats.size()));
    std::vector<MatRef> out;
    for (std::size_t l = 0; l < mats.size(); ++l) {
        auto v = matrix_view(mats[l], name.c_str());
        require(v.rows() == shapes[l].first && v.cols() == shapes[l].second,
                name + "[" + std::to_string(l) + "] has shape " + shape_str(v.rows(), v.cols()) + ", expected " +
                    shape_str(shapes[l].first, shapes[l].second));
        out.emplace_back(v);
    }
    return out;
}

struct TermViews {
    Architecture arch;
    CMapRM X;
    std::vector<MatRef> G, hidden;
};

TermViews term_views(const std::vector<Index>& sizes, const DArr& X, const std::vector<DArr>& G,
                     const std::vector<DArr>& hidden) {
    Architecture arch = make_arch(sizes, "relu");
    auto Xv = matrix_view(X, "X");
    check_X(arch, Xv.rows(), Xv.cols());
    const Index L = arch.num_layers(), nr = checked_mul(Xv.rows(), ggn_rows_per_sample(arch), "Gauss-Newton rows");
    std::vector<std::pair<Index, Index>> gs, hs;
    for (Index l = 0; l < L; ++l) gs.emplace_back(nr, arch.out(l));
    for (Index l = 0; l + 1 < L; ++l) hs.emplace_back(Xv.rows(), arch.out(l));
    auto Gv = layer_views(G, gs, "G");
    auto Hv = layer_views(hidden, hs, "hidden");
    return {std::move(arch), Xv, std::move(Gv), std::move(Hv)};
}

// Working memory, for the message of an allocation failure: the per-thread factor
// accumulators (K-FAC, EK-FAC), or the Gauss-Newton terms of n samples.
double factor_bytes(const Architecture& arch) {
    double per_thread = 0.0;
    for (Index l = 0; l < arch.num_layers(); ++l)
        per_thread +=
            8.0 * (double(arch.in(l) + 1) * double(arch.in(l) + 1) + double(arch.out(l)) * double(arch.out(l)));
    return per_thread * double(num_threads() + 1);
}

double term_bytes(const Architecture& arch, Index n) {
    double width = 0.0;
    for (Index l = 0; l < arch.num_layers(); ++l) width += double(arch.out(l));
    return 8.0 * double(n) * double(ggn_rows_per_sample(arch) + 1) * width;
}

}  // namespace

void bind_unlearner(py::module_& m) {
    m.def(
        "kfac_sums",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
            Data d = bind_data(theta, sizes, act, X, nullptr);
            KFACSums s;
            {
                py::gil_scoped_release release;
                s = guarded("kfac_sums", factor_bytes(d.arch), [&] { return kfac_sums(d.arch, d.theta.data(), d.X); });
            }
            return py::make_tuple(to_list(std::move(s.A)), to_list(std::move(s.G)));
        },
        MLU_MODEL_ARGS,
        "K-FAC sums over the rows of X: lists A (sum of [a;1][a;1]^T per layer, (in+1) square) and G (sum of the "
        "Gauss-Newton pre-activation factors g g^T per layer, out square). Not normalised.");

    m.def(
        "ekfac_sums",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X,
           const std::vector<DArr>& QA, const std::vector<DArr>& QG) {
            Data d = bind_data(theta, sizes, act, X, nullptr);
            std::vector<std::pair<Index, Index>> sa, sg;
            for (Index l = 0; l < d.arch.num_layers(); ++l) {
                sa.emplace_back(d.arch.in(l) + 1, d.arch.in(l) + 1);
                sg.emplace_back(d.arch.out(l), d.arch.out(l));
            }
            auto qa = layer_views(QA, sa, "QA");
            auto qg = layer_views(QG, sg, "QG");
            std::vector<RowMat> S;
            {
                py::gil_scoped_release release;
                S = guarded("ekfac_sums", factor_bytes(d.arch),
                            [&] { return ekfac_sums(d.arch, d.theta.data(), d.X, qa, qg); });
            }
            return to_list(std::move(S));
        },
        MLU_MODEL_ARGS, py::arg("QA"), py::arg("QG"),
        "EK-FAC corrections over the rows of X in the eigenbases QA, QG: per layer the (out, in+1) sums of "
        "(QG^T g)^2 (QA^T [a;1])^2 over samples and Gauss-Newton rows. Not normalised.");

    m.def(
        "gn_terms",
        [](const DArr& theta, const std::vector<Index>& sizes, const std::string& act, const DArr& X) {
            Data d = bind_data(theta, sizes, act, X, nullptr);
            GNTerms t;
            {
                py::gil_scoped_release release;
                t = guarded("gn_terms", term_bytes(d.arch, d.X.rows()),
                            [&] { return gn_terms(d.arch, d.theta.data(), d.X); });
            }
            return py::make_tuple(to_list(std::move(t.G)), to_list(std::move(t.hidden)));
        },
        MLU_MODEL_ARGS,
        "Factors of the Gauss-Newton rows: lists G (per layer, (n*r, out): row i*r+rho) and hidden (per hidden "
        "layer, (n, out)).");

    m.def(
        "woodbury_gram",
        [](const std::vector<Index>& sizes, const DArr& X, const std::vector<DArr>& G,
           const std::vector<DArr>& hidden) {
            TermViews t = term_views(sizes, X, G, hidden);
            RowMat K;
            {
                py::gil_scoped_release release;
                K = guarded("woodbury_gram", 3.0 * 8.0 * double(t.G[0].rows()) * double(t.G[0].rows()),
                            [&] { return woodbury_gram(t.arch, t.X, t.G, t.hidden); });
            }
            return to_numpy(std::move(K));
        },
        py::arg("sizes"), py::arg("X"), py::arg("G"), py::arg("hidden"),
        "Gram matrix B B^T of the Gauss-Newton rows, shape (n*r, n*r).");

    m.def(
        "gn_jvp",
        [](const std::vector<Index>& sizes, const DArr& X, const std::vector<DArr>& G, const std::vector<DArr>& hidden,
           const DArr& V) {
            TermViews t = term_views(sizes, X, G, hidden);
            auto Vv = matrix_view(V, "V");
            require(Vv.cols() == t.arch.p, "V must have p = " + std::to_string(t.arch.p) + " columns");
            RowMat out;
            {
                py::gil_scoped_release release;
                out =
                    guarded("gn_jvp", 8.0 * double(t.G[0].rows()) * double(Vv.rows()) + term_bytes(t.arch, t.X.rows()),
                            [&] { return gn_jvp(t.arch, t.X, t.G, t.hidden, Vv); });
            }
            return to_numpy(std::move(out));
        },
        py::arg("sizes"), py::arg("X"), py::arg("G"), py::arg("hidden"), py::arg("V"),
        "B V^T for V of shape (m, p): shape (n*r, m).");

    m.def(
        "gn_vjp",
        [](const std::vector<Index>& sizes, const DArr& X, const std::vector<DArr>& G, const std::vector<DArr>& hidden,
           const DArr& Z) {
            TermViews t = term_views(sizes, X, G, hidden);
            auto Zv = matrix_view(Z, "Z");
            require(Zv.rows() == t.G[0].rows(), "Z must have n*r = " + std::to_string(t.G[0].rows()) + " rows");
            RowMat out;
            {
                py::gil_scoped_release release;
                out = guarded("gn_vjp", 8.0 * double(Zv.cols()) * double(t.arch.p) + term_bytes(t.arch, t.X.rows()),
                              [&] { return gn_vjp(t.arch, t.X, t.G, t.hidden, Zv); });
            }
            return to_numpy(std::move(out));
        },
        py::arg("sizes"), py::arg("X"), py::arg("G"), py::arg("hidden"), py::arg("Z"),
        "B^T Z for Z of shape (n*r, m): shape (m, p).");

    m.def(
        "gram_retained_solve",
        [](const DArr& V, const DArr& w, double s, const IArr& removed, const DArr& W) {
            auto Vv = matrix_view(V, "V");
            const Index N = Vv.rows();
            require(Vv.cols() == N, "V must be square, got shape " + shape_str(Vv.rows(), Vv.cols()));
            auto wv = vector_view(w, "w");
            require(wv.size() == N, "w has " + std::to_string(wv.size()) + " entries, expected " + std::to_string(N));
            auto Wv = matrix_view(W, "W");
            require(Wv.rows() == N, "W must have N = " + std::to_string(N) + " rows, got " + std::to_string(Wv.rows()));
            require(std::isfinite(s) && s > 0, "s must be finite and > 0, got " + std::to_string(s));
            require((wv.array() + s > 0).all(), "w + s must be > 0 (K is positive semi-definite)");
            require(removed.ndim() == 1, "removed must be 1-D");
            std::vector<Index> rows(removed.data(), removed.data() + removed.shape(0));
            std::vector<char> seen(std::size_t(N), 0);
            for (Index i : rows) {
                require(i >= 0 && i < N,
                        "removed row " + std::to_string(i) + " is outside 0.." + std::to_string(N - 1));
                require(!seen[std::size_t(i)], "removed row " + std::to_string(i) + " is given twice");
                seen[std::size_t(i)] = 1;
            }
            require(Index(rows.size()) < N, "every row is removed: nothing is left to solve on");
            RowMat out;
            {
                py::gil_scoped_release release;
                const double d = double(rows.size());
                out = guarded("gram_retained_solve", 8.0 * (d * (double(N) + d) + 3.0 * double(N) * double(Wv.cols())),
                              [&] { return gram_retained_solve(Vv, wv, s, rows, Wv); });
            }
            return to_numpy(std::move(out));
        },
        py::arg("V"), py::arg("w"), py::arg("s"), py::arg("removed"), py::arg("W"),
        "(s I + K_RR)^{-1} W on the retained rows (zero on the removed ones) from K = V diag(w) V^T, "
        "shape (N, m).");
}

}  // namespace mlu::bind
