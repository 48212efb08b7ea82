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
from methods.pplug import (
    WEIGHTS_FILE, PPlug, PPlugMean, PPlugNoInst, PPlugParams, PPlugRAG, PPlugRAGParams, aggregate, dropout_copies, pad_rows,
)

TAGS = ("comedy", "romance", "action", "classic")
FAST = PPlugParams(batch_size=4, micro_batch=2, max_steps=2, cpu_max_train_examples=None)


def make_examples(n_users: int = 4, per_user: int = 4, history: int = 6, seed: int = 0) -> list[Example]:
    """Users whose history is mostly tagged with their favourite tag, which is the gold."""
    rng = random.Random(seed)
    out = []
    for u in range(n_users):
        fav = TAGS[u % len(TAGS)]
        profile = tuple(
            {"id": f"{u}-{j}", "description": f"film {rng.randint(0, 99)} about {rng.choice(['love', 'war', 'time'])}",
             "tag": fav if j % 3 else rng.choice(TAGS), "date": f"2010-01-{j + 1:02d}"}
            for j in range(history)
        )
        for q in range(per_user):
            out.append(Example(id=f"{u}-{q}", input=f"description: movie {rng.randint(0, 999)} plot",
                               profile=profile, output=fav, user_id=str(u)))
    return out


def context(tmp_path: Path, llm: str = "tiny-causal", backbone: Backbone | None = None) -> RunContext:
    return RunContext(task=TASKS.get("lamp2"), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path / "artifacts", generation=GenerationSettings(num_beams=1, batch_size=8),
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
    method.plug = plug = method.build()
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
def test_soft_tokens_have_the_llms_embedding_norm(tmp_path, cls, n):
    method = cls(context(tmp_path), FAST)
    method.plug = method.build().eval()
    soft = method.soft_tokens(make_examples()[:3])
    llm = method.ctx.llm()
    assert soft.shape == (3, n, llm.hidden_size)
    assert torch.allclose(soft.norm(dim=-1), torch.full((3, n), llm.token_embedding_norm))


def test_history_keeps_the_most_recent_items(tmp_path):
    method = PPlug(context(tmp_path), dataclasses.replace(FAST, max_history=2, history_text="corpus"))
    profile = ({"id": "a", "description": "newest", "tag": "comedy", "date": "2012-05-01"},
               {"id": "b", "description": "oldest", "tag": "comedy", "date": "2001"},
               {"id": "c", "description": "middle", "tag": "comedy", "date": "2009-02-03"})
    table, rows = method.history([profile])
    expected = method.ctx.encoder().encode(["middle", "newest"])
    assert torch.allclose(table[torch.as_tensor(rows[0])], torch.from_numpy(expected), atol=1e-5)


def test_history_dropout_copies_are_seeded_subsets():
    row = torch.arange(10).numpy()
    copies = [c.tolist() for c in dropout_copies(row, 10, 0.5, random.Random(0))]
    assert len(copies) == 10 and copies == [c.tolist() for c in dropout_copies(row, 10, 0.5, random.Random(0))]
    assert all(5 <= len(c) <= 10 and set(c) <= set(row) for c in copies)
    assert len({len(c) for c in copies}) > 1
    assert dropout_copies(row[:2], 10, 0.5, random.Random(0)) == []


def test_training_drives_the_loss_well_down(tmp_path):
    params = PPlugParams(lr=1e-2, batch_size=8, micro_batch=8, epochs=100, max_steps=150, warmup_ratio=0.05,
                         history_dropout_copies=2, cpu_max_train_examples=None)
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
    assert keys == {n for n, p in method.plug.named_parameters() if p.requires_grad}
    assert not any(k.startswith(("llm", "encoder.", "model.")) or "pooler" in k for k in keys)
    again = PPlug(context(tmp_path, "tiny-t5"), FAST)
    again.fit(examples)  # finds the saved plug-in and loads it instead of training
    assert again.loss_curve == []
    assert again.predict(examples[:6]) == first
    for name, tensor in again.plug.trainable_state().items():
        assert torch.equal(tensor, method.plug.trainable_state()[name])


def test_pplug_rag_prompts_carry_retrieved_items(tmp_path):
    method = PPlugRAG(context(tmp_path), PPlugRAGParams(**{**dataclasses.asdict(FAST), "max_steps": 1}))
    example = make_examples()[0]
    prompt = method.prompts([example])[0]
    assert prompt != example.input and example.input in prompt and "the tag for the movie" in prompt
    method.fit(make_examples())
    assert len(method.predict([example])) == 1
