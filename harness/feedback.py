"""The frozen LLM's feedback on prompts, computed once and shared (ROPG, RSPG).

Salemi et al. (SIGIR 2024) train retrievers and a retriever selector on what the frozen
LLM makes of a prompt. Two kinds of prompt are scored, by the same machinery:

* **profile-item utilisation** (``LaMP/profile_item_utilization_scorer.py``): per train
  question and candidate profile item, LaMP's official prompt with *that one item*;
* **retriever utilisation** (``LaMP/retriever_utilization_scorer.py``): per train
  question and retriever of a pool, the prompt that retriever's top-k items make.

Both reference scripts *generate* an answer (beam search) and score it with the task's
metric against the gold output; we do the same by default (``scorer="metric"``), going
through :meth:`RunContext.generate` so the run's decoding mode (free or constrained) and
beam settings apply. ``scorer="logprob"`` instead stores ``log p(gold | prompt)``
(:meth:`Backbone.target_logprobs`), a denser signal that costs one forward pass.

What the LLM makes of a prompt depends on nothing but the LLM, its decoding settings,
the prompt text, the input budget and (for the score) the gold. So a record is keyed by
a hash of ``(budget, prompt, gold)`` inside a folder keyed by the rest (LLM, task and
task version, decoding, beams, answer length, scorer). Every method that needs feedback
— ``ropg-kd``, ``ropg-rl``, both RSPGs, any number of runs — reads and extends the same
folder, and a prompt two retrievers both produce is scored once. Records also name the
question and the item or retriever that produced them, for inspection.

Storage is one JSON line per record, appended and fsynced per batch under a file lock,
so an interrupted computation resumes where it stopped; a torn last line (a crash
mid-write) is cut off on the next open. The folder lives under the cache root
(``$PERSONA_BENCH_CACHE/feedback/<task>/<key hash>/``), next to the embedding cache,
because its contents do not depend on any run's configuration.

Only the caller decides which examples are scored; methods pass their *train* split, so
no dev or test gold is ever read here (tests check this).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from harness.api import Example, TaskSpec
from harness.augment import augmented_prompts, input_budget, item_id
from harness.models import cache_root
from harness.prompting import render_prompt
from harness.store import atomic_write_json

if TYPE_CHECKING:
    from harness.api import RunContext
    from harness.retrieval import Retriever

#: Bump when the record format or the scoring changes: it enters every folder's key.
FORMAT = 1
SCORERS = ("metric", "logprob")
#: Which scored prediction a metric utility reads: the stripped raw generation, as the
#: reference scores it ("official"), or the task's parsed answer ("parsed").
SCORINGS = ("official", "parsed")
NO_RETRIEVAL = "none"  # pool name of the plain input (k = 0)


# -- keys and records --------------------------------------------------------------------
def folder_key(ctx: RunContext, scorer: str) -> dict[str, Any]:
    """Everything besides the prompt and gold that decides a record's value."""
    if scorer not in SCORERS:
        raise ValueError(f"feedback scorer must be one of {', '.join(SCORERS)}, not {scorer!r}")
    g = ctx.generation
    key: dict[str, Any] = {"format": FORMAT, "llm": ctx.llm_name, "task": ctx.task.name,
                           "task_version": ctx.task.version, "scorer": scorer,
                           "max_new_tokens": ctx.max_new_tokens}
    if scorer == "metric":  # a log-likelihood does not depend on how answers are decoded
        key |= {"decoding": ctx.decoding, "num_beams": g.num_beams}
    return key


