"""No crash, no OOM kill, no silent loss (issue 14).

Memory cases run in a child process under ``resource.setrlimit(RLIMIT_AS)`` so that this
process survives them; Ctrl-C cases send SIGINT to a child and time its exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlu
from mlu import _core
from mlu._files import remove_stale_temp_files
from mlu.apps.cli import main
from mlu.engine import _memory, _validation

PYTHON_DIR = Path(mlu.__file__).resolve().parent.parent
SANITIZED = os.environ.get("MLU_SANITIZED") == "1"
needs_rlimit = pytest.mark.skipif(
    SANITIZED or not sys.platform.startswith("linux"),
    reason="RLIMIT_AS cases need Linux and no ASan (which reserves terabytes of address space)",
)


def run_child(code: str, timeout: float = 120, env_extra: dict | None = None):
    """Run `code` in a fresh interpreter that imports the mlu under test; (returncode, out, err)."""
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "2"}
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr


# The child caps its address space at its current size plus HEADROOM bytes.
CAP = """
import resource
def cap(headroom):
    with open("/proc/self/status") as fh:
        size = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, resource.RLIM_INFINITY))
"""


# ------------------------------------------------------------------ 1. failed allocations
@needs_rlimit
def test_failed_allocation_in_a_parallel_loop_is_a_memory_error_not_an_abort():
    # 16-20000-2 over 2048 samples: a 1024-sample chunk of activations is 2 x 164 MB per thread.
    code = (
        CAP
        + """
import numpy as np, mlu
from mlu import _core
rng = np.random.default_rng(0)
sizes = [16, 20000, 2]
theta = rng.normal(0, 0.05, _core.num_params(sizes))
X = rng.normal(size=(2048, 16)); y = rng.integers(0, 2, 2048)
cap(200 << 20)
try:
    _core.losses(theta, sizes, "relu", X, y)
    print("NO ERROR")
except MemoryError as exc:
    print("MemoryError:", exc)
"""
    )
    rc, out, err = run_child(code)
    assert rc == 0, err[-2000:]  # before: "terminate called ...", exit 134
    assert "MemoryError: out of memory in losses" in out
    assert "GiB" in out


@needs_rlimit
def test_losses_pick_a_chunk_size_that_fits_the_budget():
    code = (
        CAP
        + """
import numpy as np, mlu
rng = np.random.default_rng(0)
d, h, n = 16, 20000, 2048
layers = [(rng.normal(0, 0.25, (h, d)), np.zeros(h)), (rng.normal(0, 0.01, (2, h)), np.zeros(2))]
model = mlu.MLP.from_layers(layers)
X = rng.normal(size=(n, d)); y = rng.integers(0, 2, n)
cap(200 << 20)
print(json.dumps(model.losses(X, y).tolist()))
""".replace("import numpy as np, mlu", "import json, numpy as np, mlu")
    )
    rc, out, err = run_child(code)
    assert rc == 0, err[-2000:]
    got = np.array(json.loads(out.strip().splitlines()[-1]))
    rng = np.random.default_rng(0)
    d, h, n = 16, 20000, 2048
    layers = [
        (rng.normal(0, 0.25, (h, d)), np.zeros(h)),
        (rng.normal(0, 0.01, (2, h)), np.zeros(2)),
    ]
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 2, n)
    want = mlu.reference.losses(layers, "relu", X, y)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ 2. size overflow
def test_layer_sizes_that_overflow_are_refused():
    with pytest.raises(OverflowError, match="overflows"):
        _core.num_params([4, 275324538413575398, 2])  # before: wrapped to 52
    with pytest.raises(OverflowError):
        _core.num_params([2**40, 2**40, 2])
    model, X, y = make_problem((5,), "relu", 3)
    before = model.predict(X)
    p = 9 * 275324538413575398 + 3  # (5 + 1) h + (h + 1) 3
    with pytest.raises(MemoryError, match=f"p = {p:,} parameters"):
        model.set_params(hidden=(275324538413575398,)).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), before)  # before: SIGABRT in predict


# ------------------------------------------------------------------ 3. one memory budget
def test_budget_reads_cgroup_v2_and_v1_limits(tmp_path, monkeypatch):
    v2 = tmp_path / "fs"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "job" / "memory.max").write_text(f"{3 << 30}\n")
    (v2 / "job" / "memory.current").write_text(f"{1 << 30}\n")
    (v2 / "job" / "step" / "memory.max").write_text("max\n")
    (v2 / "job" / "step" / "memory.current").write_text("0\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job/step\n")
    monkeypatch.setattr(_memory, "_CGROUP_ROOT", v2)
    monkeypatch.setattr(_memory, "_PROC_CGROUP", proc)
    assert _memory._cgroup_headroom() == 2 << 30  # the parent's limit applies
    assert _memory.memory_budget_bytes() <= 2 << 30

    (v2 / "memory" / "box").mkdir(parents=True)
    (v2 / "memory" / "box" / "memory.limit_in_bytes").write_text(f"{5 << 30}\n")
    (v2 / "memory" / "box" / "memory.usage_in_bytes").write_text(f"{4 << 30}\n")
    (v2 / "memory" / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # "no limit"
    proc.write_text("4:memory:/box\n1:cpu:/\n")
    assert _memory._cgroup_headroom() == 1 << 30
    assert _validation.available_memory_bytes() <= 1 << 30


@needs_rlimit
def test_budget_follows_rlimit_as_and_hessian_raises_instead_of_dying():
    code = (
        CAP
        + """
