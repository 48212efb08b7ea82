"""The prompt-tuning control and the shared soft-token machinery (harness/soft_prompt.py).

The control must differ from PPlug only in having no user history: same soft tokens,
scaling, budget and train data. The training loop's held-out loss, early stopping and
budget accounting are checked on a toy module where every number is known.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch

import methods  # noqa: F401 - registers the built-ins
from harness.api import Example, RunContext
from harness.backbones import GenerationSettings
from harness.params import recorded_params
from harness.registries import METHODS, TASKS
from harness.soft_prompt import (
    LoopSettings, SoftTokens, TrainRecord, Unit, budget_steps, linear_warmup, param_groups, split_train,
    train_soft_tokens,
)
from methods.pplug import PPlug, PPlugParams
from methods.prompt_tuning import PromptTuning, PromptTuningParams

FAST = PromptTuningParams(batch_size=4, micro_batch=2, max_steps=2)


def make_examples(n_users: int = 3, per_user: int = 4, history: int = 5) -> list[Example]:
    out = []
    for u in range(n_users):
        profile = tuple({"id": f"{u}-{j}", "description": f"film {u} {j}", "tag": "comedy", "date": f"2010-01-0{j + 1}"}
                        for j in range(history))
        out += [Example(id=f"{u}-{q}", input=f"description: movie {u} {q}", profile=profile, output="comedy",
                        user_id=str(u)) for q in range(per_user)]
    return out


def context(tmp_path: Path, llm: str = "tiny-causal") -> RunContext:
    return RunContext(task=TASKS.get("lamp2"), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path / "artifacts",
                      generation=GenerationSettings(num_beams=1, batch_size=8, max_new_tokens=8),  # tiny models ramble
                      progress=False)


# -- the control ----------------------------------------------------------------------------
def test_registered_as_pplugs_control():
    assert METHODS.get("prompt-tuning") is PromptTuning
    assert PromptTuning.family == "control" and PPlug.control == "prompt-tuning"
    assert PromptTuning.uses_train
    history_only = {"max_history", "history_text", "center_history", "attention_temperature", "center_persona"}
    shared = {f.name for f in dataclasses.fields(PPlugParams)} - history_only
    assert shared == {f.name for f in dataclasses.fields(PromptTuningParams)}
    small_pplug = dict(PPlug.profiles["small"])
    small_pplug.pop("max_history")
    assert small_pplug == dict(PromptTuning.profiles["small"])


def test_changing_a_users_profile_leaves_the_soft_tokens_unchanged(tmp_path):
    method = PromptTuning(context(tmp_path), FAST)
    method.module = method.build().eval()
    example = make_examples()[0]
    other = dataclasses.replace(example, profile=({"id": "z", "description": "something else", "tag": "action"},))
    empty = dataclasses.replace(example, profile=())
    with torch.no_grad():
        a, b, c = (method.soft_tokens([e]) for e in (example, other, empty))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert a.shape == (1, 2, method.ctx.llm().hidden_size)


def test_same_tokens_scaling_and_head_size_as_pplug(tmp_path):
    for n in (1, 3):
        pt = PromptTuning(context(tmp_path), dataclasses.replace(FAST, n_persona_tokens=n)).build()
        pp = PPlug(context(tmp_path), PPlugParams(n_persona_tokens=n)).build()
        assert pt.n_tokens == pp.n_tokens == n + 1 and pt.scale == pp.scale
        heads = ("proj", "inst_mlp")
        assert [sum(p.numel() for p in getattr(pt, h).parameters()) for h in heads] == \
               [sum(p.numel() for p in getattr(pp, h).parameters()) for h in heads]


def test_reference_scaling_divides_the_instruction_token_by_seven(tmp_path):
    method = PromptTuning(context(tmp_path), FAST)
    module = method.build().eval()
    with torch.no_grad():
        soft = module(2)
        raw_inst = module.inst_mlp(module.instruction)
        raw_task = module.proj(module.task_vector)
    assert torch.allclose(soft[0, 0], raw_inst * module.scale / 7.0, atol=1e-5)
    assert torch.allclose(soft[0, 1], raw_task * module.scale, atol=1e-5)
    assert torch.equal(soft[0], soft[1])


def test_same_budget_and_train_data_as_pplug(tmp_path):
    examples = make_examples() + [Example(id="s", input="description: s", profile=({"id": "a", "description": "a",
                                                                                      "tag": "comedy"},),
                                          output="comedy")]
    params = dict(batch_size=4, micro_batch=4, epochs=1, history_dropout_copies=2, heldout_examples=3)
    control = PromptTuning(context(tmp_path / "c"), PromptTuningParams(**params))
    pplug = PPlug(context(tmp_path / "p"), PPlugParams(**params))
    control.fit(examples)
    pplug.fit(examples)
    a, b = control.fit_summary(), pplug.fit_summary()
    for key in ("train_examples_used", "heldout_examples", "train_units", "budget_steps", "optimizer_steps"):
        assert a[key] == b[key], key
    train, _ = split_train(examples, None, 3, random.Random(0))  # the run seed is 0
    assert a["train_units"] == sum(1 + (2 if len(e.profile) > 2 else 0) for e in train)  # 1 item: no copy


def test_control_learns_and_reloads(tmp_path):
    params = PromptTuningParams(batch_size=4, micro_batch=4, lr=1e-2, epochs=20, max_steps=20, heldout_examples=2,
                                eval_every=5)
    method = PromptTuning(context(tmp_path, "tiny-t5"), params)
    method.fit(make_examples())
    record = method.record
    assert record is not None and record.heldout_loss[-1] < record.heldout_loss[0]
    first = method.predict(make_examples()[:3])
    again = PromptTuning(context(tmp_path, "tiny-t5"), params)
    again.fit(make_examples())
    assert again.loss_curve == [] and again.predict(make_examples()[:3]) == first
    assert again.fit_summary() == method.fit_summary()


# -- the shared machinery, on a toy module ----------------------------------------------------
class Toy(SoftTokens):
    """A task vector through the real projection; the loss pulls the tokens towards zero."""

    def __init__(self) -> None:
        super().__init__(4, 3, scale=2.0, soft_scale="reference", instruction=True)
        self.task_vector = torch.nn.Parameter(torch.ones(4))


def toy_loss(module: Toy):
    def loss(units):
        tokens = module.assemble(module.proj(module.task_vector).expand(len(units), -1))
        return (tokens ** 2).mean()
    return loss


def settings(**kw) -> LoopSettings:
    base = dict(lr=1e-2, head_lr=None, weight_decay=0.0, warmup_ratio=0.0, batch_size=2, micro_batch=1, epochs=1)
    return LoopSettings(**{**base, **kw})


def test_budget_and_schedule_follow_hf():
    assert budget_steps(10, 4, 2, None) == 6 and budget_steps(10, 4, 2, 5) == 5
    factor = linear_warmup(100, 0.05)  # ceil(0.05 * 100) = 5 warmup steps, first update at lr 0
    assert [factor(s) for s in (0, 1, 5, 100)] == [0.0, 0.2, 1.0, 0.0]


def test_head_lr_applies_to_heads_not_the_encoder():
    class WithEncoder(Toy):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Linear(2, 2)

        def encoder_parameters(self):
            return list(self.enc.parameters())

    groups = {g["name"]: g for g in param_groups(WithEncoder(), 1e-4, 1e-2)}
    assert groups["heads"]["lr"] == 1e-2 and groups["encoder"]["lr"] == 1e-4
    assert len(groups["encoder"]["params"]) == 2
    assert {g["name"]: g["lr"] for g in param_groups(Toy(), 1e-4, None)} == {"heads": 1e-4}


def test_heldout_losses_and_budget_flags():
    torch.manual_seed(0)
    module = Toy()
    record = train_soft_tokens(module, [Unit(i) for i in range(8)], [Unit(8), Unit(9)], toy_loss(module),
                               settings(epochs=2, eval_every=3))
    assert record.train_step == list(range(1, 9)) and record.budget_steps == 8
    assert record.heldout_step == [0, 3, 6, 8]
    assert record.heldout_loss[-1] < record.heldout_loss[0] and record.trained_to_budget
    assert record.summary()["stop_reason"] == "budget"
    assert TrainRecord.from_json(record.to_json()).summary() == record.summary()
    short = TrainRecord(budget_steps=5, train_units=8, heldout_units=0, train_loss=[1.0, 0.9], train_step=[1, 2])
    assert not short.trained_to_budget and "2 of 5" in short.stop_reason()


def test_early_stopping_restores_the_best_heldout_weights():
    torch.manual_seed(0)
    module = Toy()
    train_loss = toy_loss(module)
    scripted = iter([1.0, 0.5, 0.7, 0.8, 0.9])  # best after step 1, then two worse evaluations
    snapshots = []

    def loss(units):
        if units[0].index >= 100:  # a held-out evaluation
            snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})
            return torch.tensor(next(scripted))
        return train_loss(units)

    record = train_soft_tokens(module, [Unit(i) for i in range(8)], [Unit(100)], loss,
                               settings(epochs=10, eval_every=1, patience=2))
    assert record.early_stopped and record.best_step == 1 and record.optimizer_steps == 3
    assert record.trained_to_budget and record.budget_steps == 40
    for name, p in module.named_parameters():
        assert torch.equal(p, snapshots[1][name]), name
    assert not torch.equal(snapshots[1]["task_vector"], snapshots[3]["task_vector"])


def test_heldout_slice_is_seeded_disjoint_and_never_more_than_half():
    examples = make_examples(n_users=5)  # 20
    train, held = split_train(examples, 6, 4, random.Random(0))
    assert len(train) == 6 and len(held) == 4 and not {e.id for e in train} & {e.id for e in held}
    assert (train, held) == split_train(examples, 6, 4, random.Random(0))
    assert len(split_train(examples[:3], None, 64, random.Random(0))[1]) == 1


def test_bad_settings_fail_at_construction():
    with pytest.raises(ValueError, match="soft_scale"):
        PromptTuningParams(soft_scale="unit")
    with pytest.raises(ValueError, match="history_dropout_max"):
        PromptTuningParams(history_dropout_max=1.0)
    with pytest.raises(ValueError, match="patience"):
        PromptTuningParams(patience=0)


# -- a backbone LoRA beside the soft tokens (not the paper's; off by default) ----------------
def test_backbone_lora_trains_with_the_soft_tokens_reloads_and_leaves_the_llm_as_found(tmp_path):
    params = dataclasses.replace(FAST, backbone_lora_rank=2, backbone_lora_lr=1e-2, max_steps=3)
    method = PromptTuning(context(tmp_path), params)
    model = method.ctx.llm().model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method.fit(make_examples())
    first = method.predict(make_examples()[:3])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # merged and restored
    assert method.backbone_lora_path.is_file()
    lora = method.backbone_lora
    assert lora is not None and {name.rsplit(".", 1)[-1] for name in lora} == {"q_proj", "k_proj", "v_proj"}
    assert any(b.abs().sum() > 0 for _, b in lora.values())  # B starts at zero: it trained
    assert method.fit_files() == (method.backbone_lora_path.name, method.weights_path.name)
    assert method.fit_summary()["backbone_lora"]["rank"] == 2
    assert method.cost()["trainable_parameters"] > sum(p.numel() for p in method.module.parameters())
    again = PromptTuning(context(tmp_path), params)
    again.fit(make_examples())  # loads both files instead of training
    assert again.loss_curve == [] and again.predict(make_examples()[:3]) == first
    for name, (a, b) in again.backbone_lora.items():
        assert torch.equal(a, lora[name][0]) and torch.equal(b, lora[name][1])


def test_backbone_lora_is_hash_neutral_when_off_and_recorded_when_on():
    assert "backbone_lora_rank" not in recorded_params(FAST)
    assert recorded_params(dataclasses.replace(FAST, backbone_lora_rank=4))["backbone_lora_rank"] == 4
    with pytest.raises(ValueError, match="backbone_lora_rank"):
        dataclasses.replace(FAST, backbone_lora_rank=-1)


def test_a_missing_backbone_lora_file_is_named(tmp_path):
    params = dataclasses.replace(FAST, backbone_lora_rank=2, max_steps=1)
    method = PromptTuning(context(tmp_path), params)
    method.fit(make_examples())
    method.backbone_lora_path.unlink()
    with pytest.raises(FileNotFoundError, match="backbone_lora"):
        PromptTuning(context(tmp_path), params).load()
