"""ROPG-KD / ROPG-RL on tiny models: the objectives, training, the shared weights cache."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import methods  # noqa: F401 - registers the built-ins (and the ropg-* retrievers)
from harness import feedback as fb
from harness.encoders import load_encoder
from harness.registries import METHODS
from harness.retrieval import RETRIEVERS, RetrievalContext, get_retriever
from harness.trained_retriever import (
    ROPGSettings, RetrieverTrainer, Unit, find_entries, kd_loss, publish, rl_loss,
)
from methods.ropg import ROPGKD, ROPGRL, ROPGParams
from tests.test_feedback import cache, lamp2_examples, tiny_context  # noqa: F401 - fixture

FAST = dict(candidates=3, total_steps=2, batch_size=2, max_tokens=32, feedback_max_input_tokens=64,
            max_train_examples=None, k=2, max_input_tokens=64)


def params(**over) -> ROPGParams:
    return ROPGParams(**{**ROPGKD.profiles["small"], **FAST, **over})


def test_registered_as_methods_and_retrievers():
    assert METHODS.get("ropg-kd") is ROPGKD and METHODS.get("ropg-rl") is ROPGRL
    assert {"ropg-kd", "ropg-rl"} <= set(RETRIEVERS.names())
    assert ROPGKD.family == "optimized-retrieval" and ROPGKD.uses_train
    paper = ROPGParams()
    assert (paper.candidates, paper.temperature, paper.lr, paper.total_steps, paper.batch_size) == (20, 1.0, 1e-5,
                                                                                                   1000, 1)


# -- objectives ---------------------------------------------------------------------------------
def test_kd_loss_is_the_kl_to_the_feedback_distribution():
    s = torch.tensor([[1.0, 0.0, -1.0, 5.0]])
    u = torch.tensor([[0.0, 1.0, 0.5, 9.0]])
    mask = torch.tensor([[True, True, True, False]])  # the 4th candidate is padding
    t = torch.softmax(u[:, :3] / 2.0, -1)
    p = torch.softmax(s[:, :3] / 2.0, -1)
    want = (t * (t.log() - p.log())).sum()
    assert kd_loss(s, u, mask, temperature=2.0).item() == pytest.approx(want.item(), rel=1e-6)
    # "reference": nn.CrossEntropyLoss with the probabilities as logits, as ROPG's trainer has it.
    ref = torch.nn.CrossEntropyLoss()(p, t)
    assert kd_loss(s, u, mask, 2.0, how="reference").item() == pytest.approx(ref.item(), rel=1e-6)


def test_rl_gradient_has_the_reference_sign():
    """REINFORCE, baseline = first candidate: a better-than-baseline sample gets pushed up."""
    u = torch.tensor([[0.2, 1.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    for action, reward in ((1, 0.8), (2, -0.2), (0, 0.0)):
        s = torch.tensor([[0.1, 0.3, -0.2]], requires_grad=True)
        loss = rl_loss(s, u, mask, torch.tensor([action]))
        # The reference's loss_fn_reinforce(log p_a, u_a - u_0) = -sum(log p_a * r) / (B * 1).
        p = torch.softmax(s.detach(), -1)
        assert loss.item() == pytest.approx(-(math.log(p[0, action]) * reward), abs=1e-7)
        loss.backward()
        grad = s.grad[0]
        assert grad[action].item() == pytest.approx(-reward * (1 - p[0, action].item()), abs=1e-7)
        if reward > 0:  # gradient descent raises the sampled item's score, lowers the others
            assert grad[action] < 0 and all(grad[j] > 0 for j in range(3) if j != action)
        elif reward < 0:
            assert grad[action] > 0 and all(grad[j] < 0 for j in range(3) if j != action)
        else:
            assert torch.all(grad == 0)


def test_kd_steps_move_the_retriever_towards_the_feedback():
    encoder = load_encoder("tiny-encoder")
    settings = ROPGSettings(lr=1e-3, max_tokens=32, batch_size=3)
    trainer = RetrieverTrainer(encoder, settings, "kd", seed=0)
    docs = ("film about love", "war story in space", "a quiet classic", "comedy of errors")
    units = [Unit("love film", docs, (1.0, 0.0, 0.0, 0.0)), Unit("space war", docs, (0.0, 1.0, 0.0, 0.0)),
             Unit("old classic", docs, (0.0, 0.0, 1.0, 0.0))]

    def measure() -> tuple[float, float]:
        """KL to the feedback distribution, and the total-variation distance to it."""
        trainer.model.eval()  # no dropout while measuring
        with torch.no_grad():
            s, u, m = trainer.scores(units)
            kl = kd_loss(s, u, m, settings.temperature).item()
            tv = (torch.softmax(s, -1) - torch.softmax(u, -1)).abs().sum(-1).mean().item() / 2
        trainer.model.train()
        return kl, tv

    torch.manual_seed(0)  # dropout masks
    kl0, tv0 = measure()
    for _ in range(15):
        trainer.step([units])
    kl1, tv1 = measure()
    assert kl1 < kl0
    assert tv1 < tv0
    assert len(trainer.losses) == 15


# -- the methods ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ROPGKD, ROPGRL])
def test_fit_trains_publishes_and_predicts(tmp_path, cache, cls):  # noqa: F811 - fixture
    ctx = tiny_context(tmp_path)
    train = lamp2_examples(n_users=3, per_user=2)
    # Log-likelihood feedback: a random tiny LLM answers every prompt wrongly, so metric
    # feedback would be flat and give REINFORCE nothing to learn from.
    method = cls(ctx, params(feedback_scorer="logprob"))
    method.fit(train)
    name = method.name
    summary = method.fit_summary()
    assert summary["optimizer_steps"] == summary["budget_steps"] == 2 and summary["trained_to_budget"]
    assert summary["train_examples_used"] == len(train)
    assert summary["retriever_reused"] is False
    assert method.cost()["feedback_records"] == len(train) * 3
    assert (ctx.artifacts_dir / f"{name}.safetensors").exists()
    [entry] = find_entries(name, ctx.task, "tiny-encoder", 0)
    assert entry.weights.read_bytes() == (ctx.artifacts_dir / f"{name}.safetensors").read_bytes()

    dev = lamp2_examples(n_users=2, per_user=1, seed=5, prefix="d")
    out = method.predict(dev)
    assert len(out) == len(dev) and all(isinstance(o, str) for o in out)
    assert [len(ids) for ids in ctx.last_retrieved] == [2, 2]
    for e, ids in zip(dev, ctx.last_retrieved):
        assert set(ids) <= {str(i["id"]) for i in e.profile}

    # Findable by name, as PPlug+RAG and RSPG ask for it: same ranking as the method's.
    by_name = get_retriever(name, RetrievalContext(encoder="tiny-encoder", seed=0))
    inputs, profiles = [e.input for e in dev], [e.profile for e in dev]
    assert [[h.index for h in hs] for hs in by_name.retrieve(ctx.task, inputs, profiles, 3)] == \
        [[h.index for h in hs] for hs in method.retriever.retrieve(ctx.task, inputs, profiles, 3)]
    # The trained encoder differs from the one it started from.
    base = dict(load_encoder("tiny-encoder").model.named_parameters())
    trained = dict(method.retriever.encoder(ctx.task).model.named_parameters())
    assert any(not torch.equal(trained[n], base[n]) for n in trained)


def test_second_run_reuses_weights_and_feedback_without_the_llm(tmp_path, cache, monkeypatch):  # noqa: F811
    train = lamp2_examples()
    ROPGKD(tiny_context(tmp_path / "a"), params()).fit(train)

    def no_llm(*args, **kw):
        raise AssertionError("the LLM was called again")

    monkeypatch.setattr(fb, "_score_batch", no_llm)
    again = ROPGKD(tiny_context(tmp_path / "b"), params())
    again.fit(train)
    assert again.fit_summary()["retriever_reused"] is True
    # The same item feedback serves ROPG-RL: only its training runs.
    rl = ROPGRL(tiny_context(tmp_path / "c"), params())
    rl.fit(train)
    assert rl.cost()["feedback_computed"] == 0 and rl.cost()["feedback_reused"] == len(train) * 3


def test_a_run_folder_refills_an_empty_cache(tmp_path, cache):  # noqa: F811
    train = lamp2_examples()
    ctx = tiny_context(tmp_path)
    ROPGKD(ctx, params()).fit(train)
    import shutil

    shutil.rmtree(cache / "retrievers")
    method = ROPGKD(ctx, params())
    method.fit(train)
    assert method.fit_summary()["retriever_reused"] is True
    assert len(find_entries("ropg-kd", ctx.task, "tiny-encoder", 0)) == 1


def test_ambiguous_lookup_names_the_choices(tmp_path, cache):  # noqa: F811
    ctx = tiny_context(tmp_path)
    ROPGKD(ctx, params()).fit(lamp2_examples())
    [entry] = find_entries("ropg-kd", ctx.task, "tiny-encoder", 0)
    other_key = {**entry.key, "llm": "tiny-t5"}
    publish(other_key, {"profile": "small"}, weights_file=entry.weights)
    dev = lamp2_examples(prefix="d")
    with pytest.raises(ValueError, match="llm=tiny-causal.*llm=tiny-t5|llm=tiny-t5.*llm=tiny-causal"):
        get_retriever("ropg-kd", RetrievalContext(encoder="tiny-encoder", seed=0)).retrieve(
            ctx.task, [dev[0].input], [dev[0].profile], 1)
    pinned = get_retriever("ropg-kd", RetrievalContext(encoder="tiny-encoder", seed=0), llm="tiny-causal")
    assert len(pinned.retrieve(ctx.task, [dev[0].input], [dev[0].profile], 1)[0]) == 1
    with pytest.raises(FileNotFoundError, match="bench run --method ropg-kd"):
        get_retriever("ropg-kd", RetrievalContext(encoder="tiny-encoder", seed=7)).retrieve(
            ctx.task, [dev[0].input], [dev[0].profile], 1)


def test_no_dev_gold_reaches_training(tmp_path, cache):  # noqa: F811
    sentinel = "SENTINEL-DEV-GOLD"
    ctx = tiny_context(tmp_path)
    train = lamp2_examples()
    dev = lamp2_examples(n_users=2, per_user=2, seed=9, prefix="d", gold=sentinel)
    method = ROPGRL(ctx, params())
    method.fit(train)
    method.predict(dev)
    store = fb.FeedbackStore.for_run(ctx)
    assert {r["question"] for r in store.records.values()} <= {e.id for e in train}
    for path in [*cache.rglob("*"), *ctx.artifacts_dir.rglob("*")]:
        if path.is_file():
            assert sentinel.encode() not in path.read_bytes(), path


def test_params_validate():
    with pytest.raises(ValueError, match="candidate"):
        ROPGKD(tiny_context(Path("/nonexistent")), dataclasses.replace(params(), candidates=1))
    with pytest.raises(ValueError, match="kd_loss"):
        ROPGKD(tiny_context(Path("/nonexistent")), dataclasses.replace(params(), kd_loss="mse"))
