"""``oppu``: One PEFT Per User (Tan et al. 2024) — a task LoRA, then one LoRA per user.

Stage 1 (``fit``) trains a *task* LoRA on the train split (input -> gold output) with
peft. Stage 2 (at prediction time) trains, for every evaluated user, a LoRA that starts
as a copy of the task LoRA and learns from pairs made of that user's own profile items;
the user's questions are then answered with the user's adapter.

Differences from the reference code (TamSiuhin/OPPU), on purpose:

* Isolation. The reference appends every user's pairs to one list that is never
  cleared, so user *i*'s adapter also trains on users 0..i-1. Here a user's pairs are
  built from that user's profile only (:func:`user_pairs`) and its batch order from a
  seed derived from its own key, so an adapter is a function of its user's data alone.
* Initialisation. The reference merges the task LoRA into the base model and starts a
  fresh zero-effect LoRA per user; we start each user's pair *as a copy* of the task
  LoRA (same function at step 0, and one weight format for both stages).
* Speed. ``trainer=batched`` (default) trains up to ``users_per_group`` users in one
  model through :class:`harness.lora.BatchedLoRA`: every example is routed to its own
  user's low-rank pair, the loss is the *sum of per-user mean losses* (so each user's
  gradient is exactly its standalone gradient), and clipping, AdamW state, step counts
  and the learning-rate schedule are per user. ``trainer=sequential`` is the reference
  path with real peft, one user after another; both give the same adapters within
  float tolerance (``tests/test_oppu.py``). Prediction serves mixed-user batches.
* No dropout (the reference uses 0.05): with it, batched and sequential training could
  not draw the same masks, and CPU-sized runs are too short for it to matter.

CPU caps (documented knobs, reference values in brackets): ``max_train_examples``
limits stage 1 [all], ``max_profile_items`` keeps a user's *last* N profile items in
file order [100 top items], ``max_input_tokens`` [2048 cut-off]. Hyper-parameters
otherwise follow the reference: r=8, alpha=8, q/v projections, lr 1e-4, weight decay
1e-2, warmup 0.1 then linear decay, grad-norm 0.3, batch 16, 2 epochs.

Pairs from profile items use ``task.item_to_example_input(item) -> item[item_output_field]``.
When the output field is itself rendered into the task-style input (LaMP-7: paraphrasing
a tweet, whose only field is the tweet) that pair would teach copying, so we teach the
user's style by continuation instead: input ``Continue the tweet: <first third of the
words>``, target the remaining words.

Artifacts (inside the run): ``task_lora.safetensors`` and
``users/<safe user key>.safetensors``; rerunning or resuming loads them instead of
training again. ``k>0`` puts the user's ``k`` best profile items (``retriever``) in
the prompt with LaMP's official prompt, for stage 1, stage 2 (items before the
current one, as the reference) and prediction.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.api import Example, Method, TaskSpec
from harness.backbones import Backbone
from harness.lora import (
    BatchedLoRA,
    LoRAWeights,
    SlotAdamW,
    clip_grad_norm_per_slot,
    default_targets,
    linear_warmup_decay,
    load_lora,
    save_lora,
    target_module_names,
)
from harness.retrieval import RetrievalContext, Retriever, get_retriever
from tasks.prompts import render_prompt

Pair = tuple[str, str]  # (prompt, target)
Steps = list[list[Pair]]  # one user's minibatches, in training order


@dataclass(frozen=True)
class OPPUParams:
    r: int = 8
    alpha: float = 8.0
    targets: str = ""  # comma-separated linear-layer names; "" = query/value projections
    epochs: int = 2  # per-user epochs (OPPU)
    task_epochs: int = 2  # stage-1 epochs
    lr: float = 1e-4  # per-user learning rate
    task_lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_ratio: float = 0.1
    max_grad_norm: float = 0.3
    batch_size: int = 16  # per user (and stage 1), the reference's per-device batch
    max_train_examples: int = 256  # stage-1 cap for CPU
    max_profile_items: int = 32  # per-user cap for CPU: the last N profile items
    max_input_tokens: int = 256
    max_target_tokens: int = 64
    trainer: str = "batched"  # "batched" (many users per pass) or "sequential" (peft, one by one)
    users_per_group: int = 16  # users trained together by the batched trainer
    # Examples per forward pass while training: bounds activation memory (64 peaked at 12 GB
    # on smollm2, LaMP-2, 256 tokens); costs nothing on a compute-bound CPU.
    max_batch_examples: int = 16
    k: int = 0  # profile items retrieved into the prompt (OPPU's k=1 setting)
    retriever: str = "bm25"


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


# -- data -----------------------------------------------------------------------------------
CONTINUE_PROMPT = "Continue the tweet: {}"


def user_pairs(task: TaskSpec, items: Sequence[Mapping[str, Any]]) -> list[Pair]:
    """Training pairs made from profile items (items that yield nothing are skipped)."""
    field = task.item_output_field
    if field is None:
        raise ValueError(f"{task.name} names no item output field; OPPU cannot build per-user pairs")
    copies_output = "{" + field + "}" in (task.item_template or task.input_template)
    pairs: list[Pair] = []
    for item in items:
        target = str(item[field]).strip()
        prompt = task.item_to_example_input(item)
        if copies_output:
            words = target.split()
            if len(words) < 2:
                continue  # nothing to continue
            cut = max(1, round(len(words) / 3))
            prompt, target = CONTINUE_PROMPT.format(" ".join(words[:cut])), " ".join(words[cut:])
        pairs.append((prompt, target))
    return pairs


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


def safe_name(user_key: str) -> str:
    """A file name for a user key: readable part plus a hash, so distinct keys never collide."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", user_key)[:48]
    return f"{readable}-{hashlib.sha256(user_key.encode()).hexdigest()[:10]}"


