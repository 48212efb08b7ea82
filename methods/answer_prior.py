"""Answers from a label prior, without the LLM: ``majority`` and ``user-majority``.

Two reference points for the closed-label tasks (LaMP-1/2/3, the real rating and tag
tasks) that tell what a trained method's score is made of:

* ``majority`` answers every question with the train split's most frequent gold label.
  A trained method that scores no better has learned the answer distribution (the
  "format"), not the task and not the user. On real Amazon ratings, where 73% of the dev
  reviews carry a 5, this is the bar every soft prompt has to clear.
* ``user-majority`` answers with the label the user gave most often in their own
  profile (the task's ``item_output_field``: a tag, a score), ties broken by the
  train split's frequency, and the train majority for a user with no labelled item. It
  is the simplest use of the history's labels, the signal synthetic LaMP-2 and LaMP-3
  plant, and the bar a personalization method has to clear to claim it reads the user.

Both need the task's closed label set; a generation task is refused when the method is
built. Neither calls the LLM, so a run costs seconds and records no prompt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from harness.api import Example, Method, RunContext, TaskSpec


def as_label(value: Any, labels: Sequence[str]) -> str | None:
    """``value`` as one of ``labels``, or None; ``4``, ``"4"`` and ``4.0`` are the label ``"4"``."""
    text = str(value).strip()
    if text in labels:
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    whole = str(int(number)) if number.is_integer() else None
    return whole if whole in labels else None


def ranked_labels(golds: Sequence[str], labels: Sequence[str]) -> list[str]:
    """``labels`` from most to least frequent in ``golds``; equal counts keep the task's order."""
    counts = Counter(golds)
    return sorted(labels, key=lambda label: (-counts[label], labels.index(label)))


def closed_labels(task: TaskSpec) -> tuple[str, ...]:
    if not task.labels:
        raise ValueError(f"majority answers come from a label prior and need a closed label set; task "
                         f"{task.name!r} ({task.kind}) has none")
    return task.labels


class Majority(Method):
    """The train split's most frequent gold label, for every question."""

    description = "The train split's most frequent label for every question (no LLM)."
    family: ClassVar[str] = "prior"
    uses_train: ClassVar[bool] = True
    version: ClassVar[int] = 1

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.labels = closed_labels(ctx.task)
        self.ranking: list[str] = list(self.labels)  # before fit: the task's order
        self.n_train = 0

    def fit(self, train: Sequence[Example]) -> None:
        golds = [label for e in train if (label := as_label(e.output, self.labels)) is not None]
        if not golds:
            raise ValueError(f"{self.ctx.task.name}: no train question has a gold among the task's labels")
        self.ranking = ranked_labels(golds, self.labels)
        self.n_train = len(golds)

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return [self.ranking[0]] * len(batch)

    def fit_summary(self) -> dict[str, Any]:
        return {"train_examples_used": self.n_train, "answer": self.ranking[0]}


class UserMajority(Majority):
    """The user's most frequent label in their profile, else the train majority."""

    description = "The label the user gave most often in their profile; the train majority without one (no LLM)."
    version: ClassVar[int] = 1

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        field = ctx.task.item_output_field
        if field is None:
            raise ValueError(f"user-majority reads the user's labels from the profile, and task "
                             f"{ctx.task.name!r} names no item_output_field")
        self.field = field

    def user_label(self, profile: Sequence[Mapping[str, Any]]) -> str | None:
        own = [label for item in profile if (label := as_label(item.get(self.field), self.labels)) is not None]
        return ranked_labels(own, self.ranking)[0] if own else None  # ties: the train split's order

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return [label if (label := self.user_label(e.profile)) is not None else self.ranking[0] for e in batch]
