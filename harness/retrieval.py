"""Profile retrievers: rank a user's profile items for an input, keep the top k.

One interface (:class:`Retriever`) behind one registry (:data:`RETRIEVERS`, plugin group
``persona_bench.retrievers``), so the RAG baselines, PPlug+RAG and OPPU all say
``get_retriever("bm25")`` and a trained retriever is just another entry:

* a retriever implements ``score(task, inputs, profiles)``: one float per profile item,
  higher is better, for a whole batch of inputs at once (a dense or trained retriever
  encodes the batch in one pass);
* ``retrieve(..., k)`` turns scores into :class:`Hit` s, best first. ``order`` decides
  ties; the built-ins reproduce the official LaMP code's tie order;
* a per-input retriever *selector* (RSPG) is a retriever that holds several others and
  routes each input to the one it picks — it needs nothing beyond this interface.

Queries and corpus texts come from the task (``TaskSpec.query`` / ``corpus_text``, the
official per-task rules), so no retriever knows about particular tasks.

Built-ins, as in LaMP's ``prompts/prompts.py``:

* ``bm25``: rank-bm25's ``BM25Okapi`` over the user's profile, whitespace tokens
  (``tokenizer="whitespace"``, the official choice) or lower-cased word tokens
  (``tokenizer="words"``, which stops "Movie," and "movie" from being different terms);
* ``recency``: latest ``date`` first, robust to LaMP's date formats; undated or
  unreadable dates rank last;
* ``contriever`` (alias ``dense``): a sentence encoder's pooled vectors scored by dot
  product (the official Contriever recipe) or cosine; every text goes through the
  persistent :mod:`harness.embedding_cache`, so each distinct profile item is encoded
  once per encoder, whatever the number of queries, methods or runs;
* ``random``: a seeded uniform choice of k distinct items. The official code draws
  with replacement from the global RNG; we draw without replacement (a ranking cannot
  repeat an item) from a generator seeded by the run seed and the input, so the choice
  does not depend on batch order or sharding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.api import TaskSpec
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.api import RunContext
    from harness.embedding_cache import EmbeddingCache

Profile = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Hit:
    """One retrieved item: its position in the profile, its score and the item itself."""

    index: int
    score: float
    item: Mapping[str, Any]


@dataclass(frozen=True)
class RetrievalContext:
    """What a retriever may take from the run: which encoder, where, which seed."""

    encoder: str = "minilm-l6"
    device: str = "cpu"
    seed: int = 0
    llm: str | None = None  # trained retrievers (ROPG) pick the weights trained on this LLM's feedback
    profile: str | None = None  # ... and under this settings profile

    @classmethod
    def of_run(cls, ctx: RunContext) -> RetrievalContext:
        return cls(encoder=ctx.encoder_name, device=ctx.device, seed=ctx.seed, llm=ctx.llm_name, profile=ctx.profile)


class Retriever(ABC):
    """Scores profile items for inputs; subclasses implement :meth:`score`.

    Constructors take the :class:`RetrievalContext` plus their own keyword options, so
    ``get_retriever(name, context, **options)`` builds any of them.
    """

    name: ClassVar[str] = ""

    def __init__(self, context: RetrievalContext) -> None:
        self.context = context

    @abstractmethod
    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        """For each input, one score per item of its profile (higher is better)."""

    def order(self, scores: np.ndarray) -> np.ndarray:
        """Item indices best first; ties keep profile order (earlier item first)."""
        return np.lexsort((np.arange(len(scores)), -scores))

    def retrieve(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile], k: int) -> list[list[Hit]]:
        """The top ``k`` items of each input's profile, best first (fewer if it is short)."""
        if len(inputs) != len(profiles):
            raise ValueError(f"{len(inputs)} inputs but {len(profiles)} profiles")
        if k <= 0:
            return [[] for _ in inputs]
        out = []
        for profile, scores in zip(profiles, self.score(task, inputs, profiles)):
            top = self.order(np.asarray(scores, dtype=np.float64))[:k]
            out.append([Hit(int(i), float(scores[i]), profile[i]) for i in top])
        return out

    def stats(self) -> dict[str, float]:
        """Cost figures worth reporting with a run (e.g. encoder calls)."""
        return {}