import numpy as np, mlu
from mlu.engine import _memory
rng = np.random.default_rng(0)
# p = 20,302: the Hessian alone is 3.3 GB, more than the 1 GiB the child may still map
W1, W2 = rng.normal(0, 0.1, (100, 200)), rng.normal(0, 0.1, (2, 100))
layers = [(W1, np.zeros(100)), (W2, np.zeros(2))]
model = mlu.MLP.from_layers(layers)
X = rng.normal(size=(50, 200)); y = rng.integers(0, 2, 50)
cap(1 << 30)
print("budget", _memory.memory_budget_bytes())
Xn, yn = np.repeat(X, 200, 0), np.repeat(y, 200)
for call in (lambda: model.hessian(X, y), lambda: model.gradients(Xn, yn)):
    try:
        call()
        print("NO ERROR")
    except MemoryError as exc:
        print(type(exc).__name__, exc)
"""
    )
    rc, out, err = run_child(code)
    assert rc == 0, err[-2000:]
    lines = out.splitlines()
    assert int(lines[0].split()[1]) <= 1 << 30
    assert lines[1].startswith("HessianTooLargeError") and "GiB" in lines[1]
    # the n x p gradients: the right words, the estimate and the budget (before: "p^2")
    assert lines[2].startswith("MemoryError") and "n x p per-sample gradients" in lines[2]
    assert "p^2" not in lines[2] and "GiB" in lines[2]


def test_losses_are_computed_in_chunks_when_the_budget_is_small(monkeypatch):
    model, X, y = make_problem((7,), "tanh", 3, n=300)
    want = model.losses(X, y)
    # room for ~50 rows per chunk: 6 calls, the same values
    per_row = 3 * 8 * sum(model.sizes_) + 8
    fixed = 2 * 8 * model.n_params
    monkeypatch.setattr(
        _validation, "available_memory_bytes", lambda: int((fixed + 50 * per_row) / 0.8)
    )
    calls = []
    real = _core.losses
    monkeypatch.setattr(_core, "losses", lambda *a: calls.append(a[3].shape[0]) or real(*a))
    np.testing.assert_array_equal(model.losses(X, y), want)
    assert len(calls) == 6 and sum(calls) == 300
    np.testing.assert_array_equal(model.predict(X), np.argmax(model.logits(X), axis=1))


def test_fit_and_operator_check_the_budget(monkeypatch):
    model, X, y = make_problem((5,), "relu", 3)
    monkeypatch.setattr(_validation, "available_memory_bytes", lambda: 2000)
    with pytest.raises(MemoryError, match=r"fit.*needs about .* GiB.*memory budget"):
        mlu.MLP(hidden=(50,), epochs=1).fit(X, y)
    with pytest.raises(MemoryError, match="Hessian-vector-product operator"):
        model.hessian_operator(X, y)


# ------------------------------------------------------------------ 4. + 6. model files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, X, y = make_problem((6,), "relu", 3)
    model.set_params(epochs=2).fit(X, y)
    path = tmp_path_factory.mktemp("m") / "model.npz"
    model.save(path)
    return path, model, X


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            if key in replace:
                if replace[key] is not None:
                    zout.writestr(info.filename, replace[key])
            else:
                zout.writestr(info.filename, zin.read(info))
        for key, data in replace.items():
            if key + ".npy" not in zin.namelist() and data is not None:
                zout.writestr(key + ".npy", data)


def _npy(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _bomb(src: Path, dst: Path, rows: int, cols: int) -> None:
    """A model file with trace arrays declaring rows x cols float64 zeros each (deflated)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (rows, cols)}
    )
    head = buf.getvalue()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename[:-4] not in ("trace_loss", "trace_margin"):
                zout.writestr(info.filename, zin.read(info))
        chunk = bytes(8 << 20)
        for name in ("trace_loss.npy", "trace_margin.npy"):
            with zout.open(name, "w", force_zip64=True) as fh:
                fh.write(head)
                left = rows * cols * 8
                while left > 0:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)


