"""The ``mlu`` command line: demo, run (options, config files, resume) and report."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlu
from mlu.apps.cli import build_parser, main, resolve_config

TINY_RUN = [
    "run",
    "--dataset",
    "digits",
    "--n-per-class",
    "all",
    "--ratios",
    "10%",
    "30%",
    "--seeds",
    "0",
    "--hidden",
    "8",
    "--epochs",
    "4",
    "--detectors",
    "loss",
    "aum",
    "--methods",
    "newton",
    "--baselines",
    "retrain",
    "--pipelines",
    "aum/zero/newton",
    "--histogram-ratios",
    "30%",
    "--no-progress",
]


def test_demo_shows_a_test_accuracy_gain(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the demo draws its pictures
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "10 classes" in text and "r = 30%" in text
    assert "before: trained on the noisy labels" in text and "oracle" in text
    facts = json.loads((out / "demo.json").read_text())
    # The held-out split judged both ways, as summary.json has it.
    summary = json.loads((out / "summary.json").read_text())
    trusted = summary["trusted"]
    assert (
        f"the {trusted['n_holdout_trusted']} the detector trusts "
        f"{100 * trusted['before']['accuracy']:.1f}% -> {100 * trusted['after']['accuracy']:.1f}%"
    ) in text
    assert trusted["after"]["accuracy"] > summary["after"]["accuracy"]
    assert summary["detector"] == "aum"
    test = facts["test"]
    # The default case: noise visibly hurts, and the pipeline wins back >= 2 points.
    assert test["clean_retrain"]["accuracy"] - test["before"]["accuracy"] >= 0.02
    assert facts["gain"] == test["after"]["accuracy"] - test["before"]["accuracy"] >= 0.02
    assert f"{100 * facts['gain']:+.1f} points" in text
    # The report with the suspects' pictures.
    for name in ("report.html", "report.md", "suspects.png", "suspects.csv", "model.npz"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] > 0.8 and summary["image_shape"] == [8, 8]
    # Running it again replaces its own earlier report, but never another directory.
    assert main(["demo", "--out", str(out), "--no-progress", "--ratio", "0.2"]) == 0
    assert json.loads((out / "demo.json").read_text())["ratio"] == 0.2
    other = tmp_path / "mine"
    other.mkdir()
    assert main(["demo", "--out", str(other)]) == 2
    assert "not an earlier report" in capsys.readouterr().err


def test_demo_sweep(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the sweep's plots
    out = tmp_path / "demo"
    args = ["demo", "--sweep", "--out", str(out), "--classes", "0", "1", "--ratio", "20%"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "noisy model" in text and "pipeline" in text and "retrain on the truly clean" in text
    assert "ROC-AUC" in text
    assert (out / "demo.png").stat().st_size > 10_000
    for name in ("detection.csv", "unlearning.csv", "pipeline.csv", "summary.md"):
        assert (out / name).is_file()
    with open(out / "pipeline.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["role"] for r in rows} == {"noisy", "clean_retrain", "unlearn", "retrain_kept"}
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)


def test_run_tiny_sweep_and_resume(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the run draws plots
    out = tmp_path / "run"
    assert main([*TINY_RUN, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 cell(s) computed, 0 reused" in text
    assert "aum/zero/newton" in text
    for name in (
        "detection.csv",
        "unlearning.csv",
        "pipeline.csv",
        "config.json",
        "summary.md",
        "plots/digits_pipeline.png",
        "plots/digits_score_histograms.png",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["ratios"] == [0.1, 0.3] and meta["config"]["hidden"] == [8]
    # a second run resumes: nothing is recomputed
    assert main([*TINY_RUN, "--out", str(out), "--no-plots"]) == 0
    assert "0 cell(s) computed, 2 reused" in capsys.readouterr().out
    # `mlu report` rebuilds the outputs from the stored cells
    (out / "summary.md").unlink()
    assert main(["report", str(out), "--no-plots"]) == 0
    assert (out / "summary.md").is_file()


def test_run_on_a_data_file(tmp_path, capsys):
    pytest.importorskip("pandas")  # CSV files are read with pandas
    # A CSV of digits with string labels: the same sweep as on the named data set.
    ds = mlu.datasets.load("digits")
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    path = tmp_path / "digits.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", *[f"p{i}" for i in range(64)]])
        for x, y in zip(ds.X_train, ds.y_train):
            writer.writerow([names[y], *x])
    args = [a for a in TINY_RUN if a != "digits"]
    args[args.index("--dataset") : args.index("--dataset") + 1] = []
    out = tmp_path / "run"
    code = main([*args, "--data", str(path), "--label", "kind", "--classes", "one", "seven",
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "2 cell(s) computed" in capsys.readouterr().out
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["datasets"] == [str(path)] and meta["config"]["data_label"] == "kind"
    with open(out / "detection.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # 20% of the two classes' 2 × ~107 training rows are the test set; flips are of the rest.
    n_train = {int(r["n_train"]) for r in rows}
    n_one, n_seven = (ds.y_train == 1).sum(), (ds.y_train == 7).sum()
    assert n_train == {(n_one + n_seven) - math.ceil(0.2 * (n_one + n_seven))}
    # Without --label, a CSV is refused with a clear message.
    assert main([*args, "--data", str(path), "--out", str(tmp_path / "x")]) == 2
    assert "--label" in capsys.readouterr().err


def test_config_file_and_overrides(tmp_path, capsys):
    cfg_file = tmp_path / "sweep.toml"
    cfg_file.write_text(
        'dataset = "digits"\nclasses = [0, 1]\nseeds = [0, 1]\nratios = ["5%", "20%"]\n'
        "hidden = [16]\n[detector_options.early_loss]\nepoch = 2\n"
    )
    args = build_parser().parse_args(["run", "--config", str(cfg_file), "--seeds", "7"])
    cfg = resolve_config(args)
    assert cfg.datasets == ("digits",) and cfg.seeds == (7,) and cfg.hidden == (16,)
    assert cfg.ratios == (0.05, 0.2) and cfg.detector_options == {"early_loss": {"epoch": 2}}
    assert cfg.lr == 0.01 and cfg.epochs == 20  # untouched keys keep the paper's defaults
    json_file = tmp_path / "sweep.json"
    json_file.write_text(json.dumps({"datasets": ["digits"], "n_per_class": None}))
    assert main(["run", "--config", str(json_file), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["datasets"] == ["digits"] and printed["n_per_class"] is None


def test_usage_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"ratio": 0.1}')
    assert main(["run", "--config", str(bad)]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert main(["run", "--detectors", "psychic", "--print-config"]) == 2
    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["run", "--activation", "softsign"])


def test_version_and_module_entry_point():
    assert main(["--version"]) == 0
    # The same mlu this test imported (installed, or a dev tree on PYTHONPATH).
    package_parent = Path(mlu.__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "mlu", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package_parent)},
        timeout=60,
    )
    assert proc.returncode == 0 and "demo" in proc.stdout and "run" in proc.stdout


def test_import_mlu_is_lean():
    # `import mlu` loads neither the experiment driver, the NumPy reference nor matplotlib;
    # they load on first use (a fresh interpreter: this one has imported them already).
    code = (
        "import sys, mlu\n"
        "heavy = ('mlu.apps.experiment', 'mlu.apps.experiments', 'mlu.engine.reference',"
        " 'matplotlib')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m in heavy))\n"
        "mlu.ExperimentConfig, mlu.run_experiments, mlu.reference.losses\n"
        "print(sorted(m for m in ('mlu.apps.experiments', 'mlu.engine.reference')"
        " if m in sys.modules))\n"
        "print('ExperimentConfig' in dir(mlu))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines == ["[]", "['mlu.apps.experiments', 'mlu.engine.reference']", "True"], proc.stderr
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        mlu.nope  # noqa: B018
