"""PPlug on tiny models: what is trained, what stays frozen, and that it can learn.

Examples are built by hand (a few users whose history carries their favourite tag), so
the tests need no data files and run in seconds on CPU.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import methods  # noqa: F401 - registers the built-ins
from harness.api import Example, RunContext
from harness.backbones import Backbone, GenerationSettings
from harness.models import MODELS, tiny_tokenizer
from harness.registries import METHODS, TASKS
from harness.soft_prompt import history_dropout
from methods.pplug import (
    WEIGHTS_FILE,
    PPlug,
    PPlugMean,
    PPlugNoInst,
    PPlugParams,
    PPlugRAG,
    PPlugRAGParams,
    aggregate,
    item_text,
    pad_rows,
)
from tests.examples import tagged_examples

FAST = PPlugParams(batch_size=4, micro_batch=2, max_steps=2)


def make_examples(n_users: int = 4, per_user: int = 4, history: int = 6, seed: int = 0) -> list[Example]:
    return tagged_examples(n_users, per_user, history, seed)


def context(tmp_path: Path, llm: str = "tiny-causal", backbone: Backbone | None = None,
            task: str = "lamp2") -> RunContext:
    return RunContext(task=TASKS.get(task), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path / "artifacts",
                      generation=GenerationSettings(num_beams=1, batch_size=8, max_new_tokens=8),  # tiny models ramble
                      progress=False, _llm=backbone)


def steerable_causal() -> Backbone:
    """A tiny Llama initialised with a large scale, so two soft tokens can steer its output.

    With the usual 0.02 init a random frozen model's logits hardly depend on its input,
    so no prefix could lower the loss much; this one can, which is what lets the
    learning test tell a working optimiser from a broken one.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id, tie_word_embeddings=True, initializer_range=0.1,
    )
    torch.manual_seed(0)
    return Backbone(MODELS.get("tiny-causal"), LlamaForCausalLM(config), tok)


def test_registered_with_aliases():
    assert METHODS.get("pplug") is PPlug
    assert METHODS.get("pplug-mean") is PPlugMean
    assert METHODS.get("pplug-noinst") is PPlugNoInst
    assert METHODS.get(METHODS.resolve_name("pplug+bm25")) is PPlugRAG


@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_llm_is_frozen_and_bit_identical_after_training(tmp_path, llm):
    method = PPlug(context(tmp_path, llm), FAST)
    backbone = method.ctx.llm()
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in method.ctx.encoder().model.state_dict().items()}
    method.fit(make_examples())
    assert len(method.loss_curve) == 2
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in backbone.model.parameters())
    # the frozen history encoder is untouched too; only its trainable copy moved
    assert all(torch.equal(encoder_before[k], v) for k, v in method.ctx.encoder().model.state_dict().items())


@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
@pytest.mark.parametrize("cls, groups", [
    (PPlug, {"input_encoder", "proj", "instruction", "inst_mlp"}),
    (PPlugMean, {"proj", "instruction", "inst_mlp"}),
    (PPlugNoInst, {"input_encoder", "proj"}),
])
def test_every_trainable_part_gets_gradients(tmp_path, llm, cls, groups):
    method = cls(context(tmp_path, llm), FAST)
    method.module = plug = method.build()
    plug.train()
    batch = make_examples()[:4]
    loss = method.ctx.llm().loss(method.prompts(batch), [e.output for e in batch], prefix=method.soft_tokens(batch))
    loss.backward()
    named = dict(plug.named_parameters())
    assert {name.split(".")[0] for name in named} == groups
    for name, p in named.items():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name


def test_attention_weights_sum_to_one_and_ignore_padding():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    history = torch.nn.functional.normalize(torch.randn(3, 5, 8), dim=-1)
    projected = torch.randn(3, 5, 6)
    lengths = [5, 3, 1]
    mask = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    garbage = ~mask.unsqueeze(-1)
    persona, weights = aggregate(q, history.masked_fill(garbage, 9.0), projected.masked_fill(garbage, -7.0),
                                 mask, "attention")
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    for i, n in enumerate(lengths):  # the same as aggregating the unpadded history alone
        alone, w = aggregate(q[i:i + 1], history[i:i + 1, :n], projected[i:i + 1, :n],
                             torch.ones(1, n, dtype=torch.bool), "attention")
        assert torch.allclose(w[0], torch.softmax(history[i, :n] @ q[i], dim=0))
        assert torch.allclose(persona[i], alone[0], atol=1e-6)