def test_deflate_bomb_is_refused_from_its_headers(saved, tmp_path, monkeypatch):
    path, _, _ = saved
    bomb = tmp_path / "bomb.npz"
    _bomb(path, bomb, 50, 1_000_000)  # 2 x 400 MB declared, ~0.8 MB on disk
    assert bomb.stat().st_size < 4 << 20
    monkeypatch.setattr(_validation, "available_memory_bytes", lambda: 512 << 20)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(MemoryError, match=r"bomb\.npz: reading the model file .*declare"):
            mlu.MLP.load(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # before: every array inflated first (800 MB, seconds)
    assert peak < 32 << 20 and time.perf_counter() - t0 < 5


def test_member_sizes_must_match_their_headers(saved, tmp_path):
    path, model, _ = saved
    # a params header for the right shape, but more data than it describes
    data = _npy(model.params) + bytes(8 << 20)
    bad = tmp_path / "long.npz"
    _rewrite(path, bad, {"params": data})
    with pytest.raises(ValueError, match="declares .* bytes but its header describes"):
        mlu.MLP.load(bad)
    bad2 = tmp_path / "shape.npz"
    _rewrite(path, bad2, {"params": _npy(np.zeros(10**6))})
    with pytest.raises(ValueError, match=r"'params' must be float64 of shape \(57,\)"):
        mlu.MLP.load(bad2)


@pytest.mark.parametrize(
    "hyper, match",
    [
        ({"l2": float("nan")}, "l2"),  # before: loaded, then unlearn gave NaN parameters
        ({"l2": -5}, "l2 must be a finite number >= 0"),
        ({"hidden": [2.5]}, "hidden"),
        ({"hidden": [7]}, "differs from 'sizes'"),
        ({"lr": 0}, "lr"),
        ({"batch_size": "32"}, "batch_size must be an integer"),
        ({"track": 3}, "track must be True or False"),
    ],
)
def test_hyper_parameters_are_validated_on_load(saved, tmp_path, hyper, match):
    path, model, _ = saved
    params = {**model.get_params(), **hyper}
    if isinstance(params["hidden"], tuple):
        params["hidden"] = list(params["hidden"])
    text = json.dumps(params)  # NaN is written as NaN, as a hand-edited file would
    bad = tmp_path / "hyper.npz"
    _rewrite(path, bad, {"hyperparams": _npy(np.array(text))})
    with pytest.raises(ValueError, match=match):
        mlu.MLP.load(bad)


def test_from_layers_validates_hyper_parameters():
    layers = [(np.ones((3, 2)), np.zeros(3)), (np.ones((2, 3)), np.zeros(2))]
    for kwargs, err in (
        ({"l2": float("nan")}, ValueError),
        ({"l2": -5.0}, ValueError),
        ({"epochs": 2.5}, TypeError),
        ({"lr": float("inf")}, ValueError),
    ):
        with pytest.raises(err):
            mlu.MLP.from_layers(layers, **kwargs)
    with pytest.raises(TypeError, match="must be real"):
        mlu.MLP.from_layers([(np.ones((3, 2)) * 1j, np.zeros(3)), (np.ones((2, 3)), np.zeros(2))])


def test_files_that_are_not_zip_archives_get_the_right_message(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ValueError, match="not a zip archive"):  # before: "pickled objects"
        mlu.MLP.load(text)
    pickled = tmp_path / "p.pkl"
    import pickle

    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="pickled Python objects"):
        mlu.MLP.load(pickled)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a zip archive"):
        mlu.MLP.load(empty)


# ------------------------------------------------------------------ 5. atomic fit
def _state(model):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items()}


def _assert_same_state(model, state):
    assert set(vars(model)) == set(state)
    for key, value in state.items():
        if key.endswith("_") and not key.startswith("__"):
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(model, key), value)
            else:
                assert getattr(model, key) == value or getattr(model, key) is value, key


