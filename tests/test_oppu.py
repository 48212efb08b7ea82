"""OPPU and its task-LoRA control: per-user isolation, batched == sequential peft, resume,
save/reload, both backbones, the paper and small settings, and budget accounting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from harness.api import Example, RunContext
from harness.backbones import GenerationSettings, load_llm
from harness.lora import default_targets, fresh_lora, load_lora, merged_lora, target_module_names
from harness.lora_training import (
    TrainSettings,
    accumulate_minibatch_gradient,
    peft_lora,
    schedule,
    set_peft_weights,
    stable_seed,
    train_batched,
    train_sequential,
)
from harness.registries import METHODS, TASKS
from methods.oppu import CONTINUE_PROMPT, OPPU, SMALL_TASK, OPPUParams, TaskLoRA, TaskLoRAParams, user_pairs

GEN = GenerationSettings(num_beams=2, max_new_tokens=5, batch_size=8, max_input_tokens=64)
FAST = dict(r=4, lr=5e-3, task_lr=5e-3, batch_size=2, epochs=2, task_epochs=1, max_input_tokens=64,
            max_target_tokens=12, max_batch_examples=5)


def tweets(user: str, n: int, word: str) -> tuple[dict, ...]:
    return tuple({"id": f"{user}-{i}", "text": f"{word} and {word} are {i} times the best {word} thing today"}
                 for i in range(n))


def example(qid: str, user: str | None, profile: tuple[dict, ...], text: str = "hello there my friend") -> Example:
    task = TASKS.get("lamp7")
    return Example(id=qid, input=task.input_template.format(text=text), profile=profile, output=text, user_id=user)


def context(tmp: Path, llm: str = "tiny-causal", task: str = "lamp7", **kw) -> RunContext:
    return RunContext(task=TASKS.get(task), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp, generation=GEN, progress=False, **kw)


def make(tmp: Path, llm: str = "tiny-causal", **params) -> OPPU:
    return OPPU(context(tmp, llm), OPPUParams(**{**FAST, **params}))


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
    sequential = train_sequential(backbone, names, jobs, [init] * len(jobs), hp)
    batched = train_batched(backbone, names, jobs, [init] * len(jobs), hp)
    assert list(backbone.model.modules()) == modules_before  # the shared backbone is restored
    for seq, bat in zip(sequential, batched):
        moved = max((seq[n][1] - init[n][1]).abs().max().item() for n in names)
        assert moved > 1e-3  # training did change the adapter
        for n in names:
            torch.testing.assert_close(bat[n][0], seq[n][0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(bat[n][1], seq[n][1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_micro_batches_give_the_one_pass_gradient(llm):
    """``max_batch_examples`` bounds memory only: a 6-example minibatch in passes of 4 or 1
    accumulates the gradient of one pass of 6 (the token mean over the whole minibatch)."""
    backbone = load_llm(llm)
    names = target_module_names(backbone.model, default_targets(backbone.model))
    gen = torch.Generator().manual_seed(2)
    init = {n: (0.1 * torch.randn(4, backbone.model.get_submodule(n).in_features, generator=gen),
                0.1 * torch.randn(backbone.model.get_submodule(n).out_features, 4, generator=gen)) for n in names}
    # Targets of different lengths: a per-pass mean would weight the passes wrongly.
    pairs = [(f"prompt {i} " + "word " * i, f"target {i} " + "t " * (4 * (i % 3))) for i in range(6)]
    grads = {}
    with peft_lora(backbone.model, names, 4, 8) as layers:
        set_peft_weights(layers, init)
        params = [p for m in layers.values() for p in (m.lora_A["default"].weight, m.lora_B["default"].weight)]
        for micro in (6, 4, 1):
            hp = TrainSettings(r=4, alpha=8, lr=5e-3, weight_decay=1e-2, warmup_ratio=0.1, max_grad_norm=0.3,
                               max_input_tokens=64, max_target_tokens=16, max_batch_examples=micro)
            accumulate_minibatch_gradient(backbone, pairs, hp)
            grads[micro] = [p.grad.clone() for p in params]
            for p in params:
                p.grad = None
    assert max(g.abs().max().item() for g in grads[6]) > 1e-4
    for micro in (4, 1):
        for got, want in zip(grads[micro], grads[6]):
            torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)


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
    task_lora, _ = load_lora(tmp_path / "task_lora.safetensors")
    for i, e in enumerate(batch):
        weights, meta = load_lora(method.user_path(e.user_key))
        assert meta["user_key"] == e.user_key
        with merged_lora(backbone.model, task_lora, method.params.alpha), \
                peft_lora(backbone.model, names, method.params.r, method.params.alpha) as layers:
            with torch.no_grad():
                for n, m in layers.items():
                    m.lora_A["default"].weight.copy_(weights[n][0])
                    m.lora_B["default"].weight.copy_(weights[n][1])
            alone = backbone.generate([e.input], num_beams=GEN.num_beams, max_new_tokens=GEN.max_new_tokens,
                                      max_input_tokens=GEN.max_input_tokens)
        assert alone == [mixed[i]]


def test_registered_with_declared_roles():
    assert METHODS.get("oppu") is OPPU and METHODS.get("task-lora") is TaskLoRA
    assert OPPU.uses_train and TaskLoRA.uses_train
    assert (OPPU.family, OPPU.control, TaskLoRA.family) == ("peft", "task-lora", "control")
    assert OPPU.version >= 2


# -- paper and small settings ---------------------------------------------------------------
def test_paper_defaults_are_the_reference_and_small_holds_the_cpu_caps():
    """task_LoRA.py / OPPU.py (TamSiuhin/OPPU): 3 task epochs on q/k/v, 2 user epochs on q/v,
    r=8, alpha=8, lr 1e-4, batch 16, cut-off 2048, every question and every profile item."""
    paper = OPPUParams(**OPPU.profiles["paper"])
    assert (paper.r, paper.alpha, paper.lr, paper.task_lr, paper.batch_size) == (8, 8.0, 1e-4, 1e-4, 16)
    assert (paper.task_epochs, paper.epochs, paper.weight_decay, paper.warmup_ratio, paper.max_grad_norm) == (
        3, 2, 1e-2, 0.1, 0.3)
    assert paper.max_train_examples is None and paper.max_profile_items is None
    assert paper.max_input_tokens == 2048 and paper.targets == paper.task_targets == ""
    small = OPPUParams(**OPPU.profiles["small"])
    assert (small.max_train_examples, small.max_profile_items, small.max_input_tokens, small.max_target_tokens) == (
        256, 32, 256, 64)
    changed = {f for f in OPPUParams.__dataclass_fields__ if getattr(small, f) != getattr(paper, f)}
    assert changed == {"max_train_examples", "max_profile_items", "max_input_tokens", "max_target_tokens", "task_lr",
                       "lr"}
    assert (paper.task_lr, paper.lr, small.task_lr, small.lr) == (1e-4, 1e-4, 1e-3, 1e-3)
    # The control trains exactly OPPU's stage 1, in both profiles.
    for profile in ("paper", "small"):
        control = TaskLoRAParams(**TaskLoRA.profiles[profile])
        oppu = OPPUParams(**OPPU.profiles[profile])
        assert all(getattr(control, f) == getattr(oppu, f) for f in TaskLoRAParams.__dataclass_fields__)
    assert TaskLoRA.profiles["small"] == SMALL_TASK


@pytest.mark.parametrize("llm, task_leaves, user_leaves", [("tiny-causal", {"q_proj", "k_proj", "v_proj"},
                                                            {"q_proj", "v_proj"}),
                                                           ("tiny-t5", {"q", "k", "v"}, {"q", "v"})])
def test_task_lora_covers_query_key_value_and_user_adapters_query_value(tmp_path, llm, task_leaves, user_leaves):
    method = make(tmp_path, llm=llm)
    assert {n.rsplit(".", 1)[-1] for n in method.task_module_names()} == task_leaves
    assert {n.rsplit(".", 1)[-1] for n in method.module_names()} == user_leaves


def test_profile_items_all_in_paper_and_the_last_n_in_small(tmp_path):
    profile = tweets("A", 40, "cat")
    paper = make(tmp_path, max_profile_items=None)
    assert paper.pairs_for(profile) == user_pairs(paper.ctx.task, profile)
    small = make(tmp_path, max_profile_items=32)
    assert small.pairs_for(profile) == user_pairs(small.ctx.task, profile[-32:])
    assert make(tmp_path, max_profile_items=0).pairs_for(profile) == []


def test_stage1_uses_every_question_unless_capped(tmp_path):
    train = [example(f"t{i}", f"u{i}", tweets(f"u{i}", 1, "dog"), text=f"walking dog number {i} today")
             for i in range(7)]
    train.append(Example(id="nogold", input="x", profile=(), output=None, user_id="z"))
    every = TaskLoRA(context(tmp_path / "all"), TaskLoRAParams(**{**_task_fast(), "max_train_examples": None}))
    every.fit(train)
    summary = every.fit_summary()
    assert summary["train_examples_used"] == summary["train_examples_available"] == 7
    assert summary["optimizer_steps"] == summary["budget_steps"] == 1 * 4  # ceil(7 / 2) steps, one epoch
    assert summary["trained_to_budget"] is True
    capped = TaskLoRA(context(tmp_path / "cap"), TaskLoRAParams(**{**_task_fast(), "max_train_examples": 3}))
    capped.fit(train)
    assert capped.fit_summary()["train_examples_used"] == 3 and capped.fit_summary()["budget_steps"] == 2
    reloaded = TaskLoRA(context(tmp_path / "cap"), TaskLoRAParams(**{**_task_fast(), "max_train_examples": 3}))
    reloaded.fit([])  # loads the saved task LoRA; its accounting comes from the file
    assert reloaded.fit_summary() == capped.fit_summary()


def _task_fast() -> dict:
    return {k: v for k, v in FAST.items() if k in TaskLoRAParams.__dataclass_fields__}


# -- the task-LoRA control -------------------------------------------------------------------
def test_task_lora_control_trains_and_predicts_without_user_adapters(tmp_path):
    ctx = context(tmp_path / "control")
    control = TaskLoRA(ctx, TaskLoRAParams(**_task_fast()))
    control.fit(train_set())
    batch = [example("qa", "A", tweets("A", 3, "cat")), example("qb", "B", tweets("B", 2, "fish"))]
    answers = control.predict(batch)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert not ctx.user_artifacts_dir.exists()  # no per-user state at all
    assert ctx.last_prompts == [e.input for e in batch] and ctx.last_retrieved is None  # k=0
    # The answers are the backbone's with the task LoRA merged in, and the backbone is restored.
    backbone = ctx.llm()
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    task_lora, meta = load_lora(tmp_path / "control" / "task_lora.safetensors")
    assert meta["stage"] == "task"
    with merged_lora(backbone.model, task_lora, control.params.alpha):
        assert backbone.generate([e.input for e in batch], num_beams=GEN.num_beams, max_new_tokens=GEN.max_new_tokens,
                                 max_input_tokens=GEN.max_input_tokens) == answers
    assert all(torch.equal(p, before[n]) for n, p in backbone.model.named_parameters())

    # Same seed, data and settings: the control's task LoRA is OPPU's stage 1, bit for bit.
    oppu = make(tmp_path / "oppu")
    oppu.fit(train_set())
    assert digest(tmp_path / "oppu" / "task_lora.safetensors") == digest(tmp_path / "control" / "task_lora.safetensors")


def test_oppu_with_untrained_user_adapters_answers_as_its_control(tmp_path):
    """Per-user adapters start with no effect (B = 0) on the merged task LoRA: zero user
    epochs must give exactly the control's answers."""
    batch = [example("qa", "A", tweets("A", 3, "cat")), example("qb", "B", tweets("B", 2, "fish"))]
    control = TaskLoRA(context(tmp_path / "control"), TaskLoRAParams(**_task_fast()))
    control.fit(train_set())
    oppu = make(tmp_path / "oppu", epochs=0)
    oppu.fit(train_set())
    assert oppu.predict(batch) == control.predict(batch)
    summary = oppu.fit_summary()
    assert summary["users_trained"] == 2 and summary["user_optimizer_steps"] == summary["user_budget_steps"] == 0


