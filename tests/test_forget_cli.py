"""``mlu forget`` end to end on the digits: init, requests, retries, log, verify, export, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mlu
from mlu.apps.cli import main
from mlu.unlearning.store import DeletionStore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    ds = mlu.datasets.load("digits")
    X, y = ds.X_train[:300], ds.y_train[:300]
    model = mlu.MLP(hidden=(8,), epochs=5, seed=0, l2=1e-3).fit(X, y)
    d = tmp_path_factory.mktemp("cli")
    np.savez(d / "data.npz", X=X, y=y)
    model.save(d / "model.npz")
    return d, model, X, y


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_forget_end_to_end(files, tmp_path, capsys):
    d, model, X, y = files
    store = str(tmp_path / "store")
    code, out, _ = _run(
        capsys, "forget", "init", store, "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"), "--curvature", "dense", "--damping", "0.05",
    )  # fmt: skip
    assert code == 0 and "created" in out and "dense curvature, damping 0.05" in out
    code, out, _ = _run(capsys, "forget", store, "--rows", "3,17", "--id", "req-1")
    assert code == 0 and out.startswith("request req-1 (#1): removed 2 row(s)")
    code, out, _ = _run(capsys, "forget", store, "--rows", "3,17", "--id", "req-1")
    assert code == 0 and "already applied (#1); nothing changed" in out
    (tmp_path / "rows.txt").write_text("42\n43, 44\n")
    code, out, _ = _run(capsys, "forget", store, "--rows-file", str(tmp_path / "rows.txt"))
    assert code == 0 and "removed 3 row(s)" in out

    code, out, _ = _run(capsys, "forget", store, "--log", "--json")
    records = json.loads(out)
    assert code == 0 and [r["rows"] for r in records] == [[3, 17], [42, 43, 44]]
    assert records[0]["id"] == "req-1" and all(r["id"] for r in records)
    code, out, _ = _run(capsys, "forget", store, "--log")
    assert code == 0 and len(out.splitlines()) == 3 and "req-1" in out

    # the same model as the Unlearner in Python, bit for bit
    un = mlu.Unlearner(model, X, y, curvature="dense", damping=0.05)
    un.forget([3, 17])
    un.forget([42, 43, 44])
    code, out, _ = _run(capsys, "forget", store, "--export", str(tmp_path / "out.npz"))
    assert code == 0 and "after 2 request(s)" in out
    assert np.array_equal(mlu.MLP.load(tmp_path / "out.npz").theta_, un.model.theta_)
    try:
        import torch
    except ImportError:  # no PyTorch (the minimum-versions run): a one-line refusal, no file
        code, _, err = _run(capsys, "forget", store, "--export", str(tmp_path / "out.pt"))
        assert code == 1 and "torch" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "out.pt").exists()
    else:
        code, out, _ = _run(capsys, "forget", store, "--export", str(tmp_path / "out.pt"))
        assert code == 0
        state = torch.load(tmp_path / "out.pt", weights_only=True)
        W, b = un.model.layers[0]
        assert np.allclose(state["0.weight"].double().numpy(), W, atol=1e-6)

    code, out, _ = _run(capsys, "forget", store, "--verify")
    assert code == 0 and out.startswith("verified: 2 request(s)")


def test_forget_init_records_the_mode(files, tmp_path, capsys):
    d, model, X, y = files
    store = str(tmp_path / "store")
    code, out, _ = _run(
        capsys, "forget", "init", store, "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"), "--curvature", "dense", "--mode", "exact",
    )  # fmt: skip
    assert code == 0 and "forgetting mode 'exact'" in out
    code, _, _ = _run(capsys, "forget", store, "--rows", "3,17")
    assert code == 0
    un = mlu.Unlearner(model, X, y, curvature="dense")
    un.forget([3, 17], mode="exact")
    with DeletionStore.open(store) as opened:
        assert opened.options["mode"] == "exact"
        assert np.array_equal(opened.model.theta_, un.model.theta_)
    code, _, err = _run(
        capsys, "forget", "init", str(tmp_path / "other"), "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"), "--epochs", "-1",
    )  # fmt: skip
    assert code == 1 and "epochs" in err and not (tmp_path / "other").exists()
    # the post-update's settings by name: recorded, and served as Unlearner.forget's
    code, _, _ = _run(
        capsys, "forget", "init", str(tmp_path / "named"), "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"), "--curvature", "dense", "--epochs", "0.5",
        "--noise", "0.5", "--shrink", "0.8",
    )  # fmt: skip
    assert _run(capsys, "forget", str(tmp_path / "named"), "--rows", "3,17")[0] == 0
    un = mlu.Unlearner(model, X, y, curvature="dense")
    un.forget([3, 17], epochs=0.5, noise=0.5, shrink=0.8)
    with DeletionStore.open(tmp_path / "named") as opened:
        assert (opened.options["epochs"], opened.options["shrink"]) == (0.5, 0.8)
        assert np.array_equal(opened.model.theta_, un.model.theta_)
    code, _, err = _run(
        capsys, "forget", "init", str(tmp_path / "bad"), "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"), "--shrink", "2",
    )  # fmt: skip
    assert code == 1 and "shrink" in err and not (tmp_path / "bad").exists()


def test_forget_errors_are_one_line_and_leave_nothing(files, tmp_path, capsys):
    d, model, X, y = files
    store = tmp_path / "store"
    # init with a missing model: no store directory appears
    code, _, err = _run(
        capsys, "forget", "init", str(store), "--model", str(d / "nope.npz"),
        "--data", str(d / "data.npz"),
    )  # fmt: skip
    assert code == 1 and err.startswith("mlu forget: error:") and len(err.splitlines()) == 1
    assert not store.exists() and os.listdir(tmp_path) == []
    assert _run(capsys, "forget", "init", str(store), "--data", str(d / "data.npz"))[0] == 1
    code, _, _ = _run(
        capsys, "forget", "init", str(store), "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"),
    )  # fmt: skip
    assert code == 0
    code, _, err = _run(
        capsys, "forget", "init", str(store), "--model", str(d / "model.npz"),
        "--data", str(d / "data.npz"),
    )  # fmt: skip
    assert code == 1 and "already exists" in err
    for argv, message in (
        (["--rows", "1,x"], "expected integer row indices, got 'x'"),
        (["--rows", "300"], "error:"),
        (["--rows", "1", "--log"], "give one of"),
        ([], "give one of"),
        (["--json"], "give one of"),
        (["--log", "--id", "a"], "--id goes with --rows"),
        (["--export", str(tmp_path / "m.txt")], "export to .npz or .pt"),
    ):
        code, out, err = _run(capsys, "forget", str(store), *argv)
        assert code == 1 and message in err and len(err.splitlines()) == 1, (argv, err)
    code, _, err = _run(capsys, "forget", str(tmp_path / "elsewhere"), "--log")
    assert code == 1 and "not a deletion store" in err
    with DeletionStore.open(store) as ro:
        assert ro.log() == []  # none of the failures wrote anything
    assert sorted(n for n in os.listdir(store) if n.startswith(".")) == []

    # other data: refused
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    np.savez(tmp_path / "other.npz", X=X, y=y2)
    code, _, err = _run(
        capsys, "forget", str(store), "--rows", "5", "--data", str(tmp_path / "other.npz")
    )
    assert code == 1 and "differ from the data" in err

    # a tampered model: --log refuses to vouch for it
    assert _run(capsys, "forget", str(store), "--rows", "5")[0] == 0
    tampered = mlu.MLP.load(store / "model.npz")
    tampered.theta_ = tampered.theta_ + 1e-3
    tampered.save(store / "model.npz")
    code, _, err = _run(capsys, "forget", str(store), "--log")
    assert code == 1 and "model.npz" in err and len(err.splitlines()) == 1
