"""``adhoc``: the task input alone, no personalization (the paper's first column)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from harness.api import Example, Method


@dataclass(frozen=True)
class AdHocParams:
    """LaMP's input budget (``--max_length 256`` in its evaluation scripts), as for RAG."""

    max_input_tokens: int = 256

    def __post_init__(self) -> None:
        if self.max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be >= 1, got {self.max_input_tokens}")


class AdHoc(Method):
    description = "The task input alone, no personalization."
    Params: ClassVar[type] = AdHocParams
    family: ClassVar[str] = "baseline"
    version: ClassVar[int] = 2  # v2: LaMP's 256-token input budget (was the run's 512)

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return self.ctx.generate([e.input for e in batch], max_input_tokens=self.params.max_input_tokens)
