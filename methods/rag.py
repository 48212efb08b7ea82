"""Retrieval-augmented baselines (LaMP's in-prompt augmentation): ``bm25``, ``recency``,
``contriever`` and ``random``.

Each method retrieves the ``k`` best items of the user's profile with a retriever from
:mod:`harness.retrieval` and renders them into the task's official prompt through the
shared retrieve-and-render path (:func:`harness.augment.augmented_prompts`), with the
backbone's tokenizer. The input budget is LaMP's: ``max_input_tokens=256``, the default
``--max_length`` of ``LaMP/evaluate_llm.py`` and ``LaMP/train_llm.py``, used both to
render the prompt and to cut the LLM's input (never above the run's own cap). ``k=1`` is
LaMP's default; ``k=0`` sends the bare input (the ``adhoc`` row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Example, Method, RunContext
from harness.augment import AugmentedPrompt, augmented_prompts, input_budget
from harness.retrieval import RetrievalContext, get_retriever

#: Params fields that belong to the method, not to its retriever.
METHOD_FIELDS = ("k", "max_input_tokens")


@dataclass(frozen=True)
class RAGParams:
    k: int = 1  # profile items in the prompt (LaMP's default --num_retrieved)
    max_input_tokens: int = 256  # LaMP's --max_length: prompt budget and LLM input cut-off


@dataclass(frozen=True)
class BM25Params(RAGParams):
    tokenizer: str = "whitespace"  # "whitespace" (official) or "words" (lower-cased \w+ tokens)


@dataclass(frozen=True)
class DenseParams(RAGParams):
    similarity: str = "dot"  # "dot" (official Contriever scoring) or "cosine"
    pooling: str = "encoder"  # the encoder's own pooling, or "mean" / "cls"


class RAG(Method):
    """Retrieve ``k`` profile items per input and prompt with LaMP's official template."""

    retriever_name: ClassVar[str]
    Params: ClassVar[type] = RAGParams
    family: ClassVar[str] = "retrieval"
    # 2: LaMP's 256-token budget (was the run's 512) for rendering and decoding alike,
    # through the shared augment path; item ids recorded per example.
    version: ClassVar[int] = 2
    # Nothing to reduce on a CPU: LaMP's budget is already small.
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {}, "small": {}}

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        if self.params.k < 0:
            raise ValueError(f"k must be >= 0, got {self.params.k}")
        if self.params.max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be >= 1, got {self.params.max_input_tokens}")
        options = {f.name: getattr(self.params, f.name) for f in dataclasses.fields(self.params)
                   if f.name not in METHOD_FIELDS}
        self.retriever = get_retriever(self.retriever_name, RetrievalContext.of_run(ctx), **options)

    @property
    def max_input_tokens(self) -> int:
        """The one budget: LaMP's 256 (``max_input_tokens``), capped by the run's."""
        return input_budget(self.ctx, self.params.max_input_tokens)

    def augmented(self, batch: Sequence[Example]) -> list[AugmentedPrompt]:
        """The official retrieval-augmented prompt of every example, with its item ids."""
        return augmented_prompts(self.ctx.task, self.retriever, batch, self.params.k, self.ctx.llm().tokenizer,
                                 self.max_input_tokens)

    def prompts(self, batch: Sequence[Example]) -> list[str]:
        return [p.text for p in self.augmented(batch)]

    def predict(self, batch: Sequence[Example]) -> list[str]:
        prompts = self.augmented(batch)
        self.ctx.record_retrieved([p.item_ids for p in prompts])
        return self.ctx.generate([p.text for p in prompts], max_input_tokens=self.max_input_tokens)

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
