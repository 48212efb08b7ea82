"""Training and serving LoRA adapters on a shared frozen backbone: two trainers, one schedule.

Both trainers run the same optimisation (AdamW, HF's linear warmup/decay schedule,
gradient-norm clipping, token-mean next-token loss per minibatch) and give the same
adapters within float tolerance (``tests/test_oppu.py``):

* :func:`train_sequential`: one peft LoRA trained per job, one job after another — the
  reference path (``transformers.Trainer`` + peft in TamSiuhin/OPPU).
* :func:`train_batched`: every job (user) at once through :class:`harness.lora.BatchedLoRA`;
  the loss is the *sum of per-job mean losses*, so each job's gradient is exactly its
  standalone gradient, and clipping, AdamW state, step counts and the learning-rate
  schedule are per job.

:func:`generate_mixed` decodes a batch whose examples use different adapters. Nothing
here knows about users or tasks; methods (OPPU and its task-LoRA control) decide what a
job is. Dropout is not applied (the reference uses 0.05): with it, the two trainers
could not draw the same masks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.backbones import Backbone
from harness.lora import (
    BatchedLoRA,
    LoRAWeights,
    SlotAdamW,
    clip_grad_norm_per_slot,
    linear_warmup_decay,
)

Pair = tuple[str, str]  # (prompt, target)
Steps = list[list[Pair]]  # one job's minibatches, in training order


@dataclass(frozen=True)
class TrainSettings:
    """What both trainers need; identical values give identical adapters."""

    r: int
    alpha: float
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    max_input_tokens: int
    max_target_tokens: int
    max_batch_examples: int


def stable_seed(*parts: object) -> int:
    """A process-independent seed (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def schedule(pairs: Sequence[Pair], epochs: int, batch_size: int, seed: int) -> Steps:
    """Minibatches for ``epochs`` shuffled passes; the order depends only on ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    steps: Steps = []
    for _ in range(epochs):
        perm = torch.randperm(len(pairs), generator=gen).tolist()
        steps += [[pairs[i] for i in perm[s : s + batch_size]] for s in range(0, len(pairs), batch_size)]
    return steps


def budget_steps(n_pairs: int, epochs: int, batch_size: int) -> int:
    """Optimizer steps that ``epochs`` passes over ``n_pairs`` take (what :func:`schedule` makes)."""
    return epochs * -(-n_pairs // batch_size)


# -- peft -----------------------------------------------------------------------------------
@contextmanager
def peft_lora(model: torch.nn.Module, module_names: Sequence[str], r: int, alpha: float) -> Iterator[dict[str, Any]]:
    """Inject a peft LoRA (no dropout) into the shared model, and remove it afterwards.

    Yields ``{module name: peft LoRA layer}``; the model is restored on exit so other
    methods in the same process see the plain frozen backbone.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(module_names), lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    try:
        yield {name: model.get_submodule(name) for name in module_names}
    finally:
        peft_model.unload()


def get_peft_weights(layers: Mapping[str, Any]) -> LoRAWeights:
    return {n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone())
            for n, m in layers.items()}


@torch.no_grad()
def set_peft_weights(layers: Mapping[str, Any], weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for n, m in layers.items():
        a, b = weights[n]
        m.lora_A["default"].weight.copy_(a)
        m.lora_B["default"].weight.copy_(b)


# -- trainers -------------------------------------------------------------------------------
def train_sequential(backbone: Backbone, module_names: Sequence[str], jobs: Sequence[Steps],
                     inits: Sequence[LoRAWeights], hp: TrainSettings, desc: str | None = None) -> list[LoRAWeights]:
    """The reference path: one peft LoRA trained per job, one job after another.

    Job ``j`` starts from ``inits[j]``. ``desc`` names a progress bar over all optimizer
    steps (``None``: no bar).
    """
    if len(inits) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(inits)} initial adapters")
    out: list[LoRAWeights] = []
    bar = tqdm(total=sum(map(len, jobs)), desc=desc, unit="step", disable=desc is None)
    with bar, peft_lora(backbone.model, module_names, hp.r, hp.alpha) as layers:
        params = [p for m in layers.values() for p in (m.lora_A["default"].weight, m.lora_B["default"].weight)]
        for steps, init in zip(jobs, inits):
            set_peft_weights(layers, init)
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
            total = len(steps)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s, total=total: linear_warmup_decay(s, total, hp.warmup_ratio))
            for batch in steps:
                accumulate_minibatch_gradient(backbone, batch, hp)
                torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                bar.update()
            out.append(get_peft_weights(layers))
    return out


