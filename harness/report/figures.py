"""Figures beside each table: grouped bars with 95% CIs, and quality against cost.

Matplotlib is imported only when a figure is drawn, so reading tables stays light.
Cells whose fit stopped before its budget are left out of every figure: a bar would
present their number as the method's result, which the tables refuse to do.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.grid import Cell, Grid
from harness.report.metric_info import arrow, label
from harness.report.render import TITLES


def _shown(cell: Cell | None, metric: str) -> bool:
    return cell is not None and metric in cell.value and not cell.under_budget


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(grid: Grid, what: str) -> str:
    omitted = " (under-budget cells omitted)" if any(c.under_budget for c in grid.cells.values()) else ""
    return f"{what}{omitted}\n{grid.describe()}\nmetrics: {grid.metric_set}"


def figure_bars(grid: Grid, path_stem: Path) -> list[Path]:
    """Per task, grouped bars (one group per metric, one bar per column) with 95% CIs."""
    plt = _pyplot()
    n = len(grid.tasks)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.6 * nrows), squeeze=False)
    colors = plt.get_cmap("tab10" if len(grid.columns) <= 10 else "tab20")
    for ax, task in zip(axes.flat, grid.tasks):
        metrics = grid.metrics[task]
        width = 0.8 / max(1, len(grid.columns))
        for j, col in enumerate(grid.columns):
            xs, ys, lo, hi = [], [], [], []
            for k, metric in enumerate(metrics):
                cell = grid.cells.get((task, col))
                if not _shown(cell, metric):
                    continue
                v = cell.value[metric]  # type: ignore[union-attr]
                ci = cell.ci.get(metric) or (v, v)  # type: ignore[union-attr]
                xs.append(k + (j - (len(grid.columns) - 1) / 2) * width)
                ys.append(v)
                lo.append(max(0.0, v - ci[0]))
                hi.append(max(0.0, ci[1] - v))
            if xs:  # an empty bar set would give the legend a handle without this column's colour
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=colors(j % colors.N), label=col.label)
        ax.set_xticks(range(len(metrics)), [f"{label(m)} {arrow(m)}" for m in metrics])
        ax.set_title(task)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    _legend_and_title(fig, axes, _title(grid, TITLES[grid.which]), [c.label for c in grid.columns])
    return _save(fig, path_stem)


def figure_quality_vs_cost(grid: Grid, path_stem: Path) -> list[Path]:
    """Per task: the first metric against training time and against inference time per example."""
    plt = _pyplot()
    n = len(grid.tasks)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 6.4), squeeze=False)
    colors = plt.get_cmap("tab10" if len(grid.columns) <= 10 else "tab20")
    for i, task in enumerate(grid.tasks):
        metric = grid.metrics[task][0]
        for r, (key, xlabel) in enumerate((("fit_seconds", "training seconds"),
                                           ("predict_seconds_per_example", "inference s / example"))):
            ax = axes[r][i]
            for j, col in enumerate(grid.columns):
                cell = grid.cells.get((task, col))
                if not _shown(cell, metric):
                    continue
                x = float(np.mean([run.cost.get(key, 0.0) for run in cell.runs]))  # type: ignore[union-attr]
                v = cell.value[metric]  # type: ignore[union-attr]
                ci = cell.ci.get(metric) or (v, v)  # type: ignore[union-attr]
                ax.errorbar([x], [v], yerr=[[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]], fmt="o",
                            color=colors(j % colors.N), label=col.label, capsize=2)
            ax.set_xscale("symlog", linthresh=0.01 if r else 1.0)
            ax.set_xlim(left=0.0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{label(metric)} {arrow(metric)}")
            ax.set_title(task, fontsize=9)
            ax.grid(alpha=0.3)
    _legend_and_title(fig, axes, _title(grid, "Quality vs cost (error bars: 95% CI)"), [c.label for c in grid.columns])
    return _save(fig, path_stem)


def _legend_and_title(fig: Any, axes: Any, title: str, order: Sequence[str]) -> None:
    """One legend for every column of the figure, in column order (a column may be missing from some tasks)."""
    found: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            found.setdefault(name, handle)
    seen = {name: found[name] for name in order if name in found}
    ncol = min(6 if max(map(len, seen), default=0) <= 30 else 3, max(1, len(seen)))
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    width = max(60, int(fig.get_figwidth() * 14))
    wrapped = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    fig.suptitle(wrapped, fontsize=9)
    legend_rows = math.ceil(len(seen) / ncol)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * legend_rows, 1, 1 - 0.035 * (wrapped.count("\n") + 1)))


def _save(fig: Any, stem: Path) -> list[Path]:
    plt = _pyplot()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
