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


# -- scoring fixed answers ------------------------------------------------------------------
OPTIONS = ["yes", "no", "a much longer option", "[1]"]


def soft_prefix(llm, n_rows: int, seed: int) -> torch.Tensor:
    return torch.randn(n_rows, 3, llm.hidden_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("with_prefix", [False, True])
def test_causal_target_logprobs_match_full_logits_and_loss(with_prefix):
    llm = load_llm("tiny-causal")
    prefix = soft_prefix(llm, len(PROMPTS), 2) if with_prefix else None
    per_row, _ = reference_loss(llm, PROMPTS, TARGETS, prefix)
    with torch.no_grad():
        ours = llm.target_logprobs(PROMPTS, TARGETS, prefix=prefix, max_target_tokens=64)
    torch.testing.assert_close(ours, -per_row, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-t5"])
def test_target_logprobs_is_minus_mean_loss_times_target_length(name):
    llm = load_llm(name)
    with torch.no_grad():
        for prompt, target in zip(PROMPTS, TARGETS):
            n_tokens = len(llm.target_ids(target, 128))  # the target's tokens and EOS
            mean_loss = llm.loss([prompt], [target], max_target_tokens=128)
            torch.testing.assert_close(llm.target_logprobs([prompt], [target]), -mean_loss.reshape(1) * n_tokens,
                                       rtol=1e-5, atol=1e-5)


def test_target_logprobs_counts_eos():
    """The answer is scored as "this text, then stop": EOS is one of the scored tokens."""
    llm = load_llm("tiny-causal")
    with torch.no_grad():
        full = llm.target_logprobs(PROMPTS[:1], ["yes"])
        capped = llm.target_logprobs(PROMPTS[:1], ["yes"], max_target_tokens=1)  # EOS alone
    assert llm.target_ids("yes", 1) == [llm.eos_id]
    assert full < capped < 0


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-t5"])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_score_options_equals_one_full_forward_per_option(name, with_prefix):
    llm = load_llm(name)
    prefix = soft_prefix(llm, len(PROMPTS), 3) if with_prefix else None
    with torch.no_grad():
        naive = torch.stack([llm.target_logprobs(PROMPTS, [o] * len(PROMPTS), prefix=prefix) for o in OPTIONS], 1)
    shared = llm.score_options(PROMPTS, OPTIONS, prefix=prefix)
    assert shared.shape == (len(PROMPTS), len(OPTIONS))
    torch.testing.assert_close(shared, naive, rtol=1e-4, atol=1e-4)
    # Smaller batches (length-sorted, results put back in prompt order) change nothing.
    torch.testing.assert_close(llm.score_options(PROMPTS, OPTIONS, prefix=prefix, batch_size=1), shared,
                               rtol=1e-4, atol=1e-4)
    if with_prefix:  # the soft tokens are read, not dropped
        assert (llm.score_options(PROMPTS, OPTIONS) - shared).abs().max() > 1e-3


def test_score_options_respects_the_input_budget():
    llm = load_llm("tiny-causal")
    long = [" ".join(["word"] * 40) + " tail", " ".join(["word"] * 40) + " other end"]
    cut = llm.score_options(long, OPTIONS, max_input_tokens=8)
    torch.testing.assert_close(cut[0], cut[1])  # both truncated to the same first 8 tokens
    with torch.no_grad():
        naive = torch.stack([llm.target_logprobs(long, [o] * 2, max_input_tokens=8) for o in OPTIONS], 1)
    torch.testing.assert_close(cut, naive, rtol=1e-4, atol=1e-4)


def test_score_options_refuses_an_empty_option_list():
    with pytest.raises(ValueError, match="at least one option"):
        load_llm("tiny-causal").score_options(PROMPTS, [])
