"""Sweeps: config parsing, grid order, skipping finished cells, resuming, and carrying on
after a failing cell (tiny random models, synthetic data, a handful of questions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import sweep as sw
from harness.settings import GenerationSettings
from harness.cli import app
from harness.runner import RunRequest, run

GEN = {"num_beams": 1, "max_new_tokens": 4, "batch_size": 2}


def config_text(out: Path, methods: str) -> str:
    return f"""
name = "mini"
out = "{out}"
data = "synthetic"
limit = 4
tasks = ["lamp2"]
llms = ["tiny-causal"]
encoders = ["tiny-encoder"]
seeds = [0]
skip_unregistered = true
methods = {methods}

[generation]
num_beams = 1
max_new_tokens = 4
batch_size = 2
"""


def test_config_parses_methods_grids_and_rejects_typos(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(config_text(tmp_path / "runs", '["adhoc", {name = "pplug+rag", grid = {k = [1, 4]}, '
                                                   'params = {retriever = "bm25"}}]'))
    spec = sw.load_spec(path)
    assert spec.name == "mini" and spec.limit == 4 and dict(spec.generation) == GEN
    assert [m.label for m in spec.methods] == ["adhoc", "pplug+rag(k=1,retriever=bm25)",
                                               "pplug+rag(k=4,retriever=bm25)"]
    path.write_text("seedz = [1]\n" + config_text(tmp_path, '["adhoc"]'))
    with pytest.raises(sw.SweepConfigError, match="unknown key.*seedz"):
        sw.load_spec(path)
    path.write_text(config_text(tmp_path, '["adhoc"]') + "beamz = 2\n")
    with pytest.raises(sw.SweepConfigError, match="unknown generation key.*beamz"):
        sw.load_spec(path)
    with pytest.raises(sw.SweepConfigError, match="'methods' must list"):
        sw.spec_from_mapping({"tasks": ["lamp2"], "methods": []})
    assert sw.spec_from_mapping({"tasks": ["lamp2"], "methods": ["adhoc"], "fits_from": [str(tmp_path)]}
                                ).fits_from == (tmp_path,)
    with pytest.raises(sw.SweepConfigError, match="'fits_from' .*no such folder"):
        sw.spec_from_mapping({"tasks": ["lamp2"], "methods": ["adhoc"], "fits_from": [str(tmp_path / "nope")]},
                             where="s.toml")


def test_grid_is_llm_major_so_each_llm_loads_once():
    spec = sw.spec_from_mapping({"tasks": ["lamp1", "lamp2"], "methods": ["adhoc", "bm25"],
                                 "llms": ["a", "b"], "seeds": [0, 1]})
    grid = sw.cells(spec)
    assert len(grid) == 2 * 2 * 2 * 2
    llms = [c.llm for c in grid]
    assert llms == sorted(llms)  # all of "a" before any "b"
    assert sw.with_overrides(spec, limit=3, num_beams=2, tasks=None).generation["num_beams"] == 2
    pinned = sw.spec_from_mapping({"tasks": ["lamp1"], "encoders": ["bge", "minilm"],
                                   "methods": ["pplug", {"name": "contriever", "encoder": "contriever"}]})
    assert [(c.method.name, c.encoder) for c in sw.cells(pinned)] == [
        ("pplug", "bge"), ("contriever", "contriever"), ("pplug", "minilm")]


def test_sweep_skips_finished_cells_and_continues_after_a_failure(tmp_path):
    out = tmp_path / "runs"
    methods = '["adhoc", {name = "adhoc", params = {no_such_param = 1}}, "not-a-method", "random"]'
    (tmp_path / "s.toml").write_text(config_text(out, methods))
    spec = sw.load_spec(tmp_path / "s.toml")
    first = sw.run_sweep(spec, progress=False)
    status = [o.status for o in first.outcomes]
    assert status == ["ran", "failed", "skipped", "ran"]  # the failure did not stop the random cell
    failed = first.outcomes[1]
    assert "no_such_param" in failed.error and Path(failed.log).exists()
    summary = json.loads(first.summary_path.read_text())
    assert summary["counts"] == {"ran": 2, "reused": 0, "failed": 1, "skipped": 1}
    assert summary["cells"][1]["status"] == "failed"

    second = sw.run_sweep(spec, progress=False)
    assert [o.status for o in second.outcomes] == ["reused", "failed", "skipped", "reused"]
    assert second.outcomes[0].path == first.outcomes[0].path
    assert second.outcomes[0].metrics == first.outcomes[0].metrics


def test_sweep_resumes_an_interrupted_cell(tmp_path):
    out = tmp_path / "runs"
    request = RunRequest(task="lamp2", method="adhoc", params={}, llm="tiny-causal", encoder="tiny-encoder",
                         data="synthetic", limit=4, generation=GenerationSettings(**GEN), out=out, progress=False)

    def stop(i: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(request, on_batch=stop)
    partial = next(out.glob("lamp2/adhoc/*/predictions.jsonl"))
    assert len(partial.read_text().splitlines()) == 2  # one batch of two was written
    spec = sw.spec_from_mapping({"name": "r", "tasks": ["lamp2"], "methods": ["adhoc"], "llms": ["tiny-causal"],
                                 "encoders": ["tiny-encoder"], "limit": 4, "generation": GEN, "out": str(out)})
    report = sw.run_sweep(spec, progress=False)
    assert [o.status for o in report.outcomes] == ["ran"]
    assert len(partial.read_text().splitlines()) == 4
    assert all("gold" in json.loads(line) for line in partial.read_text().splitlines())


def test_cli_sweep_then_table(tmp_path):
    out = tmp_path / "runs"
    (tmp_path / "s.toml").write_text(config_text(out, '["adhoc", "random", "not-a-method"]'))
    cli = CliRunner()
    listed = cli.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--dry-run", "--methods", "adhoc"])
    assert listed.exit_code == 0 and "1 cells" in listed.output
    done = cli.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "skipped" in done.output
    table = cli.invoke(app, ["table", "--runs", str(out), "--resamples", "100", "--out", str(tmp_path / "t")])
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if line.startswith("| task / metric"))
    assert "| lamp2 acc ↑ |" in table.output and "| adhoc |" in header and "| random |" in header
    assert (tmp_path / "t" / "table-1.md").exists() and (tmp_path / "t" / "fig-table-1.png").exists()
    failing = cli.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--no-progress", "--no-skip-unregistered"])
    assert failing.exit_code == 1 and "failed" in failing.output


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("sweeps/*.toml")), ids=lambda p: p.name)
def test_shipped_sweep_configs_parse(path):
    spec = sw.load_spec(path)
    assert sw.cells(spec) and spec.name == path.stem