def test_fresh_user_adapters_are_peft_like_and_seeded(tmp_path):
    model = make(tmp_path).ctx.llm().model
    names = target_module_names(model, default_targets(model))
    a, b = fresh_lora(model, names, 4, seed=1), fresh_lora(model, names, 4, seed=1)
    other = fresh_lora(model, names, 4, seed=2)
    for n in names:
        fan_in = model.get_submodule(n).in_features
        assert torch.equal(a[n][0], b[n][0]) and not torch.equal(a[n][0], other[n][0])
        assert a[n][0].abs().max() <= fan_in ** -0.5 and not a[n][1].any()


def test_oppu_fit_summary_counts_both_stages(tmp_path):
    method = make(tmp_path)
    method.fit(train_set())
    method.predict([example("qa", "A", tweets("A", 3, "cat")), example("qb", "B", tweets("B", 5, "fish"))])
    summary = method.fit_summary()
    # Stage 1: 4 pairs, batch 2, 1 epoch. Stage 2: 2 epochs of ceil(3/2) and ceil(5/2) steps.
    assert (summary["optimizer_steps"], summary["budget_steps"]) == (2, 2)
    assert summary["user_optimizer_steps"] == summary["user_budget_steps"] == 2 * 2 + 2 * 3
    assert summary["trained_to_budget"] is True and summary["users"] == 2


