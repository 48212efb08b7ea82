"""RSPG-Pre / RSPG-Post on tiny models: the objective, learning to pick, the pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import methods  # noqa: F401 - registers the built-ins
from harness import feedback as fb
from harness.encoders import load_encoder
from harness.registries import METHODS
from methods import rspg
from methods.rspg import RSPGParams, RSPGPost, RSPGPre, Selector, selector_loss, train_selector
from tests.test_feedback import cache, lamp2_examples, tiny_context  # noqa: F401 - fixture

FAST = dict(k=2, max_input_tokens=64, max_selector_tokens=48, total_steps=2, batch_size=2, lr=1e-3,
            max_train_examples=None)


def params(**over) -> RSPGParams:
    return RSPGParams(**{**RSPGPre.profiles["small"], **FAST, **over})


def test_registered_with_the_papers_pool():
    assert METHODS.get("rspg-pre") is RSPGPre and METHODS.get("rspg-post") is RSPGPost
    assert RSPGParams().names() == ["none", "bm25", "recency", "contriever", "ropg-rl", "ropg-kd"]
    assert RSPGPre.family == RSPGPost.family == "optimized-retrieval"
    with pytest.raises(ValueError, match="distinct"):
        RSPGParams(pool="bm25,bm25").names()


def test_selector_loss_is_kl_to_the_softmax_of_the_labels():
    scores = torch.tensor([[0.5, -1.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    t, p = torch.softmax(labels, -1), torch.softmax(scores / 2.0, -1)
    assert selector_loss(scores, labels, 2.0).item() == pytest.approx((t * (t.log() - p.log())).sum().item())
    # The reference: nn.KLDivLoss(batchmean)(log_softmax(scores) / T, softmax(labels)); equal at T = 1.
    ref = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(scores, -1), t)
    assert selector_loss(scores, labels, 1.0).item() == pytest.approx(ref.item(), rel=1e-6)


def test_one_hot_feedback_teaches_the_selector_to_pick_that_retriever():
    """Candidates carry their retriever's marker word; only "bravo" is ever useful."""
    torch.manual_seed(0)
    selector = Selector(load_encoder("tiny-encoder"), 32)
    words = ["love", "war", "space", "time", "film", "story", "night", "city", "sea", "road"]
    markers = ("alpha", "bravo", "charlie")

    def candidates(i: int) -> list[str]:
        return [f"{m} {words[i % 10]} {words[(3 * i + 1) % 10]}" for m in markers]

    texts = [candidates(i) for i in range(8)]
    labels = torch.tensor([[0.0, 1.0, 0.0]] * len(texts))
    p = dataclasses.replace(params(), total_steps=40, batch_size=4)

    def picks(rows: list[list[str]]) -> list[int]:
        with torch.no_grad():
            return selector([t for r in rows for t in r]).view(len(rows), -1).argmax(-1).tolist()

    held_out = [candidates(i) for i in range(8, 14)]
    losses = train_selector(selector, texts, labels, p, seed=0)
    assert losses[-1] < losses[0]
    assert picks(held_out) == [1] * len(held_out)


@pytest.mark.parametrize("target", ["none", "bm25"])
def test_method_learns_whichever_retriever_the_feedback_favours(tmp_path, cache, monkeypatch, target):  # noqa: F811
    real = rspg.retriever_utilization

    def one_hot(*args, **kw):
        feedback, cost = real(*args, **kw)
        utilities = np.zeros_like(feedback.utilities)
        utilities[:, feedback.names.index(target)] = 1.0
        return dataclasses.replace(feedback, utilities=utilities), cost

    monkeypatch.setattr(rspg, "retriever_utilization", one_hot)
    ctx = tiny_context(tmp_path)
    method = RSPGPre(ctx, params(pool="none,bm25", total_steps=30, batch_size=4))
    torch.manual_seed(0)
    method.fit(lamp2_examples(n_users=4, per_user=2))
    dev = lamp2_examples(n_users=3, per_user=1, seed=4, prefix="d")
    method.predict(dev)
    cost = method.cost()
    assert cost[f"chosen_{target}"] == len(dev)
    if target == "none":
        assert ctx.last_retrieved == [[] for _ in dev]
    else:
        assert all(len(ids) == 2 for ids in ctx.last_retrieved)