def test_attention_temperature_sharpens_the_weights_and_is_exact_at_one():
    torch.manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    history = torch.nn.functional.normalize(torch.randn(2, 6, 8), dim=-1)
    projected, mask = torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool)
    plain = aggregate(q, history, projected, mask, "attention")
    assert all(torch.equal(a, b) for a, b in zip(plain, aggregate(q, history, projected, mask, "attention", 1.0)))
    _, sharp = aggregate(q, history, projected, mask, "attention", 0.05)
    assert torch.allclose(sharp, torch.softmax(torch.einsum("bd,bnd->bn", q, history) / 0.05, dim=-1))
    assert torch.all(sharp.max(-1).values > plain[1].max(-1).values)
    from harness.params import recorded_params

    assert "attention_temperature" not in recorded_params(PPlugParams())  # earlier cells keep their hash
    assert recorded_params(PPlugParams(attention_temperature=0.05))["attention_temperature"] == 0.05
    with pytest.raises(ValueError, match="attention_temperature"):
        PPlugParams(attention_temperature=0.0)


def test_user_without_history_gets_zero_persona_not_nan():
    q = torch.randn(1, 4)
    persona, weights = aggregate(q, torch.zeros(1, 1, 4), torch.ones(1, 1, 3), torch.zeros(1, 1, dtype=torch.bool),
                                 "attention")
    assert torch.equal(weights, torch.zeros(1, 1)) and torch.equal(persona, torch.zeros(1, 3))


def test_mean_ablation_equals_plain_masked_average(tmp_path):
    method = PPlugMean(context(tmp_path), FAST)
    plug = method.build().eval()
    examples = [make_examples(history=6)[0], make_examples(history=2)[0]]
    table, rows = method.history([e.profile for e in examples])
    hist, mask = pad_rows(table, rows)
    persona, weights = plug.persona([method.query_text(e) for e in examples], hist, mask)
    for i, row in enumerate(rows):
        expected = plug.proj(table[torch.as_tensor(row)]).mean(dim=0)
        assert torch.allclose(persona[i], expected, atol=1e-6)
        assert torch.allclose(weights[i, : len(row)], torch.full((len(row),), 1 / len(row)))


@pytest.mark.parametrize("cls, n", [(PPlug, 2), (PPlugNoInst, 1)])
def test_normalized_soft_tokens_have_the_llms_embedding_norm(tmp_path, cls, n):
    method = cls(context(tmp_path), dataclasses.replace(FAST, soft_scale="normalized"))
    method.module = method.build().eval()
    soft = method.soft_tokens(make_examples()[:3])
    llm = method.ctx.llm()
    assert soft.shape == (3, n, llm.hidden_size)
    assert torch.allclose(soft.norm(dim=-1), torch.full((3, n), llm.token_embedding_norm))


@pytest.mark.parametrize("soft_scale", ["reference", "normalized"])
def test_soft_token_scale_as_the_reference_or_normalized(tmp_path, soft_scale):
    """reference: raw MLP output x S, the instruction token x S / 7 (code/ModelForPer.py);
    normalized: both on the sphere of radius S. S is the backbone's mean token norm."""
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, soft_scale=soft_scale))
    plug = method.module = method.build().eval()
    examples = make_examples()[:3]
    scale = method.ctx.llm().token_embedding_norm
    assert plug.scale == pytest.approx(scale)
    with torch.no_grad():
        soft = method.soft_tokens(examples)
        table, rows = method.history([e.profile for e in examples])
        persona, _ = plug.persona([method.query_text(e) for e in examples], *pad_rows(table, rows))
        inst = plug.inst_mlp(plug.instruction)
    if soft_scale == "reference":
        assert torch.allclose(soft[:, 0], (inst * scale / 7.0).expand(3, -1), atol=1e-5)
        assert torch.allclose(soft[:, 1], persona * scale, atol=1e-5)
        assert not torch.allclose(soft[:, 0], (inst * scale).expand(3, -1))  # the 1/7 is there
        assert plug.instruction.min() >= 0 and plug.instruction.max() < 1  # torch.rand, as the reference
    else:
        assert torch.allclose(soft[:, 0], (torch.nn.functional.normalize(inst, dim=-1) * scale).expand(3, -1),
                              atol=1e-5)
        assert torch.allclose(soft[:, 1], torch.nn.functional.normalize(persona, dim=-1) * scale, atol=1e-5)


