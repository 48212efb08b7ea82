"""Backbone.loss against the model's own (full-logits) loss on tiny random models."""

from __future__ import annotations

import pytest
import torch

from harness.backbones import load_llm

PROMPTS = ["a short prompt", "a much longer prompt with quite a few more words in it", "x"]
TARGETS = ["yes", "a longer target sentence here", "two words"]


def reference_loss(llm, prompts, targets, prefix=None):
    """HF's own loss over full logits: labels -100 outside the targets."""
    rows = [llm.prompt_ids(p, 512) for p in prompts]
    tgts = [llm.target_ids(t, 64) for t in targets]
    embeds, mask = llm._assemble([r + t for r, t in zip(rows, tgts)], prefix, left_pad=False)
    n_prefix = 0 if prefix is None else prefix.shape[1]
    labels = torch.full(mask.shape, -100, dtype=torch.long)
    for i, (r, t) in enumerate(zip(rows, tgts)):
        labels[i, n_prefix + len(r): n_prefix + len(r) + len(t)] = torch.tensor(t)
    logits = llm.model(inputs_embeds=embeds, attention_mask=mask).logits.float()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")
    return ce.sum(1), (labels[:, 1:] != -100).sum()


@pytest.mark.parametrize("with_prefix", [False, True])
def test_causal_loss_scores_only_targets_and_matches_full_logits(with_prefix):
    llm = load_llm("tiny-causal")
    prefix = torch.randn(len(PROMPTS), 2, llm.hidden_size, generator=torch.Generator().manual_seed(0)) if with_prefix else None
    per_row, n_tokens = reference_loss(llm, PROMPTS, TARGETS, prefix)
    ours = llm.loss(PROMPTS, TARGETS, prefix=prefix, per_example=True)
    torch.testing.assert_close(ours, per_row, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(llm.loss(PROMPTS, TARGETS, prefix=prefix), per_row.sum() / n_tokens, rtol=1e-5, atol=1e-5)


def test_causal_loss_gradient_matches_full_logits():
    llm = load_llm("tiny-causal")
    prefix = torch.randn(len(PROMPTS), 2, llm.hidden_size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    per_row, n_tokens = reference_loss(llm, PROMPTS, TARGETS, prefix)
    (expected,) = torch.autograd.grad(per_row.sum() / n_tokens, prefix)
    (got,) = torch.autograd.grad(llm.loss(PROMPTS, TARGETS, prefix=prefix), prefix)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_seq2seq_per_example_loss_sums_to_the_batch_mean():
    llm = load_llm("tiny-t5")
    per_row = llm.loss(PROMPTS, TARGETS, per_example=True)
    n_tokens = sum(len(llm.target_ids(t, 64)) for t in TARGETS)
    torch.testing.assert_close(per_row.sum() / n_tokens, llm.loss(PROMPTS, TARGETS), rtol=1e-5, atol=1e-6)