def test_constrained_decoding_answers_each_user_through_the_shared_path(tmp_path):
    ctx = context(tmp_path, task="lamp2", decoding="constrained")
    task = ctx.task
    method = OPPU(ctx, OPPUParams(**FAST))
    movies = lambda u, tag: tuple({"id": f"{u}{i}", "description": f"a film about {tag} number {i}", "tag": tag}
                                  for i in range(3))  # noqa: E731
    train = [Example(id=f"t{i}", input=task.input_template.format(description=f"movie {i}"),
                     profile=movies(f"t{i}", "comedy"), output="comedy", user_id=f"t{i}") for i in range(4)]
    method.fit(train)
    batch = [Example(id="qa", input=task.input_template.format(description="a robot"), profile=movies("A", "sci-fi"),
                     user_id="A"),
             Example(id="qb", input=task.input_template.format(description="a heist"), profile=movies("B", "violence"),
                     user_id="B")]
    answers = method.predict(batch)
    assert all(a in task.labels for a in answers)
    assert ctx.last_prompts == [e.input for e in batch]
    task_lora, _ = load_lora(tmp_path / "task_lora.safetensors")
    backbone = ctx.llm()
    for e, answer in zip(batch, answers):  # each user alone, with real peft: the same label
        weights, _ = load_lora(method.user_path(e.user_key))
        with merged_lora(backbone.model, task_lora, method.params.alpha), \
                peft_lora(backbone.model, method.module_names(), method.params.r, method.params.alpha) as layers:
            with torch.no_grad():
                for n, m in layers.items():
                    m.lora_A["default"].weight.copy_(weights[n][0])
                    m.lora_B["default"].weight.copy_(weights[n][1])
            scores = backbone.score_options([e.input], task.labels, max_input_tokens=GEN.max_input_tokens)
        assert task.labels[int(scores.argmax())] == answer


