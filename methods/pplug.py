"""PPlug, the persona plug-in (Liu et al., ACL 2025), its ablations, and PPlug + retrieval.

A frozen LLM is personalised by two soft tokens placed before its embedded input,
``[I; P; Emb(x)]``:

* ``P``, the persona embedding: the user's history items are embedded once by the frozen
  history encoder (through :mod:`harness.embedding_cache`, L2-normalised), the input is
  embedded by a trainable copy of the same encoder, ``q = normalize(Enc_in(instr +
  query(x)))``, and ``P = sum_i softmax_i(q . e_i) Proj(e_i)`` over the user's items
  (padding masked), with ``Proj = Linear(d_enc, d_llm) -> GELU -> Linear(d_llm, d_llm)``;
* ``I``, a trainable instruction vector in encoder space through its own 2-layer MLP.

Both soft tokens are scaled to the mean norm of the LLM's token embeddings
(:attr:`harness.backbones.Backbone.token_embedding_norm`): the reference code multiplies
by a constant measured on FlanT5-XXL; measuring the norm works for any backbone.

Only the input encoder, ``Proj``, ``I`` and its MLP are trained (next-token loss on the
gold output); they are saved with safetensors as ``pplug.safetensors`` in the run's
artifacts, and a rerun of the same config loads them instead of training.

Registered as ``pplug``, ``pplug-mean`` (uniform average of the projected items),
``pplug-noinst`` (no instruction token) and ``pplug+rag`` (alias ``pplug+bm25``): the
persona tokens plus ``k`` retrieved items in LaMP's official prompt (paper Table 3).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from harness.api import Example, Method, RunContext, TaskSpec
from harness.embedding_cache import shared_cache
from harness.encoders import TextEncoder
from harness.retrieval import RetrievalContext, chronological, get_retriever
from tasks.prompts import render_prompt

Aggregation = Literal["attention", "mean"]
WEIGHTS_FILE = "pplug.safetensors"
CONFIG_FILE = "pplug.json"


@dataclass(frozen=True)
class PPlugParams:
    """The paper's training settings, plus knobs for small CPU runs.

    ``max_train_examples=None`` means: every train example on an accelerator (the
    paper), at most ``cpu_max_train_examples`` (a seeded sample) on CPU, so that
    ``bench run --method pplug`` finishes in minutes on a laptop. Set
    ``max_train_examples`` explicitly to override both.
    """

    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    batch_size: int = 64  # effective batch (gradient accumulation over micro-batches)
    micro_batch: int = 8
    epochs: int | None = None  # None: the paper's 2, or 1 for LaMP-3
    max_history: int = 512  # most recent history items per user
    max_input_tokens: int = 256  # LLM input budget, in training and at inference
    history_text: str = "item"  # "item": every item field; "corpus": the retrieval text only
    history_dropout_copies: int = 0  # the reference code uses 10
    history_dropout_max: float = 0.5  # each copy drops a uniform 0..max share of the items
    max_train_examples: int | None = None
    cpu_max_train_examples: int | None = 64
    max_steps: int | None = None  # cap on optimizer steps (smoke runs, tests)


@dataclass(frozen=True)
class PPlugRAGParams(PPlugParams):
    retriever: str = "bm25"  # any registered retriever
    k: int = 1  # retrieved items rendered with the official prompt


# -- the plug-in --------------------------------------------------------------------------
def mlp(d_in: int, d_out: int) -> nn.Sequential:
    """The paper's 2-layer projection: Linear -> GELU -> Linear."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


