"""The experiment driver end to end on a tiny sweep (digits 0 vs 1, a small model)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import mlu
from mlu.apps.experiments import (
    CellStore,
    ExperimentConfig,
    MethodSpec,
    PipelineSpec,
    load_config_file,
    parse_ratio,
    run_experiments,
)

TINY = dict(
    datasets=("digits",),
    classes=(0, 1),
    n_per_class=None,
    hidden=(8,),
    epochs=4,
    ratios=(0.1, 0.3),
    seeds=(0,),
    detectors=("loss", "aum", "early_loss", "self_influence"),
    methods=("influence:params=last", "newton"),
    baselines=("finetune", "retrain", "gradient_ascent", "sisa"),
    pipelines=("aum/zero/newton", "loss/top/influence:params=last"),
    histogram_ratios=(0.3,),
    sisa_shards=2,
)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _f(value: str) -> float:
    return float(value) if value != "" else float("nan")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = ExperimentConfig(**TINY, out=str(out))
    computed = []
    # matplotlib is optional: without it the sweep runs without plots (test_plots_are_drawn skips)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:
        plots = False
    result = run_experiments(cfg, progress=False, plots=plots, on_cell=computed.append)
    return cfg, result, computed


def test_every_output_file_exists(tiny_run):
    cfg, result, computed = tiny_run
    out = result.out
    assert len(computed) == 2 and result.computed == 2 and result.reused == 0
    for name in ("detection.csv", "unlearning.csv", "pipeline.csv", "config.json", "summary.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    cells = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert cells == ["digits_r10_s0.json", "digits_r30_s0.json"]
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_plots_are_drawn(tiny_run):
    pytest.importorskip("matplotlib")
    pngs = {p.name for p in (tiny_run[1].out / "plots").glob("*.png")}
    for kind in ("score_histograms", "detection", "unlearning", "pipeline", "times"):
        assert f"digits_{kind}.png" in pngs


def test_config_json_has_configuration_and_versions(tiny_run):
    cfg, result, _ = tiny_run
    meta = json.loads((result.out / "config.json").read_text())
    assert meta["config"] == cfg.to_dict()
    assert meta["fingerprint"] == cfg.fingerprint()
    for key in ("mlu", "numpy", "python", "platform", "torch"):
        assert key in meta["versions"]
    assert meta["status"] == "done"
    assert ExperimentConfig.from_dict(meta["config"]) == cfg


def test_detection_csv_is_sane(tiny_run):
    _, result, _ = tiny_run
    rows = _read_csv(result.out / "detection.csv")
    detectors = {r["detector"] for r in rows}
    assert detectors == set(TINY["detectors"])
    assert {r["threshold"] for r in rows} == {"top", "auto", "zero"}
    assert len(rows) == 2 * (2 * 4 + 1)  # ratios x (two thresholds x detectors + aum's zero)
    for r in rows:
        for col in ("roc_auc", "average_precision", "precision", "recall", "f1", "accuracy"):
            assert 0.0 <= _f(r[col]) <= 1.0, (col, r)
        n = int(r["n_train"])
        if r["threshold"] == "top":
            assert int(float(r["n_flagged"])) == round(0.1 * n)
    # digits 0 vs 1 is easy: the loss ranks flipped samples almost perfectly.
    assert min(_f(r["roc_auc"]) for r in rows if r["detector"] == "loss") > 0.9


def test_unlearning_accuracies_match_the_models(tiny_run):
    cfg, result, _ = tiny_run
    rows = _read_csv(result.out / "unlearning.csv")
    ds = mlu.datasets.load("digits", classes=(0, 1))
    methods = {r["method"] for r in rows}
    assert methods == {"noisy", *TINY["methods"], *TINY["baselines"]}
    for r in rows:
        for col in ("test_acc", "test_acc_0", "test_acc_1"):
            assert 0.0 <= _f(r[col]) <= 1.0
        assert _f(r["time"]) >= 0.0
        # the mean test accuracy is the class-weighted mean of the per-class ones
        counts = np.bincount(ds.y_test)
        per_class = (_f(r["test_acc_0"]) * counts[0] + _f(r["test_acc_1"]) * counts[1]) / len(
            ds.y_test
        )
        assert math.isclose(per_class, _f(r["test_acc"]), abs_tol=1e-5)
    # Training is deterministic: rebuilding the noisy model and the clean retrain reproduces
    # the accuracies the CSV reports.
    for ratio in TINY["ratios"]:
        noisy = mlu.noise.flip_labels(ds.y_train, rate=ratio, seed=0)
        model = mlu.MLP(**cfg.model_params(0)).fit(ds.X_train, noisy.labels, classes=[0, 1])
        keep = ~noisy.flipped
        clean = mlu.MLP(**cfg.model_params(0)).fit(
            ds.X_train[keep], noisy.labels[keep], classes=[0, 1]
        )
        at = {r["method"]: r for r in rows if float(r["ratio"]) == ratio}
        assert math.isclose(
            _f(at["noisy"]["test_acc"]), model.score(ds.X_test, ds.y_test), abs_tol=1e-6
        )
        assert math.isclose(
            _f(at["retrain"]["test_acc"]), clean.score(ds.X_test, ds.y_test), abs_tol=1e-6
        )
        assert int(at["noisy"]["n_flipped"]) == noisy.n_flipped


def test_pipeline_csv_is_consistent(tiny_run):
    _, result, _ = tiny_run
    rows = _read_csv(result.out / "pipeline.csv")
    unl = _read_csv(result.out / "unlearning.csv")
    for ratio in ("0.1", "0.3"):
        at = [r for r in rows if r["ratio"] == ratio]
        roles = [r["role"] for r in at]
        assert roles.count("noisy") == 1 and roles.count("clean_retrain") == 1
        assert roles.count("unlearn") == 2 and roles.count("retrain_kept") == 2
        clean = next(r for r in at if r["role"] == "clean_retrain")
        oracle = next(r for r in unl if r["ratio"] == ratio and r["method"] == "retrain")
        assert clean["test_acc"] == oracle["test_acc"]
        for r in at:
            assert 0.0 <= _f(r["test_acc"]) <= 1.0
        main = next(r for r in at if r["pipeline"] == "aum/zero/newton")
        assert 0 < int(main["n_flagged"]) < int(main["n_train"])
        assert 0.0 <= _f(main["precision"]) <= 1.0 and 0.0 <= _f(main["recall"]) <= 1.0


def test_summary_states_the_verdict(tiny_run):
    _, result, _ = tiny_run
    text = (result.out / "summary.md").read_text()
    assert "aum/zero/newton" in text
    assert "r = 10%" in text and "r = 30%" in text
    assert "noisy model" in text and "In short" in text


def test_resume_skips_finished_cells(tiny_run):
    cfg, result, _ = tiny_run
    cells = sorted((result.out / "cells").glob("*.json"))
    mtimes = [p.stat().st_mtime_ns for p in cells]
    computed = []
    again = run_experiments(cfg, progress=False, plots=False, on_cell=computed.append)
    assert computed == [] and again.computed == 0 and again.reused == 2
    assert [p.stat().st_mtime_ns for p in cells] == mtimes
    assert again.unlearning == result.unlearning


@pytest.mark.filterwarnings("ignore::mlu.exceptions.UpdateShortenedWarning")  # incidental here
def test_interrupted_sweep_resumes(tmp_path):
    cfg = ExperimentConfig(
        **{
            **TINY,
            "detectors": ("loss",),
            "methods": ("newton",),
            "baselines": ("retrain",),
            "pipelines": ("loss/auto/newton",),
            "ratios": (0.1, 0.2, 0.3),
        },
        out=str(tmp_path),
    )

    def interrupt(cell):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiments(cfg, progress=False, plots=False, on_cell=interrupt)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 1  # the finished cell was kept
    computed = []
    result = run_experiments(cfg, progress=False, plots=False, on_cell=computed.append)
    assert result.reused == 1 and len(computed) == 2
    assert [c["ratio"] for c in computed] == [0.2, 0.3]
    # A changed setting makes the stored cells stale: they are recomputed.
    changed = cfg.replace(epochs=3)
    assert changed.fingerprint() != cfg.fingerprint()
    computed.clear()
    run_experiments(changed, progress=False, plots=False, on_cell=computed.append)
    assert len(computed) == 3
    # Extending the sweep (more ratios or seeds) keeps the fingerprint and reuses cells.
    assert changed.replace(seeds=(0, 1), ratios=(0.5,)).fingerprint() == changed.fingerprint()


def test_cell_store_ignores_torn_and_foreign_files(tmp_path):
    store = CellStore(tmp_path, "abc")
    store.save({"dataset": "digits", "ratio": 0.1, "seed": 0, "x": 1})
    assert store.load("digits", 0.1, 0)["x"] == 1
    assert CellStore(tmp_path, "other").load("digits", 0.1, 0) is None
    store.path("digits", 0.2, 0).write_text('{"dataset": "dig')  # torn write
    assert store.load("digits", 0.2, 0) is None


def test_config_parsing(tmp_path):
    assert parse_ratio("20%") == pytest.approx(0.2) and parse_ratio(0.05) == 0.05
    with pytest.raises(ValueError):
        parse_ratio("120%")
    spec = MethodSpec.parse("newton:steps=2,params=last")
    assert spec.name == "newton" and dict(spec.options) == {"steps": 2, "params": "last"}
    assert spec.label == "newton:params=last,steps=2"
    p = PipelineSpec.parse("aum/top20/newton:damping=0.1")
    assert (p.detector, p.threshold, p.method.options) == ("aum", "top20", (("damping", 0.1),))
    for bad in ("nope/auto/newton", "aum/sometimes/newton", "aum/auto/magic", "aum/auto"):
        with pytest.raises(ValueError):
            PipelineSpec.parse(bad)
    with pytest.raises(ValueError, match="unknown config key"):
        ExperimentConfig.from_dict({"ratio": [0.1]})
    with pytest.raises(ValueError):
        ExperimentConfig(detectors=("loss", "psychic"))
    cfg = ExperimentConfig.from_dict({"dataset": "digits", "ratios": ["10%", 0.2], "seeds": [3]})
    assert cfg.datasets == ("digits",) and cfg.ratios == (0.1, 0.2) and cfg.seeds == (3,)
    (tmp_path / "c.toml").write_text('dataset = "digits"\nratios = ["5%"]\nhidden = [16]\n')
    (tmp_path / "c.json").write_text('{"datasets": ["digits"], "ratios": [0.05], "hidden": 16}')
    a = ExperimentConfig.from_dict(load_config_file(tmp_path / "c.toml"))
    b = ExperimentConfig.from_dict(load_config_file(tmp_path / "c.json"))
    assert a == b and a.hidden == (16,)
    # the defaults are the paper's settings
    d = ExperimentConfig()
    assert (d.hidden, d.activation, d.lr, d.momentum, d.batch_size, d.epochs, d.n_per_class) == (
        (50,),
        "relu",
        0.01,
        0.9,
        32,
        20,
        1000,
    )
    assert d.ratios == (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def test_experiment_alias_reexports_the_public_names():
    # mlu.experiment is released API: it must keep naming the same objects as mlu.experiments.
    import mlu.apps.experiment
    import mlu.apps.experiments

    assert mlu.experiment.__all__ == mlu.experiments.__all__
    for name in mlu.experiments.__all__:
        assert getattr(mlu.experiment, name) is getattr(mlu.experiments, name)
    assert mlu.ExperimentConfig is ExperimentConfig
    assert mlu.run_experiments is run_experiments