def accumulate_minibatch_gradient(backbone: Backbone, batch: Sequence[tuple[str, str]], hp: TrainSettings) -> None:
    """Backpropagate one minibatch's token-mean loss in passes of ``hp.max_batch_examples``.

    A minibatch that fits in one pass takes the plain ``Backbone.loss`` path. A larger one
    is split, each example's summed token loss weighted by ``1 / (target tokens of the
    whole minibatch)``, so the accumulated gradient is the same token-mean gradient (up
    to float rounding): ``max_batch_examples`` bounds activation memory, never the maths.
    """
    prompts, targets = [p for p, _ in batch], [t for _, t in batch]
    if len(batch) <= hp.max_batch_examples:
        backbone.loss(prompts, targets, max_input_tokens=hp.max_input_tokens,
                      max_target_tokens=hp.max_target_tokens).backward()
        return
    tokens = sum(len(backbone.target_ids(t, hp.max_target_tokens)) for t in targets)
    for s in range(0, len(batch), hp.max_batch_examples):
        per_example = backbone.loss(prompts[s : s + hp.max_batch_examples], targets[s : s + hp.max_batch_examples],
                                    max_input_tokens=hp.max_input_tokens, max_target_tokens=hp.max_target_tokens,
                                    per_example=True)
        (per_example.sum() / tokens).backward()


def train_batched(backbone: Backbone, module_names: Sequence[str], jobs: Sequence[Steps],
                  inits: Sequence[LoRAWeights], hp: TrainSettings, desc: str | None = None) -> list[LoRAWeights]:
    """All jobs (users) at once: step ``t`` of every job still training shares a pass.

    Per step, the loss is ``sum_u mean_u`` where ``mean_u`` is job ``u``'s token-mean
    loss over its own minibatch (what ``Backbone.loss`` returns for that minibatch
    alone), so ``d loss / d theta_u`` is exactly job ``u``'s standalone gradient.
    Clipping, AdamW moments, step counts and learning rates are per job, and jobs with
    no minibatch left are not touched. ``desc`` names a progress bar (``None``: none).
    """
    if len(inits) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(inits)} initial adapters")
    n = len(jobs)
    totals = [len(steps) for steps in jobs]
    bar = tqdm(total=max(totals, default=0), desc=desc, unit="step", disable=desc is None)
    with bar, BatchedLoRA(backbone.model, module_names, n, hp.r, hp.alpha) as lora:
        for u in range(n):
            lora.set_slot(u, inits[u])
        params = lora.parameters()
        opt = SlotAdamW(params, n, weight_decay=hp.weight_decay)
        for t in range(max(totals, default=0)):
            active = [u for u in range(n) if t < totals[u]]
            rows = [(u, p, y) for u in active for p, y in jobs[u][t]]
            tokens = dict.fromkeys(active, 0)
            for u, _, y in rows:
                tokens[u] += len(backbone.target_ids(y, hp.max_target_tokens))
            rows.sort(key=lambda row: len(row[1]))  # similar lengths share a pass: less padding
            for s in range(0, len(rows), hp.max_batch_examples):
                chunk = rows[s : s + hp.max_batch_examples]
                with lora.route(torch.tensor([u for u, _, _ in chunk])):
                    per_example = backbone.loss([p for _, p, _ in chunk], [y for _, _, y in chunk],
                                                max_input_tokens=hp.max_input_tokens,
                                                max_target_tokens=hp.max_target_tokens, per_example=True)
                weight = torch.tensor([1.0 / tokens[u] for u, _, _ in chunk], device=per_example.device)
                (per_example * weight).sum().backward()
            clip_grad_norm_per_slot(params, hp.max_grad_norm)
            opt.step([hp.lr * linear_warmup_decay(t, totals[u], hp.warmup_ratio) for u in range(n)], active)
            opt.zero_grad()
            bar.update()
        return [lora.slot_weights(u) for u in range(n)]


# -- serving --------------------------------------------------------------------------------
def generate_mixed(backbone: Backbone, module_names: Sequence[str], prompts: Sequence[str],
                   adapters: Sequence[LoRAWeights], slots: Sequence[int], r: int, alpha: float,
                   num_beams: int, max_new_tokens: int, max_input_tokens: int) -> list[str]:
    """Decode a batch whose examples use different adapters (``adapters[slots[i]]``).

    ``Backbone.generate`` decodes length-sorted (longest first, stable) batches; giving
    it the prompts already in that order and one batch keeps our routing aligned.
    """
    lengths = [len(backbone.prompt_ids(p, max_input_tokens)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i], reverse=True)
    with BatchedLoRA(backbone.model, module_names, len(adapters), r, alpha) as lora:
        for u, weights in enumerate(adapters):
            lora.set_slot(u, weights)
        with lora.route(torch.tensor([slots[i] for i in order])):
            texts = backbone.generate([prompts[i] for i in order], num_beams=num_beams, max_new_tokens=max_new_tokens,
                                      max_input_tokens=max_input_tokens, batch_size=len(order))
    out = [""] * len(prompts)
    for i, text in zip(order, texts):
        out[i] = text
    return out
