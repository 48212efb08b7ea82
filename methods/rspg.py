"""RSPG-Pre and RSPG-Post (Salemi et al., SIGIR 2024): pick a retriever per input.

A pool of retrievers (the paper's: no retrieval, BM25, Recency, Contriever, ROPG-RL,
ROPG-KD) each turns an input into LaMP's official prompt with its top ``k`` items. A
selector — a trainable copy of an encoder with a linear head giving one score per
candidate text (reference ``RSPG/modeling/modeling.py``) — scores

* ``rspg-pre``: each retriever's prompt, *before* generation; only the chosen prompt is
  generated;
* ``rspg-post``: each prompt with its generated answer (``prompt <sep> answer``, as
  ``RSPG/data/collators.py``), *after* generation; the chosen answer is returned.

Training (``RSPG/rspg.py``): per train question, the retriever-utilisation feedback
(:func:`harness.feedback.retriever_utilization`, the task metric of each retriever's
generated answer; LaMP-3's MAE as ``(worst - mae) / worst``) gives a target
``softmax(labels)``, and the selector's ``log_softmax(scores / T)`` is fitted to it by KL
divergence. The ROPG members of the pool are the ones the ``ropg-*`` methods train under
the same settings profile (shared cache, :mod:`harness.trained_retriever`); RSPG trains
them itself when no such run has.

The reference selects its checkpoint on the dev set's gold outputs; we never read dev
gold, so the selector after ``total_steps`` steps is the one used.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from harness.api import Example, Method, RunContext
from harness.augment import input_budget
from harness.encoders import TextEncoder
from harness.feedback import (
    NO_RETRIEVAL,
    PoolPrompts,
    pool_prompts,
    retriever_utilization,
)
from harness.retrieval import RetrievalContext, Retriever, get_retriever
from harness.store import atomic_output, atomic_write_json
from harness.trained_retriever import (
    OBJECTIVES,
    ensure_trained,
    retriever_for,
    settings_for,
    trainable_encoder,
    wrap,
)

WEIGHTS_FILE = "rspg.safetensors"
CONFIG_FILE = "rspg.json"
PAPER_POOL = "none,bm25,recency,contriever,ropg-rl,ropg-kd"


@dataclass(frozen=True)
class RSPGParams:
    """The reference's settings (``RSPG/rspg.py`` argparse) and the pool's retrieval.

    ``k=4`` and the 256-token input are ``LaMP/retriever_utilization_scorer.py``'s
    defaults, with which the reference scores every retriever of the pool.
    """

    pool: str = PAPER_POOL  # comma-separated retriever names; "none" is the plain input
    k: int = 4  # --num_retrieved
    max_input_tokens: int = 256  # --max_length of the retriever utilisation scorer
    selector_encoder: str | None = "allenai/longformer-base-4096"  # None: the run's encoder
    max_selector_tokens: int = 512  # --max_length_input
    lowercase: bool = True  # the reference lower-cases the prompts it scores
    temperature: float = 1.0
    lr: float = 1e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int = 1  # --per_gpu_batch_size (questions per step)
    total_steps: int = 1000
    clip: float = 1.0
    feedback_scoring: str = "official"  # "parsed": score task.parse_output(answer)
    max_train_examples: int | None = None  # None: every train question

    def names(self) -> list[str]:
        names = [n.strip() for n in self.pool.split(",") if n.strip()]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"pool needs at least two distinct retrievers, got {self.pool!r}")
        return names


SMALL: dict[str, Any] = {
    "selector_encoder": None, "max_selector_tokens": 256, "lr": 5e-5, "batch_size": 4, "total_steps": 48,
    "feedback_scoring": "parsed", "max_train_examples": 96,
}


class Selector(nn.Module):
    """A trainable encoder copy and a linear head: one score per candidate text."""

    def __init__(self, encoder: TextEncoder, max_tokens: int) -> None:
        super().__init__()
        self.body = trainable_encoder(encoder)
        self.encoder = wrap(encoder, self.body, max_tokens)
        self.head = nn.Linear(encoder.dim, 1)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.head(self.encoder.forward(texts, normalize=False)).squeeze(-1)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters()}


def selector_loss(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(labels) || softmax(scores / T)), averaged over questions (``[B, R]`` each).

    The reference divides the log-probabilities by T instead of the scores; the two agree
    at its T = 1.
    """
    target = torch.softmax(labels, dim=-1)
    log_p = torch.log_softmax(scores / temperature, dim=-1)
    return (target * (torch.log(target.clamp_min(1e-30)) - log_p)).sum(-1).mean()