RETRIEVERS: Registry[type[Retriever]] = Registry("retriever", "persona_bench.retrievers", base=Retriever,
                                                 builtin_modules=("harness.trained_retriever",))


def get_retriever(name: str, context: RetrievalContext | None = None, **options: Any) -> Retriever:
    """Build the retriever registered as ``name`` with its own ``options``."""
    cls = RETRIEVERS.get(name)
    try:
        return cls(context or RetrievalContext(), **options)
    except TypeError as exc:
        raise ValueError(f"retriever {name!r}: {exc}") from exc


# -- BM25 ------------------------------------------------------------------------------------
TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "whitespace": str.split,  # the official LaMP tokenisation
    "words": lambda text: re.findall(r"\w+", text.lower()),
}


@RETRIEVERS.register("bm25")
class BM25Retriever(Retriever):
    """BM25Okapi over one user's profile at a time (IDF is per profile, as in LaMP)."""

    name = "bm25"

    def __init__(self, context: RetrievalContext, tokenizer: str = "whitespace") -> None:
        super().__init__(context)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown bm25 tokenizer {tokenizer!r} (known: {', '.join(TOKENIZERS)})")
        self.tokenize = TOKENIZERS[tokenizer]

    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        from rank_bm25 import BM25Okapi

        out = []
        for text, profile in zip(inputs, profiles):
            corpus = [self.tokenize(task.corpus_text(item)) for item in profile]
            if not any(corpus):  # BM25Okapi divides by the mean document length
                out.append(np.zeros(len(corpus)))
                continue
            out.append(np.asarray(BM25Okapi(corpus).get_scores(self.tokenize(task.query(text))), dtype=np.float64))
        return out

    def order(self, scores: np.ndarray) -> np.ndarray:
        # rank_bm25's get_top_n, which LaMP calls: equal scores come out in this order.
        return np.argsort(scores)[::-1]