def test_embedding_scale_override_is_the_references_constant(tmp_path):
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, embedding_scale=539.9738))
    assert method.build().scale == pytest.approx(539.9738)


def test_more_persona_tokens_come_from_one_wider_projection(tmp_path):
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, n_persona_tokens=3))
    method.module = plug = method.build().eval()
    d = method.ctx.llm().hidden_size
    assert plug.proj[0].out_features == 3 * d and plug.proj[2].out_features == 3 * d
    assert method.soft_tokens(make_examples()[:2]).shape == (2, 4, d)


def test_history_keeps_the_most_recent_items(tmp_path):
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, max_history=2, history_text="reference"))
    profile = ({"id": "a", "description": "newest", "tag": "comedy", "date": "2012-05-01"},
               {"id": "b", "description": "oldest", "tag": "comedy", "date": "2001"},
               {"id": "c", "description": "middle", "tag": "comedy", "date": "2009-02-03"})
    table, rows = method.history([profile])
    expected = method.ctx.encoder().encode(["middle", "newest"])
    assert torch.allclose(table[torch.as_tensor(rows[0])], torch.from_numpy(expected), atol=1e-5)


def test_training_drives_the_loss_well_down(tmp_path):
    params = PPlugParams(lr=1e-2, batch_size=8, micro_batch=8, epochs=100, max_steps=150, warmup_ratio=0.05,
                         history_dropout_copies=2)
    method = PPlug(context(tmp_path, backbone=steerable_causal()), params)
    method.fit(make_examples(per_user=4))
    curve = method.loss_curve
    assert len(curve) == 150
    first, last = sum(curve[:10]) / 10, sum(curve[-10:]) / 10
    assert last < 0.6 * first, (first, last)  # a free per-user prefix gets ~0.25 here
    assert (tmp_path / "artifacts" / "loss.png").stat().st_size > 0


def test_save_and_reload_give_identical_predictions_and_only_trainable_tensors(tmp_path):
    examples = make_examples()
    method = PPlug(context(tmp_path, "tiny-t5"), FAST)
    method.fit(examples)
    first = method.predict(examples[:6])
    with safe_open(str(tmp_path / "artifacts" / WEIGHTS_FILE), framework="pt") as fh:
        keys = set(fh.keys())
    assert keys == {n for n, p in method.module.named_parameters() if p.requires_grad}
    assert not any(k.startswith(("llm", "encoder.", "model.")) or "pooler" in k for k in keys)
    again = PPlug(context(tmp_path, "tiny-t5"), FAST)
    again.fit(examples)  # finds the saved plug-in and loads it instead of training
    assert again.loss_curve == []
    assert again.predict(examples[:6]) == first
    for name, tensor in again.module.trainable_state().items():
        assert torch.equal(tensor, method.module.trainable_state()[name])


def test_pplug_rag_prompts_carry_retrieved_items(tmp_path):
    method = PPlugRAG(context(tmp_path), PPlugRAGParams(**{**dataclasses.asdict(FAST), "max_steps": 1}))
    example = make_examples()[0]
    prompt = method.prompts([example])[0]
    assert prompt != example.input and example.input in prompt and "the tag for the movie" in prompt
    ids = method.ctx.last_retrieved[0]
    assert len(ids) == 1 and ids[0] in {item["id"] for item in example.profile}
    method.fit(make_examples())
    assert len(method.predict([example])) == 1