def aggregate(q: torch.Tensor, history: torch.Tensor, projected: torch.Tensor, mask: torch.Tensor,
              how: Aggregation) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, w)``: ``P = sum_i w_i projected_i`` with ``w`` over the unmasked items.

    ``q`` is ``[B, d_enc]``, ``history`` ``[B, N, d_enc]``, ``projected`` ``[B, N, d_llm]``
    and ``mask`` ``[B, N]`` (True for real items). ``attention`` uses ``softmax(q . e_i)``;
    ``mean`` is uniform. A user without history gets all-zero weights (and so ``P = 0``)
    rather than the NaNs a softmax over nothing would give.
    """
    if how == "attention":
        scores = torch.einsum("bd,bnd->bn", q, history).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    elif how == "mean":
        weights = mask.to(projected.dtype) / mask.sum(dim=-1, keepdim=True).clamp(min=1)
    else:
        raise ValueError(f"unknown aggregation {how!r} (attention or mean)")
    return torch.einsum("bn,bnd->bd", weights, projected), weights


class PersonaPlug(nn.Module):
    """The trainable parts: input encoder, ``Proj``, instruction vector and its MLP.

    ``forward`` returns the soft tokens ``[B, P, d_llm]`` (``P`` = 2, or 1 without the
    instruction) already scaled to ``scale``, the LLM's mean token-embedding norm.
    """

    def __init__(self, encoder: TextEncoder, d_llm: int, scale: float, aggregation: Aggregation,
                 instruction: bool) -> None:
        super().__init__()
        self.encoder = encoder  # tokenizer and pooling; its own weights stay frozen
        self.input_encoder: nn.Module | None = None
        if aggregation == "attention":  # the uniform ablation never reads the input
            self.input_encoder = encoder.trainable_copy()
            if getattr(self.input_encoder, "pooler", None) is not None:
                # BERT's pooler head is unused by mean/CLS pooling of the last hidden
                # state: dropping it keeps dead weights out of training and the saved file.
                self.input_encoder.pooler = None
        d_enc = encoder.dim
        self.proj = mlp(d_enc, d_llm)
        self.aggregation: Aggregation = aggregation
        if instruction:
            # Starts on the unit sphere like the normalised history embeddings that the
            # twin MLP sees, so both MLPs start in the same input regime.
            self.instruction = nn.Parameter(torch.randn(d_enc) / math.sqrt(d_enc))
            self.inst_mlp = mlp(d_enc, d_llm)
        else:
            self.instruction = None
            self.inst_mlp = None
        self.scale = scale

    @property
    def n_tokens(self) -> int:
        return 1 if self.instruction is None else 2

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """``q = normalize(Enc_in(texts))`` with the trainable input encoder."""
        return self.encoder.forward(texts, normalize=True, model=self.input_encoder)

    def persona(self, queries: Sequence[str], history: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, w)`` before scaling: the aggregated, projected history."""
        if self.input_encoder is None:
            q = history.new_zeros((history.shape[0], history.shape[-1]))  # unused by "mean"
        else:
            q = self.encode_queries(queries)
        return aggregate(q, history, self.proj(history), mask, self.aggregation)

    def forward(self, queries: Sequence[str], history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        persona, _ = self.persona(queries, history, mask)
        tokens = [persona]
        if self.inst_mlp is not None:
            tokens.insert(0, self.inst_mlp(self.instruction).expand_as(persona))
        soft = torch.stack(tokens, dim=1)
        return nn.functional.normalize(soft, dim=-1) * self.scale

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor (and only those), detached and contiguous for safetensors."""
        return {name: p.detach().cpu().contiguous() for name, p in self.named_parameters() if p.requires_grad}


# -- histories ----------------------------------------------------------------------------
def item_text(task: TaskSpec, item: Mapping[str, Any], how: str) -> str:
    """What the history encoder reads for one profile item.

    ``corpus`` is the task's retrieval text, as the reference code embeds it; it drops
    the user's own outputs (a tagger's tags, a rater's scores), which are exactly the
    persona signal of the classification tasks, so ``item`` (every item field, named)
    is the default.
    """
    if how == "corpus":
        return task.corpus_text(item)
    if how == "item":
        return "; ".join(f"{name}: {item[name]}" for name in task.item_fields)
    raise ValueError(f"history_text must be 'item' or 'corpus', got {how!r}")


def pad_rows(table: torch.Tensor, rows: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather each row's history vectors from ``table`` into ``[B, N, d]`` plus a mask."""
    width = max(1, max(len(r) for r in rows))
    index = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        index[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return table[index.to(table.device)], mask.to(table.device)


def dropout_copies(row: np.ndarray, copies: int, max_share: float, rng: random.Random) -> list[np.ndarray]:
    """The reference code's augmentation: copies of a history with 0..max_share dropped.

    At least one item is always kept; histories of two items or fewer are not copied.
    """
    if len(row) <= 2:
        return []
    out = []
    for _ in range(copies):
        drop = min(len(row) - 1, int(len(row) * rng.uniform(0.0, max_share)))
        keep = sorted(rng.sample(range(len(row)), len(row) - drop))
        out.append(row[keep])
    return out


# -- the methods --------------------------------------------------------------------------
class PPlug(Method):
    """PPlug: input-aware persona embedding + instruction embedding before a frozen LLM."""

    description = "Persona plug-in: input-aware aggregation of cached history embeddings as soft tokens."
    Params: ClassVar[type] = PPlugParams
    uses_train = True
    aggregation: ClassVar[Aggregation] = "attention"
    instruction: ClassVar[bool] = True

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        p: PPlugParams = self.params
        if p.batch_size < 1 or p.micro_batch < 1 or p.max_history < 1:
            raise ValueError("batch_size, micro_batch and max_history must be >= 1")
        item_text(ctx.task, {f: "" for f in ctx.task.item_fields}, p.history_text)  # validate early
        self.plug: PersonaPlug | None = None
        self.loss_curve: list[float] = []

    # -- pieces ---------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.ctx.artifacts_dir / WEIGHTS_FILE

    @property
    def max_input_tokens(self) -> int:
        return min(self.params.max_input_tokens, self.ctx.generation.max_input_tokens)

    def build(self) -> PersonaPlug:
        """A freshly initialised plug-in (seeded by the run seed)."""
        llm = self.ctx.llm()
        torch.manual_seed(self.ctx.seed)
        plug = PersonaPlug(self.ctx.encoder(), llm.hidden_size, llm.token_embedding_norm, self.aggregation,
                           self.instruction)
        return plug.to(self.ctx.device)

    def query_text(self, example: Example) -> str:
        """The encoder preset's query instruction (bge's) + the task's retrieval query."""
        return self.ctx.encoder().preset.query_instruction + self.ctx.task.query(example.input)

    def history(self, profiles: Sequence[Sequence[Mapping[str, Any]]]) -> tuple[torch.Tensor, list[np.ndarray]]:
        """``(table, rows)``: normalised embeddings of the distinct history texts, and per
        profile the table rows of its ``max_history`` most recent items.

        Embeddings come from the shared persistent cache, so each distinct item is
        encoded once per encoder, across epochs, methods and runs.
        """
        task, p = self.ctx.task, self.params
        index: dict[str, int] = {}
        rows = []
        for profile in profiles:
            recent = chronological(profile)[-p.max_history:]
            texts = [item_text(task, profile[i], p.history_text) for i in recent]
            rows.append(np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.int64))
        encoder = self.ctx.encoder()
        if not index:
            return torch.zeros((1, encoder.dim), device=self.ctx.device), rows
        vectors = shared_cache(encoder).embed(list(index), normalize=True)
        return torch.from_numpy(vectors).to(self.ctx.device), rows

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        """What the LLM reads after the soft tokens: the task input (PPlug+RAG adds items)."""
        return [e.input for e in batch]

    def soft_tokens(self, batch: Sequence[Example]) -> torch.Tensor:
        assert self.plug is not None
        table, rows = self.history([e.profile for e in batch])
        hist, mask = pad_rows(table, rows)
        return self.plug([self.query_text(e) for e in batch], hist, mask)

    # -- training -------------------------------------------------------------------------
    def epochs(self) -> int:
        """The paper trains 2 epochs, 1 on LaMP-3 (its largest train set)."""
        if self.params.epochs is not None:
            return self.params.epochs
        return 1 if self.ctx.task.lamp_name == "LaMP_3" else 2

    def train_cap(self) -> int | None:
        """How many train examples to use (see :class:`PPlugParams`); ``None``: all."""
        p: PPlugParams = self.params
        if p.max_train_examples is not None:
            return p.max_train_examples
        return p.cpu_max_train_examples if not str(self.ctx.device).startswith("cuda") else None

    def fit(self, train: Sequence[Example]) -> None:
        """Train the plug-in on ``train`` (or load it when this run already saved it)."""
        if self.weights_path.exists():
            self.load()
            return
        p: PPlugParams = self.params
        rng = random.Random(self.ctx.seed)
        examples = [e for e in train if e.output is not None]
        cap = self.train_cap()
        if cap is not None and len(examples) > cap:
            examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), cap))]
        if not examples:
            raise ValueError("pplug needs train examples with gold outputs")
        table, rows = self.history([e.profile for e in examples])
        prompts = self.prompts(examples)
        queries = [self.query_text(e) for e in examples]
        # Training units: (example index, history rows); augmentation adds thinned copies.
        units = [(i, row) for i, row in enumerate(rows)]
        if p.history_dropout_copies > 0:
            units += [(i, copy) for i, row in enumerate(rows)
                      for copy in dropout_copies(row, p.history_dropout_copies, p.history_dropout_max, rng)]
        steps_per_epoch = math.ceil(len(units) / p.batch_size)
        total = steps_per_epoch * self.epochs()
        if p.max_steps is not None:
            total = min(total, p.max_steps)

        self.plug = plug = self.build()
        llm = self.ctx.llm()
        optimizer = torch.optim.AdamW([q for q in plug.parameters() if q.requires_grad], lr=p.lr,
                                      weight_decay=p.weight_decay)
        warmup = math.ceil(p.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
        plug.train()
        self.loss_curve = []
        bar = tqdm(total=total, desc=f"{self.ctx.task.name}/pplug fit", unit="step", disable=not self.ctx.progress)
        order: list[int] = []
        while len(self.loss_curve) < total:
            if not order:
                order = list(range(len(units)))
                rng.shuffle(order)
            step, order = order[: p.batch_size], order[p.batch_size:]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for start in range(0, len(step), p.micro_batch):
                micro = [units[j] for j in step[start : start + p.micro_batch]]
                hist, mask = pad_rows(table, [row for _, row in micro])
                soft = plug([queries[i] for i, _ in micro], hist, mask)
                loss = llm.loss([prompts[i] for i, _ in micro], [examples[i].output or "" for i, _ in micro],
                                prefix=soft, max_input_tokens=self.max_input_tokens,
                                max_target_tokens=self.ctx.max_new_tokens)
                share = len(micro) / len(step)
                (loss * share).backward()
                step_loss += float(loss.detach()) * share
            optimizer.step()
            scheduler.step()
            self.loss_curve.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
        bar.close()
        plug.eval()
        self.save(train_examples=len(examples), units=len(units), steps=total)

    # -- persistence ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        assert self.plug is not None
        return {"method": type(self).__name__, "aggregation": self.aggregation, "instruction": self.instruction,
                "llm": self.ctx.llm_name, "encoder": self.ctx.encoder_name, "d_enc": self.ctx.encoder().dim,
                "d_llm": self.ctx.llm().hidden_size, "soft_token_norm": self.plug.scale,
                "params": dataclasses.asdict(self.params)}

    def save(self, **info: Any) -> None:
        """Write only the trainable tensors (safetensors), the loss curve and its plot."""
        assert self.plug is not None
        art = self.ctx.artifacts_dir
        art.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=art, prefix=".pplug-", suffix=".tmp")
        os.close(fd)
        save_file(self.plug.trainable_state(), tmp, metadata={"format": "pt", "method": type(self).__name__})
        _write_json(art / CONFIG_FILE, {**self.config(), **info, "final_loss": self.loss_curve[-1]})
        _write_json(art / "loss.json", {"step": list(range(1, len(self.loss_curve) + 1)), "loss": self.loss_curve})
        plot_loss(self.loss_curve, art / "loss.png", title=f"{self.ctx.task.name} / {type(self).__name__}")
        os.replace(tmp, self.weights_path)  # last: the weights file marks a finished fit

    def load(self) -> None:
        plug = self.build()
        state = load_file(str(self.weights_path), device=str(self.ctx.device))
        missing, unexpected = plug.load_state_dict(state, strict=False)
        trainable = {name for name, q in plug.named_parameters() if q.requires_grad}
        if unexpected or set(missing) & trainable:
            raise RuntimeError(f"{self.weights_path} does not match this plug-in (missing "
                               f"{sorted(set(missing) & trainable)[:5]}, unexpected {unexpected[:5]})")
        self.plug = plug.eval()

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Sequence[Example]) -> list[str]:
        if self.plug is None:
            if not self.weights_path.exists():
                raise RuntimeError("pplug: fit() first (no trained plug-in in the run's artifacts)")
            self.load()
        return self.ctx.generate(self.prompts(batch), prefix=self.soft_tokens(batch),
                                 max_input_tokens=self.max_input_tokens)

    def cost(self) -> dict[str, float]:
        if self.plug is None:
            return {}
        return {"trainable_parameters": float(sum(q.numel() for q in self.plug.parameters() if q.requires_grad)),
                "soft_tokens": float(self.plug.n_tokens)}


