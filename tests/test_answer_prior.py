"""majority and user-majority: label priors without the LLM, through the ordinary runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.api import Example, RunContext
from harness.backbones import GenerationSettings
from harness.registries import METHODS, TASKS
from methods.answer_prior import Majority, UserMajority, as_label, ranked_labels

LAMP3 = TASKS.get("lamp3")


def context(tmp_path: Path, task=LAMP3) -> RunContext:
    return RunContext(task=task, llm_name="tiny-causal", encoder_name="tiny-encoder", seed=0, artifacts_dir=tmp_path,
                      generation=GenerationSettings(num_beams=1, max_new_tokens=4, batch_size=4), progress=False)


def review(score, text="fine") -> dict:
    return {"id": f"i{score}{text}", "text": text, "score": score}


TRAIN = [Example(id=f"t{i}", input="rate", profile=(), output=gold) for i, gold in enumerate("5545543")]


def test_labels_are_read_whatever_their_type_and_ranked_by_frequency():
    labels = LAMP3.labels
    assert [as_label(v, labels) for v in (4, "4", 4.0, " 4 ", 4.5, "great", 9)] == ["4"] * 4 + [None] * 3
    assert ranked_labels(["2", "4", "4", "2", "1"], labels) == ["2", "4", "1", "3", "5"]  # ties: the task's order


def test_majority_answers_the_train_mode_for_everyone(tmp_path):
    method = Majority(context(tmp_path))
    method.fit(TRAIN)
    dev = [Example(id="d1", input="rate", profile=(review(1),)), Example(id="d2", input="rate", profile=())]
    assert method.predict(dev) == ["5", "5"]
    assert method.fit_summary() == {"train_examples_used": 7, "answer": "5"}


def test_user_majority_reads_the_users_own_labels(tmp_path):
    method = UserMajority(context(tmp_path))
    method.fit(TRAIN)  # population ranking: 5, 4, 3, ...
    harsh = (review(2, "a"), review(2.0, "b"), review("1", "c"))
    tie = (review(3, "a"), review(4, "b"))  # 3 and 4 once each: the more common train label wins
    unlabelled = ({"id": "x", "text": "no score", "score": "n/a"},)
    dev = [Example(id=str(i), input="rate", profile=p) for i, p in enumerate((harsh, tie, unlabelled, ()))]
    assert method.predict(dev) == ["2", "4", "5", "5"]


def test_priors_refuse_tasks_they_cannot_answer(tmp_path):
    with pytest.raises(ValueError, match="closed label set"):
        Majority(context(tmp_path, TASKS.get("lamp7")))
    with pytest.raises(ValueError, match="no train question"):
        Majority(context(tmp_path)).fit([Example(id="t", input="rate", profile=(), output="excellent")])


def test_registered_as_priors_and_run_end_to_end(tmp_path):
    from harness.runner import RunRequest, run

    assert METHODS.get("majority") is Majority and METHODS.get("user-majority") is UserMajority
    assert Majority.family == UserMajority.family == "prior" and Majority.uses_train
    result = run(RunRequest(task="lamp3", method="user-majority", params={}, llm="tiny-causal", encoder="tiny-encoder",
                            data="synthetic", limit=8, generation=context(tmp_path).generation, out=tmp_path,
                            progress=False))
    records = [json.loads(line) for line in (result.path / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["raw"] in LAMP3.labels for r in records)
    assert all(r["prompt_sha256"] is None for r in records)  # no LLM call, no prompt to audit
    assert result.metrics["official"]["mae"] < 2.0  # the synthetic raters' own scores carry their bias
