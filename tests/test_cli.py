"""The bench command line: help everywhere, listings, scoring and clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["run"], ["score"], ["table"], ["list"], ["data"], ["data", "synth"],
                                  ["data", "validate"], ["data", "download"], ["compare"]])
def test_help_everywhere(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_list_tasks_and_models():
    tasks = runner.invoke(app, ["list", "tasks"])
    assert tasks.exit_code == 0 and "lamp7" in tasks.output
    models = runner.invoke(app, ["list", "models"])
    assert models.exit_code == 0 and "smollm2-135m" in models.output


def test_list_retrievers_and_prompt_styles():
    retrievers = runner.invoke(app, ["list", "retrievers"])
    assert retrievers.exit_code == 0, retrievers.output
    assert all(name in retrievers.output for name in ("bm25", "recency", "contriever", "ropg-kd"))
    styles = runner.invoke(app, ["list", "prompt-styles"])
    assert styles.exit_code == 0, styles.output
    assert all(f"lamp{i}" in styles.output for i in range(1, 8)) and "is the score for" in styles.output
    unknown = runner.invoke(app, ["list", "retriever"])
    assert unknown.exit_code == 2 and "prompt-styles" in unknown.output


def test_unknown_method_suggests(tmp_path):
    result = runner.invoke(app, ["run", "--method", "adhok", "--task", "lamp2", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Did you mean 'adhoc'" in result.output


def test_score_command_writes_metrics(tmp_path):
    golds = {"task": "LaMP_3", "golds": [{"id": "1", "output": "5"}, {"id": "2", "output": "1"}]}
    preds = {"task": "LaMP_3", "golds": [{"id": "2", "output": "2"}, {"id": "1", "output": " 5 "}]}
    (tmp_path / "g.json").write_text(json.dumps(golds))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    result = runner.invoke(app, ["score", "--task", "lamp3", "--predictions", str(tmp_path / "p.json"),
                                 "--golds", str(tmp_path / "g.json"), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == {"mae": 0.5, "rmse": pytest.approx((0.5) ** 0.5)}
