"""`mlu clean` end to end: data and model files in, suspects, fixed model and report out."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

# the report draws its pictures (matplotlib); tables are read with pandas
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

import mlu  # noqa: E402
import mlu.engine.io  # noqa: E402
from mlu.apps.clean import CannotCleanError, clean, holdout_split  # noqa: E402
from mlu.apps.cli import main  # noqa: E402
from mlu.data.userdata import load_data, load_model  # noqa: E402
from mlu.detection.detect import DEFAULT_PIPELINE_DETECTOR  # noqa: E402

try:
    import torch
    from torch import nn
except ImportError:
    torch = nn = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
RATE = 0.2


@pytest.fixture(scope="module")
def noisy_digits():
    """All 1797 digits (8×8 images), 20% of the labels flipped: (images, given, true)."""
    ds = mlu.datasets.load("digits")
    X = np.vstack([ds.X_train, ds.X_test])
    y_true = np.concatenate([ds.y_train, ds.y_test])
    noisy = mlu.noise.flip_labels(y_true, rate=RATE, seed=0)
    return X.reshape(-1, 8, 8), noisy.labels, y_true


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def check_outputs(out: Path, given, y_true, extra=()) -> dict:
    """The files, the suspects table and the reported precision against the known flips."""
    expected = {"suspects.csv", "model.npz", "report.md", "report.html", "summary.json"}
    expected |= {"scores.png", *extra}
    assert expected <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "suspects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["n_suspects"] > 0
    index = np.array([int(r["index"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert np.all(np.diff(scores) <= 0)  # most suspect first
    assert [r["given"] for r in rows] == [str(v) for v in given[index]]
    assert len(set(index)) == len(index)
    # The reported precision is the fraction of the listed suspects whose label was flipped.
    flipped = given != y_true
    assert summary["precision"] == pytest.approx(flipped[index].mean(), abs=1e-15)
    train, hold = holdout_split(given, 0.2, 0)
    assert set(index) <= set(train)
    assert summary["recall"] == pytest.approx(flipped[index].sum() / flipped[train].sum())
    assert summary["n_known_flipped"] == flipped[train].sum()
    assert summary["precision"] > 0.8
    # The fixed model scores at least as well as the input on the held-out split.
    assert summary["after"]["accuracy"] >= summary["before"]["accuracy"]
    fixed = mlu.engine.io.load_model(out / "model.npz")
    return {"summary": summary, "rows": rows, "fixed": fixed, "hold": hold}


def test_clean_npz_of_flipped_digits_without_a_model(tmp_path, noisy_digits, capsys):
    images, given, y_true = noisy_digits
    data = tmp_path / "digits.npz"
    np.savez(data, X=images, y=given, y_true=y_true)
    out = tmp_path / "out"
    assert main(["clean", str(data), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "trained an MLP with the paper's settings" in printed.err
    res = check_outputs(out, given, y_true, extra=("suspects.png",))
    summary, fixed = res["summary"], res["fixed"]
    assert summary["model"]["trained_here"] is True
    assert summary["image_shape"] == [8, 8]
    assert f"precision {100 * summary['precision']:.1f}%" in printed.out
    # The held-out numbers are those of the written model on the held-out split.
    X = images.reshape(len(images), -1)
    hold = res["hold"]
    assert fixed.score(X[hold], given[hold]) == pytest.approx(summary["after"]["accuracy"])
    assert np.mean(fixed.losses(X[hold], given[hold])) == pytest.approx(summary["after"]["loss"])
    # The report: every section, images inlined in the one HTML file.
    md = (out / "report.md").read_text()
    for section in ("Top suspects", "Scores", "Held-out split", "Per-class", "diagnostics"):
        assert section in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and 'src="scores.png"' not in html
    # An existing DIR is not overwritten without --force, and is left as it was.
    before = listing(out)
    assert main(["clean", str(data), "--out", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    assert listing(out) == before


def test_clean_python_api_returns_the_same(noisy_digits):
    images, given, y_true = noisy_digits
    result = clean(images, given, progress=False)
    train, hold = holdout_split(given, 0.2, 0)
    assert np.array_equal(result.train_index, train) and np.array_equal(result.holdout_index, hold)
    assert result.data.image_shape == (8, 8)
    assert result.after.accuracy >= result.before.accuracy
    assert result.unlearning is not None and result.unlearning.n_forget == len(result.suspects)
    # The suspects are exactly the flagged samples above the threshold, in score order.
    assert np.all(result.suspect_scores > result.threshold)
    assert (result.scores > result.threshold).sum() == len(result.suspects)
    # Against the true labels too (the point of it all): the fixed model is better.
    X = images.reshape(len(images), -1)
    assert result.model.score(X[hold], y_true[hold]) > result.original.score(X[hold], y_true[hold])
    # The input model is untouched: the result holds a new one.
    assert result.model is not result.original
    assert not np.array_equal(result.model.params, result.original.params)


def test_clean_csv_with_string_labels(tmp_path, noisy_digits):
    pd = pytest.importorskip("pandas")
    images, given, y_true = noisy_digits
    X = images.reshape(len(images), -1)
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    frame.insert(0, "digit", NAMES[given])
    frame["truth"] = NAMES[y_true]
    data = tmp_path / "digits.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    code = main(["clean", str(data), "--label", "digit", "--true-label", "truth", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    res = check_outputs(out, NAMES[given], NAMES[y_true])
    summary = res["summary"]
    assert sorted(summary["classes"]) == sorted(NAMES.tolist())
    assert summary["image_shape"] is None and not (out / "suspects.png").exists()
    assert {r["suggested"] for r in res["rows"]} <= set(NAMES)
    assert set(res["fixed"].classes_) == set(NAMES)


@needs_torch
def test_clean_pytorch_state_dict(tmp_path, noisy_digits):
    images, given, y_true = noisy_digits
    X = images.reshape(len(images), -1)
    train, _ = holdout_split(given, 0.2, 0)
    # A PyTorch model trained on the searched split, saved as a float32 state dict.
    net = (
        mlu.MLP(hidden=(32,), activation="tanh", seed=1)
        .fit(X[train], given[train])
        .to_torch(dtype=torch.float32)
    )
    state_path = tmp_path / "net.pt"
    torch.save(net.state_dict(), state_path)
    data = tmp_path / "digits.npz"
    np.savez(data, X=images, y=given, flipped=given != y_true)
    out = tmp_path / "out"
    args = ["clean", str(data), "--model", str(state_path), "--hidden", "32", "--activation",
            "tanh", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    res = check_outputs(out, given, y_true, extra=("model.pt", "suspects.png"))
    assert res["summary"]["model"]["trained_here"] is False
    assert res["summary"]["model"]["pytorch"] is True
    # model.pt is a state dict with the input's keys and dtype, holding the fixed model.
    fixed_state = torch.load(out / "model.pt", weights_only=True)
    assert list(fixed_state) == list(net.state_dict())
    assert all(t.dtype == torch.float32 for t in fixed_state.values())
    net.load_state_dict(fixed_state)
    with torch.no_grad():
        logits = net(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(logits, res["fixed"].logits(X), atol=1e-4)


def test_bad_inputs_give_clear_errors_and_leave_dir_untouched(tmp_path, noisy_digits, capsys):
    images, given, _ = noisy_digits
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = listing(out)
    X = images.reshape(len(images), -1)[:300]
    y = given[:300]

    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n1,2,x\n3,4,y\n")
    nan = tmp_path / "nan.npz"
    X_nan = X.copy()
    X_nan[5, 3] = np.nan
    np.savez(nan, X=X_nan, y=y)
    good = tmp_path / "good.npz"
    np.savez(good, X=X, y=y)
    other = tmp_path / "other.npz"
    mlu.engine.io.save_model(mlu.MLP(hidden=(4,), epochs=1).fit(X[:, :10], y), other)
    cases = [
        (["clean", str(table), "--label", "nope"], "no label column 'nope'"),
        (["clean", str(nan)], "NaN or inf"),
        (["clean", str(good), "--model", str(other)], "takes 10 inputs but the data have 64"),
        (["clean", str(tmp_path / "missing.npz")], "no such data file"),
    ]
    if torch is not None:
        pickled = tmp_path / "module.pt"
        torch.save(nn.Sequential(nn.Linear(64, 10)), pickled)  # a whole module: pickled code
        cases.append((["clean", str(good), "--model", str(pickled)], "not a PyTorch state dict"))
    plain_pickle = tmp_path / "plain.pt"
    plain_pickle.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    if torch is not None:
        cases.append((["clean", str(good), "--model", str(plain_pickle)], "state dict"))
    for args, message in cases:
        assert main([*args, "--out", str(out), "--force", "--no-progress"]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert listing(out) == before, args
    # No temporary directory is left beside DIR either.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_loaders_refuse_bad_files(tmp_path):
    with pytest.raises(ValueError, match="needs arrays 'X' and 'y'"):
        np.savez(tmp_path / "a.npz", X=np.zeros((4, 2)))
        load_data(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="at least two classes"):
        np.savez(tmp_path / "b.npz", X=np.zeros((4, 2)), y=np.zeros(4, int))
        load_data(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="needs the name of its label column"):
        (tmp_path / "c.csv").write_text("a,b\n1,2\n")
        load_data(tmp_path / "c.csv")
    with pytest.raises(ValueError, match="must be numeric"):
        (tmp_path / "d.csv").write_text("a,label\nx,1\ny,2\n")
        load_data(tmp_path / "d.csv", label="label")
    with pytest.raises(ValueError, match="unknown data format"):
        (tmp_path / "e.txt").write_text("hello")
        load_data(tmp_path / "e.txt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pt")


def test_idx_pair(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, size=30).astype(np.uint8)

    def write(path, arr, magic):
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        path.write_bytes(header + arr.tobytes())

    write(tmp_path / "train-images-idx3-ubyte", images, 0x803)
    write(tmp_path / "train-labels-idx1-ubyte", labels, 0x801)
    data = load_data(tmp_path / "train-images-idx3-ubyte")
    assert data.image_shape == (5, 4)
    np.testing.assert_array_equal(data.X, images.reshape(30, -1) / 255.0)
    np.testing.assert_array_equal(data.y, labels)


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no chromium on PATH (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path, noisy_digits):
    images, given, y_true = noisy_digits
    out = tmp_path / "out"
    clean(images, given, out=out, progress=False)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1100,1400",
         (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shot.exists(), proc.stderr
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1100)
    # Not blank: many distinct colours, and dark pixels (text, digits) on the white page.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    dark = (pixels.mean(axis=2) < 0.3).mean()
    assert 0.005 < dark < 0.5


@pytest.mark.filterwarnings("ignore::mlu.exceptions.UpdateShortenedWarning")  # incidental here
def test_given_mlp_with_mixed_activations_and_nothing_flagged(noisy_digits):
    images, given, _ = noisy_digits
    X = images.reshape(len(images), -1)[:400]
    y = given[:400]
    model = mlu.MLP(hidden=(16, 8), activation=("tanh", "relu"), epochs=3).fit(X, y)
    params = model.params
    result = clean(X, y, model=model, fraction=0.0, progress=False)
    assert len(result.suspects) == 0 and result.unlearning is None
    assert "nothing was flagged" in " ".join(result.notes)
    # No training record (track=False): AUM cannot run, the loss scores instead, and it says so.
    assert result.detector == "loss"
    assert "scored by the per-sample loss instead" in " ".join(result.notes)
    # Nothing flagged: every held-out label is trusted, and both judgements agree.
    assert result.trusted.all() and result.trusted_before == result.before
    np.testing.assert_array_equal(result.model.params, params)
    assert result.model.activation == ("tanh", "relu")
    assert result.after == result.before
    np.testing.assert_array_equal(model.params, params)  # the input model is untouched
    # With suspects, the input model is still untouched and the fixed one differs.
    flagged = clean(X, y, model=model, fraction=0.1, progress=False)
    assert len(flagged.suspects) == round(0.1 * len(flagged.train_index)) == 32
    np.testing.assert_array_equal(model.params, params)
    assert not np.array_equal(flagged.model.params, params)


# ---- an ordinary table: the UCI wine data (bundled with scikit-learn), raw features ----------


@pytest.fixture(scope="module")
def noisy_wine():
    """178 wines, 13 raw features (up to 1680), string class names, 20% of labels flipped."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    names = np.array([f"cultivar_{c}" for c in "ABC"])
    noisy = mlu.noise.flip_labels(wine.target, rate=RATE, seed=0)
    return wine.data, names[noisy.labels], names[wine.target], list(wine.feature_names)


