"""PPlug, the persona plug-in (Liu et al., ACL 2025), its ablations, and PPlug + retrieval.

A frozen LLM is personalised by soft tokens placed before its embedded input,
``[I; P; Emb(x)]`` (the reference: ``code/ModelForPer.py: PersonalLLM``):

* ``P``, the persona embedding: the user's history items are embedded once by the frozen
  history encoder (through :mod:`harness.embedding_cache`, L2-normalised), the input is
  embedded by a trainable copy of the same encoder, ``q = normalize(Enc_in(instr +
  query(x)))``, and ``P = sum_i softmax_i(q . e_i) Proj(e_i)`` over the user's items
  (padding masked), with ``Proj = Linear(d_enc, d_llm) -> GELU -> Linear(d_llm, d_llm)``
  (``n_persona_tokens = k`` widens it to ``k * d_llm``, the reference's ``mult_k``);
* ``I``, a trainable instruction vector in encoder space through its own 2-layer MLP.

What is embedded per history item and which query the input encoder reads are the task's
(``TaskSpec.history_text`` / ``persona_query``: the reference's per-task choices);
``history_text="fields"`` embeds every item field with its name instead. Scaling, the
training loop and persistence are shared with the ``prompt-tuning`` control in
:mod:`harness.soft_prompt` (``soft_scale="reference"``: the reference's raw MLP outputs
times the backbone's embedding scale, the instruction token also divided by 7).

Only the input encoder, ``Proj``, ``I`` and its MLP are trained (next-token loss on the
gold output), on every train example plus, in the paper profile, 10 history-dropout
copies of each; they are saved with safetensors as ``pplug.safetensors``.

Registered as ``pplug``, ``pplug-mean`` (uniform average of the projected items),
``pplug-noinst`` (no instruction token) and ``pplug+rag`` (alias ``pplug+bm25``): the
persona tokens plus ``k`` retrieved items in LaMP's official prompt (paper Table 3).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from harness.api import Example, RunContext, TaskSpec
from harness.augment import augmented_prompts
from harness.embedding_cache import shared_cache
from harness.encoders import TextEncoder
from harness.params import added_option
from harness.retrieval import RetrievalContext, chronological, get_retriever
from harness.soft_prompt import (
    SMALL_TRAINING,
    SoftPromptMethod,
    SoftPromptParams,
    SoftScale,
    SoftTokens,
    Unit,
    history_dropout,
)

Aggregation = Literal["attention", "mean"]
HistoryText = Literal["reference", "fields"]
HISTORY_TEXTS: tuple[str, ...] = ("reference", "fields")
WEIGHTS_FILE = "pplug.safetensors"


@dataclass(frozen=True)
class PPlugParams(SoftPromptParams):
    """The paper's settings (see :class:`harness.soft_prompt.SoftPromptParams`) plus the history.

    ``max_history`` is the reference's ``--max_his_len 512``; ``history_text``:
    ``reference`` embeds what the reference embeds per task, ``fields`` every item field
    with its name (which puts the user's own tags and scores into the history).
    ``center_history`` is this harness's option: normalised sentence embeddings of one
    task's items share a large common direction (synthetic LaMP-3 with every field: the
    users' mean embeddings have a common part of norm 0.64 and per-user deviations of
    norm 0.26), so ``Proj``'s input is mostly what every user has in common; centring
    leaves ``Proj``'s weights only the per-user differences and its bias the shared part
    (results/convergence, section 3).
    """

    max_history: int = 512  # most recent history items per user
    history_text: HistoryText = "reference"
    # Not in the reference: subtract the train histories' mean embedding before Proj, so
    # Proj's weights see only how users differ (the shared part goes to its bias).
    center_history: bool = added_option(False)
    # Not in the reference (its code has the division commented out: ``# / 0.5``): q and
    # e_i are unit vectors, so at temperature 1 the softmax over scores in [-1, 1] is
    # nearly uniform (results/convergence section 9). A smaller one makes it select; on
    # synthetic LaMP-2, T = 0.1 selected the wrong items and lost accuracy (same section).
    attention_temperature: float = added_option(1.0)
    # Not in the reference: subtract Proj of the train histories' mean item from the
    # persona, so the persona token is zero for the average user and carries only how a
    # user differs; the task part is left to the instruction token. Trained PPlug tokens
    # are otherwise 98% shared direction (results/convergence section 17).
    center_persona: bool = added_option(False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if not self.attention_temperature > 0:
            raise ValueError(f"attention_temperature must be > 0, got {self.attention_temperature}")
        if self.history_text not in HISTORY_TEXTS:
            raise ValueError(f"history_text must be one of {', '.join(HISTORY_TEXTS)}, got {self.history_text!r}")


@dataclass(frozen=True)
class PPlugRAGParams(PPlugParams):
    retriever: str = "bm25"  # any registered retriever
    k: int = 1  # retrieved items rendered with the official prompt


#: The shared CPU reductions (harness/soft_prompt.py: SMALL_TRAINING) plus shorter histories.
SMALL_PROFILE: Mapping[str, Any] = {**SMALL_TRAINING, "max_history": 64}


# -- the plug-in --------------------------------------------------------------------------
def aggregate(q: torch.Tensor, history: torch.Tensor, projected: torch.Tensor, mask: torch.Tensor,
              how: Aggregation, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, w)``: ``P = sum_i w_i projected_i`` with ``w`` over the unmasked items.

    ``q`` is ``[B, d_enc]``, ``history`` ``[B, N, d_enc]``, ``projected`` ``[B, N, d_out]``
    and ``mask`` ``[B, N]`` (True for real items). ``attention`` uses
    ``softmax(q . e_i / temperature)`` (the reference's temperature is 1); ``mean`` is
    uniform. A user without history gets all-zero weights (and so ``P = 0``) rather than
    the NaNs a softmax over nothing would give.
    """
    if how == "attention":
        scores = (torch.einsum("bd,bnd->bn", q, history) / temperature).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    elif how == "mean":
        weights = mask.to(projected.dtype) / mask.sum(dim=-1, keepdim=True).clamp(min=1)
    else:
        raise ValueError(f"unknown aggregation {how!r} (attention or mean)")
    return torch.einsum("bn,bnd->bd", weights, projected), weights


