"""PyTorch interop: from_torch / to_torch round trips, the errors, and unlearning a torch model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import mlu
from mlu.engine.interop import from_torch, to_torch

try:
    import torch
    from torch import nn
except ImportError:  # the torch-free tests below still run
    torch = nn = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

ACTS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}
WIDTHS = (16, 12)
TOL = {"float32": 1e-6, "float64": 1e-12}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # tiny networks: threads only add overhead, badly so on a loaded machine
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """200 digit images shaped (n, 1, 8, 8), scaled to [0, 1]."""
    return load_digits().images[:200, None, :, :] / 16.0


def make_net(depth: int, activation: str, flatten: bool, dtype, seed: int = 0, k: int = 10):
    torch.manual_seed(seed)
    sizes = (64, *WIDTHS[:depth], k)
    mods = [nn.Flatten()] if flatten else []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            mods.append(getattr(nn, ACTS[activation])())
        mods.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*mods).to(dtype)


def torch_out(net, x: np.ndarray, dtype) -> np.ndarray:
    with torch.no_grad():
        return net(torch.as_tensor(x, dtype=dtype)).double().numpy()


def parameters(net) -> list:
    return [p.detach().clone() for p in net.parameters()]


# ---------------------------------------------------------------------------- optional import
def test_importing_mlu_does_not_import_torch():
    code = (
        "import sys, mlu, mlu.engine.interop, mlu.engine.io;"
        " assert 'torch' not in sys.modules, 'torch'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(mlu.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    model = mlu.MLP.from_layers([(np.eye(2), np.zeros(2))])
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"pip install mlu\[torch\]"):
        from_torch(object())
    with pytest.raises(ImportError, match=r"pip install mlu\[torch\]"):
        model.to_torch()


def test_exported_from_mlu():
    # mlu/__init__.py exports the converters (mlu.engine.io is not imported there: no name clash)
    assert mlu.from_torch is from_torch
    assert mlu.from_sklearn is mlu.engine.interop.from_sklearn


# ---------------------------------------------------------------------------- round trips
@needs_torch
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("flatten", [True, False])
def test_round_trip(images, dtype_name, depth, activation, flatten):
    dtype = getattr(torch, dtype_name)
    net = make_net(depth, activation, flatten, dtype)
    before = parameters(net)
    x = images.astype(dtype_name)  # the values torch sees
    x_flat = x.reshape(len(x), -1).astype(np.float64)
    ref = torch_out(net, x if flatten else x.reshape(len(x), -1), dtype)

    model = from_torch(net)
    assert model.torch_dtype_ == dtype_name
    assert model.sizes_ == (64, *WIDTHS[:depth], 10)
    assert model.activation == activation or depth == 0
    np.testing.assert_allclose(model.logits(x_flat), ref, rtol=0, atol=TOL[dtype_name])
    np.testing.assert_array_equal(model.predict(x_flat), ref.argmax(axis=1))

    back = model.to_torch()
    assert isinstance(back, nn.Sequential)
    assert all(p.dtype == dtype for p in back.parameters())
    for p, q in zip(before, back.parameters()):
        assert torch.equal(p, q)  # float32 → float64 → float32 is exact
    np.testing.assert_allclose(torch_out(back, x_flat, dtype), ref, rtol=0, atol=TOL[dtype_name])
    # the source module is untouched and shares no memory with the model
    for p, q in zip(before, net.parameters()):
        assert torch.equal(p, q)
    model.params = model.params + 1.0
    for p, q in zip(before, net.parameters()):
        assert torch.equal(p, q)


@needs_torch
@pytest.mark.parametrize(
    "acts",
    [("tanh", "relu"), ("relu", "sigmoid"), ("sigmoid", "tanh", "relu"), ("relu", "relu", "tanh")],
)
def test_mixed_activations_round_trip(images, acts):
    torch.manual_seed(1)
    sizes = (64, 16, 12, 9, 10)[: len(acts) + 1] + (10,)
    mods = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            mods.append(getattr(nn, ACTS[acts[i - 1]])())
        mods.append(nn.Linear(fan_in, fan_out))
    net = nn.Sequential(*mods).double()
    x = images.reshape(len(images), -1)
    ref = torch_out(net, x, torch.float64)

    model = from_torch(net)
    assert model.activation == (acts if len(set(acts)) > 1 else acts[0])
    np.testing.assert_allclose(model.logits(x), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        model.logits(x), mlu.reference.forward(model.layers, acts, x), rtol=0, atol=1e-12
    )
    back = model.to_torch()
    kinds = [type(m).__name__ for m in back if not isinstance(m, nn.Linear)]
    assert kinds == [ACTS[a] for a in acts]
    np.testing.assert_allclose(torch_out(back, x, torch.float64), ref, rtol=0, atol=1e-12)

    # Gradients and the exact Hessian-vector product against torch's autograd.
    y = np.arange(len(x)) % 10
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    params = list(net.parameters())

    def mean_loss():
        return nn.functional.cross_entropy(net(xt), yt)

    grads = torch.autograd.grad(mean_loss(), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    np.testing.assert_allclose(model.gradient(x, y), flat.detach().numpy(), rtol=0, atol=1e-12)
    v = np.random.default_rng(0).normal(size=flat.shape[0])
    hv = torch.autograd.grad(flat @ torch.as_tensor(v), params)
    hv = torch.cat([h.reshape(-1) for h in hv]).numpy()
    np.testing.assert_allclose(model.hvp(x, y, v), hv, rtol=0, atol=1e-10 * np.abs(hv).max())


@needs_torch
def test_to_torch_layout_and_dtype_choice(images):
    net = make_net(2, "tanh", True, torch.float32)
    model = from_torch(net)
    back = to_torch(model)
    assert [type(m).__name__ for m in back] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert back[0].weight.dtype == torch.float32
    assert to_torch(model, dtype=torch.float64)[0].weight.dtype == torch.float64
    assert model.to_torch(dtype="float64")[0].weight.dtype == torch.float64
    assert model.to_torch(dtype="torch.float16")[0].weight.dtype == torch.float16
    for bad in ("float33", torch.int64, 3):
        with pytest.raises(ValueError, match="dtype"):
            model.to_torch(dtype=bad)
    # a model trained by mlu has no torch dtype: float64, exactly its parameters
    X = images.reshape(len(images), -1)
    y = load_digits().target[:200]
    trained = mlu.MLP(hidden=(8,), epochs=2).fit(X, y)
    out = trained.to_torch()
    assert out[0].weight.dtype == torch.float64
    np.testing.assert_allclose(torch_out(out, X, torch.float64), trained.logits(X), atol=1e-12)
    with pytest.raises(TypeError, match="mlu.MLP"):
        to_torch(net)
    with pytest.raises(Exception, match="not fitted"):
        mlu.MLP().to_torch()


@needs_torch
def test_to_torch_leaves_torch_rng_alone():
    model = from_torch(make_net(1, "relu", False, torch.float32))
    state = torch.random.get_rng_state()
    model.to_torch()
    assert torch.equal(state, torch.random.get_rng_state())


@needs_torch
def test_classes_and_hyper_parameters_pass_through(images):
    net = make_net(1, "relu", True, torch.float64, k=2)
    model = from_torch(net, classes=["cat", "dog"], l2=1e-3)
    assert model.l2 == 1e-3
    x = images.reshape(len(images), -1)
    assert set(model.predict(x)) <= {"cat", "dog"}
    assert list(model.classes_) == ["cat", "dog"]


@needs_torch
def test_nested_sequentials_and_wrapper_modules(images):
    torch.manual_seed(1)
    inner = nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Linear(64, 10), nn.Sigmoid()), nn.Linear(10, 3)
    )

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = inner

        def forward(self, x):
            return self.net(x)

    x = images.reshape(len(images), -1)
    ref = torch_out(inner, x, torch.float32)
    for module in (inner, Wrapper(), nn.Sequential(inner)):
        model = from_torch(module)
        assert model.sizes_ == (64, 10, 3) and model.activation == "sigmoid"
        np.testing.assert_allclose(model.logits(x), ref, rtol=0, atol=1e-6)


@needs_torch
def test_wrapper_whose_forward_does_more_is_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

        def forward(self, x):
            return 2 * self.net(x)

    class Softmaxed(nn.Sequential):
        def forward(self, x):
            return super().forward(x).softmax(dim=1)

    with pytest.raises(ValueError, match="Scaled.forward does not compute"):
        from_torch(Scaled())
    with pytest.raises(ValueError, match="Softmaxed.forward does not compute"):
        from_torch(Softmaxed(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))


@needs_torch
def test_dropout_and_identity_are_dropped(images):
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Identity(), nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4)
    )
    net.train()  # the conversion must not switch the module's mode
    model = from_torch(net)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    np.testing.assert_allclose(
        model.logits(images.reshape(len(images), -1)),
        torch_out(net, images, torch.float32),
        rtol=0,
        atol=1e-6,
    )


def L(fan_in: int, fan_out: int, **kwargs):
    return nn.Linear(fan_in, fan_out, **kwargs)


def R():
    return nn.ReLU()


@needs_torch
@pytest.mark.parametrize(
    "layers, match",
    [
        (lambda: [L(4, 3), nn.BatchNorm1d(3), R(), L(3, 2)], r"layer 1 .*BatchNorm1d"),
        (lambda: [nn.Conv2d(1, 2, 3), nn.Flatten(), L(4, 2)], r"layer 0 .*Conv2d"),
        (lambda: [L(4, 3), L(3, 2)], r"layer 1 .*two Linear layers without an activation"),
        (lambda: [L(4, 3), R(), L(3, 2), nn.Sigmoid()], r"layer 3 .*after the last Linear"),
        (lambda: [L(4, 3), R(), L(3, 2), nn.Softmax(dim=1)], r"layer 3 .*drop the final Softmax"),
        (lambda: [L(4, 3, bias=False), R(), L(3, 2)], r"layer 0 .*without bias"),
        (lambda: [L(4, 3), R(), L(3, 1)], r"layer 2 .*1 output"),
        (lambda: [L(4, 3), R(), L(5, 2)], r"layer 2 .*takes 5 inputs"),
        (lambda: [L(4, 3), nn.Flatten(), L(3, 2)], r"layer 1 .*Flatten is supported only before"),
        (lambda: [nn.Flatten(0), L(4, 2)], r"layer 0 .*start_dim=1"),
        (lambda: [R(), L(4, 2)], r"layer 0 .*first layer"),
        (lambda: [L(4, 3), R(), R(), L(3, 2)], r"layer 2 .*two activations"),
        (lambda: [L(4, 3), nn.LeakyReLU(), L(3, 2)], r"layer 1 .*LeakyReLU"),
        (lambda: [L(4, 3), nn.Sequential(R(), L(3, 2), nn.BatchNorm1d(2))], r"layer 3 \('1.2'"),
        (lambda: [nn.Dropout(), nn.Flatten()], r"no Linear layer"),
    ],
)
def test_unsupported_modules_are_named_with_their_position(layers, match):
    with pytest.raises(ValueError, match=match):
        from_torch(nn.Sequential(*layers()))


@needs_torch
def test_other_refusals():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        from_torch([nn.Linear(4, 2)])
    with pytest.raises(ValueError, match="only child"):
        from_torch(nn.Linear(4, 2))  # a bare Linear: no Sequential to read
    mixed = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2).double())
    with pytest.raises(ValueError, match="mix dtypes"):
        from_torch(mixed)
    bad = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        bad[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 2 .*NaN"):
        from_torch(bad)


# ---------------------------------------------------------------------------- unlearning
@pytest.fixture(scope="module")
def torch_trained():
    """A float32 torch MLP trained briefly on digits 0 vs 1 with 10% flipped labels."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    digits = load_digits()
    keep = digits.target < 2
    X = (digits.data[keep] / 16.0)[:200]
    y = digits.target[keep][:200].copy()
    flipped = np.random.default_rng(0).choice(len(y), size=20, replace=False)
    y[flipped] = 1 - y[flipped]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(Xt), yt).backward()
        opt.step()
    return net, X, y, flipped


