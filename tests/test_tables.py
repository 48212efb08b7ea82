"""Tables from hand-made run directories: layout, direction-aware bold, missing cells,
mixed settings, bootstrap CIs on known data and the sign of paired tests."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from harness import stats, tables
from harness.metrics import score
from harness.registries import TASKS


def official(task: str, preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    return score(TASKS.get(task), preds, golds)


def simple_accuracy(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """A transparent scorer for checking the bootstrap against a direct computation."""
    return {"accuracy": sum(p == g for p, g in zip(preds, golds)) / len(golds)}


def make_run(root: Path, task: str, method: str, preds: Sequence[str], golds: Sequence[str], *, seed: int = 0,
             params: dict | None = None, llm: str = "tiny-causal", encoder: str = "tiny-encoder",
             kind: str = "synthetic", checksum: str | None = None, store_gold: bool = True,
             cost: dict | None = None) -> Path:
    """Write config.json, predictions.jsonl and metrics.json the way the runner does."""
    params = params or {}
    checksum = checksum or f"{kind}-{task}".ljust(64, "0")
    h = f"{abs(hash((task, method, json.dumps(params, sort_keys=True), llm, encoder, kind, checksum, seed))):012d}"[:12]
    path = root / task / method / h
    path.mkdir(parents=True)
    detail = {"split_kind": "time", **({"synthetic": {"version": 1, "seed": 0}} if kind == "synthetic" else {})}
    source = {"kind": kind, "location": "/nowhere", "checksum": checksum, "detail": detail, "split": "dev"}
    config = {"task": task, "method": method, "params": params, "llm": llm, "encoder": encoder, "data_kind": kind,
              "data_location": "/nowhere", "data_checksum": checksum, "split": "dev", "limit": None, "seed": seed,
              "generation": {"num_beams": 1, "max_new_tokens": None, "batch_size": 4, "max_input_tokens": 512},
              "shard": None}
    (path / "config.json").write_text(json.dumps({"config": config, "hash": h, "data_source": source,
                                                  "provenance": {"versions": {"torch": "2.0"}}}))
    with open(path / "predictions.jsonl", "w") as fh:
        for i, (p, g) in enumerate(zip(preds, golds)):
            rec = {"id": f"q{i}", "user": "u", "raw": p, "prediction": p, "seconds": 0.01}
            if store_gold:
                rec["gold"] = g
            fh.write(json.dumps(rec) + "\n")
    metrics = {"task": task, "method": method, "metrics": official(task, preds, golds), "n_examples": len(golds),
               "n_users": 1, "data_source": source,
               "cost": cost or {"fit_seconds": 0.0, "predict_seconds": 0.1, "predict_seconds_per_example": 0.01,
                                "peak_rss_mb": 100.0}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


GOLD2 = ["comedy"] * 10
GOLD3 = ["3"] * 10


def standard_runs(root: Path) -> None:
    make_run(root, "lamp2", "adhoc", ["comedy"] * 3 + ["x"] * 7, GOLD2)
    make_run(root, "lamp2", "zeta-plugin", ["comedy"] * 4 + ["x"] * 6, GOLD2)
    make_run(root, "lamp2", "pplug", ["comedy"] * 9 + ["x"], GOLD2)
    make_run(root, "lamp2", "bm25", ["comedy"] * 5 + ["x"] * 5, GOLD2)
    make_run(root, "lamp3", "adhoc", ["5"] * 10, GOLD3)  # MAE 2
    make_run(root, "lamp3", "pplug", ["3"] * 8 + ["4"] * 2, GOLD3)  # MAE 0.2
    # no bm25 / zeta-plugin runs for lamp3: missing cells


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_layout_order_arrows_and_missing(tmp_path):
    standard_runs(tmp_path)
    text = tables.render_table(tmp_path, which="1", fmt="md", resamples=0)
    header, _, *rows = table_lines(text)
    assert [c.strip() for c in header.strip("|").split("|")] == ["task / metric", "adhoc", "bm25", "pplug",
                                                                  "zeta-plugin"]
    assert rows[0].startswith("| lamp2 acc ↑ |") and rows[1].startswith("| lamp2 F1 ↑ |")
    assert rows[2].startswith("| lamp3 MAE ↓ |") and rows[3].startswith("| lamp3 RMSE ↓ |")
    lamp3 = [c.strip() for c in rows[2].strip("|").split("|")]
    assert lamp3[2] == tables.MISSING and lamp3[4] == tables.MISSING  # bm25 and the plugin never ran lamp3
    assert "0.000" not in rows[2]
    assert "tiny-causal" in text and "synthetic" in text  # the header says what the table is


def test_bold_best_respects_direction(tmp_path):
    standard_runs(tmp_path)
    rows = table_lines(tables.render_table(tmp_path, which="1", fmt="md", resamples=0))[2:]
    acc = [c.strip() for c in rows[0].strip("|").split("|")]
    assert acc[3] == "**0.900**" and "**" not in acc[1] + acc[2] + acc[4]
    mae = [c.strip() for c in rows[2].strip("|").split("|")]
    assert mae[3] == "**0.200**" and mae[1] == "2.000"  # lower MAE wins the bold


def test_values_match_metrics_json_in_csv(tmp_path):
    standard_runs(tmp_path)
    rows = list(csv.DictReader(io.StringIO(tables.render_table(tmp_path, which="1", fmt="csv", resamples=200))))
    for row in rows:
        metrics = json.loads((Path(row["runs"]) / "metrics.json").read_text())["metrics"]
        assert float(row["value"]) == pytest.approx(metrics[row["metric"]])
        assert float(row["ci_low"]) <= float(row["value"]) <= float(row["ci_high"])
    assert {r["source"] for r in rows} == {"ours"}


def test_mixed_data_sources_are_split_into_labelled_tables(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 3 + ["x"] * 7, GOLD2, kind="synthetic")
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 6 + ["x"] * 4, GOLD2, kind="lamp")
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 6 + ["x"] * 4, GOLD2, kind="lamp", llm="other-llm")
    text = tables.render_table(tmp_path, which="1", fmt="md", resamples=0)
    assert "3 separate tables" in text
    assert text.count("| task / metric |") == 3
    assert "data: synthetic" in text and "data: lamp" in text and "LLM: other-llm" in text
    # csv keeps them apart as well
    rows = list(csv.DictReader(io.StringIO(tables.render_table(tmp_path, which="1", fmt="csv", resamples=0))))
    assert len({r["setting"] for r in rows}) == 3


def test_same_setting_different_data_files_is_refused(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 10, GOLD2, checksum="a" * 64)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 10, GOLD2, checksum="b" * 64)
    with pytest.raises(ValueError, match="different data files"):
        tables.render_table(tmp_path, which="1", resamples=0)


def test_ci_on_known_data_matches_a_direct_bootstrap():
    golds = ["a"] * 20
    preds = ["a"] * 15 + ["b"] * 5  # accuracy 0.75
    indices = stats.draw_indices(20, 1000, seed=0)
    values = stats.bootstrap_values(stats.from_scorer(simple_accuracy), [preds], golds, indices)["accuracy"]
    correct = np.array([p == g for p, g in zip(preds, golds)], dtype=float)
    direct = correct[indices].mean(axis=1)
    np.testing.assert_allclose(values, direct)
    low, high = stats.percentile_ci(values)
    assert low < 0.75 < high
    # normal approximation sd = sqrt(.75 * .25 / 20) = 0.097: the 95% interval is about +-0.19
    assert 0.3 < high - low < 0.45


@pytest.mark.parametrize("task,preds,golds", [
    ("lamp3", ["1", "2", "3", "4", "5", "3", "3", "2", "4", "5", "1", "oops"], ["3"] * 6 + ["4"] * 6),
    ("lamp2", ["comedy", "action", "drama", "comedy", "sci-fi", "action"], ["comedy", "comedy", "action",
                                                                            "comedy", "sci-fi", "sci-fi"]),
    ("lamp7", ["a b c", "a", "b c d", "x y"], ["a b", "a c", "b d", "x y z"]),
])
def test_tables_resampling_equals_rescoring_each_resample(task, preds, golds):
    """The fast per-example path gives exactly the official score of every resample (macro-F1 and RMSE too)."""
    indices = stats.draw_indices(len(golds), 50, seed=1)
    fast = stats.bootstrap_values(tables._evaluator(task), [preds], golds, indices)
    slow = stats.bootstrap_values(stats.from_scorer(lambda p, g: official(task, p, g)), [preds], golds, indices)
    assert set(fast) == set(TASKS.get(task).metrics)
    for metric in fast:
        np.testing.assert_allclose(fast[metric], slow[metric], rtol=0, atol=1e-12)


def test_paired_test_sign_and_significance(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 38 + ["x"] * 2, golds)
    make_run(tmp_path, "lamp2", "random", ["x"] * 40, golds)  # identical to adhoc: no difference
    make_run(tmp_path, "lamp3", "adhoc", ["5"] * 40, ["3"] * 40)
    make_run(tmp_path, "lamp3", "bm25", ["3"] * 36 + ["5"] * 4, ["3"] * 40)
    grid = tables.build_grids(tables.load_runs(tmp_path), "1", resamples=500)[0]
    cols = {c.method: c for c in grid.columns}
    bm25, rand = grid.cells[("lamp2", cols["bm25"])], grid.cells[("lamp2", cols["random"])]
    assert bm25.p_adhoc["accuracy"].p < 0.05 and bm25.p_adhoc["accuracy"].advantage == pytest.approx(0.95)
    assert rand.p_adhoc["accuracy"].p == 1.0
    lamp3 = grid.cells[("lamp3", cols["bm25"])].p_adhoc["mae"]
    assert lamp3.p < 0.05 and lamp3.advantage == pytest.approx(1.8)  # 0.2 MAE vs 2.0: an advantage
    text = tables.render_markdown(grid)
    lamp2 = next(line for line in text.splitlines() if line.startswith("| lamp2"))
    assert "0.950**†" in lamp2 and "0.000†" not in lamp2
    # a significantly *worse* method gets no marker (markers flag improvements)
    worse = tmp_path / "worse"
    make_run(worse, "lamp2", "adhoc", ["comedy"] * 40, golds)
    make_run(worse, "lamp2", "bm25", ["x"] * 40, golds)
    grid = tables.build_grids(tables.load_runs(worse), "1", resamples=500)[0]
    test = grid.cells[("lamp2", grid.columns[1])].p_adhoc["accuracy"]
    assert test.p < 0.05 and test.advantage < 0
    assert "†" not in tables.render_markdown(grid).split("| lamp2")[1]
    # orientation: a lower error is an advantage, a lower accuracy is not
    a = np.array([0.1, 0.2, 0.15])
    b = np.array([0.5, 0.6, 0.55])
    assert stats.paired_bootstrap(a, b, 0.15, 0.55, higher_is_better=False).advantage > 0
    assert stats.paired_bootstrap(a, b, 0.15, 0.55, higher_is_better=True).advantage < 0


def test_pplug_is_tested_against_the_best_baseline(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 20 + ["x"] * 20, golds)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 21 + ["x"] * 19, golds)
    grid = tables.build_grids(tables.load_runs(tmp_path), "1", resamples=500)[0]
    pplug = grid.cells[("lamp2", next(c for c in grid.columns if c.method == "pplug"))]
    assert pplug.p_adhoc["accuracy"].p < 0.05  # far better than adhoc
    assert pplug.p_best_baseline["accuracy"].p > 0.05  # one example better than bm25: not significant


def test_several_seeds_show_mean_and_std(tmp_path):
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 6 + ["x"] * 4, GOLD2, seed=0)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 8 + ["x"] * 2, GOLD2, seed=1)
    text = tables.render_table(tmp_path, which="1", resamples=100)
    assert "0.700 ± 0.141" in text and "seeds [0, 1]" in text


def test_golds_fall_back_to_the_data_source_and_otherwise_no_ci(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 10, GOLD2, store_gold=False)
    text = tables.render_table(tmp_path, which="1", resamples=100)
    assert "gold outputs unavailable" in text and "[" not in table_lines(text)[2]


def test_ablation_table2_table3_pick_their_columns(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug-mean", ["comedy"] * 5 + ["x"] * 5, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 7 + ["x"] * 3, GOLD2, llm="other-llm")
    make_run(tmp_path, "lamp2", "pplug+rag", ["comedy"] * 8 + ["x"] * 2, GOLD2, params={"k": 1, "retriever": "bm25"})
    make_run(tmp_path, "lamp2", "pplug+rag", ["comedy"] * 9 + ["x"], GOLD2, params={"k": 4, "retriever": "bm25"})
    def header(which: str) -> str:  # every table's header row (two LLMs: two settings, except in Table 2)
        return "\n".join(line for line in table_lines(tables.render_table(tmp_path, which=which, resamples=0))
                         if line.startswith("| task / metric"))

    assert "pplug-mean" in header("ablation") and "adhoc" not in header("ablation")
    assert "pplug-mean" not in header("1") and "pplug+rag" not in header("1")
    t3 = header("3")
    assert "pplug+rag (k=1)" in t3 and "pplug+rag (k=4)" in t3 and t3.index("k=1") < t3.index("k=4")
    t2 = tables.render_table(tmp_path, which="2", resamples=0)
    assert "other-llm + tiny-encoder: pplug" in t2 and "tiny-causal + tiny-encoder: adhoc" in t2
    assert "separate tables" not in t2  # LLM x encoder are the columns of Table 2, not separate settings


def test_paper_block_is_separate_and_labelled(tmp_path):
    standard_runs(tmp_path)
    text = tables.render_table(tmp_path, which="1", paper=True, resamples=0)
    ours, paper = text.split("PAPER (published figures, not computed here)")
    assert "0.565" not in ours and "| lamp2 acc ↑ | 0.326 |" in paper and "**0.565**" in paper
    assert "**0.231**" in paper  # MAE: the lowest is bold
    rows = list(csv.DictReader(io.StringIO(tables.render_table(tmp_path, which="1", fmt="csv", paper=True,
                                                               resamples=0))))
    assert {r["source"] for r in rows} == {"ours", "paper"}


def test_cost_table_latex_and_figures(tmp_path):
    standard_runs(tmp_path)
    make_run(tmp_path, "lamp2", "oppu", ["comedy"] * 10, GOLD2,
             cost={"fit_seconds": 12.5, "predict_seconds_per_example": 0.2, "peak_rss_mb": 900.0,
                   "stored_bytes_per_user": 4096})
    cost = tables.render_table(tmp_path, which="cost", resamples=0, out=tmp_path / "out")
    assert "| lamp2 | oppu | acc ↑ 1.000 | 12.5 | 0.2 | 900.0 | 4.0 KB |" in cost
    latex = tables.render_table(tmp_path, which="1", fmt="latex", resamples=50, out=tmp_path / "out")
    assert "\\begin{tabular}" in latex and "\\textbf{" in latex and "$\\uparrow$" in latex
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"table-cost.md", "table-1.tex", "fig-table-1.png", "fig-table-1.pdf", "fig-quality-vs-cost.png",
            "fig-quality-vs-cost.pdf"} <= written


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no finished runs"):
        tables.render_table(tmp_path)
    standard_runs(tmp_path)
    with pytest.raises(ValueError, match="unknown table"):
        tables.render_table(tmp_path, which="9")
    with pytest.raises(ValueError, match="belong in table"):
        tables.render_table(tmp_path / "lamp2" / "adhoc", which="ablation", resamples=0)


def test_a_column_with_its_own_encoder_is_labelled_not_split(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "contriever", ["comedy"] * 5 + ["x"] * 5, GOLD2, encoder="contriever")
    text = tables.render_table(tmp_path, which="1", resamples=0)
    assert "separate tables" not in text
    assert "| adhoc | contriever [contriever] | pplug |" in text
    assert "encoder: tiny-encoder (columns marked [contriever] use that one)" in text