def train_selector(selector: Selector, texts: Sequence[Sequence[str]], labels: torch.Tensor, p: RSPGParams, *,
                   seed: int = 0, progress: bool = False, desc: str = "rspg fit") -> list[float]:
    """``p.total_steps`` steps of ``p.batch_size`` questions; returns the loss per step.

    ``texts[q]`` are question q's candidate texts (one per pool retriever, in pool order)
    and ``labels[q]`` their utilities. Questions are drawn without replacement, reshuffled
    each epoch (the reference's sampler), gradients clipped at ``p.clip``.
    """
    rng = random.Random(seed)
    selector.train()
    params = list(selector.parameters())
    optimizer = (torch.optim.Adam(params, lr=p.lr) if p.optimizer == "adam"
                 else torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay))
    losses: list[float] = []
    order: list[int] = []
    bar = tqdm(total=p.total_steps, desc=desc, unit="step", disable=not progress)
    for _ in range(p.total_steps):
        if len(order) < min(p.batch_size, len(texts)):
            order = list(range(len(texts)))
            rng.shuffle(order)
        step, order = order[: p.batch_size], order[p.batch_size :]
        optimizer.zero_grad(set_to_none=True)
        scores = selector([t for i in step for t in texts[i]]).view(len(step), -1)
        loss = selector_loss(scores, labels[step].to(scores.device), p.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, p.clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    selector.eval()
    return losses


class RSPG(Method):
    """Retriever selection over a pool, before (``pre``) or after (``post``) generation."""

    mode: ClassVar[str] = "pre"
    Params: ClassVar[type] = RSPGParams
    uses_train = True
    family = "optimized-retrieval"
    profiles = {"small": SMALL, "paper": {}}

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        p: RSPGParams = self.params
        self.pool_names = p.names()
        if p.k < 0 or p.total_steps < 1 or p.batch_size < 1:
            raise ValueError("k must be >= 0, total_steps and batch_size >= 1")
        if p.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', not {p.optimizer!r}")
        self.pool: dict[str, Retriever | None] = {}
        self.selector: Selector | None = None
        self.summary: dict[str, Any] = {}
        self.members: dict[str, dict[str, Any]] = {}
        self.generations = 0
        self.choices = np.zeros(len(self.pool_names), dtype=np.int64)
        self._sep: str | None = None

    # -- pieces -------------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.ctx.artifacts_dir / WEIGHTS_FILE

    @property
    def max_input_tokens(self) -> int:
        return input_budget(self.ctx, self.params.max_input_tokens)

    def selector_base(self) -> TextEncoder:
        from harness.encoders import load_encoder

        name = self.params.selector_encoder
        return self.ctx.encoder() if name is None else load_encoder(name, device=self.ctx.device)

    @property
    def separator(self) -> str:
        """The selector tokenizer's separator (``</s>``, ``[SEP]``), as the Post collator joins."""
        if self._sep is None:
            self._sep = getattr(self.selector_base().tokenizer, "sep_token", None) or "\n"
        return self._sep

    def build_pool(self, train: Sequence[Example]) -> None:
        """Every pool retriever; ROPG members come from (or go into) the shared cache."""
        context = RetrievalContext.of_run(self.ctx)
        for name in self.pool_names:
            objective = name.removeprefix("ropg-")
            if name == NO_RETRIEVAL:
                self.pool[name] = None
            elif name.startswith("ropg-") and objective in OBJECTIVES:
                entry, reused = ensure_trained(self.ctx, objective, settings_for(self.ctx.profile), train)
                self.pool[name] = retriever_for(entry, context)
                self.members[name] = {**{k: v for k, v in entry.summary.items() if k != "loss_curve"},
                                      "reused": reused, "weights": entry.digest}
            else:
                self.pool[name] = get_retriever(name, context)

    def candidate_text(self, prompt: str, output: str | None) -> str:
        """What the selector reads: the prompt (``pre``) or ``prompt <sep> answer`` (``post``)."""
        text = prompt.lower() if self.params.lowercase else prompt
        if self.mode == "pre":
            return text
        return f"{text} {self.separator} {output or ''}"

    # -- training -----------------------------------------------------------------------------
    def fit(self, train: Sequence[Example]) -> None:
        """Build the pool, collect its feedback on train questions, train the selector."""
        p: RSPGParams = self.params
        self.build_pool(train)
        if self.weights_path.exists():
            self.load()
            return
        rng = random.Random(self.ctx.seed)
        examples = [e for e in train if e.output is not None]
        if p.max_train_examples is not None and len(examples) > p.max_train_examples:
            examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), p.max_train_examples))]
        if not examples:
            raise ValueError("RSPG needs train questions with gold outputs")
        feedback, cost = retriever_utilization(self.ctx, examples, self.pool, k=p.k,
                                               max_input_tokens=self.max_input_tokens, scoring=p.feedback_scoring)
        texts = [[self.candidate_text(pr, out) for pr, out in zip(prompts, outputs)]
                 for prompts, outputs in zip(feedback.prompts, feedback.outputs)]
        labels = torch.tensor(feedback.utilities, dtype=torch.float32)
        torch.manual_seed(self.ctx.seed)
        self.selector = selector = Selector(self.selector_base(), p.max_selector_tokens).to(self.ctx.device)
        losses = train_selector(selector, texts, labels, p, seed=self.ctx.seed, progress=self.ctx.progress,
                                desc=f"{self.ctx.task.name}/rspg-{self.mode} fit")
        best = feedback.utilities.max(axis=1, keepdims=True)
        oracle = (feedback.utilities == best).mean(axis=0)
        self.summary = {
            "train_examples_used": len(examples), "optimizer_steps": len(losses), "budget_steps": p.total_steps,
            "trained_to_budget": len(losses) == p.total_steps and all(
                m.get("trained_to_budget", True) for m in self.members.values()),
            "final_loss": losses[-1], "pool": self.pool_names,
            "train_mean_utility": dict(zip(feedback.names, feedback.utilities.mean(axis=0).tolist())),
            "train_best_share": dict(zip(feedback.names, oracle.tolist())),
            "train_oracle_utility": float(best.mean()), "members": self.members, **cost.as_dict(),
        }
        self.save(losses)

    def save(self, losses: list[float]) -> None:
        assert self.selector is not None
        art = self.ctx.artifacts_dir
        art.mkdir(parents=True, exist_ok=True)
        config = {"mode": self.mode, "params": dataclasses.asdict(self.params), "summary": self.summary,
                  "loss": losses}
        atomic_write_json(art / CONFIG_FILE, config)
        with atomic_output(self.weights_path) as tmp:  # last: the weights file marks a finished fit
            save_file(self.selector.trainable_state(), str(tmp),
                      metadata={"format": "pt", "method": f"rspg-{self.mode}"})

    def load(self) -> None:
        selector = Selector(self.selector_base(), self.params.max_selector_tokens)
        missing, unexpected = selector.load_state_dict(load_file(str(self.weights_path)), strict=False)
        lacking = set(missing) & {n for n, _ in selector.named_parameters()}
        if unexpected or lacking:
            raise RuntimeError(f"{self.weights_path} does not match this selector "
                               f"(missing {sorted(lacking)[:3]}, unexpected {unexpected[:3]})")
        self.selector = selector.to(self.ctx.device).eval()
        config = self.ctx.artifacts_dir / CONFIG_FILE
        self.summary = json.loads(config.read_text()).get("summary", {}) if config.exists() else {}

    # -- inference ----------------------------------------------------------------------------
    def pool_batch(self, batch: Sequence[Example]) -> list[PoolPrompts]:
        return [pool_prompts(self.ctx, self.pool[n], batch, self.params.k, self.max_input_tokens)
                for n in self.pool_names]

    @torch.no_grad()
    def choose(self, texts: list[list[str]]) -> list[int]:
        """Per example, the index of the highest-scored candidate (ties: the earlier one)."""
        assert self.selector is not None
        scores = self.selector([t for row in texts for t in row]).view(len(texts), -1)
        picks = scores.argmax(dim=-1).tolist()
        for i in picks:
            self.choices[i] += 1
        return picks

    def predict(self, batch: Sequence[Example]) -> list[str]:
        if self.selector is None:
            raise RuntimeError(f"rspg-{self.mode}: fit() first (no trained selector)")
        pools = self.pool_batch(batch)
        if self.mode == "pre":
            texts = [[self.candidate_text(pp.texts[i], None) for pp in pools] for i in range(len(batch))]
            picks = self.choose(texts)
            chosen = [pools[r].texts[i] for i, r in enumerate(picks)]
            self.ctx.record_retrieved([pools[r].item_ids[i] for i, r in enumerate(picks)])
            self.generations += len(chosen)
            return self.ctx.generate(chosen, max_input_tokens=self.max_input_tokens)
        unique = list(dict.fromkeys(t for pp in pools for t in pp.texts))  # one generation per distinct prompt
        answers = dict(zip(unique, self.ctx.generate(unique, max_input_tokens=self.max_input_tokens)))
        self.generations += len(unique)
        texts = [[self.candidate_text(pp.texts[i], answers[pp.texts[i]]) for pp in pools] for i in range(len(batch))]
        picks = self.choose(texts)
        chosen = [pools[r].texts[i] for i, r in enumerate(picks)]
        self.ctx.record_prompts(chosen)
        self.ctx.record_retrieved([pools[r].item_ids[i] for i, r in enumerate(picks)])
        return [answers[t] for t in chosen]

    def fit_summary(self) -> dict[str, Any]:
        return dict(self.summary)

    def cost(self) -> dict[str, float]:
        """Feedback cost (selector's and ROPG members'), generations and choices per retriever."""
        out = {k: float(v) for k, v in self.summary.items()
               if k.startswith("feedback_") and isinstance(v, (int, float))}
        for name, member in self.summary.get("members", {}).items():
            for k in ("feedback_records", "feedback_seconds", "feedback_records_per_second"):
                if k in member:
                    out[f"{name}_{k}"] = float(member[k])
        out["llm_generations"] = float(self.generations)
        for name, count in zip(self.pool_names, self.choices.tolist()):
            out[f"chosen_{name}"] = float(count)
        return out


class RSPGPre(RSPG):
    description = "RSPG-Pre: a trained selector picks one retriever of the pool per input, before generation."
    mode = "pre"


class RSPGPost(RSPG):
    description = "RSPG-Post: generate with every retriever of the pool, a trained selector picks the answer."
    mode = "post"