def test_post_generates_every_candidate_and_returns_the_chosen_answer(tmp_path, cache):  # noqa: F811
    ctx = tiny_context(tmp_path)
    method = RSPGPost(ctx, params(pool="none,bm25,ropg-kd"))
    train = lamp2_examples()
    method.fit(train)
    summary = method.fit_summary()
    assert summary["optimizer_steps"] == summary["budget_steps"] == 2 and summary["trained_to_budget"]
    assert summary["pool"] == ["none", "bm25", "ropg-kd"]
    member = summary["members"]["ropg-kd"]
    assert member["reused"] is False and member["trained_to_budget"]
    assert summary["feedback_records"] == 3 * len(train)
    assert (ctx.artifacts_dir / rspg.WEIGHTS_FILE).exists()

    dev = lamp2_examples(n_users=2, per_user=1, seed=3, prefix="d")
    generated: dict[str, str] = {}
    real = ctx.generate

    def spy(prompts, **kw):
        answers = real(prompts, **kw)
        generated.update(zip(prompts, answers))
        return answers

    ctx.generate = spy  # type: ignore[method-assign]
    out = method.predict(dev)
    del ctx.generate
    assert len(out) == len(dev) and len(ctx.last_prompts) == len(dev)
    for e, answer, prompt, ids in zip(dev, out, ctx.last_prompts, ctx.last_retrieved):
        assert prompt in generated and answer == generated[prompt]  # the chosen prompt's own answer
        assert (prompt == e.input) == (ids == [])
    assert set(generated) >= {e.input for e in dev}  # every pool member was generated, "none" included
    assert method.cost()["llm_generations"] == len(generated) <= 3 * len(dev)

    # A rerun of the same config loads the selector and finds the ROPG member in the cache.
    again = RSPGPost(ctx, params(pool="none,bm25,ropg-kd"))
    again.fit(train)
    assert again.members["ropg-kd"]["reused"] is True
    assert again.predict(dev) == out


def test_pre_generates_only_the_chosen_prompt(tmp_path, cache, monkeypatch):  # noqa: F811
    ctx = tiny_context(tmp_path)
    method = RSPGPre(ctx, params(pool="none,bm25,recency"))
    method.fit(lamp2_examples())
    seen: list[list[str]] = []
    real = ctx.generate
    monkeypatch.setattr(ctx, "generate", lambda prompts, **kw: seen.append(list(prompts)) or real(prompts, **kw))
    dev = lamp2_examples(n_users=2, per_user=2, seed=8, prefix="d")
    method.predict(dev)
    assert len(seen) == 1 and len(seen[0]) == len(dev)


def test_no_dev_gold_reaches_training(tmp_path, cache):  # noqa: F811
    sentinel = "SENTINEL-DEV-GOLD"
    ctx = tiny_context(tmp_path)
    train = lamp2_examples()
    dev = lamp2_examples(n_users=2, per_user=2, seed=9, prefix="d", gold=sentinel)
    method = RSPGPost(ctx, params(pool="none,bm25,ropg-rl"))
    method.fit(train)
    method.predict(dev)
    records = fb.FeedbackStore.for_run(ctx).records.values()  # item (ROPG member) and retriever feedback
    assert {r["question"] for r in records} <= {e.id for e in train}
    assert {r["source"].split(":")[0] for r in records} == {"item", "retriever"}
    for path in [*cache.rglob("*"), *ctx.artifacts_dir.rglob("*")]:
        if path.is_file():
            assert sentinel.encode() not in path.read_bytes(), path


def test_pool_reuses_the_retriever_a_ropg_run_trained_under_the_same_profile(tmp_path, cache):  # noqa: F811
    from methods.ropg import ROPGKD

    train = lamp2_examples()
    ropg = ROPGKD(tiny_context(tmp_path / "ropg"), ROPGKD.Params(**ROPGKD.profiles["small"]))
    ropg.fit(train)
    method = RSPGPre(tiny_context(tmp_path / "rspg"), params(pool="none,ropg-kd"))
    method.fit(train)
    assert method.members["ropg-kd"]["reused"] is True
    assert method.members["ropg-kd"]["weights"] == ropg.fit_summary()["retriever_weights"]
