"""The worked plugin in examples/ is discoverable through its entry point and runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.registries import METHODS
from tests.conftest import write_dist

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "profile-vote-plugin"


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """Install the example the way pip would: its package on sys.path plus a dist-info."""
    site = tmp_path / "site"
    site.mkdir()
    write_dist(site, "persona_bench_profile_vote",
               {"persona_bench.methods": {"profile-vote": "persona_bench_profile_vote:ProfileVote"}})
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
    METHODS.reset_plugins()
    yield
    METHODS.reset_plugins()
    sys.modules.pop("persona_bench_profile_vote", None)


def test_example_plugin_is_listed_and_runs_through_bench_run(installed_example, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "methods"])
    assert listed.exit_code == 0 and "profile-vote" in listed.output
    result = runner.invoke(app, ["run", "--method", "profile-vote", "--task", "lamp2", "--data", "synthetic",
                                 "--limit", "30", "--llm", "tiny-causal", "--out", str(tmp_path / "runs"),
                                 "--no-progress", "-p", "recent=0"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(next((tmp_path / "runs").glob("lamp2/profile-vote/*/metrics.json")).read_text())
    # The synthetic users tag mostly with their favourite tags, so voting over the profile
    # must beat chance (1/15) by a wide margin.
    assert metrics["metrics"]["accuracy"] > 0.3
