"""How far can one soft token, where PPlug puts it, move the frozen LLM's LaMP-3 rating?

The LaMP-3 oracles (results/convergence, section 3) showed that a soft token trained with
the rating loss does not learn the rater's bias even when handed the true group. That
leaves two readings: the channel cannot move the rating far enough (a soft token at the
first position of a decoder-only model is where the attention sink sits), or it can and
the training does not find the way. This measures the channel's reach directly: one
free vector of an ordinary token's norm, placed before the prompt as PPlug's tokens are
(``Backbone`` ``prefix``), is optimised with Adam to raise, then (from a fresh start) to
lower, the expected rating over the first ``--questions`` dev questions, the rating
distribution being the softmax of the five ratings' scores: ``--score answer`` scores a
rating as the constrained mode does (its token and EOS), ``first-token`` by the digit's
next-token logit alone (what free generation starts with). A reach of about 2 rating points is what following a -1..+1 bias needs.

``--position`` (``first-token`` scoring only) moves the token from the first position,
where a decoder-only model's attention sink sits, to after the chat template's first
token, to just before the task input, or to just after it: whether the sink is what
limits the channel.

    python scripts/lamp3_soft_token_reach.py [--score answer|first-token] [--position start] [--questions 12] \
        [--steps 12] [--out FILE.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import methods  # noqa: F401 - registers the built-ins
from harness.backbones import Backbone, load_llm
from harness.registries import TASKS

RATINGS = ("1", "2", "3", "4", "5")
POSITIONS = ("start", "after-first-token", "before-input", "after-input")


def insert_at(llm: Backbone, ids: list[int], position: str) -> int:
    """Where in a chat-templated prompt's ids the soft token goes (``start``: PPlug's place)."""
    head, tail = llm.chat_wrapper_lengths
    return {"start": 0, "after-first-token": 1, "before-input": head, "after-input": len(ids) - tail}[position]


def rating_scores(llm: Backbone, prompts: list[str], soft: torch.Tensor, score: str,
                  max_input_tokens: int, position: str = "start") -> torch.Tensor:
    """``[len(RATINGS), len(prompts)]`` scores of each rating after ``[soft; prompt]``.

    ``answer``: the constrained mode's score, the rating's tokens plus EOS
    (``Backbone.target_logprobs``, one row per prompt and rating). ``first-token``: the
    next-token logit of each rating's (single) token, one row per prompt: whether the
    model would start its answer with that digit.
    """
    n = len(prompts)
    if score == "answer":
        prefix = soft.expand(n * len(RATINGS), 1, -1)
        return llm.target_logprobs(prompts * len(RATINGS), [r for r in RATINGS for _ in range(n)], prefix=prefix,
                                   max_input_tokens=max_input_tokens).view(len(RATINGS), n)
    rating_ids = [llm.target_ids(r, 2)[0] for r in RATINGS]
    rows = []
    for prompt in prompts:
        row = llm.prompt_ids(prompt, max_input_tokens)
        at, embedded = insert_at(llm, row, position), llm.embed(torch.tensor(row))
        embeds = torch.cat([embedded[:at], soft[None].to(llm.model.dtype), embedded[at:]])[None]
        rows.append(llm.model(inputs_embeds=embeds).logits[0, -1, rating_ids].float())
    return torch.stack(rows, dim=1)


def expected_rating(llm: Backbone, prompts: list[str], soft: torch.Tensor, score: str,
                    max_input_tokens: int, position: str = "start") -> torch.Tensor:
    """Mean over the prompts of E[rating] under the softmax of the five ratings' scores."""
    scores = rating_scores(llm, prompts, soft, score, max_input_tokens, position)
    values = torch.arange(1, len(RATINGS) + 1, dtype=scores.dtype)
    return (scores.softmax(dim=0) * values[:, None]).sum(dim=0).mean()


def push(llm: Backbone, prompts: list[str], direction: int, steps: int, seed: int, score: str,
         max_input_tokens: int, position: str = "start") -> float:
    """E[rating] after ``steps`` Adam steps moving it in ``direction``; the token keeps an ordinary norm."""
    norm, d = llm.token_embedding_norm, llm.hidden_size
    generator = torch.Generator().manual_seed(seed)
    soft = (torch.randn(d, generator=generator) * norm / d**0.5).requires_grad_(True)
    optimizer = torch.optim.Adam([soft], lr=0.05 * norm / d**0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        (-direction * expected_rating(llm, prompts, soft, score, max_input_tokens, position)).backward()
        optimizer.step()
        with torch.no_grad():
            soft.mul_(norm / soft.norm())
    with torch.no_grad():
        return float(expected_rating(llm, prompts, soft, score, max_input_tokens, position))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=12, help="first N synthetic LaMP-3 dev questions")
    parser.add_argument("--steps", type=int, default=12, help="Adam steps per direction")
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--max-input-tokens", type=int, default=256, help="PPlug's input budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", choices=("answer", "first-token"), default="answer",
                        help="answer: rating + EOS, as the constrained mode scores it (5 rows per question); "
                             "first-token: the rating digit's next-token logit (1 row per question)")
    parser.add_argument("--position", choices=POSITIONS, default="start",
                        help="where the token goes (first-token scoring only; start is PPlug's place)")
    parser.add_argument("--out", type=Path, help="also write the result here (markdown)")
    args = parser.parse_args()
    if args.position != "start" and args.score != "first-token":
        parser.error("--position other than start needs --score first-token (the answer score puts the soft "
                     "tokens where PPlug does)")
    task = TASKS.get("lamp3")
    prompts = [e.input for e in task.load_split(task, "synthetic", "dev", seed=0).examples[: args.questions]]
    llm = load_llm(args.llm)  # frozen: only the soft token gets gradients
    with torch.no_grad():
        neutral = float(expected_rating(llm, prompts, torch.zeros(llm.hidden_size), args.score,
                                        args.max_input_tokens, args.position))
    high = push(llm, prompts, +1, args.steps, args.seed, args.score, args.max_input_tokens, args.position)
    low = push(llm, prompts, -1, args.steps, args.seed, args.score, args.max_input_tokens, args.position)
    text = (f"One soft token at position {args.position!r} ({args.llm}, norm {llm.token_embedding_norm:.2f}, "
            f"{args.questions} synthetic LaMP-3 dev questions, {args.steps} Adam steps per direction, "
            f"seed {args.seed}, ratings scored by {args.score!r}):\n\n"
            "| soft token | mean E[rating] |\n|---|---|\n"
            f"| zero vector | {neutral:.2f} |\n| pushed up | {high:.2f} |\n| pushed down | {low:.2f} |\n"
            f"| **reach (up − down)** | **{high - low:.2f}** |\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
