"""Soft tokens before a frozen LLM: the machinery PPlug and its prompt-tuning control share.

Both methods put a few trainable vectors ("soft tokens") in front of the embedded prompt
and train them with the next-token loss while the LLM stays frozen. They differ only in
where the vectors come from (PPlug: the user's history; the control: learned task
vectors), so everything else lives here, once, so that a comparison between them is a
comparison of personalization and nothing else:

* :func:`mlp`, the reference's 2-layer projection into LLM space;
* :class:`SoftTokens`, the instruction token, the projection and the scaling;
* :func:`train_soft_tokens`, the training loop (AdamW, linear warmup/decay, effective
  batch via micro-batches, separate head/encoder learning rates, periodic held-out loss,
  optional early stopping) and :class:`TrainRecord`, its curves and budget accounting;
* :class:`SoftPromptMethod`, the fit/save/load/predict cycle both methods run, with an
  optional backbone LoRA (``backbone_lora_rank``; not the paper's, whose LLM stays
  frozen) shared by every user and trained in the same steps as the soft tokens.

Scaling (``soft_scale``)
------------------------
``"reference"`` is what the PPlug reference code does (``code/ModelForPer.py:
PersonalLLM.forward``): the raw MLP outputs, not normalised, times a constant
``539.9738``, and the instruction token additionally divided by 7::

    profile_embs = obtain_profile_emb(...) * 539.9738
    inst_embs = align_mlp_inst(inst_token) / 7.0 * 539.9738

The constant is FlanT5-XXL's embedding scale. We derive the equivalent for any backbone
as the mean L2 norm of its input token embeddings
(:attr:`harness.backbones.Backbone.token_embedding_norm`), on these grounds: the
constant only makes sense as "the size of an ordinary token" (soft tokens replace the
embeddings of two added special tokens, ``[INST_PER_TOKEN][SPC_PER_TOKEN]``); with
PyTorch's default ``nn.Linear`` init, the MLP output for a unit-norm history embedding
has a norm of about 0.6 to 0.8 whatever the LLM width (the second layer's bias alone
contributes ``sqrt(1/3)``), so multiplying by the mean token norm puts the persona token
at about the size of a real token at the start of training, which is what 539.9738 does
on a 4096-wide T5 whose embedding entries have a standard deviation of about 8.4. The
``/ 7`` compensates for the instruction vector's initialisation: the reference draws it
with ``torch.rand`` (uniform on [0, 1), norm about ``sqrt(d_enc / 3)``, 16 for bge-base),
not on the unit sphere, so its MLP output is several times larger; 1/7 brings the
instruction token back to the persona token's size. (We could not read FlanT5-XXL's
weights here to confirm that its mean token norm is exactly 539.9738; set
``embedding_scale=539.9738`` to use the reference's number on that backbone.)

``"normalized"`` is this project's earlier form: every soft token L2-normalised and then
scaled to the mean token norm, the instruction vector initialised on the unit sphere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from harness.api import LOSS_FILE, Example, Method, RunContext
from harness.lora import (
    BatchedLoRA, LoRAWeights, default_targets, fresh_lora, load_lora, merged_lora, save_lora, target_module_names,
)
from harness.params import added_option
from harness.store import atomic_output, atomic_write_json

SoftScale = Literal["reference", "normalized"]
SOFT_SCALES: tuple[str, ...] = ("reference", "normalized")
#: The reference divides the instruction token by 7 (code/ModelForPer.py: forward).
INSTRUCTION_DIVISOR = 7.0
#: The reference's hard-coded scale: FlanT5-XXL's (see the module docstring).
REFERENCE_FLAN_T5_XXL_SCALE = 539.9738
#: The reference evaluates every 10% of training (``--eval_steps 0.1``); the held-out loss
#: is taken as often unless ``eval_every`` says otherwise.
DEFAULT_EVALS = 10


# -- settings -----------------------------------------------------------------------------
#: The ``small`` profile's training reductions, shared by PPlug and its control so both
#: keep one budget (results/convergence/README.md measures them on this CPU): 1,200 train
#: questions plus 64 held out, 2 epochs (LaMP-3 too) at an effective batch of 16 (150
#: optimizer steps), the held-out loss every 10 steps with early stopping after
#: 4 evaluations without improvement, the paper's lr 1e-4 for the input encoder but 1e-2
#: for the MLP heads and the instruction/task vectors (on synthetic LaMP-3 the held-out
#: loss reached 0.83 in 76 steps, against 1.45 with 1e-3 for everything and still
#: falling), and no dropout copies (11x the training rows). The 1,200 questions come from
#: the convergence study (section 11): at 600 (76 steps) every soft-prompt cell stopped
#: with its held-out loss still falling, and on LaMP-2 doubling the data and steps took
#: PPlug from 0.170 to 0.397 accuracy while its control went from 0.103 to 0.160 and flat.
#: docs/fidelity.md lists each against the reference.
SMALL_TRAINING: Mapping[str, Any] = {
    "max_train_examples": 1200, "heldout_examples": 64, "epochs": 2, "eval_every": 10, "patience": 4,
    "history_dropout_copies": 0, "batch_size": 16, "micro_batch": 8, "lr": 1e-4, "head_lr": 1e-2,
}


@dataclass(frozen=True)
class SoftPromptParams:
    """Training and soft-token settings shared by PPlug and its prompt-tuning control.

    Defaults are the paper's (reference code): ``code/run_all_t5.sh`` for the optimiser
    (AdamW, lr 1e-4, weight decay 1e-4, warmup ratio 0.05, 2 epochs, 1 on LaMP-3, input
    256 tokens) and ``aggr_id.py`` for the 10 history-dropout copies; an effective batch
    of 64 (the paper's; the script gives 2 per device x 8 accumulation steps per GPU).
    """

    lr: float = 1e-4  # the input encoder's, and the heads' unless head_lr is set
    head_lr: float | None = None  # MLPs, instruction/task vectors; None: lr
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    batch_size: int = 64  # effective batch (gradient accumulation over micro-batches)
    micro_batch: int = 8  # memory knob only: it never changes the optimisation
    epochs: int | None = None  # None: the paper's 2, or 1 for LaMP-3
    max_input_tokens: int = 256  # LLM input budget, in training and at inference
    soft_scale: SoftScale = "reference"
    embedding_scale: float | None = None  # None: the backbone's mean token-embedding norm
    n_persona_tokens: int = 1  # soft-token positions after the instruction (reference: 1)
    history_dropout_copies: int = 10  # extra training copies per example with > 2 history items
    history_dropout_max: float = 0.5  # each copy drops int(n * U(0, max)) + 1 items
    max_train_examples: int | None = None  # None: every train question
    heldout_examples: int = 0  # train questions held out for the held-out loss (never dev)
    eval_every: int | None = None  # optimizer steps between held-out losses; None: 10 per run
    patience: int | None = None  # stop after this many held-out losses without improvement
    min_delta: float = 0.0  # what counts as an improvement of the held-out loss
    max_steps: int | None = None  # cap on optimizer steps (smoke runs, tests)
    # Not in the paper (its LLM stays frozen): one LoRA on the LLM's query/key/value
    # projections, shared by every user and trained with the soft tokens. 0: off.
    backbone_lora_rank: int = added_option(0)
    backbone_lora_alpha: float = added_option(8.0)  # OPPU's alpha
    backbone_lora_lr: float = added_option(1e-3)  # the task LoRA's best lr (convergence, section 3)

    def __post_init__(self) -> None:
        if self.soft_scale not in SOFT_SCALES:
            raise ValueError(f"soft_scale must be one of {', '.join(SOFT_SCALES)}, got {self.soft_scale!r}")
        for name in ("batch_size", "micro_batch", "n_persona_tokens", "max_input_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("history_dropout_copies", "heldout_examples", "backbone_lora_rank"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs", "max_train_examples", "eval_every", "patience", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if not 0.0 <= self.history_dropout_max < 1.0:
            raise ValueError(f"history_dropout_max must be in [0, 1), got {self.history_dropout_max}")
        if self.embedding_scale is not None and self.embedding_scale <= 0:
            raise ValueError(f"embedding_scale must be > 0, got {self.embedding_scale}")
        for name in ("backbone_lora_alpha", "backbone_lora_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


# -- the soft tokens ----------------------------------------------------------------------
def mlp(d_in: int, d_out: int) -> nn.Sequential:
    """The reference's 2-layer projection: ``Linear(d_in, d_out) -> GELU -> Linear(d_out, d_out)``."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


def scale_soft_tokens(instruction: torch.Tensor | None, slots: torch.Tensor, how: SoftScale,
                      scale: float) -> torch.Tensor:
    """``[I; slots]`` in LLM space: ``instruction`` is ``[B, 1, d]`` (or None), ``slots`` ``[B, k, d]``.

    ``reference``: raw outputs times ``scale``, the instruction also divided by 7;
    ``normalized``: every token L2-normalised to norm ``scale``.
    """
    if how == "reference":
        tokens = [slots * scale]
        if instruction is not None:
            tokens.insert(0, instruction * (scale / INSTRUCTION_DIVISOR))
        return torch.cat(tokens, dim=1)
    if how == "normalized":
        tokens = [slots] if instruction is None else [instruction, slots]
        return nn.functional.normalize(torch.cat(tokens, dim=1), dim=-1) * scale
    raise ValueError(f"soft_scale must be one of {', '.join(SOFT_SCALES)}, got {how!r}")


def instruction_init(d_enc: int, how: SoftScale) -> torch.Tensor:
    """The instruction vector's start: the reference's ``torch.rand`` for ``reference``, the
    unit sphere (where normalised history embeddings live) for ``normalized``."""
    if how == "reference":
        return torch.rand(d_enc)
    return torch.randn(d_enc) / math.sqrt(d_enc)


class SoftTokens(nn.Module):
    """The optional instruction token and the projection into ``n_slots`` LLM tokens.

    Subclasses decide what enters the projection (PPlug: the attention-weighted history;
    the control: a learned task vector) and call :meth:`assemble` on its output. The
    parameter names (``instruction``, ``inst_mlp``, ``proj``) are the saved tensor names.
    """

    def __init__(self, d_enc: int, d_llm: int, *, scale: float, soft_scale: SoftScale, instruction: bool,
                 n_slots: int = 1) -> None:
        super().__init__()
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        self.d_llm, self.n_slots = d_llm, n_slots
        self.scale, self.soft_scale = float(scale), soft_scale
        # The reference's ``mult_k`` form: k tokens come from one MLP of width k * d_llm.
        self.proj = mlp(d_enc, n_slots * d_llm)
        if instruction:
            self.instruction: nn.Parameter | None = nn.Parameter(instruction_init(d_enc, soft_scale))
            self.inst_mlp: nn.Module | None = mlp(d_enc, d_llm)
        else:
            self.instruction = None
            self.inst_mlp = None

    @property
    def n_tokens(self) -> int:
        return self.n_slots + (0 if self.instruction is None else 1)

    def assemble(self, projected: torch.Tensor) -> torch.Tensor:
        """``[B, n_tokens, d_llm]`` soft tokens from the projection output ``[B, n_slots * d_llm]``."""
        slots = projected.reshape(projected.shape[0], self.n_slots, self.d_llm)
        inst = None
        if self.inst_mlp is not None:
            inst = self.inst_mlp(self.instruction).expand(projected.shape[0], 1, self.d_llm)
        return scale_soft_tokens(inst, slots, self.soft_scale, self.scale)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at ``lr`` even when ``head_lr`` is set (PPlug's input encoder)."""
        return []

    def saved_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """What the weights file holds: every trainable tensor and the module's own fitted
        buffers (e.g. PPlug's history mean), and nothing of the frozen models."""
        yield from ((name, p) for name, p in self.named_parameters() if p.requires_grad)
        yield from self.named_buffers(recurse=False)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """:meth:`saved_tensors`, detached and contiguous for safetensors."""
        return {name: t.detach().cpu().contiguous() for name, t in self.saved_tensors()}


def param_groups(module: SoftTokens, lr: float, head_lr: float | None) -> list[dict[str, Any]]:
    """AdamW groups: the heads at ``head_lr`` (None: ``lr``), the input encoder at ``lr``."""
    encoder = [p for p in module.encoder_parameters() if p.requires_grad]
    ids = {id(p) for p in encoder}
    heads = [p for p in module.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": heads, "lr": lr if head_lr is None else head_lr, "name": "heads"}]
    if encoder:
        groups.append({"params": encoder, "lr": lr, "name": "encoder"})
    return groups


# -- history dropout ----------------------------------------------------------------------
def history_dropout(items: Sequence[int], copies: int, max_share: float, rng: random.Random) -> list[list[int]]:
    """The reference's augmentation (``aggr_id.py``): thinned copies of one history.

    A history of ``n > 2`` items gets ``copies`` copies, each dropping
    ``int(n * U(0, max_share)) + 1`` items chosen at random; shorter histories get none.
    At ``max_share = 0.5`` at least one item always survives (``n - floor(n/2) - 1 >= 1``
    for ``n >= 3``); the ``min`` only guards larger shares. Survivors keep their order.
    """
    n = len(items)
    if n <= 2:
        return []
    out = []
    for _ in range(copies):
        drop = min(n - 1, int(n * rng.uniform(0.0, max_share)) + 1)
        keep = sorted(rng.sample(range(n), n - drop))
        out.append([items[j] for j in keep])
    return out


def dropout_copy_count(n_items: int, copies: int) -> int:
    """How many thinned copies :func:`history_dropout` makes of an ``n_items`` history."""
    return copies if n_items > 2 else 0


# -- training -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Unit:
    """One training row: an example (index into the prepared lists) and, for a thinned
    copy, its own history rows (None: the example's full history)."""

    index: int
    history: np.ndarray | None = None


@dataclass(frozen=True)
class LoopSettings:
    lr: float
    head_lr: float | None
    weight_decay: float
    warmup_ratio: float
    batch_size: int
    micro_batch: int
    epochs: int
    max_steps: int | None = None
    eval_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    seed: int = 0
    adapter_lr: float | None = None  # the backbone LoRA's, when one trains beside the soft tokens


def budget_steps(n_units: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """Optimizer steps the settings ask for: ``ceil(units / batch) * epochs``, capped by ``max_steps``."""
    total = math.ceil(n_units / batch_size) * epochs
    return total if max_steps is None else min(total, max_steps)


def linear_warmup(total: int, warmup_ratio: float) -> Callable[[int], float]:
    """HF's ``get_linear_schedule_with_warmup`` with ``ceil(ratio * total)`` warmup steps,
    as the reference's Trainer builds it (the first update has learning rate 0)."""
    warmup = math.ceil(warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


@dataclass
class TrainRecord:
    """What a fit did: loss curves and budget accounting (``fit_summary``'s source)."""

    budget_steps: int
    train_units: int
    heldout_units: int
    patience: int | None = None
    train_step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    heldout_step: list[int] = field(default_factory=list)
    heldout_loss: list[float] = field(default_factory=list)
    early_stopped: bool = False
    best_step: int | None = None

    @property
    def optimizer_steps(self) -> int:
        return len(self.train_loss)

    @property
    def trained_to_budget(self) -> bool:
        """Early stopping counts: the held-out loss said more steps would not help."""
        return self.early_stopped or self.optimizer_steps >= self.budget_steps

    @property
    def best_heldout_loss(self) -> float | None:
        return min(self.heldout_loss) if self.heldout_loss else None

    def stop_reason(self) -> str:
        if self.early_stopped:
            return (f"early stopping: the held-out loss did not improve in {self.patience} evaluations; "
                    f"weights from step {self.best_step}")
        if self.optimizer_steps >= self.budget_steps:
            kept = f"; weights from step {self.best_step} (best held-out loss)" if self.patience else ""
            return "budget" + kept
        return f"stopped after {self.optimizer_steps} of {self.budget_steps} steps"

    def summary(self) -> dict[str, Any]:
        return {
            "optimizer_steps": self.optimizer_steps, "budget_steps": self.budget_steps,
            "trained_to_budget": self.trained_to_budget, "early_stopped": self.early_stopped,
            "stop_reason": self.stop_reason(), "train_units": self.train_units,
            "heldout_units": self.heldout_units, "best_step": self.best_step,
            "best_heldout_loss": self.best_heldout_loss,
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "final_heldout_loss": self.heldout_loss[-1] if self.heldout_loss else None,
        }

    def to_json(self) -> dict[str, Any]:
        """``loss.json``: ``step``/``loss`` (training, per optimizer step), ``heldout``, flags."""
        return {"step": self.train_step, "loss": self.train_loss,
                "heldout": {"step": self.heldout_step, "loss": self.heldout_loss},
                "budget_steps": self.budget_steps, "train_units": self.train_units,
                "heldout_units": self.heldout_units, "patience": self.patience,
                "early_stopped": self.early_stopped, "best_step": self.best_step}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> TrainRecord:
        held = payload.get("heldout") or {}
        return cls(budget_steps=int(payload["budget_steps"]), train_units=int(payload["train_units"]),
                   heldout_units=int(payload["heldout_units"]), patience=payload.get("patience"),
                   train_step=list(payload["step"]), train_loss=list(payload["loss"]),
                   heldout_step=list(held.get("step", [])), heldout_loss=list(held.get("loss", [])),
                   early_stopped=bool(payload.get("early_stopped", False)), best_step=payload.get("best_step"))


LossFn = Callable[[Sequence[Unit]], torch.Tensor]


def mean_loss(loss_fn: LossFn, units: Sequence[Unit], micro_batch: int) -> float:
    """Example-weighted mean of ``loss_fn`` over ``units`` in micro-batches, without gradients."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(units), micro_batch):
            micro = units[start : start + micro_batch]
            total += float(loss_fn(micro)) * len(micro)
    return total / max(1, len(units))


def train_soft_tokens(module: SoftTokens, units: Sequence[Unit], heldout: Sequence[Unit], loss_fn: LossFn,
                      settings: LoopSettings, *, adapter: Sequence[nn.Parameter] = (), progress: bool = False,
                      desc: str = "fit") -> TrainRecord:
    """Train ``module``'s parameters on ``units`` with ``loss_fn`` (a micro-batch's mean loss).

    The held-out loss is taken before the first step, every ``eval_every`` steps (default:
    10 times per run) and after the last. With ``patience``, training stops once that many
    held-out losses in a row fail to beat the best by ``min_delta``, and the weights of the
    best held-out loss are restored (also when the budget ran out first). ``adapter``
    (a backbone LoRA's parameters, already installed where ``loss_fn`` runs) trains in
    the same steps at ``settings.adapter_lr`` and is restored with the rest.
    """
    s = settings
    total = budget_steps(len(units), s.batch_size, s.epochs, s.max_steps)
    record = TrainRecord(budget_steps=total, train_units=len(units), heldout_units=len(heldout),
                         patience=s.patience if heldout else None)
    if total == 0:
        return record
    groups = param_groups(module, s.lr, s.head_lr)
    if adapter:
        groups.append({"params": list(adapter), "lr": s.adapter_lr or s.lr, "name": "backbone-lora"})
    optimizer = torch.optim.AdamW(groups, weight_decay=s.weight_decay)
    trained = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    trained += [(f"backbone-lora.{i}", p) for i, p in enumerate(adapter)]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(total, s.warmup_ratio))
    every = s.eval_every or max(1, math.ceil(total / DEFAULT_EVALS))
    rng = random.Random(s.seed)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0

    def evaluate(step: int) -> bool:
        """Record the held-out loss at ``step``; True when early stopping says stop."""
        nonlocal best_state, stale
        module.eval()
        loss = mean_loss(loss_fn, heldout, s.micro_batch)
        module.train()
        record.heldout_step.append(step)
        record.heldout_loss.append(loss)
        previous = min(record.heldout_loss[:-1], default=math.inf)
        if loss < previous - s.min_delta:
            record.best_step, stale = step, 0
            if record.patience is not None:
                best_state = {n: p.detach().clone() for n, p in trained}
            return False
        stale += 1
        return record.patience is not None and stale >= record.patience

    module.train()
    if heldout:
        evaluate(0)
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
    order: list[int] = []
    while record.optimizer_steps < total:
        if not order:
            order = list(range(len(units)))
            rng.shuffle(order)
        step_units, order = [units[j] for j in order[: s.batch_size]], order[s.batch_size:]
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(step_units), s.micro_batch):
            micro = step_units[start : start + s.micro_batch]
            share = len(micro) / len(step_units)
            loss = loss_fn(micro)
            (loss * share).backward()
            step_loss += float(loss.detach()) * share
        optimizer.step()
        scheduler.step()
        record.train_step.append(record.optimizer_steps + 1)
        record.train_loss.append(step_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        step = record.optimizer_steps
        if heldout and (step % every == 0 or step == total) and evaluate(step):
            record.early_stopped = True
            break
    bar.close()
    if best_state is not None:
        named = dict(trained)
        with torch.no_grad():
            for name, tensor in best_state.items():
                named[name].copy_(tensor)
    module.eval()
    return record


def split_train(examples: Sequence[Example], max_train: int | None, heldout: int, rng: random.Random
                ) -> tuple[list[Example], list[Example]]:
    """``(train, held_out)``: a seeded held-out slice of the train split, then at most
    ``max_train`` of the rest, each in file order. The slice never takes more than half."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_held = min(heldout, len(examples) // 2)
    held, rest = sorted(order[:n_held]), order[n_held:]
    if max_train is not None:
        rest = rest[:max_train]
    return [examples[i] for i in sorted(rest)], [examples[i] for i in held]


# -- artifacts ----------------------------------------------------------------------------
def plot_loss(record: TrainRecord, path: Path, title: str) -> None:
    """Training and held-out loss against optimizer steps (Agg canvas: no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(record.train_step, record.train_loss, lw=1.0, label="train (per step)")
    if record.heldout_loss:
        ax.plot(record.heldout_step, record.heldout_loss, "o-", lw=1.4, ms=3, label="held-out")
    if record.best_step is not None and record.patience:
        ax.axvline(record.best_step, color="grey", ls=":", lw=1, label="kept weights")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("next-token cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -- the method cycle ---------------------------------------------------------------------
class SoftPromptMethod(Method):
    """Fit, save, load and predict for a method whose trained part is soft tokens (and,
    with ``backbone_lora_rank``, one LoRA on the LLM shared by every user).

    Subclasses provide :meth:`build` (the module), :meth:`prepare` (per-example state for
    training: history tables, queries), :meth:`augment` (extra units per train example),
    :meth:`unit_soft_tokens` (training) and :meth:`soft_tokens` (inference).
    """

    Params: ClassVar[type] = SoftPromptParams
    uses_train = True
    #: ``<artifact>.safetensors`` (weights, written last) and ``<artifact>.json`` (config).
    artifact: ClassVar[str] = "soft_prompt"

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.module: SoftTokens | None = None
        self.backbone_lora: LoRAWeights | None = None  # with ``backbone_lora_rank``: the shared LLM adapter
        self.record: TrainRecord | None = None
        self.fit_info: dict[str, Any] = {}
        self._prompts: list[str] = []
        self._targets: list[str] = []

    # -- hooks ------------------------------------------------------------------------------
    @abstractmethod
    def build(self) -> SoftTokens:
        """A freshly initialised module (seeded by the run seed), on the run's device."""

    @abstractmethod
    def soft_tokens(self, batch: Sequence[Example]) -> torch.Tensor:
        """``[len(batch), n_tokens, d_llm]`` soft tokens at inference."""

    @abstractmethod
    def prepare(self, examples: Sequence[Example], n_train: int, rng: random.Random) -> None:
        """Precompute what :meth:`unit_soft_tokens` and :meth:`augment` need; the first
        ``n_train`` examples train, the rest are held out."""

    @abstractmethod
    def augment(self, index: int) -> list[Unit]:
        """Extra training units for train example ``index`` (history-dropout copies)."""

    @abstractmethod
    def unit_soft_tokens(self, units: Sequence[Unit]) -> torch.Tensor:
        """Soft tokens for training units (with gradients)."""

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        """What the LLM reads after the soft tokens: the task input."""
        return [e.input for e in batch]

    # -- pieces -----------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.ctx.artifacts_dir / f"{self.artifact}.safetensors"

    @property
    def config_path(self) -> Path:
        return self.ctx.artifacts_dir / f"{self.artifact}.json"

    @property
    def backbone_lora_path(self) -> Path:
        return self.ctx.artifacts_dir / f"{self.artifact}_backbone_lora.safetensors"

    def backbone_lora_targets(self) -> list[str]:
        """OPPU's task-LoRA targets: every query, key and value projection of the LLM."""
        model = self.ctx.llm().model
        return target_module_names(model, default_targets(model, key=True))

    @contextmanager
    def with_backbone_lora(self) -> Iterator[None]:
        """The trained backbone LoRA merged into the LLM for inference (nothing without one);
        the shared backbone is restored bit-exactly on exit."""
        if self.backbone_lora is None:
            yield
            return
        with merged_lora(self.ctx.llm().model, self.backbone_lora, self.params.backbone_lora_alpha):
            yield

    @property
    def max_input_tokens(self) -> int:
        return min(self.params.max_input_tokens, self.ctx.generation.max_input_tokens)

    @property
    def loss_curve(self) -> list[float]:
        """Training loss per optimizer step of this process's fit (empty after a load)."""
        return [] if self.record is None or self.fit_info.get("loaded") else self.record.train_loss

    def embedding_scale(self) -> float:
        """The soft tokens' scale: ``embedding_scale`` if set, else the backbone's mean
        token-embedding norm (see the module docstring for why)."""
        p = self.params
        return float(p.embedding_scale) if p.embedding_scale is not None else self.ctx.llm().token_embedding_norm

    def epochs(self) -> int:
        """The paper trains 2 epochs, 1 on LaMP-3 (its largest train set)."""
        if self.params.epochs is not None:
            return self.params.epochs
        return 1 if self.ctx.task.lamp_name == "LaMP_3" else 2

    def loop_settings(self) -> LoopSettings:
        p = self.params
        return LoopSettings(lr=p.lr, head_lr=p.head_lr, weight_decay=p.weight_decay, warmup_ratio=p.warmup_ratio,
                            batch_size=p.batch_size, micro_batch=p.micro_batch, epochs=self.epochs(),
                            max_steps=p.max_steps, eval_every=p.eval_every, patience=p.patience,
                            min_delta=p.min_delta, seed=self.ctx.seed, adapter_lr=p.backbone_lora_lr)

    def unit_loss(self, units: Sequence[Unit]) -> torch.Tensor:
        """Mean next-token loss of the gold outputs of ``units`` after their soft tokens."""
        return self.ctx.llm().loss(
            [self._prompts[u.index] for u in units], [self._targets[u.index] for u in units],
            prefix=self.unit_soft_tokens(units), max_input_tokens=self.max_input_tokens,
            max_target_tokens=self.ctx.max_new_tokens)

    # -- fit --------------------------------------------------------------------------------
    def fit(self, train: Sequence[Example]) -> None:
        """Train on ``train`` (or load what this run already saved)."""
        if self.weights_path.exists():
            self.load()
            return
        p = self.params
        rng = random.Random(self.ctx.seed)
        examples = [e for e in train if e.output is not None]
        train_part, held_part = split_train(examples, p.max_train_examples, p.heldout_examples, rng)
        if not train_part:
            raise ValueError(f"{type(self).__name__} needs train examples with gold outputs")
        prepared = train_part + held_part
        self._prompts = self.prompts(prepared)
        self._targets = [e.output or "" for e in prepared]
        self.module = module = self.build()
        self.prepare(prepared, len(train_part), rng)
        units = [u for i in range(len(train_part)) for u in (Unit(i), *self.augment(i))]
        heldout = [Unit(len(train_part) + j) for j in range(len(held_part))]
        desc = f"{self.ctx.task.name}/{self.artifact} fit"
        if p.backbone_lora_rank:
            model, names = self.ctx.llm().model, self.backbone_lora_targets()
            start = fresh_lora(model, names, p.backbone_lora_rank, self.ctx.seed)  # before the layers are wrapped
            with BatchedLoRA(model, names, 1, p.backbone_lora_rank, p.backbone_lora_alpha) as lora:
                lora.set_slot(0, start)
                with lora.route(torch.zeros(1, dtype=torch.long)):
                    self.record = train_soft_tokens(module, units, heldout, self.unit_loss, self.loop_settings(),
                                                    adapter=lora.parameters(), progress=self.ctx.progress, desc=desc)
                self.backbone_lora = lora.slot_weights(0)
        else:
            self.record = train_soft_tokens(module, units, heldout, self.unit_loss, self.loop_settings(),
                                            progress=self.ctx.progress, desc=desc)
        self.fit_info = {"train_examples_used": len(train_part), "heldout_examples": len(held_part)}
        self.save()

    def fit_files(self) -> Sequence[str]:
        """The weights file marks a finished fit, which reads no decoding setting: shareable
        (with the backbone LoRA beside it when there is one)."""
        if self.params.backbone_lora_rank:
            return (self.backbone_lora_path.name, self.weights_path.name)
        return (self.weights_path.name,)

    def fit_summary(self) -> dict[str, Any]:
        if self.record is None:
            return {}
        info = {k: v for k, v in self.fit_info.items() if k != "loaded"}
        p = self.params
        if p.backbone_lora_rank:
            info["backbone_lora"] = {"rank": p.backbone_lora_rank, "alpha": p.backbone_lora_alpha,
                                     "lr": p.backbone_lora_lr, "targets": "query, key, value"}
        return {**info, **self.record.summary(), "soft_scale": self.params.soft_scale,
                "embedding_scale": self.module.scale if self.module is not None else None,
                "soft_tokens": self.module.n_tokens if self.module is not None else None}

    # -- persistence ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What the saved module is, for ``<artifact>.json`` (subclasses add their own)."""
        assert self.module is not None
        return {"method": type(self).__name__, "llm": self.ctx.llm_name, "encoder": self.ctx.encoder_name,
                "d_llm": self.module.d_llm, "soft_tokens": self.module.n_tokens,
                "soft_scale": self.module.soft_scale, "embedding_scale": self.module.scale,
                "params": dataclasses.asdict(self.params)}

    def save(self) -> None:
        """Write only the trainable tensors (safetensors), the config, the curves and their plot."""
        assert self.module is not None and self.record is not None
        art = self.ctx.artifacts_dir
        art.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, {**self.config(), "fit": self.fit_info, "record": self.record.to_json()})
        atomic_write_json(art / LOSS_FILE, self.record.to_json())
        plot_loss(self.record, art / "loss.png", title=f"{self.ctx.task.name} / {type(self).__name__}")
        if self.backbone_lora is not None:
            save_lora(self.backbone_lora_path, self.backbone_lora, metadata={"alpha": str(self.params.backbone_lora_alpha)})
        with atomic_output(self.weights_path) as tmp:  # last: the weights file marks a finished fit
            save_file(self.module.trainable_state(), str(tmp),
                      metadata={"format": "pt", "method": type(self).__name__})

    def load(self) -> None:
        module = self.build()
        state = load_file(str(self.weights_path), device=str(self.ctx.device))
        missing, unexpected = module.load_state_dict(state, strict=False)
        saved = {name for name, _ in module.saved_tensors()}
        if unexpected or set(missing) & saved:
            raise RuntimeError(f"{self.weights_path} does not match this module (missing "
                               f"{sorted(set(missing) & saved)[:5]}, unexpected {unexpected[:5]})")
        self.module = module.eval()
        if self.params.backbone_lora_rank:
            if not self.backbone_lora_path.is_file():
                raise FileNotFoundError(f"{self.backbone_lora_path}: backbone_lora_rank is set but the fit's "
                                        "LoRA is missing (rerun the cell)")
            self.backbone_lora, _ = load_lora(self.backbone_lora_path)
        if self.config_path.exists():
            saved = json.loads(self.config_path.read_text())
            if "record" in saved:
                self.record = TrainRecord.from_json(saved["record"])
                self.fit_info = {**saved.get("fit", {}), "loaded": True}

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Sequence[Example]) -> list[str]:
        if self.module is None:
            if not self.weights_path.exists():
                raise RuntimeError(f"{type(self).__name__}: fit() first (no trained soft tokens in the artifacts)")
            self.load()
        with self.with_backbone_lora():
            return self.ctx.generate(self.prompts(batch), prefix=self.soft_tokens(batch),
                                     max_input_tokens=self.max_input_tokens)

    def cost(self) -> dict[str, float]:
        if self.module is None:
            return {}
        lora = sum(a.numel() + b.numel() for a, b in (self.backbone_lora or {}).values())
        return {"trainable_parameters": float(sum(q.numel() for q in self.module.parameters() if q.requires_grad) + lora),
                "soft_tokens": float(self.module.n_tokens)}


def restore(run: Path, device: str = "cpu") -> SoftPromptMethod:
    """A finished soft-prompt run's trained method, rebuilt from its folder for inspection.

    Probes and diagnostics read what a run learned (its persona tokens, its attention over
    the history) without retraining: the method is rebuilt from ``config.json`` exactly as
    the runner built it and loads ``artifacts/``. Raises ``FileNotFoundError`` naming the
    file when the run has no config or no weights (results/ never holds weights: rerun
    the cell to get them), ``TypeError`` when the run's method has no soft tokens.
    """
    from harness.params import parse_params
    from harness.registries import METHODS, TASKS
    from harness.settings import GenerationSettings

    config_file = run / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: no run config (is {run} a run folder?)")
    config = json.loads(config_file.read_text())["config"]
    cls = METHODS.get(config["method"])
    if not issubclass(cls, SoftPromptMethod):
        raise TypeError(f"{run}: method {config['method']!r} has no soft tokens to restore")
    ctx = RunContext(task=TASKS.get(config["task"]), llm_name=config["llm"], encoder_name=config["encoder"],
                     seed=config["seed"], artifacts_dir=run / "artifacts", device=device,
                     generation=GenerationSettings(**config["generation"]), profile=config["profile"],
                     decoding=config["decoding"], progress=False)
    method = cls(ctx, parse_params(cls.Params, config["params"]))
    if not method.weights_path.is_file():
        raise FileNotFoundError(f"{method.weights_path}: the run's trained weights are not here (results/ "
                                "keeps no weights; rerun the cell to recreate them)")
    method.load()
    return method
