"""LLM feedback store: round trip, torn-line repair, resumption, sharing, utilities.

Tiny random models (``tiny-causal``, ``tiny-encoder``); examples are built by hand. The
helpers here are shared with the ROPG and RSPG tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness import feedback as fb
from harness.api import Example, RunContext
from harness.backbones import GenerationSettings
from harness.registries import TASKS
from tests.examples import tagged_examples


def lamp2_examples(n_users: int = 3, per_user: int = 2, history: int = 5, seed: int = 0, prefix: str = "t",
                   gold: str | None = None) -> list[Example]:
    return tagged_examples(n_users, per_user, history, seed, prefix=prefix, topics=("love", "war"), gold=gold)


def tiny_context(tmp_path: Path, task: str = "lamp2", profile: str = "small", **kw) -> RunContext:
    return RunContext(task=TASKS.get(task), llm_name="tiny-causal", encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path / "artifacts", generation=GenerationSettings(num_beams=1, batch_size=4),
                      progress=False, profile=profile, **kw)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache root per test: feedback and trained retrievers start empty."""
    root = tmp_path / "cache"
    monkeypatch.setenv("PERSONA_BENCH_CACHE", str(root))
    return root


def queries(ctx: RunContext, n: int = 6) -> list[fb.Query]:
    examples = lamp2_examples()
    return [fb.Query(e.id, f"item:{e.profile[0]['id']}", f"{e.input} #{i}", e.output or "", 64)
            for i, e in enumerate(examples[:n])]


def test_store_round_trips_and_checks_its_key(tmp_path):
    key = {"format": fb.FORMAT, "llm": "x", "task": "lamp2"}
    store = fb.FeedbackStore(tmp_path / "f", key)
    records = [{"rid": f"r{i}", "question": "q", "source": "item:1", "official": {"accuracy": float(i % 2)}}
               for i in range(3)]
    store.append(records)
    again = fb.FeedbackStore(tmp_path / "f", key)
    assert again.records == {r["rid"]: r for r in records}
    with pytest.raises(ValueError, match="holds feedback for"):
        fb.FeedbackStore(tmp_path / "f", {**key, "llm": "y"})


def test_torn_last_line_is_cut_and_appends_stay_aligned(tmp_path):
    key = {"format": fb.FORMAT}
    store = fb.FeedbackStore(tmp_path / "f", key)
    store.append([{"rid": "a", "v": 1}, {"rid": "b", "v": 2}])
    whole = store.path.stat().st_size
    with open(store.path, "a") as fh:
        fh.write('{"rid": "c", "v"')  # a crash mid-write
    again = fb.FeedbackStore(tmp_path / "f", key)
    assert set(again.records) == {"a", "b"}
    assert again.path.stat().st_size == whole
    again.append([{"rid": "d", "v": 4}])
    lines = again.path.read_text().splitlines()
    assert [json.loads(line)["rid"] for line in lines] == ["a", "b", "d"]