@pytest.mark.parametrize(
    "change, error",
    [
        ({"lr": float("inf")}, ValueError),
        ({"lr": 1e12}, FloatingPointError),  # diverges mid-training
        ({"hidden": (10**9,)}, MemoryError),
        ({"hidden": (2.5,)}, TypeError),  # before: silently 2
        ({"epochs": -1}, ValueError),
    ],
)
def test_a_failed_refit_leaves_the_model_as_it_was(change, error):
    model, X, y = make_problem((6,), "relu", 3, n=200)
    model.set_params(epochs=3, lr=0.05).fit(X, y)
    state, proba = _state(model), model.predict_proba(X)
    with pytest.raises(error):
        model.set_params(**change).fit(X, y)
    _assert_same_state(model, state)
    np.testing.assert_array_equal(model.predict_proba(X), proba)  # before: zeros, one class


def test_a_failed_fit_on_bad_data_keeps_the_feature_count():
    model, X, y = make_problem((6,), "relu", 3, n=60)
    model.set_params(epochs=1).fit(X, y)
    state = _state(model)
    with pytest.raises(ValueError):
        model.fit(np.ones((60, 9)), np.r_[y[:-1], 99.5])
    _assert_same_state(model, state)
    assert model.n_features_in_ == 5


# ------------------------------------------------------------------ 7. Ctrl-C
INTERRUPTIBLE = """
import signal, sys, time, numpy as np, mlu
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the parent ignores SIGINT
rng = np.random.default_rng(0)
op = sys.argv[1]
if op == "fit":
    X = rng.normal(size=(60000, 200)); y = rng.integers(0, 2, 60000)
    model = mlu.MLP(hidden=(400,), epochs=20, batch_size=32)  # ~1 s an epoch: long
    call = lambda: model.fit(X, y)
else:
    sizes = (20, 30, 30, 3)
    pairs = zip(sizes[:-1], sizes[1:])
    layers = [(rng.normal(0, 0.3, (o, i)), rng.normal(0, 0.1, o)) for i, o in pairs]
    model = mlu.MLP.from_layers(layers, activation="tanh", l2=1e-3)
    X = rng.normal(size=(20000, 20)); y = rng.integers(0, 3, 20000)
    if op == "hessian":
        call = lambda: model.hessian(X, y)  # deep exact: one product per column, ~minutes
    else:
        A = model.hessian_operator(X, y, curvature="ggn")
        b = rng.normal(size=A.size)
        call = lambda: A.cg(b, tol=1e-300, maxiter=10**6)
print("ready", flush=True)
t0 = time.perf_counter()
try:
    call()
    print("finished", time.perf_counter() - t0, flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)  # one clock for both processes
"""


@pytest.mark.skipif(SANITIZED, reason="timing under the sanitizers is meaningless")
@pytest.mark.parametrize("op", ["hessian", "cg", "fit"])
def test_ctrl_c_stops_long_core_loops_within_a_second(op):
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "2"}
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, op],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # inside the core call
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err[-2000:]
    assert out.startswith("interrupted"), out  # before: ran to the end, 20 s and more
    assert float(out.split()[1]) - sent < 1.5  # the KeyboardInterrupt, not the exit


