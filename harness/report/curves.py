"""Training curves of the trained cells in a results folder: does a method converge?

A score says little about a trained method unless its training finished: every trained
cell writes ``artifacts/loss.json`` (training loss per optimizer step and, when the
profile holds questions out of the train split, the held-out loss). This module plots
those curves per task, one line per cell, and tabulates, beside each cell's dev score,
how far it trained (steps run against its budget, where the held-out loss bottomed out,
whether early stopping ended it, and whether the loss had flattened, as
:mod:`harness.report.convergence` judges it). It reads runs through :func:`load_runs`,
so damaged or stale cells are skipped and named exactly as the tables do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.convergence import heldout_trend, read_loss
from harness.report.metric_info import arrow
from harness.report.runs import Run, load_runs


@dataclass(frozen=True)
class Curve:
    """One trained cell's curves and the facts the convergence table shows."""

    run: Run
    label: str
    steps: Sequence[int]
    loss: Sequence[float]
    heldout_steps: Sequence[int]
    heldout_loss: Sequence[float]
    budget_steps: int | None
    early_stopped: bool
    best_step: int | None

    @property
    def best_heldout(self) -> float | None:
        return min(self.heldout_loss) if self.heldout_loss else None

    def convergence(self) -> str:
        """Whether the held-out loss had stopped improving when training ended."""
        trend = heldout_trend(self.heldout_loss, self.early_stopped)
        return "–" if trend is None else str(trend)


def cell_label(run: Run, all_params: Sequence[Mapping[str, Any]]) -> str:
    """``method`` plus the parameters that differ among the cells of its task."""
    varying = sorted({k for p in all_params for k in p if any(q.get(k) != p.get(k) for q in all_params)})
    shown = [f"{k}={run.params[k]}" for k in varying if k in run.params]
    return run.method + (f" ({', '.join(shown)})" if shown else "")


def load_curves(roots: Sequence[Path]) -> tuple[list[Curve], list[str]]:
    """Every verified trained run under the ``roots`` with a loss file, and the skip notes."""
    runs, notes = [], []
    for root in roots:
        loaded = load_runs(root)
        runs += loaded.runs
        notes += [f"skipped {s}" for s in loaded.skipped]
    by_task: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        raw = read_loss(run.path)
        if raw is not None:
            by_task.setdefault(run.task, []).append((run, raw))
    curves = []
    for trained in by_task.values():
        params = [r.params for r, _ in trained]
        for run, raw in trained:
            held = raw.get("heldout") or {}
            curves.append(Curve(
                run=run, label=cell_label(run, params), steps=raw.get("step", []), loss=raw.get("loss", []),
                heldout_steps=held.get("step", []), heldout_loss=held.get("loss", []),
                budget_steps=raw.get("budget_steps"), early_stopped=bool(raw.get("early_stopped")),
                best_step=raw.get("best_step"),
            ))
    return sorted(curves, key=lambda c: (c.run.task, c.label)), notes


def smooth(values: Sequence[float], window: int = 5) -> list[float]:
    """Trailing moving average: one optimizer step's loss is one noisy micro-sample."""
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_curves(curves: Sequence[Curve], out: Path) -> list[Path]:
    """One PNG per task: smoothed training loss (thin) and held-out loss (markers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for task in sorted({c.run.task for c in curves}):
        fig = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, curve in enumerate(c for c in curves if c.run.task == task):
            colour = f"C{i % 10}"
            ax.plot(curve.steps, smooth(curve.loss), lw=0.9, alpha=0.6, color=colour)
            if curve.heldout_loss:
                ax.plot(curve.heldout_steps, curve.heldout_loss, marker="o", ms=3, lw=1.6, color=colour,
                        label=curve.label)
            else:
                ax.plot([], [], color=colour, label=curve.label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("next-token loss (thin: train, 5-step mean; dots: held-out)")
        ax.set_title(f"{task}: training curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"curves-{task}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def curves_markdown(curves: Sequence[Curve], metric_set: str = "official") -> str:
    """A table per task: how far each cell trained, beside its dev score."""
    lines = []
    for task in sorted({c.run.task for c in curves}):
        rows = [c for c in curves if c.run.task == task]
        metrics = list(rows[0].run.metrics(metric_set)) if rows else []
        lines += [f"### {task}", "",
                  "| cell | steps / budget | early stop | best held-out loss (step) | converged | "
                  + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |",
                  "|---|---|---|---|---|" + "---|" * len(metrics)]
        for c in rows:
            best = "–" if c.best_heldout is None else f"{c.best_heldout:.3f} ({c.best_step})"
            scores = c.run.metrics(metric_set)
            lines.append(f"| {c.label} | {len(c.loss)} / {c.budget_steps} | {'yes' if c.early_stopped else 'no'} | "
                         f"{best} | {c.convergence()} | " + " | ".join(f"{scores[m]:.3f}" for m in metrics) + " |")
        lines.append("")
    return "\n".join(lines)
