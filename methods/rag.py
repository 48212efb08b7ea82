"""Retrieval-augmented baselines (LaMP's in-prompt augmentation): ``bm25``, ``recency``,
``contriever`` and ``random``.

Each method retrieves the ``k`` best items of the user's profile with a retriever from
:mod:`harness.retrieval` and renders them into the task's official prompt
(:func:`tasks.prompts.render_prompt`), with the backbone's tokenizer and the run's
``max_input_tokens`` as LaMP's ``max_length``. ``k=1`` is LaMP's default; ``k=0``
sends the bare input (the ``adhoc`` row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Example, Method, RunContext
from harness.retrieval import RetrievalContext, get_retriever
from tasks.prompts import render_prompt


@dataclass(frozen=True)
class RAGParams:
    k: int = 1  # profile items in the prompt (LaMP's default)


@dataclass(frozen=True)
class BM25Params(RAGParams):
    tokenizer: str = "whitespace"  # "whitespace" (official) or "words" (lower-cased \w+ tokens)


@dataclass(frozen=True)
class DenseParams(RAGParams):
    similarity: str = "dot"  # "dot" (official Contriever scoring) or "cosine"
    pooling: str = "encoder"  # the encoder preset's pooling, or "mean" / "cls"


class RAG(Method):
    """Retrieve ``k`` profile items per input and prompt with LaMP's official template."""

    retriever_name: ClassVar[str]
    Params: ClassVar[type] = RAGParams

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        if self.params.k < 0:
            raise ValueError(f"k must be >= 0, got {self.params.k}")
        options = {f.name: getattr(self.params, f.name) for f in dataclasses.fields(self.params) if f.name != "k"}
        self.retriever = get_retriever(self.retriever_name, RetrievalContext.of_run(ctx), **options)

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        """The official retrieval-augmented prompt of every example."""
        task = self.ctx.task
        hits = self.retriever.retrieve(task, [e.input for e in batch], [e.profile for e in batch],
                                            self.params.k)
        tokenizer = self.ctx.llm().tokenizer
        max_length = self.ctx.generation.max_input_tokens
        return [render_prompt(task, e.input, [h.item for h in found], tokenizer, max_length=max_length)
                for e, found in zip(batch, hits)]

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return self.ctx.generate(self.prompts(batch))

    def cost(self) -> dict[str, float]:
        return self.retriever.stats()


class BM25RAG(RAG):
    description = "BM25 over the user's profile; top-k items in LaMP's official prompt."
    retriever_name = "bm25"
    Params = BM25Params


class RecencyRAG(RAG):
    description = "The user's k most recent profile items in LaMP's official prompt."
    retriever_name = "recency"


class ContrieverRAG(RAG):
    description = "Dense retrieval (pooled sentence encoder, dot product; cached embeddings) in LaMP's prompt."
    retriever_name = "contriever"
    Params = DenseParams


class RandomRAG(RAG):
    description = "k random profile items (seeded) in LaMP's official prompt."
    retriever_name = "random"
