"""The worked plugins in examples/ are discoverable through their entry points and run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.metrics import METRICS
from harness.registries import METHODS, PROMPT_STYLES, TASKS
from tests.conftest import write_dist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
METHOD_EXAMPLE = EXAMPLES / "profile-vote-plugin"
TASK_EXAMPLE = EXAMPLES / "coffee-order-task-plugin"


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """Install both examples the way pip would: their packages on sys.path plus dist-infos."""
    site = tmp_path / "site"
    site.mkdir()
    write_dist(site, "persona_bench_profile_vote",
               {"persona_bench.methods": {"profile-vote": "persona_bench_profile_vote:ProfileVote"}})
    write_dist(site, "persona_bench_coffee_task",
               {"persona_bench.tasks": {"coffee-order": "persona_bench_coffee_task:TASK"}})
    monkeypatch.syspath_prepend(str(METHOD_EXAMPLE))
    monkeypatch.syspath_prepend(str(TASK_EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
    METHODS.reset_plugins()
    TASKS.reset_plugins()
    yield
    METHODS.reset_plugins()
    TASKS.reset_plugins()
    METRICS.unregister("partial-credit")  # registered by the task plugin's import, as is its prompt style
    PROMPT_STYLES.unregister("coffee")
    for module in ("persona_bench_profile_vote", "persona_bench_coffee_task"):
        sys.modules.pop(module, None)


def _metrics(root: Path, task: str) -> dict:
    return json.loads(next(root.glob(f"{task}/profile-vote/*/metrics.json")).read_text())


def test_example_plugin_is_listed_and_runs_through_bench_run(installed_example, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "methods"])
    assert listed.exit_code == 0 and "profile-vote" in listed.output
    result = runner.invoke(app, ["run", "--method", "profile-vote", "--task", "lamp2", "--data", "synthetic",
                                 "--limit", "30", "--llm", "tiny-causal", "--out", str(tmp_path / "runs"),
                                 "--no-progress", "-p", "recent=0"])
    assert result.exit_code == 0, result.output
    # The synthetic users tag mostly with their favourite tags, so voting over the profile
    # must beat chance (1/15) by a wide margin.
    assert _metrics(tmp_path / "runs", "lamp2")["official"]["accuracy"] > 0.3


def test_example_task_plugin_loads_with_its_metric_and_prompt_style(installed_example):
    from harness.metrics import higher_is_better
    from harness.models import tiny_tokenizer
    from harness.prompting import render_prompt

    assert "coffee-order" in TASKS.names()
    assert "persona_bench_coffee_task" not in sys.modules  # discovery is lazy
    task = TASKS.get("coffee-order")
    assert task.metrics == ("accuracy", "f1", "partial-credit") and task.prompt_style == "coffee"
    assert higher_is_better("partial-credit")
    split = task.load_split(task, "auto", "dev", seed=3)
    again = task.load_split(task, "auto", "dev", seed=0)
    assert split.source.checksum == again.source.checksum  # the data seed is the plugin's, not the run's
    assert len(split.examples) == 40 and all(e.output in task.labels for e in split.examples)
    example = split.examples[0]
    prompt = render_prompt(task, example.input, list(example.profile[:2]), tiny_tokenizer())
    assert prompt.endswith(example.input) and " is the order " in prompt


def test_both_example_plugins_run_together_and_the_plugin_metric_is_reported(installed_example, tmp_path):
    result = CliRunner().invoke(app, ["run", "--method", "profile-vote", "--task", "coffee-order", "--data", "auto",
                                      "--llm", "tiny-causal", "--out", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    official = _metrics(tmp_path / "runs", "coffee-order")["official"]
    assert set(official) == {"accuracy", "f1", "partial-credit"}
    # Customers order their usual drink 70% of the time: the profile's majority finds it
    # (chance is 1/8), and partial credit is never below accuracy.
    assert official["accuracy"] > 0.4
    assert official["partial-credit"] >= official["accuracy"]