def test_k1_pairs_retrieve_only_earlier_items_of_the_same_user(tmp_path):
    ctx = context(tmp_path, task="lamp2")
    method = OPPU(ctx, OPPUParams(**{**FAST, "k": 1, "retriever": "bm25"}))
    descriptions = ["a robot film about robot things", "a heist film about heist things",
                    "a wedding film about wedding things", "a robot film about robot friends"]
    profile = tuple({"id": f"m{i}", "description": d, "tag": "comedy"} for i, d in enumerate(descriptions))
    pairs = method.pairs_for(profile)
    assert [t for _, t in pairs] == [t for _, t in user_pairs(ctx.task, profile)]
    assert pairs[0] == user_pairs(ctx.task, profile[:1])[0]  # nothing before the first item
    for i, (prompt, _) in enumerate(pairs[1:], start=1):
        assert prompt.endswith(user_pairs(ctx.task, profile[i : i + 1])[0][0])
        shown = [item for item in profile if item["description"] in prompt.split('" is "')[0]]
        assert len(shown) == 1 and profile.index(shown[0]) < i  # an earlier item of this user, never itself
    assert "robot" in pairs[3][0].split('" is "')[0]  # BM25 picks the matching earlier item


def test_k1_continuation_pairs_get_no_retrieved_items(tmp_path):
    """LaMP-7's pairs continue the user's own tweets; the reference (format_flag) retrieves
    nothing for them."""
    method = make(tmp_path, k=1, retriever="bm25")
    profile = tweets("A", 3, "cat")
    assert method.pairs_for(profile) == user_pairs(method.ctx.task, profile)
