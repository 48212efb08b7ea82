"""ROPG: dense retrievers trained on the frozen LLM's feedback, registered as retrievers.

Salemi et al. (SIGIR 2024, reference ``ROPG/``) start from Contriever and train it so its
ranking of a question's candidate profile items follows what the LLM makes of each item
(:func:`harness.feedback.item_utilization`, the utility of LaMP's prompt with that one
item). Two objectives, both over the top ``candidates`` items of a first-stage ranking:

* ``kd`` (``ROPG/trainers/trainer.py: KDReaderToRetrieverTrainer``): the retriever's
  distribution ``softmax(s / T)`` is pulled towards the LLM's ``softmax(u / T)`` by KL
  divergence (``kd_loss="kl"``, the paper's objective). The reference code passes the
  retriever's *probabilities* to ``nn.CrossEntropyLoss`` as if they were logits (a second
  softmax); ``kd_loss="reference"`` reproduces that literally;
* ``rl`` (``RLReaderToRetrieverTrainer``): REINFORCE. One item is sampled from
  ``softmax(s)``, its reward is ``u_sampled - u_first`` (the first-ranked candidate is the
  baseline) and the loss is ``-mean(log p_sampled * reward)``.

Utilities are the reference's: the feedback metric (accuracy, ROUGE-1) as it is, LaMP-3's
MAE as ``(worst - mae) / worst`` (:func:`harness.feedback.utility`).

The encoder is a trainable copy of the run's encoder (``TextEncoder.trainable_copy``),
mean/CLS pooling as its preset, dot-product scores, no normalisation (as Contriever).

**Finding trained weights by name.** A trained retriever is stored once, in the cache
(``$PERSONA_BENCH_CACHE/retrievers/<name>/<task>/<key hash>/``: ``weights.safetensors``
and ``meta.json``), keyed by everything that decides it: task and task version, LLM,
encoder, seed, decoding, all training settings and a digest of the train split. The
``ropg-kd`` and ``ropg-rl`` retrievers registered here resolve their weights from that
cache for the task they are asked to score, the run's encoder and seed, and the LLM /
settings profile when known; so ``pplug+rag -p retriever=ropg-kd`` and RSPG's pool use
the retriever a ``ropg-kd`` run trained, and RSPG trains (and publishes) the same entry
when no such run exists. A ``weights=PATH`` option pins one file.

**faiss.** Not used: a retriever scores one user's profile (tens to a few thousand
items) per query; measured on this machine (d = 384, one query), exact numpy scoring
takes 4-90 µs up to 1,000 items while building a faiss ``IndexFlatIP`` and searching
costs 10-230 µs, and either is dwarfed by encoding the query (milliseconds). faiss only
pays when one large index serves many queries, which per-user retrieval never does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from harness.api import Example, TaskSpec
from harness.feedback import FeedbackCost, item_utilization
from harness.models import cache_root
from harness.retrieval import (
    RETRIEVERS,
    Profile,
    RetrievalContext,
    Retriever,
    get_retriever,
)

if TYPE_CHECKING:
    from harness.api import RunContext
    from harness.encoders import TextEncoder

OBJECTIVES = ("kd", "rl")
WEIGHTS = "weights.safetensors"
META = "meta.json"
FORMAT = 1


@dataclass(frozen=True)
class ROPGSettings:
    """Training settings; defaults are the reference's (``ROPG/train_kd.py`` argparse).

    The reference trains ``total_steps`` optimizer steps of ``batch_size`` questions
    (per GPU) on every train question's top ``candidates`` items (``--ctx_size``).
    """

    candidates: int = 20  # --ctx_size: items per question, from the first-stage ranking
    candidate_ranker: str = "contriever"  # the README leaves the pre-ranking to the user
    temperature: float = 1.0  # --temperature (KD only)
    kd_loss: str = "kl"  # "kl" (paper) or "reference" (CE on probabilities, as coded)
    lr: float = 1e-5
    weight_decay: float = 0.0
    optimizer: str = "adam"  # --optim adam (no weight decay), or "adamw"
    batch_size: int = 1  # --per_gpu_batch_size
    accumulation_steps: int = 1
    total_steps: int = 1000
    clip: float = 1.0
    max_tokens: int = 512  # --max_length_query / --max_length_document
    feedback_scorer: str = "metric"  # the reference generates and scores with the task metric
    feedback_scoring: str = "official"  # "official": stripped raw answer; "parsed": task.parse_output
    feedback_max_input_tokens: int = 512  # profile_item_utilization_scorer --max_length
    max_train_examples: int | None = None  # None: every train question (the reference)

    def validate(self) -> None:
        if self.candidates < 2:
            raise ValueError("ROPG needs at least 2 candidate items per question")
        if self.kd_loss not in ("kl", "reference"):
            raise ValueError(f"kd_loss must be 'kl' or 'reference', not {self.kd_loss!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', not {self.optimizer!r}")
        if min(self.batch_size, self.accumulation_steps, self.total_steps, self.max_tokens) < 1:
            raise ValueError("batch_size, accumulation_steps, total_steps and max_tokens must be >= 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")


#: The CPU reductions of the ``small`` profile, shared by the ``ropg-*`` methods and by
#: RSPG's pool, so both find the same trained entry in the cache.
SMALL: Mapping[str, Any] = {
    "candidates": 8, "total_steps": 48, "batch_size": 4, "lr": 5e-5, "max_tokens": 128,
    "feedback_scoring": "parsed", "feedback_max_input_tokens": 256, "max_train_examples": 96,
}
PROFILES: Mapping[str, Mapping[str, Any]] = {"small": SMALL, "paper": {}}


def settings_for(profile: str) -> ROPGSettings:
    """The settings of a named profile (``paper``: the reference's)."""
    return ROPGSettings(**PROFILES.get(profile, {}))


def retriever_name(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"ROPG objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    return f"ropg-{objective}"


# -- objectives -------------------------------------------------------------------------------
def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the real candidates; padded entries come out as 0 (never -inf)."""
    return torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).masked_fill(~mask, 0.0)


def kd_loss(scores: torch.Tensor, utilities: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
            how: str = "kl") -> torch.Tensor:
    """KL(softmax(u / T) || softmax(s / T)), averaged over questions (``how="kl"``).

    ``how="reference"``: the reference's ``CrossEntropyLoss(softmax(s / T), softmax(u / T))``
    — cross-entropy against the soft target, with the probabilities as logits.
    """
    target = torch.softmax(utilities.masked_fill(~mask, float("-inf")) / temperature, dim=-1).masked_fill(~mask, 0.0)
    if how == "reference":
        probs = torch.softmax(scores.masked_fill(~mask, float("-inf")) / temperature, dim=-1)
        return -(target * masked_log_softmax(probs, mask)).sum(-1).mean()
    log_p = masked_log_softmax(scores / temperature, mask)
    log_t = torch.log(target.clamp_min(1e-30))
    return (target * (log_t - log_p)).masked_fill(~mask, 0.0).sum(-1).mean()


def sample_actions(scores: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One candidate per question drawn from the retriever's ``softmax(s)`` (``[B]``)."""
    probs = torch.softmax(scores.detach().masked_fill(~mask, float("-inf")), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def rl_loss(scores: torch.Tensor, utilities: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the first candidate as baseline: ``-mean(log p_a * (u_a - u_0))``."""
    log_p = masked_log_softmax(scores, mask)
    rows = torch.arange(scores.shape[0], device=scores.device)
    reward = (utilities[rows, actions] - utilities[:, 0]).detach()
    return -(log_p[rows, actions] * reward).mean()


# -- the model --------------------------------------------------------------------------------
def trainable_encoder(encoder: TextEncoder) -> torch.nn.Module:
    """A trainable copy of ``encoder``'s weights, without BERT's unused pooler head."""
    model = encoder.trainable_copy()
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused by mean/CLS pooling of the last hidden state
    return model


def wrap(encoder: TextEncoder, model: torch.nn.Module, max_tokens: int, name: str | None = None) -> TextEncoder:
    """A :class:`TextEncoder` over ``model`` (tokenizer and pooling of ``encoder``).

    Texts are cut at ``max_tokens``, never beyond the encoder's own maximum.
    """
    from harness.encoders import TextEncoder

    preset = encoder.preset if name is None else dataclasses.replace(encoder.preset, name=name)
    return TextEncoder(preset, model, encoder.tokenizer, device=encoder.device,
                       max_length=min(max_tokens, encoder.max_length))


@dataclass(frozen=True)
class Unit:
    """One training question: its query text, candidate texts and their utilities."""

    query: str
    documents: tuple[str, ...]
    utilities: tuple[float, ...]


class RetrieverTrainer:
    """Scores candidates with the trainable encoder and takes optimizer steps on a loss."""

    def __init__(self, encoder: TextEncoder, settings: ROPGSettings, objective: str, seed: int = 0) -> None:
        settings.validate()
        retriever_name(objective)
        self.settings = settings
        self.objective = objective
        self.model = trainable_encoder(encoder)
        self.encoder = wrap(encoder, self.model, settings.max_tokens)
        self.model.train()  # dropout on, as the reference trains
        params = [p for p in self.model.parameters() if p.requires_grad]
        if settings.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=settings.lr)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.losses: list[float] = []

    def scores(self, units: Sequence[Unit]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scores, utilities, mask)``, each ``[B, C]`` (C = the most candidates in the batch)."""
        width = max(len(u.documents) for u in units)
        q = self.encoder.forward([u.query for u in units], normalize=False)
        docs = self.encoder.forward([d for u in units for d in u.documents], normalize=False)
        table = torch.zeros((len(units), width, docs.shape[-1]), dtype=docs.dtype, device=docs.device)
        mask = torch.zeros((len(units), width), dtype=torch.bool, device=docs.device)
        utilities = torch.zeros((len(units), width), dtype=torch.float32, device=docs.device)
        start = 0
        for i, u in enumerate(units):
            n = len(u.documents)
            table[i, :n] = docs[start : start + n]
            mask[i, :n] = True
            utilities[i, :n] = torch.tensor(u.utilities, dtype=torch.float32)
            start += n
        return torch.einsum("bd,bnd->bn", q, table), utilities, mask

    def loss(self, units: Sequence[Unit]) -> torch.Tensor:
        scores, utilities, mask = self.scores(units)
        if self.objective == "kd":
            return kd_loss(scores, utilities, mask, self.settings.temperature, self.settings.kd_loss)
        return rl_loss(scores, utilities, mask, sample_actions(scores, mask, self.generator))

    def step(self, micro_batches: Sequence[Sequence[Unit]]) -> float:
        """One optimizer step over ``micro_batches`` (gradient accumulation), clipped."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for units in micro_batches:
            loss = self.loss(units) / len(micro_batches)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip)
        self.optimizer.step()
        self.losses.append(total)
        return total

    def state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().contiguous() for name, p in self.model.named_parameters()}


# -- training from a run ---------------------------------------------------------------------
def train_digest(examples: Sequence[Example]) -> str:
    """What the train split is, for the cache key (ids, inputs, golds, profile item ids)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.input, e.output, [str(i.get("id")) for i in e.profile]]).encode())
    return h.hexdigest()[:16]


def query_text(encoder: TextEncoder, task: TaskSpec, text: str) -> str:
    return encoder.preset.query_instruction + task.query(text)


def build_units(ctx: RunContext, settings: ROPGSettings, train: Sequence[Example]
                ) -> tuple[list[Unit], FeedbackCost, int]:
    """The training questions with their candidates' LLM feedback (computed or reused).

    Returns the units, the feedback cost and how many train questions were considered.
    """
    rng = random.Random(ctx.seed)
    examples = [e for e in train if e.output is not None and len(e.profile) >= 2]  # one item: no choice
    if settings.max_train_examples is not None and len(examples) > settings.max_train_examples:
        examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), settings.max_train_examples))]
    if not examples:
        raise ValueError("ROPG needs train questions with a gold output and at least two profile items")
    task = ctx.task
    ranker = get_retriever(settings.candidate_ranker, RetrievalContext.of_run(ctx))
    hits = ranker.retrieve(task, [e.input for e in examples], [e.profile for e in examples], settings.candidates)
    candidates = [[h.index for h in found] for found in hits]
    utilities, cost = item_utilization(ctx, examples, candidates, scorer=settings.feedback_scorer,
                                       scoring=settings.feedback_scoring,
                                       max_input_tokens=settings.feedback_max_input_tokens)
    encoder = ctx.encoder()
    units = [Unit(query_text(encoder, task, e.input), tuple(task.corpus_text(e.profile[j]) for j in cand),
                  tuple(float(u) for u in util))
             for e, cand, util in zip(examples, candidates, utilities)]
    return units, cost, len(examples)


