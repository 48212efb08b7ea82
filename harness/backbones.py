"""One abstraction over encoder-decoder (T5) and decoder-only (Llama/SmolLM) LLMs.

Methods talk to a :class:`Backbone`: ``generate`` prompts in length-sorted batches
(greedy or beam search, KV cache on), ``loss`` for training with the next-token
objective, ``target_logprobs`` and ``score_options`` for scoring fixed answers (the
constrained-answer mode picks a label by its log-likelihood), and all of them accept
``prefix`` soft tokens — vectors in the LLM's input-embedding space placed before the
embedded prompt — which is how PPlug's persona and instruction embeddings enter the
frozen model. Models are loaded once per process and shared.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from harness.models import ModelPreset, resolve_preset
from harness.settings import GenerationSettings  # noqa: F401 - re-exported: methods and tests import it from here

#: Most (prompt, option) rows one :meth:`Backbone.score_options` pass holds: each row
#: carries a copy of its prompt's KV cache (or encoder states), the pass's memory peak.
OPTION_ROWS = 64
_OPTION_TOKENS = 128  # an option (a label) longer than this is cut, as targets are


class Backbone:
    """A frozen LLM with its tokenizer, prompt formatting and soft-prompt support."""

    def __init__(self, preset: ModelPreset, model: Any, tokenizer: Any, device: str = "cpu") -> None:
        self.preset = preset
        self.name = preset.name
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self._chat = self._chat_parts() if preset.chat else None
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def kind(self) -> str:
        return "seq2seq" if self.is_seq2seq else "causal"

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @functools.cached_property
    def token_embedding_norm(self) -> float:
        """Mean L2 norm of the LLM's token embeddings.

        Soft tokens are scaled to this norm so they look like ordinary tokens to the
        frozen model, whatever its embedding scale (the reference code hard-codes a
        constant per backbone instead).
        """
        weight = self.model.get_input_embeddings().weight
        return float(weight.detach().float().norm(dim=-1).mean())

    # -- prompt -> token ids --------------------------------------------------------------
    @property
    def chat_wrapper_lengths(self) -> tuple[int, int]:
        """How many chat-template tokens :meth:`prompt_ids` puts before and after the
        prompt; ``(0, 0)`` for a backbone without a chat template."""
        return (0, 0) if self._chat is None else (len(self._chat[0]), len(self._chat[1]))

    def _chat_parts(self) -> tuple[list[int], list[int]] | None:
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        marker = "\u2063PROMPT\u2063"
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": marker}], add_generation_prompt=True, tokenize=False
        )
        before, after = text.split(marker)
        enc = functools.partial(self.tokenizer.encode, add_special_tokens=False)
        return enc(before), enc(after)

    def prompt_ids(self, prompt: str, max_input_tokens: int) -> list[int]:
        """Token ids of a prompt, truncated to ``max_input_tokens`` before any chat wrapper.

        Truncation keeps the start, as LaMP's tokenizer(..., truncation=True) does; the
        chat template's own tokens are never cut.
        """
        if self._chat is not None:
            body = self.tokenizer.encode(prompt, add_special_tokens=False)[:max_input_tokens]
            return self._chat[0] + body + self._chat[1]
        return self.tokenizer.encode(prompt, truncation=True, max_length=max_input_tokens)

    def target_ids(self, target: str, max_tokens: int) -> list[int]:
        ids = self.tokenizer.encode(target, add_special_tokens=False)[: max_tokens - 1]
        return ids + [self.eos_id]

    # -- embeddings ------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def _assemble(
        self, rows: Sequence[list[int]], prefix: torch.Tensor | None, left_pad: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``[prefix_i ; embed(row_i)]`` with padding; returns embeds and mask."""
        n_prefix = 0 if prefix is None else prefix.shape[1]
        width = max(len(r) for r in rows) + n_prefix
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width - n_prefix), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row) + n_prefix
            span = slice(width - n, width) if left_pad else slice(0, n)
            mask[i, span] = 1
            tok_span = slice(width - len(row) - n_prefix, width - n_prefix) if left_pad else slice(0, len(row))
            ids[i, tok_span] = torch.tensor(row, dtype=torch.long)
        embeds = self.embed(ids.to(self.device))
        if prefix is not None:
            prefix = prefix.to(embeds.dtype)
            if left_pad:
                parts = []
                for i, row in enumerate(rows):
                    start = width - len(row) - n_prefix
                    parts.append(torch.cat([embeds[i, :start], prefix[i], embeds[i, start:]], dim=0))
                embeds = torch.stack(parts)
            else:
                embeds = torch.cat([prefix, embeds], dim=1)
        return embeds, mask.to(self.device)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        prefix: torch.Tensor | None = None,
        num_beams: int = 4,
        max_new_tokens: int = 32,
        max_input_tokens: int = 512,
        batch_size: int = 16,
    ) -> list[str]:
        """Decode every prompt; batches are grouped by length to minimise padding.

        ``prefix`` is ``[len(prompts), P, hidden]`` soft tokens (or ``None``).
        """
        rows = [self.prompt_ids(p, max_input_tokens) for p in prompts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        out: list[str] = [""] * len(rows)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch_prefix = None if prefix is None else prefix[idx]
            texts = self._generate_batch([rows[i] for i in idx], batch_prefix, num_beams, max_new_tokens)
            for i, text in zip(idx, texts):
                out[i] = text
        return out

    def _generate_batch(
        self, rows: list[list[int]], prefix: torch.Tensor | None, num_beams: int, max_new_tokens: int
    ) -> list[str]:
        embeds, mask = self._assemble(rows, prefix, left_pad=not self.is_seq2seq)
        kwargs = dict(
            inputs_embeds=embeds, attention_mask=mask, num_beams=num_beams, do_sample=False,
            max_new_tokens=max_new_tokens, use_cache=True, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_id,
        )
        if num_beams > 1:
            kwargs["early_stopping"] = False  # HF's default, which the reference code keeps
        generated = self.model.generate(**kwargs)
        # With inputs_embeds, decoder-only models return only the new tokens.
        return self.tokenizer.batch_decode(generated, skip_special_tokens=True)

    # -- training objective ----------------------------------------------------------------
    def loss(
        self,
        prompts: Sequence[str],
        targets: Sequence[str],
        *,
        prefix: torch.Tensor | None = None,
        max_input_tokens: int = 512,
        max_target_tokens: int = 64,
        per_example: bool = False,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy of ``targets`` given ``[prefix; prompt]``.

        ``per_example=True`` returns each example's *summed* token loss (shape ``[B]``)
        instead, so a caller can normalise over its own groups — OPPU trains many users
        in one batch and needs each user's mean, not the batch mean.
        """
        rows = [self.prompt_ids(p, max_input_tokens) for p in prompts]
        tgts = [self.target_ids(t, max_target_tokens) for t in targets]
        if self.is_seq2seq:
            embeds, mask = self._assemble(rows, prefix, left_pad=False)
            width = max(len(t) for t in tgts)
            labels = torch.full((len(tgts), width), -100, dtype=torch.long)
            for i, t in enumerate(tgts):
                labels[i, : len(t)] = torch.tensor(t)
            labels = labels.to(self.device)
            if per_example:  # no labels: HF would compute (and we would discard) the batch loss
                decoder_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
                out = self.model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_ids)
                return _per_example_loss(out.logits, labels)
            return self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        full = [r + t for r, t in zip(rows, tgts)]
        embeds, mask = self._assemble(full, prefix, left_pad=False)
        n_prefix = 0 if prefix is None else prefix.shape[1]
        # Position p predicts token p+1, so target token j of row i is scored at
        # n_prefix + len(prompt_i) - 1 + j (a first token with no context is not scored).
        where = [(i, n_prefix + len(r) - 1 + j, tok) for i, (r, t) in enumerate(zip(rows, tgts))
                 for j, tok in enumerate(t) if n_prefix + len(r) - 1 + j >= 0]
        row_idx, pos_idx, label_ids = (torch.tensor(col, device=self.device) for col in zip(*where))
        hidden = self.model.base_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        # The output projection runs on the target positions only: on short targets after
        # long prompts (every LaMP task) the full [B, T, vocab] logits are most of the cost.
        logits = self.model.get_output_embeddings()(hidden[row_idx, pos_idx])
        ce = torch.nn.functional.cross_entropy(logits.float(), label_ids, reduction="none")
        if per_example:
            return torch.zeros(len(rows), dtype=ce.dtype, device=ce.device).index_add(0, row_idx, ce)
        return ce.mean()

    # -- scoring fixed answers -------------------------------------------------------------
    def target_logprobs(
        self,
        prompts: Sequence[str],
        targets: Sequence[str],
        *,
        prefix: torch.Tensor | None = None,
        max_input_tokens: int = 512,
        max_target_tokens: int = 128,
    ) -> torch.Tensor:
        """Summed log-probability of each target given ``[prefix; prompt]``, shape ``[B]``.

        The target is scored exactly as :meth:`loss` trains it: its tokens (at most
        ``max_target_tokens - 1``) *followed by EOS*, after the same prompt formatting,
        chat wrapper and truncation. EOS is included so that the score is the probability
        of answering exactly ``target`` and stopping — what free generation must do to be
        scored correct — and so that ``target_logprobs == -loss * n_tokens``. Gradients
        flow to ``prefix`` if it requires them; wrap in ``torch.no_grad()`` to score only.
        """
        return -self.loss(prompts, targets, prefix=prefix, max_input_tokens=max_input_tokens,
                          max_target_tokens=max_target_tokens, per_example=True)

    @torch.no_grad()
    def score_options(
        self,
        prompts: Sequence[str],
        options: Sequence[str],
        *,
        prefix: torch.Tensor | None = None,
        max_input_tokens: int = 512,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Log-likelihood of every option after every prompt, shape ``[B, len(options)]``.

        Each option is scored as :meth:`target_logprobs` scores a target (its tokens plus
        EOS, summed, no length normalisation), but each prompt is run through the model
        once: decoder-only models encode the prompt batch and copy its KV cache once per
        option; encoder-decoder models encode once and copy the encoder states. This is
        how lm-evaluation-harness scores multiple choice, without re-reading a 512-token
        prompt for each of LaMP-2's 15 tags.

        Prompts are processed in length-sorted batches of ``batch_size`` (all at once if
        ``None``), lowered so that one pass holds at most :data:`OPTION_ROWS` (prompt,
        option) rows, or one prompt when there are more options: the copied cache is the
        memory peak. No gradients: this picks answers, :meth:`target_logprobs` trains.
        """
        if not options:
            raise ValueError("score_options needs at least one option")
        rows = [self.prompt_ids(p, max_input_tokens) for p in prompts]
        opts = [self.target_ids(o, _OPTION_TOKENS) for o in options]
        per_pass = max(1, min(batch_size or len(rows), OPTION_ROWS // len(opts)))
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        out = torch.zeros(len(rows), len(opts))
        for start in range(0, len(order), per_pass):
            idx = order[start : start + per_pass]
            batch_prefix = None if prefix is None else prefix[idx]
            batch_rows = [rows[i] for i in idx]
            if self.is_seq2seq:
                scores = self._score_options_seq2seq(batch_rows, opts, batch_prefix)
            else:
                scores = self._score_options_causal(batch_rows, opts, batch_prefix)
            out[idx] = scores.float().cpu()
        return out

    def _option_grid(self, opts: list[list[int]], n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Option ids ``[n_rows * K, L]`` (right-padded) and their mask; row ``b*K + k`` is option k."""
        width = max(len(o) for o in opts)
        ids = torch.full((len(opts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(opts), width), dtype=torch.long)
        for k, o in enumerate(opts):
            ids[k, : len(o)] = torch.tensor(o, dtype=torch.long)
            mask[k, : len(o)] = 1
        return ids.repeat(n_rows, 1).to(self.device), mask.repeat(n_rows, 1).to(self.device)

    def _score_options_seq2seq(
        self, rows: list[list[int]], opts: list[list[int]], prefix: torch.Tensor | None
    ) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        embeds, mask = self._assemble(rows, prefix, left_pad=False)
        states = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        k = len(opts)
        ids, opt_mask = self._option_grid(opts, len(rows))
        labels = ids.masked_fill(opt_mask == 0, -100)
        decoder_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states.repeat_interleave(k, dim=0)),
            attention_mask=mask.repeat_interleave(k, dim=0), decoder_input_ids=decoder_ids,
        ).logits
        return (-_per_example_loss(logits, labels)).view(len(rows), k)

    def _score_options_causal(
        self, rows: list[list[int]], opts: list[list[int]], prefix: torch.Tensor | None
    ) -> torch.Tensor:
        base = self.model.base_model
        head = self.model.get_output_embeddings()
        accepts = inspect.signature(base.forward).parameters
        cache_kw = "cache" if "cache" in accepts else "past_key_values"  # renamed in transformers 5
        # Left padding puts every prompt's last token in the last column, so the options
        # continue all rows from the same place; positions skip the padding explicitly.
        embeds, mask = self._assemble(rows, prefix, left_pad=True)
        lengths = mask.sum(dim=1)
        prompt_out = base(inputs_embeds=embeds, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                          use_cache=True)
        cache = prompt_out.get("cache")
        if cache is None:
            cache = prompt_out["past_key_values"]
        if isinstance(cache, tuple):  # older transformers hand back the legacy tuples
            from transformers import DynamicCache

            cache = DynamicCache.from_legacy_cache(cache)
        first = torch.log_softmax(head(prompt_out.last_hidden_state[:, -1]).float(), dim=-1)  # [b, V]

        k = len(opts)
        ids, opt_mask = self._option_grid(opts, len(rows))
        cache.batch_repeat_interleave(k)  # row b*K + k continues prompt b
        row_lengths = lengths.repeat_interleave(k)
        hidden = base(
            inputs_embeds=self.embed(ids), attention_mask=torch.cat([mask.repeat_interleave(k, 0), opt_mask], 1),
            position_ids=row_lengths[:, None] + torch.arange(ids.shape[1], device=self.device),
            use_cache=True, **{cache_kw: cache},
        ).last_hidden_state
        # Token 0 of an option is predicted by the prompt's last position, token j > 0 by
        # option position j - 1. A prompt with no token at all gives token 0 no context:
        # like ``loss``, it is not scored.
        scores = first.repeat_interleave(k, 0).gather(1, ids[:, :1]).squeeze(1) * (row_lengths > 0)
        if ids.shape[1] > 1:
            rest = torch.log_softmax(head(hidden[:, :-1]).float(), dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
            scores = scores + (rest * opt_mask[:, 1:]).sum(dim=1)
        return scores.view(len(rows), k)


def _per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy per row over the positions whose label is not -100."""
    ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return ce.sum(dim=1)


@functools.lru_cache(maxsize=4)
def load_llm(name: str, device: str = "cpu") -> Backbone:
    """Load an LLM once per process (every method and cell of a sweep shares it)."""
    preset = resolve_preset(name, "llm")
    model, tokenizer = preset.build()
    return Backbone(preset, model, tokenizer, device=device)
