"""README.md's generated tables agree with the results files they quote (tools/readme-tables)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    path = ROOT / "tools" / "readme-tables"
    loader = importlib.machinery.SourceFileLoader("readme_tables", str(path))
    spec = importlib.util.spec_from_loader("readme_tables", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


tool = _tool()


def test_readme_tables_agree_with_the_results_files():
    diff = tool.check(ROOT)
    assert diff == "", (
        "README.md disagrees with its results files; run tools/readme-tables\n" + diff
    )


def test_the_benchmark_table_quotes_results_json():
    # Spot-check the rendering against the stored numbers themselves, not against itself.
    data = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- table:benchmarks -->")[1].split("<!-- /table:benchmarks -->")[0]
    assert f"dgemm peak **{data['dgemm_peak_gflops']:.1f} GFLOP/s**" in block
    grads = next(r for r in data["rows"] if r["op"] == "gradients" and r["size"] == "large")
    row = next(line for line in block.splitlines() if line.startswith("| per-sample gradients"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == [tool.fmt_time(grads["times"][k]) for k in ("mlu", "numpy", "torch")]
    assert tool.fmt_time(1.5745) == "1.57 s" and tool.fmt_time(0.0066) == "6.6 ms"
    # README quotes one dgemm peak, the run's, and no figure the run does not hold.
    assert readme.count("dgemm peak") == block.count("dgemm peak") == 1
    assert "107 GFLOP/s" not in readme and "18.2 s" not in readme


def test_a_hand_edited_number_is_caught(tmp_path):
    for rel in (
        "README.md",
        "benchmarks/results.json",
        "docs/demo.json",
        "benchmarks/results/pipeline_table_summary.json",
        "benchmarks/results/unlearn_large_60000.csv",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    readme = tmp_path / "README.md"
    text = readme.read_text(encoding="utf-8")
    stored = json.loads((ROOT / "benchmarks/results.json").read_text(encoding="utf-8"))
    grads = next(r for r in stored["rows"] if r["op"] == "gradients" and r["size"] == "large")
    mlu_t, numpy_t = (tool.fmt_time(grads["times"][k]) for k in ("mlu", "numpy"))
    row = f"| per-sample gradients, n = 12000 | {mlu_t} | {numpy_t} |"
    assert row in text
    readme.write_text(text.replace(row, row.replace(numpy_t, "18.2 s")), encoding="utf-8")
    diff = tool.check(tmp_path)
    assert f"-| per-sample gradients, n = 12000 | {mlu_t} | 18.2 s |" in diff
    assert f"+{row}" in diff
    # A newer results file changes the table: the check fails until it is regenerated.
    results = json.loads((tmp_path / "benchmarks/results.json").read_text(encoding="utf-8"))
    results["dgemm_peak_gflops"] = 36.8
    (tmp_path / "benchmarks/results.json").write_text(json.dumps(results), encoding="utf-8")
    readme.write_text(text, encoding="utf-8")
    assert "dgemm peak **36.8 GFLOP/s**" in tool.check(tmp_path)
    assert tool.main(["--check"]) == 0  # the real README agrees (the command's exit status)
    # Markers without a renderer, or a renderer without markers, are errors.
    readme.write_text(text + "\n<!-- table:nope -->\n<!-- /table:nope -->\n", encoding="utf-8")
    with pytest.raises(KeyError, match="no table renders"):
        tool.check(tmp_path)
    readme.write_text(text.replace("<!-- table:benchmarks -->", ""), encoding="utf-8")
    with pytest.raises(KeyError, match="lacks the block"):
        tool.check(tmp_path)


def test_the_demo_output_is_a_stored_run():
    # The demo block is what `mlu demo` printed in the run stored in docs/demo.json, whose
    # header names the command, the commit and the machine; its numbers are the run's.
    record = json.loads((ROOT / "docs" / "demo.json").read_text(encoding="utf-8"))
    assert record["command"] == "mlu demo --no-progress"
    assert record["commit"] and record["machine"]["cores"] >= 1
    assert record["machine"]["dgemm_peak_gflops"] > 0
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- table:demo -->")[1].split("<!-- /table:demo -->")[0]
    test = record["demo_json"]["test"]
    for key in ("before", "after", "clean_retrain"):
        assert f"{100 * test[key]['accuracy']:.1f}%" in block
    assert "by aum score" in block  # the pipeline's default detector, as mlu clean uses
