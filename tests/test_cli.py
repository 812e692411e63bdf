"""The ``mlu`` command line: demo, run (options, config files, resume) and report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlu
from mlu.cli import build_parser, main, resolve_config

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


def test_demo(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the demo draws its plot
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
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