class PersonaPlug(SoftTokens):
    """The trainable parts: input encoder, ``Proj``, instruction vector and its MLP.

    ``forward`` returns the soft tokens ``[B, n_tokens, d_llm]``, scaled as ``soft_scale``
    says (:func:`harness.soft_prompt.scale_soft_tokens`).
    """

    def __init__(self, encoder: TextEncoder, d_llm: int, scale: float, aggregation: Aggregation,
                 instruction: bool, soft_scale: SoftScale = "reference", n_persona_tokens: int = 1,
                 center: bool = False, temperature: float = 1.0, center_persona: bool = False) -> None:
        super().__init__(encoder.dim, d_llm, scale=scale, soft_scale=soft_scale, instruction=instruction,
                         n_slots=n_persona_tokens)
        self.encoder = encoder  # tokenizer and pooling; its own weights stay frozen
        self.center, self.center_persona = center, center_persona
        self.temperature = temperature
        if center or center_persona:  # fitted once from the train histories (PPlug.prepare), saved with the weights
            self.register_buffer("history_mean", torch.zeros(encoder.dim))
        self.input_encoder: torch.nn.Module | None = None
        if aggregation == "attention":  # the uniform ablation never reads the input
            self.input_encoder = encoder.trainable_copy()
            if getattr(self.input_encoder, "pooler", None) is not None:
                # BERT's pooler head is unused by mean/CLS pooling of the last hidden
                # state: dropping it keeps dead weights out of training and the saved file.
                self.input_encoder.pooler = None
        self.aggregation: Aggregation = aggregation

    def encoder_parameters(self) -> list[torch.nn.Parameter]:
        return [] if self.input_encoder is None else list(self.input_encoder.parameters())

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """``q = normalize(Enc_in(texts))`` with the trainable input encoder."""
        return self.encoder.forward(texts, normalize=True, model=self.input_encoder)

    def persona(self, queries: Sequence[str], history: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, w)`` before scaling: the aggregated, projected history ``[B, k * d_llm]``."""
        if self.input_encoder is None:
            q = history.new_zeros((history.shape[0], history.shape[-1]))  # unused by "mean"
        else:
            q = self.encode_queries(queries)
        items = history - self.history_mean if self.center else history
        persona, weights = aggregate(q, history, self.proj(items), mask, self.aggregation, self.temperature)
        if self.center_persona:  # what the average user's history projects to, in the same input space
            average = torch.zeros_like(self.history_mean) if self.center else self.history_mean
            persona = persona - self.proj(average)
        return persona, weights

    def forward(self, queries: Sequence[str], history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        persona, _ = self.persona(queries, history, mask)
        return self.assemble(persona)


# -- histories ----------------------------------------------------------------------------
def item_text(task: TaskSpec, item: Mapping[str, Any], how: str) -> str:
    """What the history encoder reads for one profile item.

    ``reference``: the task's ``history_text`` (what the reference code embeds, e.g.
    LaMP-2's description only), else its retrieval text; ``fields``: every item field,
    named, which includes the user's own outputs (tags, scores) — the persona signal of
    the classification tasks, which the reference leaves out.
    """
    if how == "reference":
        return (task.history_text or task.corpus_text)(item)
    if how == "fields":
        return "; ".join(f"{name}: {item[name]}" for name in task.item_fields)
    raise ValueError(f"history_text must be one of {', '.join(HISTORY_TEXTS)}, got {how!r}")


def pad_rows(table: torch.Tensor, rows: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather each row's history vectors from ``table`` into ``[B, N, d]`` plus a mask."""
    width = max(1, max(len(r) for r in rows))
    index = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        index[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return table[index.to(table.device)], mask.to(table.device)


# -- the methods --------------------------------------------------------------------------
class PPlug(SoftPromptMethod):
    """PPlug: input-aware persona embedding + instruction embedding before a frozen LLM."""

    description = "Persona plug-in: input-aware aggregation of cached history embeddings as soft tokens."
    Params: ClassVar[type] = PPlugParams
    version = 2  # v2: reference scaling, per-task history text, dropout copies, LaMP-1 query, held-out loss
    family = "pplug"
    control = "prompt-tuning"
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {}, "small": SMALL_PROFILE}
    artifact = "pplug"
    aggregation: ClassVar[Aggregation] = "attention"
    instruction: ClassVar[bool] = True

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        item_text(ctx.task, {f: "" for f in ctx.task.item_fields}, self.params.history_text)  # validate early
        self._table: torch.Tensor | None = None
        self._rows: list[np.ndarray] = []
        self._copies: list[list[np.ndarray]] = []
        self._queries: list[str] = []

    @property
    def plug(self) -> PersonaPlug | None:
        """The plug-in (:attr:`module`) under PPlug's own name, as benchmarks read it."""
        return self.module  # type: ignore[return-value]

    # -- pieces ---------------------------------------------------------------------------
    def build(self) -> PersonaPlug:
        """A freshly initialised plug-in (seeded by the run seed)."""
        llm = self.ctx.llm()
        p: PPlugParams = self.params
        torch.manual_seed(self.ctx.seed)
        plug = PersonaPlug(self.ctx.encoder(), llm.hidden_size, self.embedding_scale(), self.aggregation,
                           self.instruction, soft_scale=p.soft_scale, n_persona_tokens=p.n_persona_tokens,
                           center=p.center_history, temperature=p.attention_temperature,
                           center_persona=p.center_persona)
        return plug.to(self.ctx.device)

    def query_text(self, example: Example) -> str:
        """The encoder's query instruction (bge's) + the task's PPlug query of the input.

        As in the reference (``PersonalDataset.parse_data`` then ``process_qry``), the query
        is drawn from the input as the LLM sees it, cut to ``max_input_tokens - 1`` LLM
        tokens (the last place is T5's end-of-sequence token). The reference writes bge's
        instruction without its trailing space; BERT's tokenizer splits at the colon
        either way, so the token ids are the same.
        """
        task = self.ctx.task
        seen = self.llm_visible_input(example.input)
        return self.ctx.encoder().preset.query_instruction + (task.persona_query or task.query)(seen)

    def llm_visible_input(self, text: str) -> str:
        """``text`` cut to the LLM input budget (unchanged when it fits)."""
        tokenizer = self.ctx.llm().tokenizer
        ids = tokenizer.encode(text, add_special_tokens=False)
        limit = max(1, self.max_input_tokens - 1)
        return text if len(ids) <= limit else tokenizer.decode(ids[:limit], skip_special_tokens=True)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised frozen-encoder embeddings from the shared persistent cache."""
        encoder = self.ctx.encoder()
        if not texts:
            return torch.zeros((1, encoder.dim), device=self.ctx.device)
        return torch.from_numpy(shared_cache(encoder).embed(list(texts), normalize=True)).to(self.ctx.device)

    def history(self, profiles: Sequence[Sequence[Mapping[str, Any]]]) -> tuple[torch.Tensor, list[np.ndarray]]:
        """``(table, rows)``: embeddings of the distinct history texts, and per profile the
        table rows of its ``max_history`` most recent items."""
        index: dict[str, int] = {}
        rows = [self._rows_of(profile, chronological(profile)[-self.params.max_history:], index)
                for profile in profiles]
        return self.embed_texts(list(index)), rows

    def _rows_of(self, profile: Sequence[Mapping[str, Any]], items: Sequence[int], index: dict[str, int],
                 memo: dict[int, int] | None = None) -> np.ndarray:
        """Table rows of ``profile[i]`` for ``i`` in ``items``, adding new texts to ``index``;
        ``memo`` (profile position -> row) spares re-rendering items shared by copies."""
        memo = {} if memo is None else memo
        out = []
        for i in items:
            if i not in memo:
                memo[i] = index.setdefault(item_text(self.ctx.task, profile[i], self.params.history_text), len(index))
            out.append(memo[i])
        return np.array(out, dtype=np.int64)

    def prepare(self, examples: Sequence[Example], n_train: int, rng: random.Random) -> None:
        """History rows of every example, and the dropout copies of the train ones.

        A copy thins the whole chronological profile (the reference's ``n`` is the full
        profile length), then keeps its ``max_history`` most recent survivors.
        """
        p: PPlugParams = self.params
        index: dict[str, int] = {}
        self._rows, self._copies = [], []
        for i, example in enumerate(examples):
            order, memo = chronological(example.profile), {}
            self._rows.append(self._rows_of(example.profile, order[-p.max_history:], index, memo))
            copies = (history_dropout(order, p.history_dropout_copies, p.history_dropout_max, rng)
                      if i < n_train else [])
            self._copies.append([self._rows_of(example.profile, kept[-p.max_history:], index, memo)
                                 for kept in copies])
        self._table = self.embed_texts(list(index))
        self._queries = [self.query_text(e) for e in examples]
        if (p.center_history or p.center_persona) and self.module is not None and n_train:
            # Distinct items of the train histories only: held-out questions stay unseen.
            seen = torch.as_tensor(np.unique(np.concatenate(self._rows[:n_train])), device=self._table.device)
            self.module.history_mean.copy_(self._table[seen].mean(dim=0))

    def augment(self, index: int) -> list[Unit]:
        return [Unit(index, rows) for rows in self._copies[index]]

    def unit_soft_tokens(self, units: Sequence[Unit]) -> torch.Tensor:
        assert self.module is not None and self._table is not None
        rows = [self._rows[u.index] if u.history is None else u.history for u in units]
        hist, mask = pad_rows(self._table, rows)
        return self.module([self._queries[u.index] for u in units], hist, mask)

    def soft_tokens(self, batch: Sequence[Example]) -> torch.Tensor:
        assert self.module is not None
        table, rows = self.history([e.profile for e in batch])
        hist, mask = pad_rows(table, rows)
        return self.module([self.query_text(e) for e in batch], hist, mask)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "aggregation": self.aggregation, "instruction": self.instruction,
                "d_enc": self.ctx.encoder().dim}


class PPlugMean(PPlug):
    description = "PPlug ablation: uniform average of the projected history embeddings."
    variant_of = "pplug"
    aggregation = "mean"


class PPlugNoInst(PPlug):
    description = "PPlug ablation: no instruction embedding (persona token only)."
    variant_of = "pplug"
    control = None  # one soft token fewer than prompt-tuning: not a same-budget pair
    instruction = False


class PPlugRAG(PPlug):
    """PPlug's soft tokens plus ``k`` retrieved items in LaMP's official prompt (Table 3).

    The plug-in is trained on the same retrieval-augmented prompts it sees at inference.
    """

    description = "PPlug persona tokens + k retrieved profile items in LaMP's official prompt."
    Params = PPlugRAGParams
    family = "pplug+retrieval"  # Table 3 with the retrievers, not the ablation beside pplug
    variant_of = "pplug"
    control = None  # its prompts carry retrieved items, the control's do not

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        if self.params.k < 0:
            raise ValueError(f"k must be >= 0, got {self.params.k}")
        self.retriever = get_retriever(self.params.retriever, RetrievalContext.of_run(ctx))

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        """LaMP's official prompt with ``k`` retrieved items, through the one shared path
        (:func:`harness.augment.augmented_prompts`) and within the plug-in's input budget."""
        prompts = augmented_prompts(self.ctx.task, self.retriever, batch, self.params.k, self.ctx.llm().tokenizer,
                                    self.max_input_tokens)
        self.ctx.record_retrieved([p.item_ids for p in prompts])
        return [p.text for p in prompts]

    def cost(self) -> dict[str, float]:
        return {**super().cost(), **self.retriever.stats()}
