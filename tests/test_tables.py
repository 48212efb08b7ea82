"""Tables from hand-made run directories (no models): layout, direction-aware bold, missing
cells, settings never mixed, verification of damaged runs, declared roles, budgets,
bootstrap CIs on known data and the sign of paired tests."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from harness import stats, tables
from harness.api import Method
from harness.metrics import score
from harness.registries import METHODS, TASKS
from harness.report import render, significance
from harness.report.render import MISSING

# What each built-in declares (methods/*.py; pplug+rag's family is the one the tables place
# in Table 3), set here so these tests do not depend on the method modules' current state
# (monkeypatch restores the classes afterwards).
DECLARED = {
    "adhoc": ("baseline", None, None), "bm25": ("retrieval", None, None), "recency": ("retrieval", None, None),
    "contriever": ("retrieval", None, None), "random": ("retrieval", None, None),
    "pplug": ("pplug", None, "prompt-tuning"), "pplug-mean": ("pplug", "pplug", "prompt-tuning"),
    "pplug-noinst": ("pplug", "pplug", None), "pplug+rag": ("pplug+retrieval", "pplug", None),
    "oppu": ("peft", None, "task-lora"),
}


class _Declared(Method):
    """A method that exists only to carry declared roles in these tests (never run)."""

    def predict(self, batch: Sequence[Any]) -> list[str]:
        raise AssertionError("tables never run a method")


class PromptTuning(_Declared):
    family: ClassVar[str] = "control"


class TaskLora(_Declared):
    family: ClassVar[str] = "control"


class PluginNamedLikePPlug(_Declared):
    """A plugin called "pplug-x" that declares nothing: it must get no PPlug treatment."""


class PluginDeclaredVariant(_Declared):
    family: ClassVar[str] = "pplug"
    variant_of: ClassVar[str | None] = "pplug"


@pytest.fixture(autouse=True)
def declared_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (family, variant_of, control) in DECLARED.items():
        cls = METHODS.get(name)
        monkeypatch.setattr(cls, "family", family)
        monkeypatch.setattr(cls, "variant_of", variant_of)
        monkeypatch.setattr(cls, "control", control)
    for name, cls in {"prompt-tuning": PromptTuning, "task-lora": TaskLora, "pplug-x": PluginNamedLikePPlug,
                      "my-pplug-variant": PluginDeclaredVariant}.items():
        if name not in METHODS:
            monkeypatch.setitem(METHODS._items, name, cls)


def official(task: str, preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    return score(TASKS.get(task), preds, golds)


def simple_accuracy(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """A transparent scorer for checking the bootstrap against a direct computation."""
    return {"accuracy": sum(p == g for p, g in zip(preds, golds)) / len(golds)}


def make_run(root: Path, task: str, method: str, preds: Sequence[str], golds: Sequence[str], *, seed: int = 0,
             params: dict | None = None, llm: str = "tiny-causal", encoder: str = "tiny-encoder",
             kind: str = "synthetic", checksum: str | None = None, store_gold: bool = True,
             cost: dict | None = None, parsed: Sequence[str] | None = None, profile: str = "small",
             decoding: str = "free", fit: dict | None = None, method_version: int = 1, task_version: int = 1,
             metrics: dict | None = None) -> Path:
    """Write config.json, predictions.jsonl and metrics.json in the runner's current format.

    ``preds`` are the raw generations (scored by the official set); ``parsed`` the parsed
    predictions (the parsed set), the raw ones when not given.
    """
    params = params or {}
    parsed = list(parsed if parsed is not None else preds)
    checksum = checksum or f"{kind}-{task}".ljust(64, "0")
    key = (task, method, json.dumps(params, sort_keys=True), llm, encoder, kind, checksum, seed, profile, decoding,
           method_version, task_version)
    h = f"{abs(hash(key)):012d}"[:12]
    path = root / task / method / h
    path.mkdir(parents=True)
    detail = {"split_kind": "time", **({"synthetic": {"version": 1, "seed": 0}} if kind == "synthetic" else {})}
    source = {"kind": kind, "location": "/nowhere", "checksum": checksum, "detail": detail, "split": "dev"}
    config = {"task": task, "method": method, "params": params, "llm": llm, "encoder": encoder, "data_kind": kind,
              "data_location": "/nowhere", "data_checksum": checksum, "split": "dev", "limit": None, "seed": seed,
              "generation": {"num_beams": 1, "max_new_tokens": None, "batch_size": 4, "max_input_tokens": 512},
              "shard": None, "profile": profile, "decoding": decoding, "method_version": method_version,
              "task_version": task_version, "train_checksum": None}
    (path / "config.json").write_text(json.dumps({"config": config, "hash": h, "data_source": source,
                                                  "provenance": {"versions": {"torch": "2.0"}}}))
    with open(path / "predictions.jsonl", "w") as fh:
        for i, (raw, p, g) in enumerate(zip(preds, parsed, golds)):
            rec = {"id": f"q{i}", "user": "u", "raw": raw, "prediction": p, "seconds": 0.01,
                   "prompt_sha256": "0" * 64, "retrieved": None}
            if store_gold:
                rec["gold"] = g
            fh.write(json.dumps(rec) + "\n")
    lamp_name = TASKS.get(task).lamp_name if task in TASKS else task
    (path / "predictions.json").write_text(json.dumps(
        {"task": lamp_name, "golds": [{"id": f"q{i}", "output": raw.strip()} for i, raw in enumerate(preds)]}))
    if metrics is None:
        metrics = {"official": official(task, preds, golds), "parsed": official(task, parsed, golds)}
    body = {"task": task, "method": method, **metrics, "decoding": decoding, "profile": profile,
            "n_examples": len(golds), "n_users": 1, "data_source": source, "fit": fit or {},
            "cost": cost or {"fit_seconds": 0.0, "predict_seconds": 0.1, "predict_seconds_per_example": 0.01,
                             "peak_rss_mb": 100.0}}
    (path / "metrics.json").write_text(json.dumps(body))
    return path


GOLD2 = ["comedy"] * 10
GOLD3 = ["3"] * 10
PAPER_NINE = ["adhoc", "bm25", "recency", "contriever", "ropg-rl", "ropg-kd", "rspg-pre", "rspg-post", "pplug"]


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


def header_cells(text: str) -> list[str]:
    return [c.strip() for c in table_lines(text)[0].strip("|").split("|")]


def row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- layout ------------------------------------------------------------------------------------------
def test_table1_has_the_papers_nine_columns_then_others_and_missing_cells(tmp_path):
    standard_runs(tmp_path)
    text = tables.render_table(tmp_path, which="1", fmt="md", resamples=0)
    # pplug's declared control gets its column (not run: every cell "–"), then the plugin
    assert header_cells(text) == ["task / metric", *PAPER_NINE, "prompt-tuning", "zeta-plugin"]
    rows = table_lines(text)[2:]
    assert rows[0].startswith("| lamp2 acc ↑ |") and rows[1].startswith("| lamp2 F1 ↑ |")
    assert rows[2].startswith("| lamp3 MAE ↓ |") and rows[3].startswith("| lamp3 RMSE ↓ |")
    assert {row_cells(r)[10] for r in rows} == {MISSING}
    lamp3 = row_cells(rows[2])
    assert lamp3[2] == MISSING and lamp3[5] == MISSING and lamp3[11] == MISSING  # bm25, ropg-rl, the plugin
    assert "0.000" not in rows[2]
    for fact in ("tiny-causal", "data: synthetic", "profile: small", "decoding: free", "metrics: official",
                 "questions: 10 per task", "encoder: tiny-encoder"):
        assert fact in text  # the header says what the table is


def test_bold_best_respects_direction(tmp_path):
    standard_runs(tmp_path)
    rows = table_lines(tables.render_table(tmp_path, which="1", fmt="md", resamples=0))[2:]
    acc = row_cells(rows[0])
    assert acc[9] == "**0.900**" and "**" not in "".join(acc[1:9] + acc[10:])
    mae = row_cells(rows[2])
    assert mae[9] == "**0.200**" and mae[1] == "2.000"  # lower MAE wins the bold


def test_values_match_metrics_json_in_csv(tmp_path):
    standard_runs(tmp_path)
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=200))
    for row in rows:
        metrics = json.loads((Path(row["runs"]) / "metrics.json").read_text())["official"]
        assert float(row["value"]) == pytest.approx(metrics[row["metric"]])
        assert float(row["ci_low"]) <= float(row["value"]) <= float(row["ci_high"])
    assert {r["source"] for r in rows} == {"ours"} and {r["metric_set"] for r in rows} == {"official"}


# -- settings are never mixed ------------------------------------------------------------------------
def test_mixed_data_sources_are_split_into_labelled_tables(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 3 + ["x"] * 7, GOLD2, kind="synthetic")
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 6 + ["x"] * 4, GOLD2, kind="lamp")
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 6 + ["x"] * 4, GOLD2, kind="lamp", llm="other-llm")
    text = tables.render_table(tmp_path, which="1", fmt="md", resamples=0)
    assert "3 separate tables" in text
    assert text.count("| task / metric |") == 3
    assert "data: synthetic" in text and "data: lamp" in text and "LLM: other-llm" in text
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=0))
    assert len({r["setting"] for r in rows}) == 3


@pytest.mark.parametrize("field,values", [("profile", ("small", "paper")), ("decoding", ("free", "constrained"))])
def test_profiles_and_decoding_modes_get_separate_tables(tmp_path, field, values):
    for value in values:
        make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 3 + ["x"] * 7, GOLD2, **{field: value})
        make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 8 + ["x"] * 2, GOLD2, **{field: value})
    text = tables.render_table(tmp_path, which="1", resamples=50)
    assert "2 separate tables" in text and text.count("| task / metric |") == 2
    assert all(f"{field}: {v}" in text for v in values)
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=50))
    by_setting: dict[str, set[str]] = {}
    for row in rows:
        by_setting.setdefault(row["setting"], set()).add(row[field])
    assert sorted(len(v) for v in by_setting.values()) == [1, 1]  # one value per table


def test_official_and_parsed_are_never_mixed(tmp_path):
    raw = ["Comedy."] * 6 + ["x"] * 4  # official LaMP: "Comedy." is not the label "comedy"
    parsed = ["comedy"] * 6 + ["x"] * 4
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", raw, GOLD2, parsed=parsed)
    official_text = tables.render_table(tmp_path, which="1", resamples=100)
    parsed_text = tables.render_table(tmp_path, which="1", resamples=100, metric_set="parsed")
    assert "metrics: official" in official_text and "metrics: parsed" not in official_text
    assert "metrics: parsed" in parsed_text and "metrics: official" not in parsed_text
    official_acc = row_cells(table_lines(official_text)[2])[9]
    parsed_acc = row_cells(table_lines(parsed_text)[2])[9]
    assert official_acc.lstrip("*").startswith("0.000") and parsed_acc.startswith("**0.600**")
    # the CIs rescore the field each set scores: no rescoring mismatch either way
    assert "rescoring the predictions gives" not in official_text + parsed_text
    for metric_set, expected in (("official", 0.0), ("parsed", 0.6)):
        rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=50, metric_set=metric_set))
        assert {r["metric_set"] for r in rows} == {metric_set}
        pplug = next(r for r in rows if r["method"] == "pplug" and r["metric"] == "accuracy")
        assert float(pplug["value"]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown metric set"):
        tables.render_table(tmp_path, metric_set="both")
    out = tmp_path / "out"
    tables.render_table(tmp_path, which="1", resamples=0, out=out)
    tables.render_table(tmp_path, which="1", resamples=0, out=out, metric_set="parsed")
    assert "metrics: official" in (out / "table-1.md").read_text()  # the parsed table did not overwrite it
    assert "metrics: parsed" in (out / "table-1-parsed.md").read_text()
    assert (out / "fig-table-1-parsed.png").exists()


def test_same_setting_different_data_files_is_refused(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 10, GOLD2, checksum="a" * 64)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 10, GOLD2, checksum="b" * 64)
    with pytest.raises(ValueError, match="different data files"):
        tables.render_table(tmp_path, which="1", resamples=0)


# -- damaged, old and superseded runs ----------------------------------------------------------------
def test_damaged_runs_are_skipped_and_named(tmp_path):
    standard_runs(tmp_path)
    bad_config = make_run(tmp_path, "lamp2", "recency", ["comedy"] * 10, GOLD2)
    (bad_config / "config.json").write_text("{not json")
    empty = make_run(tmp_path, "lamp2", "contriever", ["comedy"] * 10, GOLD2)
    (empty / "metrics.json").write_text("{}")
    blank = make_run(tmp_path, "lamp2", "random", ["comedy"] * 10, GOLD2)
    (blank / "metrics.json").write_text("")
    torn = make_run(tmp_path, "lamp2", "oppu", ["comedy"] * 10, GOLD2)
    lines = (torn / "predictions.jsonl").read_text().splitlines(keepends=True)
    (torn / "predictions.jsonl").write_text("".join(lines[:-1]) + lines[-1][:15])
    short = make_run(tmp_path, "lamp3", "bm25", ["3"] * 10, GOLD3)
    (short / "predictions.jsonl").write_text("".join((short / "predictions.jsonl").read_text()
                                                     .splitlines(keepends=True)[:7]))
    text = tables.render_table(tmp_path, which="1", resamples=200)
    assert "Skipped 5 run folders" in text
    for path, reason in ((bad_config, "config.json is not valid JSON"), (empty, "no scores"),
                         (blank, "metrics.json is empty"), (torn, "predictions.jsonl: line 10"),
                         (short, "7 records")):
        line = next(line for line in text.splitlines() if str(path) in line)
        assert reason in line
    assert "oppu" not in header_cells(text)  # nothing of a skipped run reaches a table
    messages: list[str] = []
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=0, notify=messages.append))
    assert len(messages) == 5 and all(r["method"] != "oppu" for r in rows)


def test_old_format_runs_are_skipped_with_a_message_naming_the_folder(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    old = make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 10, GOLD2,
                   metrics={"metrics": official("lamp2", ["comedy"] * 10, GOLD2)})
    text = tables.render_table(tmp_path, which="1", resamples=0)
    line = next(line for line in text.splitlines() if str(old) in line)
    assert "old format" in line
    assert row_cells(table_lines(text)[2])[2] == MISSING  # bm25's old number is not shown
    only_old = tmp_path / "only-old"
    make_run(only_old, "lamp2", "bm25", ["comedy"] * 10, GOLD2, metrics={"metrics": {"accuracy": 1.0, "f1": 1.0}})
    with pytest.raises(ValueError, match="old format") as err:
        tables.render_table(only_old)
    assert str(only_old / "lamp2" / "bm25") in str(err.value)


def test_runs_of_an_older_method_or_task_version_are_superseded(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    old = make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 10, GOLD2, method_version=1)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 5 + ["x"] * 5, GOLD2, method_version=2)
    text = tables.render_table(tmp_path, which="1", resamples=0)
    assert "superseded" in next(line for line in text.splitlines() if str(old) in line)
    assert row_cells(table_lines(text)[2])[9] == "**0.500**"


# -- unregistered tasks and methods ------------------------------------------------------------------
def test_unregistered_task_and_method_do_not_crash_at_default_resamples(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "ghost-method", ["comedy"] * 10, GOLD2)
    make_run(tmp_path, "plugin-task", "adhoc", ["a"] * 10, ["a"] * 10,
             metrics={"official": {"plugin-score": 0.5}, "parsed": {"plugin-score": 0.5}})
    text = tables.render_table(tmp_path, which="1")  # the default 1,000 resamples
    assert "method 'ghost-method' is not registered here" in text
    assert "plugin-task: no CIs or paired tests (the task is not registered here" in text
    assert "metric 'plugin-score' declares no direction" in text
    assert header_cells(text)[-1] == "ghost-method"  # a generic column, after the declared ones
    assert any(line.startswith("| plugin-task plugin-score ↑ |") and "0.500" in line for line in table_lines(text))
    ghost = next(line for line in table_lines(text) if line.startswith("| lamp2 acc"))
    assert "[" in ghost  # the registered task still gets its CIs


# -- declared roles ------------------------------------------------------------------------------------
def test_a_plugin_named_pplug_x_gets_no_pplug_treatment(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 5 + ["x"] * 35, golds)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 39 + ["x"], golds)
    make_run(tmp_path, "lamp2", "pplug-x", ["comedy"] * 39 + ["x"], golds)
    make_run(tmp_path, "lamp2", "my-pplug-variant", ["comedy"] * 30 + ["x"] * 10, golds)
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=300))
    by_method = {r["method"]: r for r in rows if r["metric"] == "accuracy"}
    assert by_method["pplug"]["best_baseline"] == "bm25" and float(by_method["pplug"]["p_vs_best_baseline"]) < 0.05
    assert by_method["pplug-x"]["best_baseline"] == "" and by_method["pplug-x"]["p_vs_best_baseline"] == ""
    assert by_method["pplug-x"]["p_vs_adhoc"] != ""  # it still gets what every method gets
    text = tables.render_table(tmp_path, which="1", resamples=300)
    acc = dict(zip(header_cells(text), row_cells(table_lines(text)[2])))
    assert "§" in acc["pplug"] and "§" not in acc["pplug-x"] and "†" in acc["pplug-x"]
    assert "my-pplug-variant" not in acc  # a declared variant sits in the ablation, not Table 1
    ablation = header_cells(tables.render_table(tmp_path, which="ablation", resamples=0))
    assert ablation == ["task / metric", "pplug", "my-pplug-variant"]


def test_control_paired_test_is_present_and_the_control_sits_beside_its_method(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "prompt-tuning", ["comedy"] * 10 + ["x"] * 30, golds)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 38 + ["x"] * 2, golds)
    make_run(tmp_path, "lamp2", "oppu", ["comedy"] * 12 + ["x"] * 28, golds)
    make_run(tmp_path, "lamp2", "task-lora", ["comedy"] * 12 + ["x"] * 28, golds)
    text = tables.render_table(tmp_path, which="1", resamples=300)
    head = header_cells(text)
    assert head.index("prompt-tuning") == head.index("pplug") + 1 and head.index("task-lora") == head.index("oppu") + 1
    acc = dict(zip(head, row_cells(table_lines(text)[2])))
    assert "‡" in acc["pplug"] and "‡" not in acc["oppu"]  # oppu equals its control: no marker
    assert "prompt-tuning: +0.700" in text  # the p-value block names the control
    rows = {r["method"]: r for r in read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=300))
            if r["metric"] == "accuracy"}
    assert rows["pplug"]["control"] == "prompt-tuning" and float(rows["pplug"]["p_vs_control"]) < 0.05
    assert float(rows["pplug"]["advantage_vs_control"]) == pytest.approx(0.7)
    assert rows["oppu"]["control"] == "task-lora" and float(rows["oppu"]["p_vs_control"]) == 1.0
    assert rows["adhoc"]["control"] == "" and rows["adhoc"]["p_vs_control"] == ""



def test_the_control_is_the_column_with_the_same_shared_settings(tmp_path):
    """PPlug with 4 soft tokens is tested against the control with 4, not the one with 1."""
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path / "alone", "lamp2", "pplug", ["comedy"] * 20 + ["x"] * 20, golds)
    alone = tables.render_table(tmp_path / "alone", which="1", resamples=50)
    assert "‡" not in dict(zip(header_cells(alone), row_cells(table_lines(alone)[2])))["pplug"]  # no control run
    make_run(tmp_path, "lamp2", "prompt-tuning", ["comedy"] * 30 + ["x"] * 10, golds, params={"n_persona_tokens": 1})
    make_run(tmp_path, "lamp2", "prompt-tuning", ["comedy"] * 10 + ["x"] * 30, golds, params={"n_persona_tokens": 4})
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 20 + ["x"] * 20, golds,
             params={"n_persona_tokens": 4, "history_text": "fields"})
    text = tables.render_table(tmp_path, which="1", resamples=300)
    assert "prompt-tuning (n_persona_tokens=4): +0.250" in text
    assert "no control column matches" not in text
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 20 + ["x"] * 20, golds,
             params={"n_persona_tokens": 2, "history_text": "fields"})
    text = tables.render_table(tmp_path, which="1", resamples=300)
    assert "differs in the settings they share (n_persona_tokens=2 vs 1)" in text


# -- budgets -------------------------------------------------------------------------------------------
def test_an_under_budget_cell_is_not_shown_as_the_methods_result(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "prompt-tuning", ["x"] * 40, golds,
             fit={"optimizer_steps": 400, "budget_steps": 400, "trained_to_budget": True})
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 36 + ["x"] * 4, golds,
             fit={"optimizer_steps": 12, "budget_steps": 400, "trained_to_budget": False})
    text = tables.render_table(tmp_path, which="1", resamples=200)
    acc = dict(zip(header_cells(text), row_cells(table_lines(text)[2])))
    assert acc["pplug"] == "~~0.900~~ (under budget)"  # struck, never bold, no markers, no CI
    assert "**" not in acc["pplug"] and "12 of 400 optimizer steps" in text
    assert "prompt-tuning: trained to its full budget (400 of 400 optimizer steps)" in text
    assert "Note: lamp2 adhoc" not in text  # training-free cells carry no budget verdict
    assert "pplug" not in "".join(line for line in text.split("_Paired tests")[1].splitlines()[1:])
    rows = {r["method"]: r for r in read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=200))
            if r["metric"] == "accuracy"}
    assert rows["pplug"]["value"] == "" and float(rows["pplug"]["under_budget_value"]) == pytest.approx(0.9)
    assert rows["pplug"]["trained_to_budget"] == "false" and rows["pplug"]["p_vs_adhoc"] == ""
    assert rows["prompt-tuning"]["trained_to_budget"] == "true" and rows["adhoc"]["trained_to_budget"] == ""
    # fit.json in artifacts counts as well when metrics.json carries no fit
    other = tmp_path / "artifacts-fit"
    run = make_run(other, "lamp2", "pplug", ["comedy"] * 40, golds)
    (run / "artifacts").mkdir()
    (run / "artifacts" / "fit.json").write_text(json.dumps({"trained_to_budget": False}))
    assert "(under budget)" in tables.render_table(other, which="1", resamples=0)


def test_a_cell_that_shares_another_runs_fit_says_so(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 40, golds,
             fit={"optimizer_steps": 4, "budget_steps": 4, "trained_to_budget": True,
                  "shared_from": {"run": "0123abcd4567", "path": "elsewhere"}})
    text = tables.render_table(tmp_path, which="1", resamples=0)
    assert "fit shared with run 0123abcd4567 (same training, other decoding; training done while predicting" in text


# -- statistics ----------------------------------------------------------------------------------------
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
    fast = stats.bootstrap_values(significance.evaluator(task), [preds], golds, indices)
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
    grid = tables.build_grids(tables.load_runs(tmp_path).runs, "1", resamples=500)[0]
    cols = {c.method: c for c in grid.columns}
    bm25, rand = grid.cells[("lamp2", cols["bm25"])], grid.cells[("lamp2", cols["random"])]
    assert bm25.tests["adhoc"]["accuracy"].test.p < 0.05
    assert bm25.tests["adhoc"]["accuracy"].test.advantage == pytest.approx(0.95)
    assert rand.tests["adhoc"]["accuracy"].test.p == 1.0
    lamp3 = grid.cells[("lamp3", cols["bm25"])].tests["adhoc"]["mae"].test
    assert lamp3.p < 0.05 and lamp3.advantage == pytest.approx(1.8)  # 0.2 MAE vs 2.0: an advantage
    lamp2 = next(line for line in table_lines(render.render_markdown(grid)) if line.startswith("| lamp2 acc"))
    assert "0.950**†" in lamp2 and "0.000†" not in lamp2
    # a significantly *worse* method gets no marker (markers flag improvements)
    worse = tmp_path / "worse"
    make_run(worse, "lamp2", "adhoc", ["comedy"] * 40, golds)
    make_run(worse, "lamp2", "bm25", ["x"] * 40, golds)
    grid = tables.build_grids(tables.load_runs(worse).runs, "1", resamples=500)[0]
    test = grid.cells[("lamp2", grid.columns[1])].tests["adhoc"]["accuracy"].test
    assert test.p < 0.05 and test.advantage < 0
    assert "†" not in render.render_markdown(grid).split("| lamp2")[1].split("\n")[0]
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
    grid = tables.build_grids(tables.load_runs(tmp_path).runs, "1", resamples=500)[0]
    pplug = grid.cells[("lamp2", next(c for c in grid.columns if c.method == "pplug"))]
    assert pplug.tests["adhoc"]["accuracy"].test.p < 0.05  # far better than adhoc
    best = pplug.tests["best_baseline"]["accuracy"]
    assert best.against == "bm25" and best.test.p > 0.05  # one example better than bm25: not significant


def test_versus_tests_every_column_against_the_named_one(tmp_path):
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 20 + ["x"] * 20, golds, params={"k": 1})
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 30 + ["x"] * 10, golds, params={"k": 4})
    make_run(tmp_path, "lamp2", "recency", ["comedy"] * 38 + ["x"] * 2, golds)
    grid = tables.build_grids(tables.load_runs(tmp_path).runs, "1", resamples=500, versus="bm25 (k=4)")[0]
    by_label = {c.label: grid.cells[("lamp2", c)] for c in grid.columns if ("lamp2", c) in grid.cells}
    assert set(by_label) == {"adhoc", "bm25 (k=1)", "bm25 (k=4)", "recency"}
    recency = by_label["recency"].tests["versus"]["accuracy"]
    assert recency.against == "bm25 (k=4)" and recency.test.advantage == pytest.approx(0.2) and recency.test.p < 0.05
    assert by_label["bm25 (k=1)"].tests["versus"]["accuracy"].test.advantage == pytest.approx(-0.25)
    assert by_label["adhoc"].tests["versus"]["accuracy"].test.advantage == pytest.approx(-0.75)
    assert "accuracy" not in by_label["bm25 (k=4)"].tests["versus"]  # never tested against itself
    text = render.render_markdown(grid)
    assert "| tested row | column | vs adhoc | vs control | vs best baseline | vs bm25 (k=4) |" in text
    assert "also tested against bm25 (k=4)" in text
    rows = {(r["column"], r["metric"]): r for r in read_csv(tables.render_table(tmp_path, fmt="csv", resamples=500,
                                                                                 versus="bm25 (k=4)"))}
    assert rows[("recency", "accuracy")]["versus"] == "bm25 (k=4)"
    assert float(rows[("recency", "accuracy")]["advantage_vs_versus"]) == pytest.approx(0.2)
    assert rows[("bm25 (k=4)", "accuracy")]["p_vs_versus"] == ""
    # a method with one column is named by its name; one with several columns must be named by label
    grid = tables.build_grids(tables.load_runs(tmp_path).runs, "1", resamples=200, versus="recency")[0]
    bm25_4 = next(c for c in grid.columns if c.label == "bm25 (k=4)")
    assert grid.cells[("lamp2", bm25_4)].tests["versus"]["accuracy"].test.advantage == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="several columns.*bm25 \\(k=1\\), bm25 \\(k=4\\)"):
        tables.render_table(tmp_path, resamples=0, versus="bm25")
    with pytest.raises(ValueError, match="no column with runs in these tables; columns: adhoc, bm25"):
        tables.render_table(tmp_path, resamples=0, versus="contriever")


def test_several_seeds_show_mean_and_std(tmp_path):
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 6 + ["x"] * 4, GOLD2, seed=0)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 8 + ["x"] * 2, GOLD2, seed=1)
    text = tables.render_table(tmp_path, which="1", resamples=100)
    assert "0.700 ± 0.141" in text and "seeds [0, 1]" in text


def test_a_pooled_win_whose_seeds_disagree_gets_no_marker(tmp_path):
    """Seed 0 far better than its control, seed 1 worse: the pooled test is significant, the
    marker is withheld and the per-seed advantages are printed and written to the CSV."""
    golds = ["comedy"] * 40
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 40, golds)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 36 + ["x"] * 4, golds, seed=0)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 14 + ["x"] * 26, golds, seed=1)
    make_run(tmp_path, "lamp2", "prompt-tuning", ["comedy"] * 10 + ["x"] * 30, golds, seed=0)
    make_run(tmp_path, "lamp2", "prompt-tuning", ["comedy"] * 20 + ["x"] * 20, golds, seed=1)
    grid = tables.build_grids(tables.load_runs(tmp_path).runs, "1", resamples=300)[0]
    cols = {c.method: c for c in grid.columns}
    pplug = grid.cells[("lamp2", cols["pplug"])]
    control = pplug.tests["control"]["accuracy"]
    assert control.test.p < 0.05 and control.test.advantage == pytest.approx(0.25)  # 0.625 vs 0.375, pooled
    assert control.per_seed == (pytest.approx((0, 0.65)), pytest.approx((1, -0.15)))
    assert not control.seeds_agree and not render.significantly_better(control)
    adhoc = pplug.tests["adhoc"]["accuracy"]  # adhoc ran one seed: nothing per seed to disagree
    assert adhoc.per_seed == () and render.significantly_better(adhoc)
    text = render.render_markdown(grid)
    acc = dict(zip(header_cells(text), row_cells(table_lines(text)[2])))
    assert "†" in acc["pplug"] and "‡" not in acc["pplug"]
    assert "prompt-tuning: +0.250 (p " in text and "; seeds +0.650/-0.150, signs differ)" in text
    assert "a marker needs every seed to agree in sign" in text
    rows = {r["method"]: r for r in read_csv(tables.render_table(tmp_path, which="1", fmt="csv", resamples=300))
            if r["metric"] == "accuracy"}
    assert rows["pplug"]["per_seed_vs_control"] == "0:+0.65;1:-0.15" and rows["pplug"]["per_seed_vs_adhoc"] == ""
    # the same seeds pointing the same way keep the marker
    agree = tmp_path / "agree"
    make_run(agree, "lamp2", "pplug", ["comedy"] * 36 + ["x"] * 4, golds, seed=0)
    make_run(agree, "lamp2", "pplug", ["comedy"] * 30 + ["x"] * 10, golds, seed=1)
    make_run(agree, "lamp2", "prompt-tuning", ["comedy"] * 10 + ["x"] * 30, golds, seed=0)
    make_run(agree, "lamp2", "prompt-tuning", ["comedy"] * 20 + ["x"] * 20, golds, seed=1)
    grid = tables.build_grids(tables.load_runs(agree).runs, "1", resamples=300)[0]
    control = grid.cells[("lamp2", next(c for c in grid.columns if c.method == "pplug"))].tests["control"]["accuracy"]
    assert control.seeds_agree and render.significantly_better(control)
    assert "; seeds +0.650/+0.250)" in render.render_markdown(grid)


def test_golds_fall_back_to_the_data_source_and_otherwise_no_ci(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["comedy"] * 10, GOLD2, store_gold=False)
    text = tables.render_table(tmp_path, which="1", resamples=100)
    assert "gold outputs unavailable" in text and "[" not in table_lines(text)[2]


# -- the other tables ------------------------------------------------------------------------------------
def test_ablation_table2_table3_pick_their_columns_from_declared_roles(tmp_path):
    make_run(tmp_path, "lamp2", "adhoc", ["x"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 10, GOLD2)
    make_run(tmp_path, "lamp2", "pplug-mean", ["comedy"] * 5 + ["x"] * 5, GOLD2)
    make_run(tmp_path, "lamp2", "pplug", ["comedy"] * 7 + ["x"] * 3, GOLD2, llm="other-llm")
    make_run(tmp_path, "lamp2", "pplug+rag", ["comedy"] * 8 + ["x"] * 2, GOLD2, params={"k": 1, "retriever": "bm25"})
    make_run(tmp_path, "lamp2", "pplug+rag", ["comedy"] * 9 + ["x"], GOLD2, params={"k": 4, "retriever": "bm25"})
    make_run(tmp_path, "lamp2", "bm25", ["comedy"] * 6 + ["x"] * 4, GOLD2)

    def header(which: str) -> str:  # every table's header row (two LLMs: two settings, except in Table 2)
        return "\n".join(line for line in table_lines(tables.render_table(tmp_path, which=which, resamples=0))
                         if line.startswith("| task / metric"))

    assert "pplug-mean" in header("ablation") and "adhoc" not in header("ablation")
    assert "pplug+rag" not in header("ablation")  # a variant of another family is no ablation
    assert "pplug-mean" not in header("1") and "pplug+rag" not in header("1")
    t3 = header("3")
    assert "pplug+rag (k=1)" in t3 and "pplug+rag (k=4)" in t3 and t3.index("k=1") < t3.index("k=4")
    assert "bm25" in t3 and "adhoc" not in t3
    t2 = tables.render_table(tmp_path, which="2", resamples=0)
    assert "other-llm + tiny-encoder: pplug" in t2 and "tiny-causal + tiny-encoder: adhoc" in t2
    assert "bm25" not in header("2") and "separate tables" not in t2


def test_paper_block_is_separate_and_labelled(tmp_path):
    standard_runs(tmp_path)
    text = tables.render_table(tmp_path, which="1", paper=True, resamples=0)
    ours, paper = text.split("PAPER (published figures, not computed here)")
    assert "0.565" not in ours and "| lamp2 acc ↑ | 0.326 |" in paper and "**0.565**" in paper
    assert "**0.231**" in paper  # MAE: the lowest is bold
    assert "| task / metric | ad-hoc | BM25 | Recency | Contriever | ROPG-RL | ROPG-KD | RSPG-Pre | RSPG-Post | PPlug |" \
        in paper
    rows = read_csv(tables.render_table(tmp_path, which="1", fmt="csv", paper=True, resamples=0))
    assert {r["source"] for r in rows} == {"ours", "paper"}
    paper_rows = [r for r in rows if r["source"] == "paper"]
    assert len(paper_rows) == 11 * 9 and {r["method"] for r in paper_rows} == set(PAPER_NINE)


def test_cost_table_latex_and_figures(tmp_path):
    standard_runs(tmp_path)
    make_run(tmp_path, "lamp2", "oppu", ["comedy"] * 10, GOLD2,
             cost={"fit_seconds": 12.5, "predict_seconds_per_example": 0.2, "peak_rss_mb": 900.0,
                   "stored_bytes_per_user": 4096})
    cost = tables.render_table(tmp_path, which="cost", resamples=0, out=tmp_path / "out")
    assert "| lamp2 | oppu | acc ↑ 1.000 | 12.5 | 0.2 | 900.0 | 4.0 KB |" in cost
    latex = tables.render_table(tmp_path, which="1", fmt="latex", resamples=50, out=tmp_path / "out")
    assert "\\begin{tabular}" in latex and "\\textbf{" in latex and "$\\uparrow$" in latex
    assert "feedback" not in cost  # no method here asked the LLM for feedback
    make_run(tmp_path, "lamp2", "ropg-kd", ["comedy"] * 10, GOLD2,
             cost={"fit_seconds": 80.0, "feedback_records": 768, "feedback_reused": 0, "feedback_seconds": 64.0,
                   "predict_seconds_per_example": 0.3})
    cost = tables.render_table(tmp_path, which="cost", resamples=0, out=tmp_path / "out")
    assert "| train s | feedback records | of which reused | feedback s (in train s) | infer s/ex |" in cost
    assert "| lamp2 | ropg-kd | acc ↑ 1.000 | 80.0 | 768 | 0 | 64.0 | 0.3 |" in cost
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"table-cost.md", "table-1.tex", "fig-table-1.png", "fig-table-1.pdf", "fig-quality-vs-cost.png",
            "fig-quality-vs-cost.pdf"} <= written
    shared_process = tmp_path / "out" / "shared-process"  # after the checks above: they read all of tmp_path
    make_run(shared_process, "lamp2", "oppu", ["comedy"] * 10, GOLD2,
             cost={"fit_seconds": 12.5, "predict_seconds_per_example": 0.2, "peak_rss_mb": 900.0,
                   "peak_rss_scope": "process", "stored_bytes_per_user": 4096})
    labelled = tables.render_table(shared_process, which="cost", resamples=0)
    assert "| 900.0 (process peak) | 4.0 KB |" in labelled
    assert "per-user train s" not in labelled  # only a method that trains while predicting reports it
    make_run(shared_process, "lamp3", "oppu", ["3"] * 10, GOLD3,
             cost={"fit_seconds": 12.5, "user_train_seconds": 230.0, "predict_seconds_per_example": 24.0})
    labelled = tables.render_table(shared_process, which="cost", resamples=0)
    assert "| train s | per-user train s (in infer s/ex) | infer s/ex |" in labelled
    assert "| lamp3 | oppu | MAE ↓ 0.000 | 12.5 | 230.0 | 24 |" in labelled


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no usable finished runs"):
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
    assert "| adhoc | bm25 | recency | contriever [contriever] |" in text
    assert "encoder: tiny-encoder (columns marked [contriever] use that one)" in text


def test_reading_tables_imports_no_torch():
    code = "import sys, harness.tables; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
