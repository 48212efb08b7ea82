"""``adhoc``: the task input alone, no personalization (the paper's first column)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from harness.api import Example, Method


class AdHoc(Method):
    description = "The task input alone, no personalization."
    family: ClassVar[str] = "baseline"

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return self.ctx.generate([e.input for e in batch])