def record_id(prompt: str, gold: str, max_input_tokens: int) -> str:
    payload = json.dumps([max_input_tokens, prompt, gold], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class Query:
    """One prompt to score: which question, what produced it, and the gold to score against."""

    question: str  # the train example's id
    source: str  # "item:<profile item id>" or "retriever:<name>"
    prompt: str
    gold: str
    max_input_tokens: int

    @property
    def rid(self) -> str:
        return record_id(self.prompt, self.gold, self.max_input_tokens)


class FeedbackStore:
    """One folder of feedback records: ``key.json`` and append-only ``records.jsonl``."""

    RECORDS = "records.jsonl"

    def __init__(self, directory: Path, key: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.key = dict(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        key_path = self.directory / "key.json"
        if key_path.exists():
            stored = json.loads(key_path.read_text())
            if stored != json.loads(json.dumps(self.key)):
                raise ValueError(f"{self.directory} holds feedback for {stored}, not {self.key}")
        else:
            atomic_write_json(key_path, self.key)
        self.records: dict[str, dict[str, Any]] = {}
        self.reload()

    @classmethod
    def for_run(cls, ctx: RunContext, scorer: str = "metric", root: Path | None = None) -> FeedbackStore:
        """The shared folder for this run's LLM, task and decoding settings."""
        key = folder_key(ctx, scorer)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return cls((root or cache_root() / "feedback") / ctx.task.name / digest, key)

    @property
    def path(self) -> Path:
        return self.directory / self.RECORDS

    def reload(self) -> None:
        """Read every complete record; cut a torn last line so appends stay line-aligned."""
        self.records = {}
        if not self.path.exists():
            return
        with open(self.path, "r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                valid = 0
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    self.records[rec["rid"]] = rec
                    valid += len(line)
                if valid != fh.seek(0, os.SEEK_END):
                    fh.truncate(valid)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append and fsync a batch of records (under an exclusive lock)."""
        lines = [json.dumps(dict(r), ensure_ascii=False, sort_keys=True) + "\n" for r in records]
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write("".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        for line in lines:
            rec = json.loads(line)
            self.records[rec["rid"]] = rec

    def __contains__(self, rid: str) -> bool:
        return rid in self.records

    def __len__(self) -> int:
        return len(self.records)


# -- scoring -------------------------------------------------------------------------------
def feedback_metric(task: TaskSpec) -> str:
    """The metric the reference uses as feedback: accuracy, MAE or ROUGE-1 (the task's first)."""
    return task.metrics[0]


def _scorable(task: TaskSpec, text: str) -> str:
    """A prediction the official scorer accepts: LaMP-3's scorer rejects "nan"/"inf"."""
    if task.kind == "regression":
        try:
            if not math.isfinite(float(text.strip())):
                return ""  # scored like any unparseable answer: the worse end of the scale
        except ValueError:
            pass
    return text


def per_example_metrics(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> list[dict[str, float]]:
    """Each prediction's per-example metric parts (accuracy 0/1, absolute error, ROUGE...)."""
    from harness.metrics import METRIC_DIRECTION, per_example_scores

    parts = per_example_scores(task, [_scorable(task, p) for p in predictions], list(golds))
    names = [m for m in parts if m in METRIC_DIRECTION]
    return [{m: float(parts[m][i]) for m in names} for i in range(len(predictions))]


def _worst_error(task: TaskSpec, gold: str) -> float:
    """LaMP-3's normaliser: the larger distance from the gold to either end of the scale."""
    try:
        values = [float(label) for label in task.labels] or [1.0, 5.0]
        y = float(gold)
    except ValueError:
        return 0.0
    return max(abs(y - min(values)), abs(y - max(values)))


def utility(task: TaskSpec, record: Mapping[str, Any], gold: str, scoring: str = "official") -> float:
    """A record's value on a higher-is-better scale, as the reference trainers build it.

    Higher-is-better metrics (accuracy, ROUGE-1) are used as they are; for an error
    (LaMP-3's MAE) the reference uses ``(worst - error) / worst`` with ``worst =
    max(|y - 1|, |y - 5|)``. A log-probability record is its log-probability.
    """
    if "logprob" in record:
        return float(record["logprob"])
    from harness.metrics import METRIC_DIRECTION

    if scoring not in SCORINGS:
        raise ValueError(f"feedback scoring must be one of {', '.join(SCORINGS)}, not {scoring!r}")
    metric = feedback_metric(task)
    value = float(record[scoring][metric])
    if METRIC_DIRECTION.get(metric, True):
        return value
    worst = _worst_error(task, gold)
    return (worst - value) / worst if worst > 0 else -value


@dataclass
class FeedbackCost:
    """What collecting feedback took: records asked for, computed now, reused, seconds."""

    asked: int = 0
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)

    def add(self, other: FeedbackCost, kind: str) -> None:
        self.asked += other.asked
        self.computed += other.computed
        self.reused += other.reused
        self.seconds += other.seconds
        self.by_kind[f"feedback_{kind}_records"] = self.by_kind.get(f"feedback_{kind}_records", 0.0) + other.asked
        self.by_kind[f"feedback_{kind}_seconds"] = self.by_kind.get(f"feedback_{kind}_seconds", 0.0) + other.seconds

    def as_dict(self) -> dict[str, float]:
        rate = self.computed / self.seconds if self.seconds > 0 else 0.0
        return {"feedback_records": float(self.asked), "feedback_computed": float(self.computed),
                "feedback_reused": float(self.reused), "feedback_seconds": self.seconds,
                "feedback_records_per_second": rate, **self.by_kind}


def collect(ctx: RunContext, store: FeedbackStore, queries: Sequence[Query], *, batch_size: int | None = None,
            desc: str = "feedback") -> tuple[list[dict[str, Any]], FeedbackCost]:
    """The record of every query, computing (in batches, appended per batch) the missing ones.

    Returns the records aligned with ``queries`` and what it cost. Prompts repeated within
    ``queries`` or already in the store are scored once.
    """
    missing: dict[str, Query] = {}
    for q in queries:
        if q.rid not in store and q.rid not in missing:
            missing[q.rid] = q
    cost = FeedbackCost(asked=len(queries), computed=len(missing))
    cost.reused = len(queries) - len(missing)
    size = batch_size or ctx.generation.batch_size
    todo = list(missing.values())
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"{ctx.task.name}/{desc}", unit="prompt",
               disable=not ctx.progress or not todo)
    for i in range(0, len(todo), size):
        batch = todo[i : i + size]
        store.append(_score_batch(ctx, store.key["scorer"], batch))
        bar.update(len(batch))
    bar.close()
    cost.seconds = time.perf_counter() - start
    return [store.records[q.rid] for q in queries], cost


def _score_batch(ctx: RunContext, scorer: str, batch: Sequence[Query]) -> list[dict[str, Any]]:
    """Score one batch of queries with the frozen LLM."""
    task = ctx.task
    by_budget: dict[int, list[int]] = {}
    for i, q in enumerate(batch):
        by_budget.setdefault(q.max_input_tokens, []).append(i)
    out: list[dict[str, Any]] = [{} for _ in batch]
    for budget, idx in by_budget.items():
        prompts = [batch[i].prompt for i in idx]
        golds = [batch[i].gold for i in idx]
        if scorer == "logprob":
            import torch

            with torch.no_grad():
                scores = ctx.llm().target_logprobs(prompts, golds, max_input_tokens=budget,
                                                   max_target_tokens=ctx.max_new_tokens)
            values: list[dict[str, Any]] = [{"logprob": float(s)} for s in scores.tolist()]
        else:
            raws = ctx.generate(prompts, max_input_tokens=budget)
            official = per_example_metrics(task, [r.strip() for r in raws], golds)
            parsed = per_example_metrics(task, [task.parse_output(r) for r in raws], golds)
            values = [{"output": r, "official": o, "parsed": p} for r, o, p in zip(raws, official, parsed)]
        for i, value in zip(idx, values):
            q = batch[i]
            out[i] = {"rid": q.rid, "question": q.question, "source": q.source, **value}
    return out


# -- the two kinds of feedback ---------------------------------------------------------------
def item_queries(task: TaskSpec, tokenizer: Any, examples: Sequence[Example], candidates: Sequence[Sequence[int]],
                 max_input_tokens: int) -> list[list[Query]]:
    """Per example, one query per candidate item: LaMP's prompt with that item alone."""
    out = []
    for e, cand in zip(examples, candidates):
        if e.output is None:
            raise ValueError(f"example {e.id} has no gold output; feedback needs train examples")
        out.append([Query(e.id, f"item:{item_id(e.profile[j], j)}",
                          render_prompt(task, e.input, [e.profile[j]], tokenizer, max_length=max_input_tokens),
                          e.output, max_input_tokens) for j in cand])
    return out


def item_utilization(ctx: RunContext, examples: Sequence[Example], candidates: Sequence[Sequence[int]], *,
                     scorer: str = "metric", scoring: str = "official", max_input_tokens: int = 512,
                     store: FeedbackStore | None = None) -> tuple[list[np.ndarray], FeedbackCost]:
    """Per example, the utility of each candidate item (aligned with ``candidates``)."""
    store = store or FeedbackStore.for_run(ctx, scorer)
    budget = input_budget(ctx, max_input_tokens)  # rendered for, and cut at, the same budget
    nested = item_queries(ctx.task, ctx.llm().tokenizer, examples, candidates, budget)
    flat = [q for qs in nested for q in qs]
    records, cost = collect(ctx, store, flat, desc="item feedback")
    out, start = [], 0
    for e, qs in zip(examples, nested):
        out.append(np.array([utility(ctx.task, r, e.output or "", scoring) for r in records[start : start + len(qs)]],
                            dtype=np.float64))
        start += len(qs)
    return out, cost


@dataclass(frozen=True)
class PoolPrompts:
    """One retriever's prompts for a batch: the text and the item ids put into it."""

    texts: list[str]
    item_ids: list[tuple[str, ...]]


def pool_prompts(ctx: RunContext, retriever: Retriever | None, examples: Sequence[Example], k: int,
                 max_input_tokens: int) -> PoolPrompts:
    """LaMP's prompt with ``retriever``'s top ``k`` items (``None``: the plain input).

    ``max_input_tokens`` is the one budget of :mod:`harness.augment`: pass the same to the LLM.
    """
    if retriever is None or k == 0:
        return PoolPrompts([e.input for e in examples], [() for _ in examples])
    prompts = augmented_prompts(ctx.task, retriever, examples, k, ctx.llm().tokenizer, max_input_tokens)
    return PoolPrompts([p.text for p in prompts], [tuple(p.item_ids) for p in prompts])


@dataclass(frozen=True)
class RetrieverFeedback:
    """Per train question and pool retriever: prompt, output and utility (``[Q, R]``)."""

    names: tuple[str, ...]
    prompts: list[list[str]]
    outputs: list[list[str]]
    utilities: np.ndarray


def retriever_utilization(ctx: RunContext, examples: Sequence[Example], pool: Mapping[str, Retriever | None], *,
                          k: int, max_input_tokens: int, scoring: str = "official",
                          store: FeedbackStore | None = None) -> tuple[RetrieverFeedback, FeedbackCost]:
    """The task metric of each pool retriever's generated answer on each train question."""
    store = store or FeedbackStore.for_run(ctx, "metric")
    max_input_tokens = input_budget(ctx, max_input_tokens)
    names = tuple(pool)
    per_retriever = {name: pool_prompts(ctx, pool[name], examples, k, max_input_tokens) for name in names}
    for e in examples:
        if e.output is None:
            raise ValueError(f"example {e.id} has no gold output; feedback needs train examples")
    queries = [Query(e.id, f"retriever:{name}", per_retriever[name].texts[i], e.output or "", max_input_tokens)
               for i, e in enumerate(examples) for name in names]
    records, cost = collect(ctx, store, queries, desc="retriever feedback")
    n = len(names)
    prompts = [[q.prompt for q in queries[i * n : (i + 1) * n]] for i in range(len(examples))]
    outputs = [[r["output"] for r in records[i * n : (i + 1) * n]] for i in range(len(examples))]
    utilities = np.array([[utility(ctx.task, r, e.output or "", scoring) for r in records[i * n : (i + 1) * n]]
                          for i, e in enumerate(examples)], dtype=np.float64).reshape(len(examples), n)
    return RetrieverFeedback(names, prompts, outputs, utilities), cost