def test_changed_parameters_come_back_to_torch(torch_trained):
    # a stand-in for unlearning: any new θ set on the model reaches the torch module
    net, X, _, _ = torch_trained
    model = from_torch(net)
    theta = model.params + np.random.default_rng(1).normal(0, 0.01, model.n_params)
    model.params = theta
    back = model.to_torch()
    flat = torch.cat([p.detach().reshape(-1) for p in back.parameters()]).double().numpy()
    np.testing.assert_array_equal(flat, theta.astype(np.float32))
    np.testing.assert_allclose(torch_out(back, X, torch.float32), model.logits(X), atol=1e-5)


def test_unlearning_a_torch_model(torch_trained):
    net, X, y, flipped = torch_trained
    before = parameters(net)
    model = from_torch(net, l2=1e-3)
    # GGN: positive definite even away from the optimum (100 torch steps do not reach it)
    result = mlu.unlearn(model, X, y, forget=flipped, curvature="ggn")
    new = result.model
    assert not np.allclose(new.params, model.params)
    back = new.to_torch()
    assert all(p.dtype == torch.float32 for p in back.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in back.parameters()]).double().numpy()
    np.testing.assert_array_equal(flat, new.params.astype(np.float32))
    np.testing.assert_allclose(torch_out(back, X, torch.float32), new.logits(X), atol=1e-5)
    # the loss on the forgotten (flipped) labels goes up: their influence is removed
    assert new.losses(X[flipped], y[flipped]).mean() > model.losses(X[flipped], y[flipped]).mean()
    for p, q in zip(before, net.parameters()):
        assert torch.equal(p, q)
