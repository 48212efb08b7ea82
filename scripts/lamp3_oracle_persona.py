"""Can a soft prompt move the frozen LLM's LaMP-3 rating by the rater's bias at all? (synthetic only)

PPlug's persona token carries the synthetic rater's bias (results/convergence, section 3)
but the frozen LLM's rating does not follow it. This diagnostic separates "the backbone
cannot be steered that way" from "PPlug's training does not find the way": it trains the
prompt-tuning control with one learned task vector per *true* bias group (-1 harsh,
0 neutral, +1 generous, read from the user's history as ``scripts/lamp3_bias_probe.py``
does), i.e. an oracle persona with PPlug's soft-token machinery, budget and data. If this
oracle cannot shift the rating by the bias either, the backbone is the limit; if it can,
the limit is PPlug's training signal.

A second channel, ``--channel lora-text``, gives the bias as plain text at the head of
the prompt ("A generous rater: ...") and trains OPPU's task LoRA (``task-lora``, far more
capacity than one soft token) on it. If the rating does not follow the bias even then,
the frozen backbone with this budget is the limit; compare it with ``task-lora`` itself.

The oracles are registered in-process only (they read a synthetic generator's hidden
variable, so they are no method a user could run) and trained through the ordinary
runner, so each cell has a config, hash, metrics and predictions like any other:

    python scripts/lamp3_oracle_persona.py --out results/convergence/runs
    python scripts/lamp3_oracle_persona.py --channel lora-text --out results/convergence/runs -p task_lr=1e-3
    python scripts/lamp3_bias_probe.py results/convergence/runs/lamp3/oracle-*/*
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import methods  # noqa: F401 - registers the built-ins
from harness.api import Example
from harness.augment import AugmentedPrompt
from harness.registries import METHODS
from harness.runner import RunRequest, run
from harness.soft_prompt import SoftScale, Unit
from methods.oppu import TaskLoRA
from methods.prompt_tuning import PromptTuning, TaskPrompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lamp3_bias_probe import user_bias  # the probe's own reading of the bias

GROUPS = (-1, 0, 1)


class GroupPrompt(TaskPrompt):
    """``Proj(v_g)`` for the example's bias group ``g``: one learned task vector per group."""

    def __init__(self, d_enc: int, d_llm: int, scale: float, soft_scale: SoftScale = "reference",
                 n_tokens: int = 1) -> None:
        super().__init__(d_enc, d_llm, scale, soft_scale=soft_scale, n_tokens=n_tokens)
        start = self.task_vector.detach()
        del self.task_vector  # replaced by the group vectors: no untrained parameter is left
        self.group_vectors = nn.Parameter(start.repeat(len(GROUPS), 1))  # every group starts as the control

    def forward(self, groups: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.assemble(self.proj(self.group_vectors[groups]))


class OracleBiasPrompt(PromptTuning):
    """The prompt-tuning control given the rater's true bias group (diagnostic only)."""

    description = "Diagnostic: the control's soft tokens, one task vector per true LaMP-3 bias group."
    family = "control"
    version = 1
    artifact = "oracle_bias_prompt"

    def build(self) -> GroupPrompt:
        torch.manual_seed(self.ctx.seed)
        module = GroupPrompt(self.ctx.encoder().dim, self.ctx.llm().hidden_size, self.embedding_scale(),
                             soft_scale=self.params.soft_scale, n_tokens=self.params.n_persona_tokens)
        return module.to(self.ctx.device)

    def prepare(self, examples: Sequence[Example], n_train: int, rng: Any) -> None:
        super().prepare(examples, n_train, rng)
        self._groups = [GROUPS.index(user_bias(e.profile)) for e in examples]

    def _tokens(self, groups: Sequence[int]) -> torch.Tensor:
        assert self.module is not None
        return self.module(torch.as_tensor(list(groups), device=self.ctx.device))

    def unit_soft_tokens(self, units: Sequence[Unit]) -> torch.Tensor:
        return self._tokens([self._groups[u.index] for u in units])

    def soft_tokens(self, batch: Sequence[Example]) -> torch.Tensor:
        return self._tokens([GROUPS.index(user_bias(e.profile)) for e in batch])


#: The rater's true bias group in words, put ahead of LaMP-3's prompt by the text oracle.
BIAS_TAGS = {-1: "A harsh rater: this user scores one point below what the review's tone suggests.",
             0: "A neutral rater: this user scores what the review's tone suggests.",
             1: "A generous rater: this user scores one point above what the review's tone suggests."}


class OracleBiasLoRA(TaskLoRA):
    """OPPU's task LoRA trained and asked with the rater's true bias group in the prompt (diagnostic only)."""

    description = "Diagnostic: the task LoRA with the true LaMP-3 bias group written ahead of the prompt."
    family = "control"
    version = 1

    def augmented(self, examples: Sequence[Example]) -> list[AugmentedPrompt]:
        prompts = super().augmented(examples)
        return [dataclasses.replace(p, text=f"{BIAS_TAGS[user_bias(e.profile)]}\n{p.text}")
                for p, e in zip(prompts, examples)]


CHANNELS = {"soft-prompt": ("oracle-bias-prompt", OracleBiasPrompt), "lora-text": ("oracle-bias-lora", OracleBiasLoRA)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/convergence/runs"))
    parser.add_argument("--channel", choices=sorted(CHANNELS), default="soft-prompt",
                        help="how the oracle gets the bias: one task vector per group, or text + task LoRA")
    parser.add_argument("--limit", type=int, default=None, help="first N dev questions (default: all)")
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("-p", "--param", action="append", default=[], help="KEY=VALUE, as bench run -p")
    args = parser.parse_args()
    name, cls = CHANNELS[args.channel]
    METHODS.register(name, cls)
    params = dict(kv.split("=", 1) for kv in args.param)
    result = run(RunRequest(task="lamp3", method=name, params=params, llm=args.llm, encoder=args.encoder,
                            data="synthetic", split="dev", out=args.out, limit=args.limit, profile="small",
                            decoding="constrained"))
    print(result)


if __name__ == "__main__":
    main()