# -- recency ---------------------------------------------------------------------------------
_PARTIAL_ISO = re.compile(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def date_key(value: Any) -> tuple[int, ...] | None:
    """A sortable tuple for a profile item's ``date``; ``None`` when absent or unreadable.

    ``2010``, ``"2010-04"`` and ``"2010-04-20"`` become ``(2010,)``, ``(2010, 4)`` and
    ``(2010, 4, 20)`` — exactly the tuples the official ``split("-")`` produces, so a
    bare year sorts before any day of that year, as in LaMP. Other spellings ("Mon May
    11 03:17:40 UTC 2009", "2009/06/03", unix seconds) are parsed into
    ``(year, month, day, hour, minute, second)``.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    m = _PARTIAL_ISO.fullmatch(text)
    if m:
        return tuple(int(g) for g in m.groups() if g is not None)
    try:
        if re.fullmatch(r"\d{9,}(\.\d+)?", text):  # unix seconds
            moment = datetime.fromtimestamp(float(text), tz=timezone.utc)
        else:
            from dateutil import parser  # a pandas dependency

            moment = parser.parse(text)
    except (ValueError, OverflowError, OSError):
        return None
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def chronological(profile: Profile) -> list[int]:
    """Profile indices oldest first: undated items first, equal dates in profile order.

    Shared by the recency retriever and PPlug (which keeps a user's most recent items),
    so "most recent" means the same thing everywhere.
    """
    keys = [date_key(item.get("date")) for item in profile]
    return sorted(range(len(profile)), key=lambda i: (keys[i] is not None, keys[i] or (), i))


@RETRIEVERS.register("recency")
class RecencyRetriever(Retriever):
    """The most recent items first; scores are ranks (0 = oldest, ``n-1`` = newest).

    Ranks rather than timestamps because LaMP dates are partial (a bare year) and mixed
    in format; undated items come before every dated one, so they are picked last.
    Among equal dates the later profile item wins, as with the official stable sort
    followed by ``[-k:][::-1]``.
    """

    name = "recency"

    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        out = []
        for profile in profiles:
            ascending = chronological(profile)
            ranks = np.empty(len(profile))
            ranks[ascending] = np.arange(len(profile))
            out.append(ranks)
        return out


# -- dense -----------------------------------------------------------------------------------
@RETRIEVERS.register("contriever", aliases=("dense",))
class DenseRetriever(Retriever):
    """Pooled sentence vectors, dot product (official) or cosine; exact search in numpy.

    A user's profile is at most a few hundred items, so exact scoring is one
    ``[n, d] @ [d]`` product per query — microseconds — and any index (faiss) would cost
    more to build than it saves. The expensive part is encoding, which the shared
    embedding cache does once per distinct text.

    ``pooling="encoder"`` keeps the encoder's own pooling (mean for Contriever and
    MiniLM, CLS for bge; a sentence-transformers folder's declared one); ``"mean"`` or
    ``"cls"`` override it. Queries, never profile items, get the encoder's query
    instruction (bge's, wherever the model was loaded from), as the encoder was trained
    with it. Texts are cut at the encoder's own maximum (512 for Contriever and bge, as
    LaMP's ``tokenizer(..., truncation=True)``; see :mod:`harness.encoders`).
    """

    name = "contriever"

    def __init__(self, context: RetrievalContext, similarity: str = "dot", pooling: str = "encoder",
                 cache: EmbeddingCache | None = None) -> None:
        super().__init__(context)
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', not {similarity!r}")
        if pooling not in ("encoder", "mean", "cls"):
            raise ValueError(f"pooling must be 'encoder', 'mean' or 'cls', not {pooling!r}")
        self.similarity = similarity
        self.pooling = pooling
        self._cache = cache
        self._calls = 0
        self._encoded = 0

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache (the process-wide one for the encoder unless given)."""
        if self._cache is None:
            from harness.embedding_cache import shared_cache
            from harness.encoders import TextEncoder, load_encoder

            encoder = load_encoder(self.context.encoder, device=self.context.device)
            if self.pooling not in ("encoder", encoder.pooling):
                encoder = TextEncoder(dataclasses.replace(encoder.preset, pooling=self.pooling), encoder.model,
                                      encoder.tokenizer, device=encoder.device, max_length=encoder.max_length)
            self._cache = shared_cache(encoder)
        return self._cache

    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        cache = self.cache
        instruction = cache.encoder.preset.query_instruction
        queries = [instruction + task.query(text) for text in inputs]
        corpora = [[task.corpus_text(item) for item in profile] for profile in profiles]
        calls, encoded = cache.calls, cache.encoded
        vectors = cache.embed(queries + [t for corpus in corpora for t in corpus],
                              normalize=self.similarity == "cosine")
        self._calls += cache.calls - calls
        self._encoded += cache.encoded - encoded
        out, start = [], len(queries)
        for q, corpus in zip(vectors[: len(queries)], corpora):
            out.append(vectors[start : start + len(corpus)].astype(np.float64) @ q.astype(np.float64))
            start += len(corpus)
        return out

    def stats(self) -> dict[str, float]:
        return {"encoder_calls": float(self._calls), "texts_encoded": float(self._encoded)}


# -- random ----------------------------------------------------------------------------------
@RETRIEVERS.register("random")
class RandomRetriever(Retriever):
    """k distinct items uniformly at random, reproducible from (seed, input)."""

    name = "random"

    def score(self, task: TaskSpec, inputs: Sequence[str], profiles: Sequence[Profile]) -> list[np.ndarray]:
        out = []
        for text, profile in zip(inputs, profiles):
            digest = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
            out.append(np.random.default_rng([self.context.seed, digest]).random(len(profile)))
        return out
