"""OPPU: per-user isolation, batched == sequential peft, resume, save/reload, both backbones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from harness.api import Example, RunContext
from harness.backbones import GenerationSettings, load_llm
from harness.lora import default_targets, load_lora, target_module_names
from harness.registries import METHODS, TASKS
from methods.oppu import (
    CONTINUE_PROMPT,
    OPPU,
    OPPUParams,
    TrainSettings,
    peft_lora,
    schedule,
    stable_seed,
    train_batched,
    train_sequential,
    user_pairs,
)

GEN = GenerationSettings(num_beams=2, max_new_tokens=5, batch_size=8, max_input_tokens=64)
FAST = dict(r=4, lr=5e-3, task_lr=5e-3, batch_size=2, epochs=2, task_epochs=1, max_input_tokens=64,
            max_target_tokens=12, max_batch_examples=5)


def tweets(user: str, n: int, word: str) -> tuple[dict, ...]:
    return tuple({"id": f"{user}-{i}", "text": f"{word} and {word} are {i} times the best {word} thing today"}
                 for i in range(n))


def example(qid: str, user: str | None, profile: tuple[dict, ...], text: str = "hello there my friend") -> Example:
    task = TASKS.get("lamp7")
    return Example(id=qid, input=task.input_template.format(text=text), profile=profile, output=text, user_id=user)


def make(tmp: Path, llm: str = "tiny-causal", **params) -> OPPU:
    ctx = RunContext(task=TASKS.get("lamp7"), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                     artifacts_dir=tmp, generation=GEN, progress=False)
    return OPPU(ctx, OPPUParams(**{**FAST, **params}))


def train_set() -> list[Example]:
    return [example(f"t{i}", f"train{i}", tweets(f"train{i}", 2, "dog"), text=f"walking the dog {i} today")
            for i in range(4)]


def digest(path: Path) -> str:
    """Hash of an adapter's tensor bytes (the safetensors header's key order varies)."""
    weights, _ = load_lora(path)
    h = hashlib.sha256()
    for name in sorted(weights):
        for t in weights[name]:
            h.update(name.encode() + t.numpy().tobytes())
    return h.hexdigest()


# -- pairs ----------------------------------------------------------------------------------
def test_pairs_lamp7_continue_the_tweet_and_lamp2_item_output():
    lamp7 = TASKS.get("lamp7")
    (pair,) = user_pairs(lamp7, [{"id": "1", "text": "one two three four five six"}])
    assert pair == (CONTINUE_PROMPT.format("one two"), "three four five six")
    assert user_pairs(lamp7, [{"id": "1", "text": "single"}]) == []
    lamp2 = TASKS.get("lamp2")
    (pair,) = user_pairs(lamp2, [{"id": "1", "description": "a robot dreams", "tag": "sci-fi"}])
    assert pair == (lamp2.input_template.format(description="a robot dreams"), "sci-fi")


# -- batched training == sequential peft training -------------------------------------------
@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_batched_training_equals_sequential_peft(llm):
    backbone = load_llm(llm)
    names = target_module_names(backbone.model, default_targets(backbone.model))
    hp = TrainSettings(r=4, alpha=8, lr=5e-3, weight_decay=1e-2, warmup_ratio=0.1, max_grad_norm=0.3,
                       max_input_tokens=64, max_target_tokens=16, max_batch_examples=5)
    gen = torch.Generator().manual_seed(1)
    init = {n: (0.1 * torch.randn(4, backbone.model.get_submodule(n).in_features, generator=gen),
                0.1 * torch.randn(backbone.model.get_submodule(n).out_features, 4, generator=gen)) for n in names}
    users = {  # different sizes: different step counts, schedules, and users dropping out
        "a": [(f"tweet about cats number {i}", f"cats are great {i} really") for i in range(5)],
        "b": [(f"review of a long movie with plot {i} and more words here", f"b{i}") for i in range(3)],
        "c": [(f"x {i}", f"the answer is {i} and that is long") for i in range(7)],
    }
    jobs = [schedule(p, 2, 2, stable_seed(0, u)) for u, p in users.items()]
    modules_before = list(backbone.model.modules())
    sequential = train_sequential(backbone, names, jobs, init, hp)
    batched = train_batched(backbone, names, jobs, init, hp)
    assert list(backbone.model.modules()) == modules_before  # the shared backbone is restored
    for seq, bat in zip(sequential, batched):
        moved = max((seq[n][1] - init[n][1]).abs().max().item() for n in names)
        assert moved > 1e-3  # training did change the adapter
        for n in names:
            torch.testing.assert_close(bat[n][0], seq[n][0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(bat[n][1], seq[n][1], atol=1e-5, rtol=1e-4)


# -- isolation ------------------------------------------------------------------------------
def _train_pair(tmp: Path, trainer: str, b_profile: tuple[dict, ...]) -> OPPU:
    """Train users A (fixed data) and B together; return the method."""
    method = make(tmp, trainer=trainer)
    method.fit(train_set())
    method.predict([example("qa", "A", tweets("A", 4, "cat")), example("qb", "B", b_profile)])
    return method


@pytest.mark.parametrize("trainer", ["batched", "sequential"])
def test_user_adapter_depends_on_its_own_data_only(tmp_path, trainer):
    first = _train_pair(tmp_path / "1", trainer, tweets("B", 3, "fish"))
    assert sorted(first.trained_users) == ["A", "B"]
    a_pairs, b_pairs = first.training_pairs["A"], first.training_pairs["B"]
    assert a_pairs == user_pairs(first.ctx.task, tweets("A", 4, "cat")) and len(a_pairs) == 4
    assert all("cat" in p + t and "fish" not in p + t for p, t in a_pairs)
    assert all("fish" in p + t and "cat" not in p + t for p, t in b_pairs)

    # B's words change (same shapes: "frog" tokenizes like "fish"): A is bit-identical.
    same_shape = _train_pair(tmp_path / "2", trainer, tweets("B", 3, "frog"))
    assert same_shape.training_pairs["A"] == a_pairs and same_shape.training_pairs["B"] != b_pairs
    assert digest(same_shape.user_path("A")) == digest(first.user_path("A"))
    assert digest(same_shape.user_path("B")) != digest(first.user_path("B"))

    # B changes size and lengths too. Sequential: still bit-identical. Batched: B's rows
    # change the padded shapes of the shared passes, so A's float sums may round
    # differently (observed: ~1 ulp); no value of B's flows into A.
    other = _train_pair(tmp_path / "3", trainer, tweets("B", 6, "very long elephant parade"))
    assert other.training_pairs["A"] == a_pairs
    if trainer == "sequential":
        assert digest(other.user_path("A")) == digest(first.user_path("A"))
    else:
        got, want = load_lora(other.user_path("A"))[0], load_lora(first.user_path("A"))[0]
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0)


def test_time_based_user_shares_one_adapter_user_based_questions_do_not(tmp_path):
    method = make(tmp_path)
    method.fit(train_set())
    profile = tweets("U", 3, "bird")
    method.predict([example("q1", "U", profile), example("q2", "U", profile),
                    example("q3", None, tweets("x", 2, "tree")), example("q4", None, tweets("y", 2, "rock"))])
    assert sorted(method.trained_users) == ["U", "q:q3", "q:q4"]
    assert len(list(method.ctx.user_artifacts_dir.glob("*.safetensors"))) == 3


# -- resume, save/reload --------------------------------------------------------------------
def test_resume_skips_trained_users_and_reloaded_adapters_predict_identically(tmp_path, monkeypatch):
    batch = [example("qa", "A", tweets("A", 3, "cat")), example("qb", "B", tweets("B", 2, "fish")),
             example("qc", "C", tweets("C", 4, "owl"))]
    first = make(tmp_path)
    first.fit(train_set())
    expected = first.predict(batch)
    assert (tmp_path / "task_lora.safetensors").exists()
    monkeypatch.setattr("methods.oppu.train_sequential", _refuse)  # the task LoRA must be reused

    reloaded = make(tmp_path)
    reloaded.fit([])
    assert reloaded.predict(batch) == expected  # adapters round-trip through safetensors exactly
    assert reloaded.trained_users == []

    c_weights = load_lora(first.user_path("C"))[0]
    first.user_path("C").unlink()  # as if the run died before user C was saved
    resumed = make(tmp_path)
    resumed.fit([])
    resumed.predict(batch)
    assert resumed.trained_users == ["C"]  # A and B were loaded, not retrained
    again = load_lora(first.user_path("C"))[0]
    for name in c_weights:  # trained alone now, with A and B before: same up to rounding
        torch.testing.assert_close(again[name], c_weights[name], atol=1e-6, rtol=0)


def _refuse(*args, **kwargs):
    raise AssertionError("task LoRA retrained although it was saved")


# -- both backbone kinds; mixed-user serving == one user at a time with peft ----------------
@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_mixed_user_batch_matches_each_user_alone_with_peft(tmp_path, llm):
    method = make(tmp_path, llm=llm)
    method.fit(train_set())
    batch = [example("qa", "A", tweets("A", 3, "cat"), text="short one"),
             example("qb", "B", tweets("B", 2, "fish"), text="a much longer tweet about many things here"),
             example("qa2", "A", tweets("A", 3, "cat"), text="another tweet of medium size")]
    mixed = method.predict(batch)
    assert all(isinstance(t, str) for t in mixed) and len(mixed) == 3
    backbone = method.ctx.llm()
    names = method.module_names()
    for i, e in enumerate(batch):
        weights, meta = load_lora(method.user_path(e.user_key))
        assert meta["user_key"] == e.user_key
        with peft_lora(backbone.model, names, method.params.r, method.params.alpha) as layers:
            with torch.no_grad():
                for n, m in layers.items():
                    m.lora_A["default"].weight.copy_(weights[n][0])
                    m.lora_B["default"].weight.copy_(weights[n][1])
            alone = backbone.generate([e.input], num_beams=GEN.num_beams, max_new_tokens=GEN.max_new_tokens,
                                      max_input_tokens=GEN.max_input_tokens)
        assert alone == [mixed[i]]


def test_registered():
    assert METHODS.get("oppu") is OPPU
    assert OPPU.uses_train


def test_k1_pairs_retrieve_only_earlier_items_of_the_same_user(tmp_path):
    method = make(tmp_path, k=1, retriever="bm25")
    profile = tweets("A", 3, "cat")
    pairs = method.pairs_for(profile)
    assert [t for _, t in pairs] == [t for _, t in user_pairs(method.ctx.task, profile)]
    assert pairs[0] == user_pairs(method.ctx.task, profile[:1])[0]  # nothing before the first item
    for i, (prompt, _) in enumerate(pairs[1:], start=1):
        assert any(item["text"] in prompt for item in profile[:i])
        assert not any(item["text"] in prompt for item in profile[i:])
