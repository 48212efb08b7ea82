"""Does a trained PPlug's LaMP-3 rating move when the rater's history is swapped? (synthetic only)

The bias probe (``scripts/lamp3_bias_probe.py``) is observational: it splits a run's
errors by the rater's bias. This is the counterfactual test. Each of the first
``--questions`` dev questions is answered three times by the run's trained method, once
with the history of a harsh, of a neutral and of a generous dev rater in place of its
own (each donor: the rater of that group with the longest history). The review text
and everything else stay the same, so any change in the answer is the persona token's
doing. A method that follows the rater's bias moves its mean rating by about 2 between
the harsh and the generous history (less where the 1..5 scale clips it); one that
ignores the history does not move it at all.

    python scripts/lamp3_persona_swap.py RUN_DIR ... [--questions 60] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

import methods  # noqa: F401 - registers the built-ins
from harness.api import Example
from harness.soft_prompt import restore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lamp3_bias_probe import user_bias  # the probe's own reading of the bias

GROUPS = {-1: "harsh", 0: "neutral", 1: "generous"}


def donors(dev: list[Example]) -> dict[int, Example]:
    """Per bias group, the dev question whose rater has the longest history (first on ties)."""
    out: dict[int, Example] = {}
    for example in dev:
        group = user_bias(example.profile)
        if group not in out or len(example.profile) > len(out[group].profile):
            out[group] = example
    missing = set(GROUPS) - set(out)
    if missing:
        raise SystemExit(f"no dev rater with bias {sorted(missing)}: is this synthetic LaMP-3?")
    return out


def swap_row(run: Path, n_questions: int) -> str:
    """One markdown row: the run's mean rating under each donor's history, and the shift."""
    method = restore(run)
    task = method.ctx.task
    dev = list(task.load_split(task, "synthetic", "dev", seed=0).examples)
    questions = dev[:n_questions]
    answers: dict[int, list[str]] = {}
    tokens: dict[int, torch.Tensor] = {}
    for group, donor in sorted(donors(dev).items()):
        swapped = [dataclasses.replace(e, profile=donor.profile) for e in questions]
        answers[group] = [a for start in range(0, len(swapped), 32) for a in method.predict(swapped[start : start + 32])]
        with torch.no_grad():
            tokens[group] = method.soft_tokens(swapped[:1])[0].float()  # [n_tokens, d]: instruction first
    norms = tokens[0].norm(dim=-1)
    persona_change = float((tokens[1][-1] - tokens[-1][-1]).norm() / tokens[0][-1].norm())
    means = {g: sum(float(a) for a in rows if a.strip().isdigit()) / len(rows) for g, rows in answers.items()}
    changed = sum(a != b for a, b in zip(answers[-1], answers[1])) / len(questions)
    params = " ".join(f"{k}={v}" for k, v in sorted(method.params.__dict__.items())
                      if k in ("history_text", "center_history", "center_persona", "backbone_lora_rank", "n_persona_tokens"))
    return (f"| {run.parent.name} ({run.name}, seed {method.ctx.seed}) {params} | "
            + " | ".join(f"{means[g]:.2f}" for g in GROUPS)
            + f" | **{means[1] - means[-1]:+.2f}** | {changed:.0%} | "
            + " / ".join(f"{float(n):.0f}" for n in norms) + f" ({method.ctx.llm().token_embedding_norm:.1f}) | "
            + f"{persona_change:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished PPlug-family run folders with their weights")
    parser.add_argument("--questions", type=int, default=60, help="first N synthetic LaMP-3 dev questions")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    lines = [f"Each run answers the first {args.questions} synthetic LaMP-3 dev questions with a harsh, a "
             "neutral and a generous rater's history in place of the question's own (the run's decoding mode). "
             "Following the bias fully moves the mean rating by about +2 from the harsh to the generous "
             "history; ignoring the history, 0.", "",
             "The last two columns read the soft tokens themselves: their norms (instruction token first; "
             "an ordinary token's mean norm in brackets), and how far the persona token moves from the harsh "
             "to the generous history, as a share of its norm.", "",
             "| run | mean rating, harsh history | neutral | generous | shift (generous − harsh) | answers changed "
             "| soft-token norms (ordinary) | persona token moved |",
             "|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        lines.append(swap_row(run, args.questions))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