# -- fidelity to the reference code (rucliujn/PPlug) ---------------------------------------
# What embedding.py / aggr_id.py (process) embed per history item, per LaMP task.
REFERENCE_HISTORY = {
    "lamp1": lambda it: it["title"] + " " + it["abstract"],
    "lamp2": lambda it: it["description"],
    "lamp3": lambda it: it["text"],
    "lamp4": lambda it: it["text"] + " " + it["title"],
    "lamp5": lambda it: it["title"] + " " + it["abstract"],
    "lamp7": lambda it: it["text"],
}
ITEM = {"title": "T", "abstract": "A", "description": "D", "tag": "comedy", "text": "X", "score": "5",
        "start": "S", "rest": "R"}


@pytest.mark.parametrize("task", sorted(REFERENCE_HISTORY))
def test_history_text_per_task_is_what_the_reference_embeds(task):
    spec = TASKS.get(task)
    assert item_text(spec, ITEM, "reference") == REFERENCE_HISTORY[task](ITEM)


def test_fields_option_names_every_field_including_the_users_own_outputs():
    assert item_text(TASKS.get("lamp2"), ITEM, "fields") == "description: D; tag: comedy"
    assert item_text(TASKS.get("lamp3"), ITEM, "fields") == "text: X; score: 5"
    with pytest.raises(ValueError, match="history_text"):
        item_text(TASKS.get("lamp2"), ITEM, "item")


@pytest.mark.parametrize("task, expected", [
    ("amazon-rating", "X"), ("amazon-summary", "X T"), ("movielens-tag", "D"), ("tweets", "X"),
])
def test_realdata_tasks_embed_their_lamp_analogues_history_text(task, expected):
    spec = TASKS.get(task)
    assert spec.history_text is not None and item_text(spec, ITEM, "reference") == expected


def test_lamp1_query_is_the_authors_own_title(tmp_path):
    """process_qry (code/PersonalDataset_profile.py): the text between 'title "' and '",'."""
    spec = TASKS.get("lamp1")
    text = spec.input_template.format(title="Deep nets for ranking", ref1="Old work", ref2="Other work")
    assert spec.persona_query(text) == "Deep nets for ranking"
    assert spec.query(text) == "Old work Other work"  # the retrievers' query stays LaMP's
    method = PPlug(context(tmp_path, task="lamp1"), FAST)
    example = Example(id="q", input=text, profile=(), output="[1]")
    assert method.query_text(example) == method.ctx.encoder().preset.query_instruction + "Deep nets for ranking"


def test_query_is_drawn_from_the_input_the_llm_sees(tmp_path):
    """PersonalDataset.parse_data cuts the input to the LLM budget before process_qry."""
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, max_input_tokens=6))
    words = "one two three four five six seven eight nine ten"
    long_query = method.query_text(Example(id="q", input=f"description: {words}", profile=()))
    tokenizer = method.ctx.llm().tokenizer
    assert len(tokenizer.encode(long_query, add_special_tokens=False)) <= 5
    assert "one" in long_query and "ten" not in long_query
    assert method.query_text(Example(id="s", input="description: one", profile=())).endswith("one")


@pytest.mark.parametrize("task, cap", [("lamp1", 128), ("lamp2", 128), ("lamp3", 10), ("lamp4", 128),
                                       ("lamp5", 128), ("lamp7", 128), ("amazon-rating", 10)])
def test_generation_and_target_caps_are_the_references(task, cap):
    spec = TASKS.get(task)
    assert spec.max_new_tokens == cap and spec.version >= 2


def test_history_dropout_count_follows_the_reference_formula():
    """aggr_id.py: histories of n > 2 items get 10 copies, each dropping int(n * U(0, 0.5)) + 1."""
    for n in (3, 4, 7, 40):
        items = list(range(100, 100 + n))
        copies = history_dropout(items, 10, 0.5, random.Random(n))
        replay = random.Random(n)
        expected = []
        for _ in range(10):
            drop = int(n * replay.uniform(0.0, 0.5)) + 1
            expected.append(n - drop)
            replay.sample(range(n), n - drop)
        assert [len(c) for c in copies] == expected
        assert all(1 <= len(c) < n and c == sorted(c) and set(c) <= set(items) for c in copies)
        assert copies == history_dropout(items, 10, 0.5, random.Random(n))  # seeded
    assert history_dropout([1, 2], 10, 0.5, random.Random(0)) == []
    assert history_dropout([], 10, 0.5, random.Random(0)) == []
    assert {len(c) for c in history_dropout([1, 2, 3], 200, 0.5, random.Random(0))} == {1, 2}