# -- trainers -------------------------------------------------------------------------------
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


def _get_peft(layers: Mapping[str, Any]) -> LoRAWeights:
    return {n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone())
            for n, m in layers.items()}


@torch.no_grad()
def _set_peft(layers: Mapping[str, Any], weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for n, m in layers.items():
        a, b = weights[n]
        m.lora_A["default"].weight.copy_(a)
        m.lora_B["default"].weight.copy_(b)


def train_sequential(backbone: Backbone, module_names: Sequence[str], jobs: Sequence[Steps],
                     init: LoRAWeights | None, hp: TrainSettings, seed: int = 0,
                     desc: str | None = None) -> list[LoRAWeights]:
    """The reference path: one peft LoRA trained per job, one job after another.

    ``init=None`` keeps peft's own initialisation (drawn under ``seed``; stage 1);
    otherwise every job starts from a copy of ``init`` (stage 2, the task LoRA).
    ``desc`` names a progress bar over all optimizer steps (``None``: no bar).
    """
    torch.manual_seed(seed)
    out: list[LoRAWeights] = []
    bar = tqdm(total=sum(map(len, jobs)), desc=desc, unit="step", disable=desc is None)
    with bar, peft_lora(backbone.model, module_names, hp.r, hp.alpha) as layers:
        start = init if init is not None else _get_peft(layers)
        params = [p for m in layers.values() for p in (m.lora_A["default"].weight, m.lora_B["default"].weight)]
        for steps in jobs:
            _set_peft(layers, start)
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
            total = len(steps)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s, total=total: linear_warmup_decay(s, total, hp.warmup_ratio))
            for batch in steps:
                loss = backbone.loss([p for p, _ in batch], [t for _, t in batch],
                                     max_input_tokens=hp.max_input_tokens, max_target_tokens=hp.max_target_tokens)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                bar.update()
            out.append(_get_peft(layers))
    return out