def test_collect_resumes_after_a_crash_and_matches_a_clean_run(tmp_path, cache, monkeypatch):
    ctx = tiny_context(tmp_path)
    qs = queries(ctx)
    clean, cost = fb.collect(ctx, fb.FeedbackStore(tmp_path / "clean", {"scorer": "metric"}), qs, batch_size=2)
    assert cost.computed == len(qs) and cost.reused == 0

    store = fb.FeedbackStore(tmp_path / "crashy", {"scorer": "metric"})
    real, calls = fb._score_batch, []

    def crash_on_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(fb, "_score_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        fb.collect(ctx, store, qs, batch_size=2)
    monkeypatch.setattr(fb, "_score_batch", real)
    reopened = fb.FeedbackStore(tmp_path / "crashy", {"scorer": "metric"})
    assert len(reopened) == 2  # the first batch was flushed
    resumed, cost = fb.collect(ctx, reopened, qs, batch_size=2)
    assert (cost.computed, cost.reused) == (4, 2)
    assert [r["output"] for r in resumed] == [r["output"] for r in clean]
    assert cost.as_dict()["feedback_records_per_second"] > 0


def test_repeated_prompts_are_scored_once_and_the_folder_is_shared(tmp_path, cache):
    ctx = tiny_context(tmp_path)
    q = queries(ctx, 2)
    store = fb.FeedbackStore.for_run(ctx)
    _, cost = fb.collect(ctx, store, q + q)
    assert (cost.asked, cost.computed, cost.reused) == (4, 2, 2)
    # Another method of another run with the same LLM and settings reads the same folder.
    other = tiny_context(tmp_path / "other")
    assert fb.FeedbackStore.for_run(other).directory == store.directory
    assert len(fb.FeedbackStore.for_run(other)) == 2
    assert str(store.directory).startswith(str(cache / "feedback" / "lamp2"))


def test_folder_key_separates_llm_task_version_and_decoding(tmp_path):
    import dataclasses

    base = tiny_context(tmp_path)
    keys = [
        fb.folder_key(base, "metric"),
        fb.folder_key(dataclasses.replace(base, llm_name="tiny-t5"), "metric"),
        fb.folder_key(dataclasses.replace(base, task=dataclasses.replace(base.task, version=base.task.version + 1)),
                      "metric"),
        fb.folder_key(dataclasses.replace(base, decoding="constrained"), "metric"),
        fb.folder_key(base, "logprob"),
    ]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == len(keys)
    with pytest.raises(ValueError, match="scorer"):
        fb.folder_key(base, "bleu")


def test_item_utilization_scores_each_candidate_in_the_official_prompt(tmp_path, cache):
    ctx = tiny_context(tmp_path)
    examples = lamp2_examples(n_users=2, per_user=1)
    cands = [[0, 2], [1]]
    utils, cost = fb.item_utilization(ctx, examples, cands, scoring="parsed", max_input_tokens=64)
    assert [u.shape for u in utils] == [(2,), (1,)]
    assert cost.asked == 3
    store = fb.FeedbackStore.for_run(ctx)
    sources = {r["source"] for r in store.records.values()}
    assert sources == {"item:t0-0", "item:t0-2", "item:t1-1"}
    assert {r["question"] for r in store.records.values()} == {e.id for e in examples}
    for rec in store.records.values():
        assert set(rec["official"]) == {"accuracy"} and rec["parsed"]["accuracy"] in (0.0, 1.0)
    [[first, third], _] = fb.item_queries(ctx.task, ctx.llm().tokenizer, examples, cands, 64)
    assert examples[0].profile[0]["description"] in first.prompt
    assert examples[0].profile[2]["description"] in third.prompt and examples[0].input in third.prompt


def test_logprob_scorer_stores_the_gold_log_likelihood(tmp_path, cache):
    ctx = tiny_context(tmp_path)
    q = queries(ctx, 2)
    records, _ = fb.collect(ctx, fb.FeedbackStore.for_run(ctx, "logprob"), q)
    with torch.no_grad():
        want = ctx.llm().target_logprobs([x.prompt for x in q], [x.gold for x in q], max_input_tokens=64,
                                         max_target_tokens=ctx.max_new_tokens)
    assert [r["logprob"] for r in records] == pytest.approx(want.tolist(), rel=1e-5)
    assert fb.utility(ctx.task, records[0], q[0].gold) == pytest.approx(want[0].item(), rel=1e-5)


def test_utility_follows_the_reference_normalisation():
    lamp3 = TASKS.get("lamp3")
    # MAE 1 on gold 2: worst = max(|2-1|, |2-5|) = 3, utility (3 - 1) / 3.
    assert fb.utility(lamp3, {"official": {"mae": 1.0}}, "2") == pytest.approx(2 / 3)
    assert fb.utility(lamp3, {"official": {"mae": 0.0}}, "5") == pytest.approx(1.0)
    lamp2 = TASKS.get("lamp2")
    assert fb.utility(lamp2, {"official": {"accuracy": 0.0}, "parsed": {"accuracy": 1.0}}, "comedy") == 0.0
    assert fb.utility(lamp2, {"official": {"accuracy": 0.0}, "parsed": {"accuracy": 1.0}}, "comedy", "parsed") == 1.0
    assert fb.feedback_metric(TASKS.get("lamp4")) == "rouge-1"


def test_unscorable_rating_counts_as_a_miss_not_a_crash():
    lamp3 = TASKS.get("lamp3")
    [nan, ok] = fb.per_example_metrics(lamp3, ["nan", "4"], ["2", "4"])
    assert nan["mae"] == 3.0 and ok["mae"] == 0.0  # "nan" scored like any unparseable answer
