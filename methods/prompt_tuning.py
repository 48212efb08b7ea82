"""``prompt-tuning``: PPlug's control, a learned task prompt with no user history.

A trained method that beats the untrained baseline may only have learned the task's
answer format. This control learns exactly as many soft tokens as PPlug, through the
same machinery (:mod:`harness.soft_prompt`: the same MLPs, instruction token, scaling,
optimiser, schedule, budget and train data), but what enters the persona positions is a
learned task vector instead of the user's history: every user gets the same tokens.
PPlug minus this control is what personalization adds.

* ``I``: the instruction vector through its MLP, as in PPlug;
* the ``n_persona_tokens`` task tokens: ``Proj(v)`` for one learned vector ``v`` in encoder
  space (initialised on the unit sphere, like a normalised history embedding), with
  PPlug's ``Proj`` shape, so the heads have PPlug's parameter count.

Same budget: each train example is repeated as many times as PPlug adds history-dropout
copies of it (``history_dropout_copies`` when its profile holds more than 2 items), so
with the same parameters both take the same optimizer steps on the same questions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.api import Example, RunContext
from harness.soft_prompt import (
    SMALL_TRAINING,
    SoftPromptMethod,
    SoftPromptParams,
    SoftScale,
    SoftTokens,
    Unit,
    dropout_copy_count,
)


@dataclass(frozen=True)
class PromptTuningParams(SoftPromptParams):
    """PPlug's training fields with the same meaning, so one sweep gives both one budget.

    ``n_persona_tokens`` is the number of learned task tokens after the instruction token;
    ``history_dropout_copies`` repeats examples (nothing to thin: there is no history).
    """


class TaskPrompt(SoftTokens):
    """Learned task tokens: the instruction token and ``Proj(v)`` for a learned ``v``."""

    def __init__(self, d_enc: int, d_llm: int, scale: float, instruction: bool = True,
                 soft_scale: SoftScale = "reference", n_tokens: int = 1) -> None:
        super().__init__(d_enc, d_llm, scale=scale, soft_scale=soft_scale, instruction=instruction, n_slots=n_tokens)
        self.task_vector = nn.Parameter(nn.functional.normalize(torch.randn(d_enc), dim=0))

    def forward(self, batch_size: int) -> torch.Tensor:
        """The same ``[batch_size, n_tokens, d_llm]`` soft tokens for every example."""
        return self.assemble(self.proj(self.task_vector).expand(batch_size, -1))


class PromptTuning(SoftPromptMethod):
    """Learned task soft tokens with PPlug's machinery and budget, but no user history."""

    description = "Control: PPlug's soft tokens learned per task, without user history (same budget)."
    Params: ClassVar[type] = PromptTuningParams
    family = "control"
    version = 1
    # PPlug's small profile minus its history-only ``max_history``: one budget for both.
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {}, "small": SMALL_TRAINING}
    artifact = "prompt_tuning"

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        self._copies: list[int] = []

    def build(self) -> TaskPrompt:
        llm = self.ctx.llm()
        p: PromptTuningParams = self.params
        torch.manual_seed(self.ctx.seed)
        module = TaskPrompt(self.ctx.encoder().dim, llm.hidden_size, self.embedding_scale(),
                            soft_scale=p.soft_scale, n_tokens=p.n_persona_tokens)
        return module.to(self.ctx.device)

    def prepare(self, examples: Sequence[Example], n_train: int, rng: random.Random) -> None:
        copies = self.params.history_dropout_copies
        self._copies = [dropout_copy_count(len(e.profile), copies) if i < n_train else 0
                        for i, e in enumerate(examples)]

    def augment(self, index: int) -> list[Unit]:
        return [Unit(index) for _ in range(self._copies[index])]

    def unit_soft_tokens(self, units: Sequence[Unit]) -> torch.Tensor:
        assert self.module is not None
        return self.module(len(units))

    def soft_tokens(self, batch: Sequence[Example]) -> torch.Tensor:
        assert self.module is not None
        return self.module(len(batch))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "d_enc": self.ctx.encoder().dim, "history": "none"}