def train_batched(backbone: Backbone, module_names: Sequence[str], jobs: Sequence[Steps],
                  init: LoRAWeights, hp: TrainSettings, desc: str | None = None) -> list[LoRAWeights]:
    """All jobs (users) at once: step ``t`` of every user still training shares a pass.

    Per step, the loss is ``sum_u mean_u`` where ``mean_u`` is user ``u``'s token-mean
    loss over its own minibatch (what ``Backbone.loss`` returns for that minibatch
    alone), so ``d loss / d theta_u`` is exactly user ``u``'s standalone gradient.
    Clipping, AdamW moments, step counts and learning rates are per user, and users
    with no minibatch left are not touched. ``desc`` names a progress bar (``None``: none).
    """
    n = len(jobs)
    totals = [len(steps) for steps in jobs]
    bar = tqdm(total=max(totals, default=0), desc=desc, unit="step", disable=desc is None)
    with bar, BatchedLoRA(backbone.model, module_names, n, hp.r, hp.alpha) as lora:
        for u in range(n):
            lora.set_slot(u, init)
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


# -- the method -----------------------------------------------------------------------------
class OPPU(Method):
    Params = OPPUParams
    uses_train = True
    description = "One PEFT Per User: task LoRA, then a LoRA per user on that user's history (Tan et al. 2024)."

    def __init__(self, ctx, params: OPPUParams | None = None) -> None:
        super().__init__(ctx, params)
        p: OPPUParams = self.params
        if p.trainer not in ("batched", "sequential"):
            raise ValueError(f"trainer must be 'batched' or 'sequential', got {p.trainer!r}")
        self.task_lora: LoRAWeights | None = None
        self.trained_users: list[str] = []  # users trained by this process, in order
        self.training_pairs: dict[str, list[Pair]] = {}  # what each of them was trained on
        self.user_train_seconds = 0.0
        self._retriever: Retriever | None = None

    # paths and settings
    def user_path(self, user_key: str) -> Path:
        return self.ctx.user_artifacts_dir / f"{safe_name(user_key)}.safetensors"

    def module_names(self) -> list[str]:
        model = self.ctx.llm().model
        targets = tuple(t.strip() for t in self.params.targets.split(",") if t.strip()) or default_targets(model)
        return target_module_names(model, targets)

    def settings(self, stage: str) -> TrainSettings:
        p: OPPUParams = self.params
        return TrainSettings(r=p.r, alpha=p.alpha, lr=p.task_lr if stage == "task" else p.lr,
                             weight_decay=p.weight_decay, warmup_ratio=p.warmup_ratio, max_grad_norm=p.max_grad_norm,
                             max_input_tokens=p.max_input_tokens, max_target_tokens=p.max_target_tokens,
                             max_batch_examples=p.max_batch_examples)

    def _desc(self, what: str) -> str | None:
        """A progress-bar label, or None when the run shows no progress."""
        return f"{self.ctx.task.name}/{what}" if self.ctx.progress else None

    # prompts
    def prompt(self, text: str, profile: Sequence[Mapping[str, Any]]) -> str:
        """The task input, with ``k`` retrieved profile items in LaMP's official prompt."""
        if self.params.k <= 0 or not profile:
            return text
        if self._retriever is None:
            self._retriever = get_retriever(self.params.retriever, RetrievalContext.of_run(self.ctx))
        (hits,) = self._retriever.retrieve(self.ctx.task, [text], [list(profile)], self.params.k)
        return render_prompt(self.ctx.task, text, [h.item for h in hits], self.ctx.llm().tokenizer,
                             max_length=self.params.max_input_tokens)

    def pairs_for(self, profile: Sequence[Mapping[str, Any]]) -> list[Pair]:
        """One user's training pairs from its last ``max_profile_items`` items.

        With ``k > 0`` an item's prompt retrieves only from the items before it (as the
        reference does), never from the item itself or from other users.
        """
        p: OPPUParams = self.params
        items = list(profile)[-p.max_profile_items:] if p.max_profile_items > 0 else []
        return [(self.prompt(prompt, items[:i]), target)
                for i, item in enumerate(items) for prompt, target in user_pairs(self.ctx.task, [item])]

    # stage 1
    def fit(self, train: Sequence[Example]) -> None:
        path = self.ctx.artifacts_dir / "task_lora.safetensors"
        if path.exists():
            self.task_lora, _ = load_lora(path)
            return
        p: OPPUParams = self.params
        chosen = [e for e in train if e.output is not None]
        gen = torch.Generator().manual_seed(stable_seed(self.ctx.seed, "task-sample"))
        chosen = [chosen[i] for i in torch.randperm(len(chosen), generator=gen).tolist()][: p.max_train_examples]
        pairs = [(self.prompt(e.input, e.profile), str(e.output)) for e in chosen]
        steps = schedule(pairs, p.task_epochs, p.batch_size, stable_seed(self.ctx.seed, "task"))
        (self.task_lora,) = train_sequential(self.ctx.llm(), self.module_names(), [steps], None,
                                             self.settings("task"), seed=self.ctx.seed,
                                             desc=self._desc("oppu task LoRA"))
        save_lora(path, self.task_lora, {"stage": "task", "n_pairs": str(len(pairs)), "n_steps": str(len(steps))})

    # stage 2
    def user_adapters(self, batch: Sequence[Example]) -> dict[str, LoRAWeights]:
        """Adapters of the batch's users: loaded if saved, otherwise trained now (grouped)."""
        if self.task_lora is None:
            raise RuntimeError("oppu: fit() must run before predict() (stage 1 trains the task LoRA)")
        profiles: dict[str, dict[str, Mapping[str, Any]]] = {}
        for e in batch:  # a user's questions share one adapter; union of their profiles
            items = profiles.setdefault(e.user_key, {})
            for i, item in enumerate(e.profile):
                items.setdefault(str(item.get("id", f"{e.id}:{i}")), item)
        adapters: dict[str, LoRAWeights] = {}
        todo: list[str] = []
        for user in profiles:
            if self.user_path(user).exists():
                adapters[user], _ = load_lora(self.user_path(user))
            else:
                todo.append(user)
        group = self.params.users_per_group if self.params.trainer == "batched" else 1
        for s in range(0, len(todo), max(1, group)):
            users = todo[s : s + max(1, group)]
            adapters.update(self.train_users({u: list(profiles[u].values()) for u in users}))
        return adapters

    def train_users(self, profiles: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, LoRAWeights]:
        """Train (and save) one adapter per user, each from that user's profile alone."""
        assert self.task_lora is not None
        p: OPPUParams = self.params
        start = time.perf_counter()
        users = list(profiles)
        pairs = {u: self.pairs_for(profiles[u]) for u in users}
        jobs = [schedule(pairs[u], p.epochs, p.batch_size, stable_seed(self.ctx.seed, "user", u)) for u in users]
        train = train_batched if p.trainer == "batched" else train_sequential
        weights = train(self.ctx.llm(), self.module_names(), jobs, self.task_lora, self.settings("user"),
                        desc=self._desc(f"oppu {len(users)} user adapters"))
        for u, w, steps in zip(users, weights, jobs):
            save_lora(self.user_path(u), w, {"user_key": u, "n_pairs": str(len(pairs[u])), "n_steps": str(len(steps))})
            self.training_pairs[u] = pairs[u]
            self.trained_users.append(u)
        self.user_train_seconds += time.perf_counter() - start
        return dict(zip(users, weights))

    def predict(self, batch: Sequence[Example]) -> list[str]:
        adapters = self.user_adapters(batch)
        users = list(adapters)
        slots = [users.index(e.user_key) for e in batch]
        g = self.ctx.generation
        return generate_mixed(self.ctx.llm(), self.module_names(), [self.prompt(e.input, e.profile) for e in batch],
                              [adapters[u] for u in users], slots, self.params.r, self.params.alpha,
                              g.num_beams, self.ctx.max_new_tokens, g.max_input_tokens)

    def cost(self) -> dict[str, float]:
        if not self.trained_users:
            return {}
        return {"users_trained": float(len(self.trained_users)), "user_train_seconds": self.user_train_seconds,
                "users_per_minute": 60.0 * len(self.trained_users) / max(self.user_train_seconds, 1e-9)}