def write_wine_csv(path: Path, X, given, truth=None, names=()) -> Path:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=names or [f"f{i}" for i in range(X.shape[1])])
    frame.insert(0, "cultivar", given)
    if truth is not None:
        frame["truth"] = truth
    frame.to_csv(path, index=False)
    return path


def test_clean_wine_csv_scales_and_judges_fairly(tmp_path, noisy_wine, capsys):
    X, given, truth, names = noisy_wine
    data = write_wine_csv(tmp_path / "wine.csv", X, given, truth, names)
    X_in = X.copy()
    out = tmp_path / "out"
    code = main(["clean", str(data), "--label", "cultivar", "--true-label", "truth",
                 "--out", str(out), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    np.testing.assert_array_equal(X, X_in)
    summary = json.loads((out / "summary.json").read_text())
    # Trained here with standardised features and scored by the pipeline's detector (AUM).
    assert summary["model"]["trained_here"] is True
    assert summary["detector"] == DEFAULT_PIPELINE_DETECTOR == "aum"
    assert "features scaled inside the model (standard)" in printed.err
    fixed = mlu.engine.io.load_model(out / "model.npz")
    assert fixed.scale == "standard"  # the scaling is saved with the model
    # The suspects: precision >= 0.8 against the known flips (the issue measured 12%).
    with open(out / "suspects.csv", newline="") as fh:
        index = np.array([int(r["index"]) for r in csv.DictReader(fh)])
    flipped = given != truth
    assert (
        summary["precision"] == pytest.approx(flipped[index].mean()) and summary["precision"] >= 0.8
    )
    assert summary["recall"] >= 0.8
    # Both judgements are reported; the trusted one drops the held-out labels the detector
    # flags, and on it the fixed model beats what the input model showed on all held-out labels.
    trusted = summary["trusted"]
    before, after = summary["before"], summary["after"]
    assert before["n"] == summary["n_holdout"] == 36
    assert trusted["n_holdout_trusted"] + trusted["n_holdout_flagged"] == 36
    assert trusted["before"]["n"] == trusted["after"]["n"] == trusted["n_holdout_trusted"] > 18
    assert trusted["after"]["accuracy"] > before["accuracy"]
    assert trusted["after"]["accuracy"] >= trusted["before"]["accuracy"]
    # The flagged held-out labels are mostly the flipped ones: the trusted accuracy is close to
    # the accuracy against the true labels, which the all-samples figure understates.
    _, hold = holdout_split(given, 0.2, 0)
    true_after = fixed.score(X[hold], truth[hold])
    assert abs(trusted["after"]["accuracy"] - true_after) < abs(after["accuracy"] - true_after)
    assert after["accuracy"] == pytest.approx(fixed.score(X[hold], given[hold]))
    md = (out / "report.md").read_text()
    assert "whose labels the detector trusts" in md and "understates a real gain" in md
    assert "samples whose labels the detector trusts" in printed.out
    # The unlearning's cost against this model's training, when the training time is known.
    if summary["cost_fraction"] is not None:
        assert summary["cost_fraction"] > 0
        assert "of this model's training time" in md or "this model's training time" in md


def test_clean_stops_on_a_model_no_better_than_chance(tmp_path, noisy_wine, capsys):
    X, given, _, _ = noisy_wine
    # Unscaled raw features: the MLP it trains never leaves chance (the 36.1%).
    data = write_wine_csv(tmp_path / "wine.csv", X, given)
    out = tmp_path / "out"
    with pytest.warns(mlu.UnscaledFeaturesWarning):
        code = main(["clean", str(data), "--label", "cultivar", "--scale", "none",
                     "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "no better than chance on the held-out split: accuracy 36.1%" in err
    assert "--scale standard" in err
    assert not out.exists()  # no report of suspects
    # A given model trained on shuffled labels: the Python API raises.
    train, _ = holdout_split(given, 0.2, 0)
    shuffled = np.random.default_rng(0).permutation(given[train])
    model = mlu.MLP(scale="standard", seed=0).fit(X[train], shuffled)
    with pytest.raises(CannotCleanError, match="no better than chance"):
        clean(X, given, model=model, progress=False)


def test_clean_stops_on_scores_without_spread(noisy_wine):
    X, given, _, _ = noisy_wine
    classes = np.unique(given)
    flat = mlu.MLP.from_layers(
        [(np.zeros((5, X.shape[1])), np.zeros(5)), (np.zeros((3, 5)), np.zeros(3))],
        classes=classes,
    )
    with pytest.raises(CannotCleanError, match=r"the loss scores have no spread \(all 1.09861"):
        clean(X, given, model=flat, progress=False)
    # The constant model has no training record: the default detector fell back to the loss.
    with pytest.raises(CannotCleanError, match="margin scores have no spread"):
        clean(X, given, model=flat, detector="margin", progress=False)


def test_clean_training_options_and_bad_values(noisy_wine):
    X, given, _, _ = noisy_wine
    result = clean(X, given, hidden=(8,), epochs=30, scale="minmax", progress=False)
    assert result.original.get_params()["hidden"] == (8,)
    assert result.original.get_params()["epochs"] == 30
    assert result.original.scale == "minmax" and result.model.scale == "minmax"
    assert result.detector == "aum" and result.trusted.shape == result.holdout_index.shape
    with pytest.raises(ValueError, match="scale must be one of"):
        clean(X, given, scale="zscore", progress=False)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        clean(X, given, epochs=0, progress=False)
