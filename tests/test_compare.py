"""bench compare: a paired test of two runs restricted to the questions both answered."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.metrics import score
from harness.registries import TASKS
from harness.report.compare import compare_paths, differences, render_comparison
from harness.report.runs import read_run
from tests.test_tables import make_run

GOLDS = ["comedy", "romance", "action", "comedy", "romance", "action", "comedy", "romance", "action", "comedy"]


def test_a_limited_run_is_compared_on_its_questions_only(tmp_path):
    full = make_run(tmp_path, "lamp2", "pplug", GOLDS[:7] + ["x"] * 3, GOLDS)  # right on q0-q6
    limited = make_run(tmp_path, "lamp2", "oppu", ["x", "x"] + GOLDS[2:4], GOLDS[:4])  # right on q2, q3
    result = compare_paths(limited, full, resamples=200)
    assert result.shared == 4
    acc = next(m for m in result.metrics if m.metric == "accuracy")
    direct = score(TASKS.get("lamp2"), GOLDS[:4], GOLDS[:4])["accuracy"]
    assert (acc.a, acc.b) == (0.5, direct)
    assert acc.test is not None and acc.test.advantage == pytest.approx(-0.5)
    assert "questions run: 4 vs 10" in differences(read_run(limited), read_run(full))
    text = render_comparison(result)
    assert "on the 4 questions both answered" in text and "| accuracy ↑ | 0.500" in text


def test_identical_predictions_tie_with_p_one(tmp_path):
    a = make_run(tmp_path, "lamp3", "adhoc", ["3", "4", "5", "1"], ["3", "3", "3", "3"])
    b = make_run(tmp_path, "lamp3", "bm25", ["3", "4", "5", "1"], ["3", "3", "3", "3"])
    for m in compare_paths(a, b, resamples=100).metrics:
        assert m.test is not None and m.test.advantage == 0 and m.test.p == 1.0
        assert m.a_ci is not None and m.a_ci == m.b_ci


@pytest.mark.parametrize("second", [
    {"task": "lamp3", "preds": ["3"] * 4, "golds": ["3"] * 4},
    {"task": "lamp2", "preds": GOLDS[:4], "golds": GOLDS[:4], "checksum": "other".ljust(64, "0")},
    {"task": "lamp2", "preds": GOLDS[:4], "golds": ["western"] * 4},
])
def test_runs_whose_ids_name_other_questions_are_refused(tmp_path, second):
    a = make_run(tmp_path, "lamp2", "adhoc", GOLDS, GOLDS)
    b = make_run(tmp_path, second["task"], "bm25", second["preds"], second["golds"],
                 checksum=second.get("checksum"))
    with pytest.raises(ValueError, match="differ in|disagree"):
        compare_paths(a, b)


def test_a_damaged_folder_is_named(tmp_path):
    a = make_run(tmp_path, "lamp2", "adhoc", GOLDS, GOLDS)
    with pytest.raises(ValueError, match="missing: no config.json"):
        compare_paths(a, tmp_path / "missing")


def test_an_under_budget_run_needs_consent_and_is_named(tmp_path):
    short = make_run(tmp_path, "lamp2", "pplug", GOLDS, GOLDS,
                     fit={"trained_to_budget": False, "optimizer_steps": 3, "budget_steps": 10})
    other = make_run(tmp_path, "lamp2", "adhoc", GOLDS, GOLDS)
    with pytest.raises(ValueError, match="short of its training budget"):
        compare_paths(short, other)
    result = compare_paths(short, other, allow_under_budget=True, resamples=0)
    assert any("3 of 10 optimizer steps" in n for n in result.notes)
    assert all(m.test is None for m in result.metrics)


def test_cli_compare_writes_the_report_and_fails_clearly(tmp_path):
    a = make_run(tmp_path, "lamp2", "adhoc", GOLDS, GOLDS)
    b = make_run(tmp_path, "lamp2", "bm25", ["x"] * 10, GOLDS)
    out = tmp_path / "report.md"
    ok = CliRunner().invoke(app, ["compare", str(a), str(b), "--resamples", "50", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "| accuracy ↑ | 1.000" in out.read_text()
    bad = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "missing")])
    assert bad.exit_code != 0 and "missing: no config.json" in " ".join(bad.output.split())