class PPlugMean(PPlug):
    description = "PPlug ablation: uniform average of the projected history embeddings."
    aggregation = "mean"


class PPlugNoInst(PPlug):
    description = "PPlug ablation: no instruction embedding (persona token only)."
    instruction = False


class PPlugRAG(PPlug):
    """PPlug's soft tokens plus ``k`` retrieved items in LaMP's official prompt (Table 3).

    The plug-in is trained on the same retrieval-augmented prompts it sees at inference.
    """

    description = "PPlug persona tokens + k retrieved profile items in LaMP's official prompt."
    Params = PPlugRAGParams

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        if self.params.k < 0:
            raise ValueError(f"k must be >= 0, got {self.params.k}")
        self.retriever = get_retriever(self.params.retriever, RetrievalContext.of_run(ctx))

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        task = self.ctx.task
        tokenizer = self.ctx.llm().tokenizer
        hits = self.retriever.retrieve(task, [e.input for e in batch], [e.profile for e in batch], self.params.k)
        return [render_prompt(task, e.input, [h.item for h in found], tokenizer, max_length=self.max_input_tokens)
                for e, found in zip(batch, hits)]

    def cost(self) -> dict[str, float]:
        return {**super().cost(), **self.retriever.stats()}


# -- artifacts ----------------------------------------------------------------------------
def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def plot_loss(curve: Sequence[float], path: Path, title: str) -> None:
    """Save the training-loss curve as a PNG (Agg canvas: no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(1, len(curve) + 1), curve, lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (next-token CE)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