# ------------------------------------------------------------------ 8. the CLI
def test_cli_os_error_is_one_line_and_leftover_temp_files_are_removed(
    tmp_path, capsys, monkeypatch
):
    import mlu.apps.experiments

    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    stale = [out / "plots" / ".fig.png.k2j_8x0q.tmp", out / ".summary.md.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    keep = out / "plots" / "fig.png"
    keep.write_bytes(b"png")
    seen = {}

    def fake_run(cfg, **kwargs):
        seen["stale"] = [p.exists() for p in stale]
        raise PermissionError(13, "Permission denied", str(out / "detection.csv"))

    monkeypatch.setattr(mlu.experiments, "run_experiments", fake_run)
    assert main(["run", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert seen["stale"] == [False, False] and keep.exists()
    assert err[-1] == f"mlu run: error: Permission denied: '{out / 'detection.csv'}'"
    assert not any("Traceback" in line for line in err)


def test_remove_stale_temp_files_only_touches_the_atomic_pattern(tmp_path):
    names = [".a.csv.abcd1234.tmp", ".hidden", "x.tmp", ".a.csv.tmp", "a.csv"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".a.csv.abcd1234.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


# ------------------------------------------------------------------ 9. one coercion rule
def _entry_points(model, X, y):
    v = np.ones(model.n_params)
    return {
        "predict": lambda X: model.predict(X),
        "losses": lambda X: model.losses(X, y),
        "gradients": lambda X: model.gradients(X, y),
        "hvp": lambda X: model.hvp(X, y, v),
        "detect": lambda X: mlu.detect(model, X, y, method="loss"),
        "unlearn": lambda X: mlu.unlearn(model, X, y, [0, 1]).model.params,
    }


@pytest.mark.filterwarnings("ignore::mlu.exceptions.UpdateShortenedWarning")  # incidental here
def test_numeric_object_arrays_are_accepted_everywhere_and_strings_nowhere():
    model, X, y = make_problem((4,), "tanh", 3)
    for name, call in _entry_points(model, X, y).items():
        np.testing.assert_array_equal(call(X.astype(object)), call(X), err_msg=name)
        mixed = X.astype(object)
        mixed[3, 2] = "1.5"
        with pytest.raises(TypeError, match=r"X must hold numbers.*'1\.5'"):
            call(mixed)
        with pytest.raises(TypeError, match="must be real"):
            call(X + 0j)
        boxed = X.astype(object)
        boxed[0, 0] = 1 + 2j
        with pytest.raises(TypeError, match="must be real"):
            call(boxed)


def test_complex_vectors_and_fractional_widths_are_refused():
    model, X, y = make_problem((4,), "tanh", 3)
    v = np.ones(model.n_params)
    with pytest.raises(TypeError, match="v must be real"):  # before: a ComplexWarning
        model.hvp(X, y, v + 1j)
    np.testing.assert_array_equal(model.hvp(X, y, v.astype(object)), model.hvp(X, y, v))
    with pytest.raises(TypeError, match=r"hidden\[0\] must be an integer, got 2\.5"):
        mlu.MLP(hidden=(2.5,), epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        mlu.MLP(batch_size=8.0, epochs=1).fit(X, y)


def test_from_torch_refuses_modules_with_hooks():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    handle = net[2].register_forward_hook(lambda mod, inp, out: out * 2)
    with pytest.raises(ValueError, match=r"submodule '2' \(Linear\) has forward hooks"):
        mlu.engine.interop.from_torch(net)
    handle.remove()
    handle = net.register_forward_pre_hook(lambda mod, inp: inp)
    with pytest.raises(ValueError, match="the module has forward pre hooks"):
        mlu.engine.interop.from_torch(net)
    handle.remove()
    np.testing.assert_allclose(
        mlu.engine.interop.from_torch(net).logits(np.ones((1, 3))),
        net(torch.ones(1, 3)).detach().numpy(),
        rtol=1e-6,
    )


# ------------------------------------------------------------------ fuzz tests
@pytest.fixture(scope="module")
def saved_bytes(saved):
    path, model, X = saved
    return path.read_bytes(), model, X


@settings(
    max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_model_file_reader(saved_bytes, tmp_path_factory, data):
    """Any corruption of a model file gives ValueError/MemoryError, or a model that works."""
    blob, model, X = saved_bytes
    raw = bytearray(blob)
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8)
    )
    for pos, value in edits:
        raw[pos] = value
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    path.write_bytes(bytes(raw[:cut]))
    try:
        loaded = mlu.MLP.load(path)
    except (ValueError, MemoryError):
        return
    assert np.isfinite(loaded.predict_proba(X)).all()


_arrays = st.one_of(
    st.builds(
        lambda shape, dtype: np.zeros(shape, dtype=dtype),
        st.tuples(st.integers(0, 4), st.integers(0, 7)),
        st.sampled_from(["f8", "f4", "i8", "u1", "?", "c16", "U3", "O", "M8[s]"]),
    ),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6), max_size=4),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=2), st.none()), max_size=6),
    st.floats(),
    st.none(),
)


@settings(max_examples=60, deadline=2000)
@given(X=_arrays, which=st.sampled_from(["predict", "losses", "gradients", "hvp", "detect"]))
def test_fuzz_public_entry_points(X, which):
    """Odd inputs give a clear TypeError/ValueError (or a finite result), never a crash."""
    model, X0, y0 = _fuzz_problem()
    n = len(X) if hasattr(X, "__len__") else 1
    y = y0[: max(n, 1)]
    call = _entry_points(model, X0, y)[which]
    try:
        out = call(X)
    except (TypeError, ValueError):
        return
    assert np.isfinite(np.asarray(out, dtype=float)).all()


_FUZZ = {}


def _fuzz_problem():
    if not _FUZZ:
        _FUZZ["p"] = make_problem((3,), "relu", 2, n=10, d=7)
    return _FUZZ["p"]