def test_fit_adds_dropout_copies_and_records_the_budget(tmp_path):
    examples = make_examples(n_users=2, per_user=2, history=6) + [
        Example(id="short", input="description: x", profile=make_examples(history=2)[0].profile, output="comedy")]
    params = dataclasses.replace(FAST, history_dropout_copies=3, max_steps=None, epochs=1, batch_size=4)
    method = PPlug(context(tmp_path), params)
    method.fit(examples)
    summary = method.fit_summary()
    units = 4 * (1 + 3) + 1  # the 2-item history gets no copies
    assert summary["train_examples_used"] == 5 and summary["train_units"] == units
    assert summary["budget_steps"] == summary["optimizer_steps"] == -(-units // 4)
    assert summary["trained_to_budget"] is True and summary["early_stopped"] is False
    assert summary["soft_scale"] == "reference" and summary["soft_tokens"] == 2


def test_heldout_loss_is_recorded_and_survives_a_reload(tmp_path):
    import json

    params = dataclasses.replace(FAST, heldout_examples=4, eval_every=1, max_steps=3)
    method = PPlug(context(tmp_path), params)
    method.fit(make_examples())
    saved = json.loads((tmp_path / "artifacts" / "loss.json").read_text())
    assert saved["step"] == [1, 2, 3] and len(saved["loss"]) == 3
    assert saved["heldout"]["step"] == [0, 1, 2, 3] and all(x > 0 for x in saved["heldout"]["loss"])
    summary = method.fit_summary()
    assert summary["heldout_examples"] == 4 and summary["train_examples_used"] == 12
    again = PPlug(context(tmp_path), params)
    again.fit(make_examples())
    assert again.loss_curve == [] and again.fit_summary() == summary


def test_early_stopping_counts_as_trained_to_budget(tmp_path):
    params = dataclasses.replace(FAST, heldout_examples=4, eval_every=1, max_steps=6, patience=2, lr=0.0)
    method = PPlug(context(tmp_path), params)
    method.fit(make_examples())  # lr 0: the held-out loss never improves after step 0
    summary = method.fit_summary()
    assert summary["early_stopped"] is True and summary["trained_to_budget"] is True
    assert summary["optimizer_steps"] == 2 < summary["budget_steps"] == 6
    assert "early stopping" in summary["stop_reason"] and summary["best_step"] == 0


def test_version_and_roles():
    assert PPlug.version >= 2 and PPlug.family == "pplug" and PPlug.control == "prompt-tuning"
    assert PPlugMean.variant_of == PPlugNoInst.variant_of == PPlugRAG.variant_of == "pplug"
    assert PPlugMean.family == PPlugNoInst.family == "pplug" and PPlugRAG.family == "pplug+retrieval"
    assert PPlugParams().history_dropout_copies == 10 and PPlugParams().soft_scale == "reference"
    small = PPlugParams(**PPlug.profiles["small"])
    assert small.max_train_examples is not None and small.heldout_examples > 0


def test_bad_settings_fail_at_construction():
    with pytest.raises(ValueError, match="soft_scale"):
        PPlugParams(soft_scale="unit")
    with pytest.raises(ValueError, match="history_text"):
        PPlugParams(history_text="corpus")
    with pytest.raises(ValueError, match="n_persona_tokens"):
        PPlugParams(n_persona_tokens=0)


def test_centred_history_subtracts_the_train_items_mean_and_survives_a_reload(tmp_path):
    examples = make_examples()
    params = dataclasses.replace(FAST, center_history=True, history_text="fields")
    method = PPlug(context(tmp_path, "tiny-t5"), params)
    method.fit(examples)
    mean = method.module.history_mean
    # The mean of the distinct train history items (4 users' items; FAST holds nothing out).
    table, rows = method.history([e.profile for e in examples])
    distinct = torch.as_tensor(sorted({int(r) for row in rows for r in row}))
    assert torch.allclose(mean, table[distinct].mean(dim=0), atol=1e-5)
    assert mean.norm() > 0.1
    # The projection reads centred items; attention still reads the raw ones.
    hist, mask = pad_rows(table, rows[:2])
    persona, weights = method.module.persona(method._queries[:2], hist, mask)
    expected, _ = aggregate(method.module.encode_queries(method._queries[:2]), hist,
                            method.module.proj(hist - mean), mask, "attention")
    assert torch.allclose(persona, expected, atol=1e-5)
    with safe_open(str(tmp_path / "artifacts" / WEIGHTS_FILE), framework="pt") as fh:
        assert torch.equal(fh.get_tensor("history_mean"), mean.cpu())
    again = PPlug(context(tmp_path, "tiny-t5"), params)
    again.load()
    assert torch.equal(again.module.history_mean, mean)
    assert again.predict(examples[:4]) == method.predict(examples[:4])


def test_a_centred_persona_is_zero_for_the_average_history_and_survives_a_reload(tmp_path):
    examples = make_examples()
    params = dataclasses.replace(FAST, center_persona=True, history_text="fields")
    method = PPlug(context(tmp_path, "tiny-t5"), params)
    method.fit(examples)
    module, mean = method.module, method.module.history_mean
    assert mean.norm() > 0.1  # fitted from the train items, as for center_history
    table, rows = method.history([e.profile for e in examples])
    hist, mask = pad_rows(table, rows[:2])
    persona, _ = module.persona(method._queries[:2], hist, mask)
    plain, _ = aggregate(module.encode_queries(method._queries[:2]), hist, module.proj(hist), mask, "attention")
    assert torch.allclose(persona, plain - module.proj(mean), atol=1e-5)
    average = mean.expand(2, 3, -1)  # a history of nothing but the average item
    zero, _ = module.persona(method._queries[:2], average, torch.ones(2, 3, dtype=torch.bool))
    assert torch.allclose(zero, torch.zeros_like(zero), atol=1e-5)
    again = PPlug(context(tmp_path, "tiny-t5"), params)
    again.load()
    assert torch.equal(again.module.history_mean, mean)
    assert again.predict(examples[:4]) == method.predict(examples[:4])
    from harness.params import recorded_params

    assert "center_persona" not in recorded_params(PPlugParams())
    assert recorded_params(params)["center_persona"] is True


def test_centring_is_recorded_only_when_on_so_earlier_cells_keep_their_hash():
    from harness.params import recorded_params

    assert "center_history" not in recorded_params(PPlugParams())
    assert recorded_params(PPlugParams(center_history=True))["center_history"] is True
    assert recorded_params(PPlugParams())["max_history"] == 512  # ordinary fields always recorded


def test_restore_rebuilds_a_finished_run_with_its_trained_weights(tmp_path):
    from safetensors.torch import load_file

    from harness.runner import RunRequest, run
    from harness.soft_prompt import restore

    def cell(method: str, params: dict) -> Path:
        return run(RunRequest(task="lamp2", method=method, params=params, llm="tiny-causal", encoder="tiny-encoder",
                              data="synthetic", limit=4, seed=0, out=tmp_path / "runs", progress=False,
                              generation=GenerationSettings(num_beams=1, batch_size=4, max_new_tokens=4))).path

    path = cell("pplug", {"max_steps": 2, "batch_size": 4, "micro_batch": 2, "max_train_examples": 12,
                          "heldout_examples": 0, "max_history": 8})
    method = restore(path)
    assert isinstance(method, PPlug) and method.params.max_history == 8
    saved = load_file(str(path / "artifacts" / WEIGHTS_FILE))
    assert saved.keys() == method.module.trainable_state().keys()
    assert all(torch.equal(saved[k], v) for k, v in method.module.trainable_state().items())
    with pytest.raises(TypeError, match="no soft tokens"):
        restore(cell("adhoc", {}))
    (path / "artifacts" / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        restore(path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        restore(tmp_path)
