"""mlu without its optional dependencies (matplotlib, cleanlab, tqdm, torch, pandas, dask).

A subprocess hides them with a ``sys.meta_path`` finder that refuses their names, so this runs
whether or not they are installed here. The package imports, its core computes the same numbers
as the NumPy reference, a missing tqdm only means no progress bar, and every public entry point
that needs a hidden package raises an ImportError naming the pip extra that installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlu

HIDDEN = ("matplotlib", "cleanlab", "tqdm", "torch", "torchvision", "pandas", "dask", "distributed")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    HIDDEN = {hidden!r}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    for name in list(sys.modules):  # nothing hidden may be imported already
        assert name.partition(".")[0] not in HIDDEN, name

    import numpy as np
    import mlu
    from mlu import reference

    out = {{"imported_hidden": sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)}}
    data = mlu.datasets.load("digits", classes=(0, 1))
    X, y = data.X_train[:120], data.y_train[:120]
    model = mlu.MLP(hidden=(6,), epochs=3, seed=0, verbose=True).fit(X, y)  # no tqdm: no bar
    ref = reference.forward(
        reference.unflatten(model.params, model.sizes_), model.activation, X
    )
    out["proba_error"] = float(np.max(np.abs(model.predict_proba(X) - reference.softmax(ref))))
    result = mlu.unlearn(model, X, y, forget=np.arange(5))
    out["unlearned_finite"] = bool(np.all(np.isfinite(result.model.params)))
    out["scores_finite"] = bool(np.all(np.isfinite(mlu.detect(model, X, y, method="loss"))))

    def error_of(call):
        try:
            call()
        except ImportError as exc:
            return str(exc)
        return None

    out["errors"] = {{
        "confident_learning": error_of(lambda: mlu.confident_learning(model, X, y)),
        "to_torch": error_of(lambda: model.to_torch()),
        "from_torch": error_of(lambda: mlu.from_torch(object())),
        "plots": error_of(lambda: __import__("mlu.apps.experiments.plots")),
        "run_demo": error_of(lambda: mlu.experiments.run_demo(out=sys.argv[1], print_fn=None)),
    }}
    print(json.dumps(out))
    """
).format(hidden=HIDDEN)


@pytest.fixture(scope="module")
def hidden_run(tmp_path_factory) -> dict:
    out_dir = tmp_path_factory.mktemp("demo")
    # the mlu under test (installed, or a built source tree on PYTHONPATH), not the checkout
    env = {**os.environ, "PYTHONPATH": str(Path(mlu.__file__).parents[1])}
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_package_imports_none_of_them(hidden_run):
    assert hidden_run["imported_hidden"] == []


def test_core_matches_the_reference(hidden_run):
    assert hidden_run["proba_error"] < 1e-12
    assert hidden_run["unlearned_finite"]
    assert hidden_run["scores_finite"]


@pytest.mark.parametrize(
    "entry, extra",
    [
        ("confident_learning", "mlu[cleanlab]"),
        ("to_torch", "mlu[torch]"),
        ("from_torch", "mlu[torch]"),
        ("plots", "mlu[plot]"),
        ("run_demo", "mlu[plot]"),
    ],
)
def test_missing_extra_is_named(hidden_run, entry, extra):
    message = hidden_run["errors"][entry]
    assert message is not None, f"{entry} ran without its optional dependency"
    assert extra in message
