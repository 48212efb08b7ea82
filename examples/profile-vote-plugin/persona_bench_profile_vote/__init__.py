"""``profile-vote``: a method that never calls the LLM.

For tasks with a label set it answers with the label the user gave most often in their
profile (ties go to the most recent); for generation tasks it answers with the output
field of the user's most recent profile item. It is a strong sanity baseline on LaMP:
if a personalized LLM does not beat "say what this user usually says", the LLM part is
not pulling its weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.api import Example, Method


@dataclass(frozen=True)
class Params:
    recent: int = 0  # vote over only the N most recent items (0: all of them)


class ProfileVote(Method):
    Params = Params
    description = "Example plugin: the user's most frequent profile label (no LLM)."
    family = "baseline"  # where the tables place it; declared, never guessed from the name
    version = 1  # bump when predictions would change: the version is part of the run hash

    def predict(self, batch: Sequence[Example]) -> list[str]:
        field = self.ctx.task.item_output_field
        if field is None:
            raise ValueError(f"profile-vote needs a task whose profile items carry outputs; {self.ctx.task.name} has none")
        return [self._vote(example, field) for example in batch]

    def _vote(self, example: Example, field: str) -> str:
        items = sorted(example.profile, key=lambda item: str(item.get("date", "")))
        if self.params.recent:
            items = items[-self.params.recent:]
        outputs = [str(item[field]) for item in items]
        if not outputs:
            return ""
        if not self.ctx.task.labels:
            return outputs[-1]
        counts = Counter(outputs)
        best = max(counts.values())
        return next(o for o in reversed(outputs) if counts[o] == best)
