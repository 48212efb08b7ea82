"""Where does a trained PPlug look in the user's history? (any closed-label task)

PPlug's persona is ``P = sum_i softmax_i(q . e_i) Proj(e_i)``: the trained input encoder's
query ``q`` and the frozen item embeddings ``e_i`` are both unit vectors, so every score
lies in [-1, 1], and the reference divides by no temperature (``code/ModelForPer.py``
has ``# / 0.5`` commented out). This probe reads a trained run's attention on every dev
question and asks two things:

* **How far from uniform is it?** The effective number of items attended (the
  exponential of the weights' entropy) as a share of the items there are (1 = uniform,
  ``pplug-mean``'s weights), the largest weight times the item count, and the spread of
  the raw scores (max - min of ``q . e_i``): a spread of 0.3 lets the best item weigh at
  most e^0.3 = 1.35 times the worst.
* **Does it look at the items that hold the answer?** On a task whose items carry the
  output's role (LaMP-2's tag, LaMP-3's score: ``TaskSpec.item_output_field``): the
  attention mass on the items labelled with the question's gold answer, against their
  share of the history (what uniform weights give), and the same for the items labelled
  with the user's most frequent label. The synthetic generators plant the signal there
  (LaMP-2: a tagger's favourite tags). ``--temperature`` adds the same masses under
  ``softmax(q . e / T)``: whether the trained query *ranks* the right items first, even
  if temperature 1 flattens what it ranks.

    python scripts/pplug_attention_probe.py RUN_DIR [RUN_DIR ...] [--temperature 0.1 0.05] [--out FILE.md]

The runs need their trained weights (results/ keeps none: rerun the cell to recreate them).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import methods  # noqa: F401 - registers the built-ins
from harness.report.runs import read_run
from harness.retrieval import chronological
from harness.soft_prompt import restore
from methods.pplug import PPlug, pad_rows


@dataclass
class QuestionAttention:
    """One dev question: its history's labels, raw scores and weights (real items only)."""

    labels: list[str]
    scores: np.ndarray
    weights: np.ndarray
    gold: str


def attention(run: Path, batch_size: int = 32) -> tuple[PPlug, list[QuestionAttention]]:
    """The trained run's attention over each dev question's history, in history order."""
    method = restore(run)
    if not isinstance(method, PPlug) or method.module.input_encoder is None:
        raise TypeError(f"{run}: not a PPlug run with input-aware attention ({method.ctx.task.name}, "
                        f"{type(method).__name__})")
    task = method.ctx.task
    if task.item_output_field is None:
        raise ValueError(f"{task.name} declares no item_output_field: no item labels to compare with the answer")
    cell = read_run(run)
    dev = task.load_split(task, str(cell.data["location"]), cell.split, seed=cell.seed).examples
    dev = dev[: cell.limit] if cell.limit else dev
    out: list[QuestionAttention] = []
    with torch.no_grad():
        for start in range(0, len(dev), batch_size):
            batch = dev[start : start + batch_size]
            table, rows = method.history([e.profile for e in batch])
            hist, mask = pad_rows(table, rows)
            queries = [method.query_text(e) for e in batch]
            _, weights = method.module.persona(queries, hist, mask)  # the weights PPlug itself uses
            scores = torch.einsum("bd,bnd->bn", method.module.encode_queries(queries), hist)
            for i, example in enumerate(batch):
                n = int(mask[i].sum())
                items = chronological(example.profile)[-method.params.max_history:]
                labels = [str(example.profile[j][task.item_output_field]) for j in items]
                out.append(QuestionAttention(labels=labels, scores=scores[i, :n].float().cpu().numpy(),
                                             weights=weights[i, :n].float().cpu().numpy(), gold=str(example.output)))
    return method, out


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def summarise(questions: Sequence[QuestionAttention], temperatures: Sequence[float]) -> dict[str, float]:
    """Means over the questions that have a history (see the module docstring for each figure)."""
    rows = [q for q in questions if len(q.labels) > 0]
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for q in rows:
        n = len(q.labels)
        w = q.weights / q.weights.sum()
        add("items", n)
        add("effective share", float(np.exp(-(w * np.log(np.clip(w, 1e-30, None))).sum())) / n)
        add("max weight x items", float(w.max()) * n)
        add("score spread", float(q.scores.max() - q.scores.min()))
        favourite = Counter(q.labels).most_common(1)[0][0]
        for target, label in (("gold", q.gold), ("favourite", favourite)):
            hit = np.array([lab == label for lab in q.labels])
            add(f"{target} share", float(hit.mean()))
            add(f"{target} mass", float(w[hit].sum()))
            for t in temperatures:
                add(f"{target} mass T={t:g}", float(softmax(q.scores, t)[hit].sum()))
    return {name: float(np.mean(values)) for name, values in figures.items()} | {"questions": float(len(rows))}


def render(results: Sequence[tuple[Path, PPlug, dict[str, float]]], temperatures: Sequence[float]) -> str:
    hot = "".join(f" | gold-label mass at T={t:g}" for t in temperatures)
    lines = [
        "| run | questions | items | effective items / items | max weight x items | score spread (max - min) "
        "| gold-label items: share → mass | favourite-label items: share → mass" + hot + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(temperatures),
    ]
    for run, method, f in results:
        p = method.params
        label = (f"{method.ctx.task.name} {type(method).__name__} {run.name} (history_text={p.history_text}, "
                 f"center_history={p.center_history}, tokens={p.n_persona_tokens}"
                 + (f", attention_temperature={p.attention_temperature:g})" if p.attention_temperature != 1 else ")"))
        hot_cells = "".join(f" | {f[f'gold mass T={t:g}']:.3f}" for t in temperatures)
        lines.append(f"| {label} | {f['questions']:.0f} | {f['items']:.1f} | {f['effective share']:.3f} "
                     f"| {f['max weight x items']:.2f} | {f['score spread']:.3f} "
                     f"| {f['gold share']:.3f} → {f['gold mass']:.3f} "
                     f"| {f['favourite share']:.3f} → {f['favourite mass']:.3f}{hot_cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--temperature", type=float, nargs="*", default=[0.1, 0.05],
                        help="also report the gold-label mass under softmax(q . e / T)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for run in args.runs:
        method, questions = attention(run)
        results.append((run, method, summarise(questions, args.temperature)))
    text = render(results, args.temperature)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