def train(ctx: RunContext, objective: str, settings: ROPGSettings, train_examples: Sequence[Example]
          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train one ROPG retriever; returns its weights and a summary (budget, cost, losses)."""
    units, cost, considered = build_units(ctx, settings, train_examples)
    torch.manual_seed(ctx.seed)
    trainer = RetrieverTrainer(ctx.encoder(), settings, objective, seed=ctx.seed)
    rng = random.Random(ctx.seed)
    order: list[int] = []
    start = time.perf_counter()
    bar = tqdm(total=settings.total_steps, desc=f"{ctx.task.name}/{retriever_name(objective)} fit", unit="step",
               disable=not ctx.progress)
    for _ in range(settings.total_steps):
        micro = []
        for _ in range(settings.accumulation_steps):
            if len(order) < settings.batch_size:  # a fresh shuffle per epoch, no partial batches
                order = list(range(len(units)))
                rng.shuffle(order)
            micro.append([units[i] for i in order[: settings.batch_size]])
            order = order[settings.batch_size :]
        loss = trainer.step(micro)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    summary = {
        "train_examples_used": considered,
        "optimizer_steps": len(trainer.losses),
        "budget_steps": settings.total_steps,
        "trained_to_budget": len(trainer.losses) == settings.total_steps,
        "questions_seen": min(considered, settings.total_steps * settings.batch_size * settings.accumulation_steps),
        "candidates_per_question": float(np.mean([len(u.documents) for u in units])),
        "train_seconds": time.perf_counter() - start,
        "final_loss": trainer.losses[-1] if trainer.losses else math.nan,
        "loss_curve": trainer.losses,
        **cost.as_dict(),
    }
    return trainer.state(), summary


# -- the cache of trained retrievers ----------------------------------------------------------
def cache_dir() -> Path:
    return cache_root() / "retrievers"


def entry_key(ctx: RunContext, objective: str, settings: ROPGSettings, digest: str) -> dict[str, Any]:
    return {"format": FORMAT, "retriever": retriever_name(objective), "task": ctx.task.name,
            "task_version": ctx.task.version, "llm": ctx.llm_name, "encoder": ctx.encoder_name, "seed": ctx.seed,
            "decoding": ctx.decoding, "num_beams": ctx.generation.num_beams, "max_new_tokens": ctx.max_new_tokens,
            "settings": dataclasses.asdict(settings), "train": digest}


@dataclass(frozen=True)
class TrainedEntry:
    """One trained retriever in the cache (or a run's artifacts): weights and metadata."""

    weights: Path
    meta: Mapping[str, Any]

    @property
    def key(self) -> Mapping[str, Any]:
        return self.meta["key"]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def settings(self) -> ROPGSettings:
        return ROPGSettings(**self.key["settings"])

    @property
    def summary(self) -> Mapping[str, Any]:
        return self.meta.get("summary", {})

    @classmethod
    def read(cls, weights: Path) -> TrainedEntry:
        meta_path = weights.with_name(META) if weights.name == WEIGHTS else weights.with_suffix(".json")
        if not weights.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no trained retriever at {weights} (with {meta_path.name})")
        return cls(weights, json.loads(meta_path.read_text()))


def entry_dir(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / key["retriever"] / key["task"] / digest


def publish(key: Mapping[str, Any], meta: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None,
            weights_file: Path | None = None) -> TrainedEntry:
    """Write an entry atomically (a whole folder renamed into place); first writer wins."""
    target = entry_dir(key)
    if not (target / WEIGHTS).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        if state is not None:
            save_file(dict(state), str(tmp / WEIGHTS), metadata={"format": "pt", "retriever": key["retriever"]})
        elif weights_file is not None:
            shutil.copyfile(weights_file, tmp / WEIGHTS)
        else:
            raise ValueError("publish needs the weights (state or weights_file)")
        (tmp / META).write_text(json.dumps({**meta, "key": dict(key)}, indent=2, sort_keys=True) + "\n")
        try:
            os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return TrainedEntry.read(target / WEIGHTS)


def ensure_trained(ctx: RunContext, objective: str, settings: ROPGSettings, train_examples: Sequence[Example]
                   ) -> tuple[TrainedEntry, bool]:
    """The cache entry for this run's ROPG retriever, training it when absent.

    Returns the entry and whether it was reused (trained earlier, by any method or run).
    """
    settings.validate()
    key = entry_key(ctx, objective, settings, train_digest(train_examples))
    existing = entry_dir(key) / WEIGHTS
    if existing.exists():
        return TrainedEntry.read(existing), True
    state, summary = train(ctx, objective, settings, train_examples)
    meta = {"profile": ctx.profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "summary": summary}
    return publish(key, meta, state=state), False


def find_entries(name: str, task: TaskSpec, encoder: str, seed: int, llm: str | None = None,
                 profile: str | None = None) -> list[TrainedEntry]:
    """Cached entries of retriever ``name`` usable for ``task`` with this encoder and seed."""
    folder = cache_dir() / name / task.name
    out = []
    for weights in sorted(folder.glob(f"*/{WEIGHTS}")):
        try:
            entry = TrainedEntry.read(weights)
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        key = entry.key
        if (key.get("task_version") != task.version or key.get("encoder") != encoder or key.get("seed") != seed
                or (llm is not None and key.get("llm") != llm)
                or (profile is not None and entry.meta.get("profile") != profile)):
            continue
        out.append(entry)
    return out


# -- the registered retrievers -----------------------------------------------------------------
class ROPGRetriever(Retriever):
    """A trained ROPG encoder: dot product of pooled query and item vectors.

    Options: ``weights`` (a path to pin), else the cache entry for the task being scored,
    this context's encoder and seed, and ``llm`` / ``profile`` (from the options, or from
    the context when it carries them) to choose between entries.
    """

    objective: ClassVar[str] = ""

    def __init__(self, context: RetrievalContext, weights: str | None = None, llm: str | None = None,
                 profile: str | None = None) -> None:
        super().__init__(context)
        self.weights = Path(weights) if weights else None
        self.llm = llm or getattr(context, "llm", None)
        self.profile = profile or getattr(context, "profile", None)
        self._encoders: dict[str, TextEncoder] = {}
        self._caches: dict[str, Any] = {}
        self._encoded = 0

    def entry(self, task: TaskSpec) -> TrainedEntry:
        """Which trained weights score ``task`` (see the class docstring)."""
        if self.weights is not None:
            return TrainedEntry.read(self.weights)
        found = find_entries(self.name, task, self.context.encoder, self.context.seed, self.llm, self.profile)
        if not found:
            raise FileNotFoundError(
                f"no trained {self.name} retriever for task {task.name} (v{task.version}), encoder "
                f"{self.context.encoder}, seed {self.context.seed}" + (f", llm {self.llm}" if self.llm else "")
                + f" under {cache_dir()}; train one first (bench run --method {self.name} --task {task.name})")
        if len(found) > 1:
            listing = "; ".join(f"{e.weights.parent.name}: llm={e.key['llm']} profile={e.meta.get('profile')} "
                                f"created={e.meta.get('created')}" for e in found)
            raise ValueError(f"{len(found)} trained {self.name} retrievers match task {task.name}: {listing}. "
                             f"Choose one with the retriever option llm=..., profile=... or weights=PATH")
        return found[0]

    def encoder(self, task: TaskSpec) -> TextEncoder:
        from harness.encoders import load_encoder

        if task.name not in self._encoders:
            entry = self.entry(task)
            base = load_encoder(self.context.encoder, device=self.context.device)
            model = trainable_encoder(base)
            state = load_file(str(entry.weights), device=str(self.context.device))
            missing, unexpected = model.load_state_dict(state, strict=False)
            trained = {n for n, _ in model.named_parameters()}
            if unexpected or set(missing) & trained:
                raise RuntimeError(f"{entry.weights} does not match encoder {self.context.encoder} "
                                   f"(missing {sorted(set(missing) & trained)[:3]}, unexpected {unexpected[:3]})")
            for p in model.parameters():
                p.requires_grad_(False)
            # A name unique to these weights keeps their vectors apart in the embedding cache.
            self._encoders[task.name] = wrap(base, model.eval(), entry.settings.max_tokens,
                                             name=f"{base.name}+{self.name}-{entry.digest}")
        return self._encoders[task.name]

    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        from harness.embedding_cache import shared_cache

        encoder = self.encoder(task)
        cache = shared_cache(encoder)
        queries = [query_text(encoder, task, text) for text in inputs]
        corpora = [[task.corpus_text(item) for item in profile] for profile in profiles]
        before = cache.encoded
        vectors = cache.embed(queries + [t for corpus in corpora for t in corpus]).astype(np.float64)
        self._encoded += cache.encoded - before
        out, start = [], len(queries)
        for q, corpus in zip(vectors[: len(queries)], corpora):
            out.append(vectors[start : start + len(corpus)] @ q)
            start += len(corpus)
        return out

    def stats(self) -> dict[str, float]:
        return {"texts_encoded": float(self._encoded)}


@RETRIEVERS.register("ropg-kd")
class ROPGKDRetriever(ROPGRetriever):
    """Contriever-style retriever distilled from the LLM's per-item feedback (ROPG-KD)."""

    name = "ropg-kd"
    objective = "kd"


@RETRIEVERS.register("ropg-rl")
class ROPGRLRetriever(ROPGRetriever):
    """Contriever-style retriever trained by REINFORCE on the LLM's per-item reward (ROPG-RL)."""

    name = "ropg-rl"
    objective = "rl"


def retriever_for(entry: TrainedEntry, context: RetrievalContext) -> ROPGRetriever:
    """The registered retriever class of ``entry``, pinned to its weights."""
    cls = ROPGKDRetriever if entry.key["retriever"] == "ropg-kd" else ROPGRLRetriever
    return cls(context, weights=str(entry.weights))
