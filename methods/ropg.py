"""ROPG-KD and ROPG-RL (Salemi et al., SIGIR 2024): RAG with a retriever trained on LLM feedback.

``fit`` gets (or trains, see :mod:`harness.trained_retriever`) a dense retriever whose
ranking follows the frozen LLM's per-item feedback on the train split; ``predict``
retrieves ``k`` items with it into LaMP's official prompt through the one
retrieve-and-render path (:func:`harness.augment.augmented_prompts`) that every RAG method
uses. The trained weights live in the shared cache, where the ``ropg-kd`` / ``ropg-rl``
retrievers (PPlug+RAG, RSPG) find them; the run's artifacts get a hard link (or copy) and
its metadata, so a run folder is self-contained and a fresh cache is refilled from it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.api import Example, Method, RunContext
from harness.augment import augmented_prompts, input_budget
from harness.retrieval import RetrievalContext
from harness.store import atomic_write_json
from harness.trained_retriever import (
    SMALL,
    ROPGRetriever,
    ROPGSettings,
    TrainedEntry,
    ensure_trained,
    publish,
    retriever_for,
    retriever_name,
)


@dataclass(frozen=True)
class ROPGParams(ROPGSettings):
    """The reference's settings (see :class:`ROPGSettings`) plus how the trained retriever is used.

    ``k=4`` and a 256-token input are ``LaMP/retriever_utilization_scorer.py``'s defaults,
    with which the paper's pool of retrievers is compared.
    """

    k: int = 4
    max_input_tokens: int = 256

    def settings(self) -> ROPGSettings:
        names = {f.name for f in dataclasses.fields(ROPGSettings)}
        return ROPGSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


class ROPG(Method):
    """RAG whose retriever was trained on the LLM's feedback (objective set by subclasses)."""

    objective: ClassVar[str] = ""
    Params: ClassVar[type] = ROPGParams
    uses_train = True
    family = "optimized-retrieval"
    profiles = {"small": dict(SMALL), "paper": {}}

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        if self.params.k < 0:
            raise ValueError(f"k must be >= 0, got {self.params.k}")
        self.params.settings().validate()
        self.retriever: ROPGRetriever | None = None
        self.entry: TrainedEntry | None = None
        self.reused = False

    @property
    def name(self) -> str:
        return retriever_name(self.objective)

    @property
    def weights_path(self) -> Path:
        return self.ctx.artifacts_dir / f"{self.name}.safetensors"

    @property
    def max_input_tokens(self) -> int:
        return input_budget(self.ctx, self.params.max_input_tokens)

    def fit(self, train: Sequence[Example]) -> None:
        """Use this run's retriever, else the cache's, else train one (and publish it)."""
        if self.weights_path.exists():
            local = TrainedEntry.read(self.weights_path)
            self.entry = publish(local.key, {k: v for k, v in local.meta.items() if k != "key"},
                                 weights_file=self.weights_path)
            self.reused = True
        else:
            self.entry, self.reused = ensure_trained(self.ctx, self.objective, self.params.settings(), train)
            self._link_into_artifacts(self.entry)
        self.retriever = retriever_for(self.entry, RetrievalContext.of_run(self.ctx))

    def _link_into_artifacts(self, entry: TrainedEntry) -> None:
        art = self.ctx.artifacts_dir
        art.mkdir(parents=True, exist_ok=True)
        tmp = art / f".{self.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(entry.weights, tmp)  # one copy on disk where the filesystem allows
        except OSError:
            shutil.copyfile(entry.weights, tmp)
        atomic_write_json(self.weights_path.with_suffix(".json"), dict(entry.meta))
        os.replace(tmp, self.weights_path)  # last: the weights file marks a finished fit

    def predict(self, batch: Sequence[Example]) -> list[str]:
        if self.retriever is None:
            raise RuntimeError(f"{self.name}: fit() first (no trained retriever)")
        prompts = augmented_prompts(self.ctx.task, self.retriever, batch, self.params.k, self.ctx.llm().tokenizer,
                                    self.max_input_tokens)
        self.ctx.record_retrieved([p.item_ids for p in prompts])
        return self.ctx.generate([p.text for p in prompts], max_input_tokens=self.max_input_tokens)

    def fit_summary(self) -> dict[str, Any]:
        if self.entry is None:
            return {}
        summary = {k: v for k, v in self.entry.summary.items() if k != "loss_curve"}
        return {**summary, "retriever_reused": self.reused, "retriever_weights": self.entry.digest}

    def cost(self) -> dict[str, float]:
        """The feedback step's cost (records, seconds, records/s) and retrieval counters."""
        out = {k: float(v) for k, v in self.entry.summary.items()
               if k.startswith("feedback_") and isinstance(v, (int, float))} if self.entry else {}
        return {**out, **(self.retriever.stats() if self.retriever else {})}


class ROPGKD(ROPG):
    description = "ROPG-KD: retriever distilled from the LLM's per-item feedback (KL), top-k in LaMP's prompt."
    objective = "kd"


class ROPGRL(ROPG):
    description = "ROPG-RL: retriever trained by REINFORCE on the LLM's per-item reward, top-k in LaMP's prompt."
    objective = "rl"
