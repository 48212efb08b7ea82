"""Constrained-answer mode: ``RunContext.generate`` picks the most likely label.

The choice must be the label with the highest summed log-likelihood under the method's own
prompt *and soft tokens* (checked against one full forward per label), batching must not
change it, and a task without a label set is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from harness.api import Example, Method, RunContext
from harness.backbones import GenerationSettings, load_llm
from harness.registries import TASKS

PROMPTS = [
    "Which tag fits this movie? A retired detective sets out to find a missing sister.",
    "Which tag fits this movie? Aliens make contact through a broken radio telescope. Hilarious mishaps.",
    "Which tag fits this movie? A tender love story blossoms against all odds.",
    "tag?",
    "Which tag fits this movie? Brutal, bloody fights leave few survivors in a grim future.",
    "Which tag fits this movie? It is based on real events that shocked the nation.",
]


def context(tmp_path: Path, llm: str, *, task: str = "lamp2", decoding: str = "constrained",
            batch_size: int = 16, max_input_tokens: int = 512) -> RunContext:
    return RunContext(task=TASKS.get(task), llm_name=llm, encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path, progress=False, decoding=decoding,
                      generation=GenerationSettings(num_beams=1, batch_size=batch_size,
                                                    max_input_tokens=max_input_tokens))


def soft_tokens(llm_name: str, seed: int) -> torch.Tensor:
    llm = load_llm(llm_name)
    noise = torch.randn(1, 2, llm.hidden_size, generator=torch.Generator().manual_seed(seed))
    return noise / noise.norm(dim=-1, keepdim=True) * llm.token_embedding_norm * 4


@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_choice_is_the_label_with_the_highest_full_forward_likelihood(tmp_path, llm):
    ctx = context(tmp_path, llm)
    labels = ctx.task.labels
    prefix = soft_tokens(llm, 0).expand(len(PROMPTS), -1, -1)
    with torch.no_grad():
        naive = torch.stack([ctx.llm().target_logprobs(PROMPTS, [label] * len(PROMPTS), prefix=prefix)
                             for label in labels], 1)
    chosen = ctx.generate(PROMPTS, prefix=prefix)
    assert chosen == [labels[i] for i in naive.argmax(1).tolist()]
    assert ctx.last_prompts == PROMPTS


SHORT_PROMPTS = ["tag?", "movie", "a film", "x", "rating", "the plot"]


def learned_soft_tokens(llm_name: str, prompts: list[str], label: str, steps: int = 30) -> torch.Tensor:
    """Per-prompt soft tokens trained (through ``target_logprobs``) to make each prompt answer ``label``."""
    llm = load_llm(llm_name)
    start = torch.randn(len(prompts), 8, llm.hidden_size, generator=torch.Generator().manual_seed(0))
    prefix = (start * llm.token_embedding_norm / 8).requires_grad_(True)
    optimizer = torch.optim.Adam([prefix], lr=0.3)
    for _ in range(steps):
        optimizer.zero_grad()
        (-llm.target_logprobs(prompts, [label] * len(prompts), prefix=prefix).sum()).backward()
        optimizer.step()
    return prefix.detach()


class LearnedSoftTokens(Method):
    """A method whose whole personalization is soft tokens before the prompt (as PPlug's)."""

    def __init__(self, ctx: RunContext, prefix: torch.Tensor | None) -> None:
        super().__init__(ctx)
        self.prefix = prefix

    def predict(self, batch: Sequence[Example]) -> list[str]:
        return self.ctx.generate([e.input for e in batch], prefix=self.prefix)


@pytest.mark.parametrize("llm", ["tiny-causal", "tiny-t5"])
def test_a_methods_soft_tokens_change_the_choice(tmp_path, llm):
    """Constrained mode scores under the method's soft tokens, not the bare prompt.

    lamp3's labels are one token each, so the label's length cannot decide. The random
    tiny T5 follows trained soft tokens completely; the random tiny Llama (near-uniform
    attention, tiny value weights) only moves label scores by hundredths of a nat, so for
    it the test asks that the choice moves towards the trained label on some prompts.
    """
    ctx = context(tmp_path, llm, task="lamp3")
    batch = [Example(id=str(i), input=p, profile=()) for i, p in enumerate(SHORT_PROMPTS)]
    plain = LearnedSoftTokens(ctx, None).predict(batch)
    assert set(plain) <= set(ctx.task.labels)
    wanted = next(label for label in ctx.task.labels if label not in plain)
    steered = LearnedSoftTokens(ctx, learned_soft_tokens(llm, SHORT_PROMPTS, wanted)).predict(batch)
    if llm == "tiny-t5":
        assert steered == [wanted] * len(SHORT_PROMPTS)
    else:
        assert steered != plain and wanted in steered, (plain, steered)


def test_batch_size_does_not_change_the_choice(tmp_path):
    prefix = soft_tokens("tiny-causal", 1).expand(len(PROMPTS), -1, -1)
    one = context(tmp_path, "tiny-causal", batch_size=1).generate(PROMPTS, prefix=prefix)
    many = context(tmp_path, "tiny-causal", batch_size=16).generate(PROMPTS, prefix=prefix)
    assert one == many


def test_input_budget_applies_in_constrained_mode(tmp_path):
    ctx = context(tmp_path, "tiny-causal", max_input_tokens=6)
    scores = ctx.llm().score_options(PROMPTS, ctx.task.labels, max_input_tokens=6)
    assert ctx.generate(PROMPTS) == [ctx.task.labels[i] for i in scores.argmax(1).tolist()]
    # A method's own lower budget wins over the run's; a higher one cannot raise it.
    assert ctx.generate(PROMPTS, max_input_tokens=100) == ctx.generate(PROMPTS)
    short = ctx.llm().score_options(PROMPTS, ctx.task.labels, max_input_tokens=3)
    assert ctx.generate(PROMPTS, max_input_tokens=3) == [ctx.task.labels[i] for i in short.argmax(1).tolist()]


def test_free_mode_still_generates_and_records_prompts(tmp_path):
    ctx = context(tmp_path, "tiny-causal", decoding="free")
    out = ctx.generate(PROMPTS[:2])
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert ctx.last_prompts == PROMPTS[:2]


def test_task_without_labels_is_refused(tmp_path):
    ctx = context(tmp_path, "tiny-causal", task="lamp7")
    with pytest.raises(ValueError, match="lamp7.*no labels"):
        ctx.generate(["Paraphrase: I keep thinking about pizza."])


def test_unknown_decoding_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown decoding 'sampled'"):
        context(tmp_path, "tiny-causal", decoding="sampled").generate(PROMPTS[:1])
