"""``bench table``: finished runs on disk -> the paper's tables (Markdown, LaTeX, CSV) and figures.

This module only orchestrates; each step lives in :mod:`harness.report`:

* :mod:`~harness.report.runs` finds and verifies runs (damaged, old-format and superseded
  runs are skipped and named, never fatal);
* :mod:`~harness.report.roles` places each method by its declared family, variant and
  control (never by its name);
* :mod:`~harness.report.grid` groups runs into one table per setting and builds cells;
* :mod:`~harness.report.significance` adds bootstrap CIs and paired tests;
* :mod:`~harness.report.render`, :mod:`~harness.report.figures` and
  :mod:`~harness.report.paper` draw them, and the paper's published figures apart.

What a reader must be able to trust: one setting (data, models, profile, decoding mode)
per table and one metric set (official or parsed) per report; missing is not zero;
uncertainty is shown; an under-budget cell is never shown as the method's result; ours
and the paper's never mix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.report.grid import TABLES, Grid, build_grid, group_runs
from harness.report.render import (
    FORMATS,
    csv_rows,
    paper_block,
    render_latex,
    render_markdown,
    write_csv,
)
from harness.report.roles import Roles
from harness.report.runs import METRIC_SETS, LoadedRuns, Run, Skipped, load_runs
from harness.report.significance import add_statistics, versus_candidates
from harness.store import atomic_write_text

__all__ = ["FORMATS", "METRIC_SETS", "TABLES", "LoadedRuns", "Run", "Skipped", "build_grids", "load_runs",
           "render_table"]


def build_grids(runs: Sequence[Run], which: str, *, metric_set: str = "official", resamples: int = 1000,
                seed: int = 0, roles: Roles | None = None, versus: str | None = None) -> list[Grid]:
    """One grid per setting (Table 2 puts LLM x encoder in the columns, not the setting), with statistics.

    ``versus`` names a column (label or single-column method) every column is also tested against.
    """
    roles = roles or Roles()
    grids = []
    for setting, members in group_runs(runs, with_models=which != "2").items():
        grid = build_grid(which, setting, members, roles, metric_set=metric_set)
        if grid is None:
            continue
        grid.versus = versus
        shown = {col.method for (_, col) in grid.cells}
        grid.notes[:0] = [roles.problems[m] for m in dict.fromkeys(c.method for c in grid.columns)
                          if m in shown and m in roles.problems]
        grids.append(grid)
    if versus is not None:
        _check_versus(grids, versus)  # before the bootstrap, so a typo costs nothing
    for grid in grids:
        add_statistics(grid, roles, resamples=resamples, seed=seed)
    return grids


def _check_versus(grids: Sequence[Grid], versus: str) -> None:
    """Refuse a ``versus`` name that picks no column, or that is a method with several columns."""
    ran = [c for g in grids for (_, c) in g.cells]  # Table 1 also lists columns nobody ran
    meant = {c.label for c in versus_candidates(versus, ran)}
    if len(meant) > 1:
        raise ValueError(f"--versus {versus!r} names a method with several columns; name one by its label: "
                         + ", ".join(sorted(meant)))
    if not meant:
        raise ValueError(f"--versus {versus!r} is no column with runs in these tables; columns: "
                         + ", ".join(sorted({c.label for c in ran})))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def render_table(runs: Path, which: str = "1", fmt: str = "md", paper: bool = False, out: Path | None = None,
                 *, metric_set: str = "official", resamples: int = 1000, seed: int = 0,
                 notify: Callable[[str], None] | None = None, versus: str | None = None) -> str:
    """Render one of the paper's tables from the runs under ``runs``; write it and figures to ``out``.

    Mixed settings become separate tables, each with a header saying what it is. Skipped
    run folders are listed in Markdown and LaTeX output; in CSV (which cannot carry
    them) they go to ``notify`` (default: stderr).
    """
    if which not in TABLES:
        raise ValueError(f"unknown table {which!r}; choose one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if metric_set not in METRIC_SETS:
        raise ValueError(f"unknown metric set {metric_set!r}; choose one of {', '.join(METRIC_SETS)}")
    if not Path(runs).exists():
        raise ValueError(f"no results directory {runs}")
    loaded = load_runs(Path(runs))
    if not loaded.runs:
        detail = "".join(f"\n  skipped {s}" for s in loaded.skipped)
        raise ValueError(f"no usable finished runs under {runs} (a finished run has config.json, metrics.json "
                         f"and its predictions){detail}")
    grids = build_grids(loaded.runs, which, metric_set=metric_set, resamples=resamples, seed=seed, versus=versus)
    if not grids:
        raise ValueError(f"no runs under {runs} belong in table {which!r} "
                         f"(methods present: {', '.join(sorted({r.method for r in loaded.runs}))})")
    if fmt == "csv":
        parts = [write_csv(row for g in grids for row in csv_rows(g))]
        for skipped in loaded.skipped:
            (notify or _stderr)(f"skipped {skipped}")
    else:
        render = render_markdown if fmt == "md" else render_latex
        parts = [render(g) for g in grids]
        if len(grids) > 1:
            note = (f"{len(grids)} separate tables: the runs differ in data, split, models, profile, decoding "
                    "or example limit, which are never merged.")
            parts.insert(0, (f"% {note}\n" if fmt == "latex" else f"_{note}_\n"))
        if loaded.skipped:
            parts.insert(0, _skipped_block(loaded.skipped, fmt))
    if paper:
        if which == "1":
            parts.append(paper_block(fmt) if fmt != "csv" else paper_block(fmt).split("\n", 1)[1])
        elif fmt != "csv":
            parts.append(("% " if fmt == "latex" else "_") + "SPEC carries only the paper's Table 1; "
                         f"no published figures are shown for table {which}." + ("" if fmt == "latex" else "_") + "\n")
    text = "\n".join(parts)
    if out is not None:
        _write_outputs(Path(out), which, fmt, text, grids, metric_set)
    return text


def _skipped_block(skipped: Sequence[Skipped], fmt: str) -> str:
    head = f"Skipped {len(skipped)} run folder{'s' if len(skipped) != 1 else ''} (not in any table below):"
    if fmt == "latex":
        return "\n".join([f"% {head}", *(f"%   {s}" for s in skipped)]) + "\n"
    return "\n".join([f"_{head}_", "", *(f"- `{s.path}`: {s.reason}" for s in skipped)]) + "\n"


def _write_outputs(out: Path, which: str, fmt: str, text: str, grids: Sequence[Grid], metric_set: str) -> None:
    """The table file, and figures next to it (one set per setting)."""
    from harness.report.figures import figure_bars, figure_quality_vs_cost

    ext = {"md": "md", "latex": "tex", "csv": "csv"}[fmt]
    kind = "" if metric_set == "official" else f"-{metric_set}"  # a parsed table never overwrites the official
    atomic_write_text(out / f"table-{which}{kind}.{ext}", text)
    for i, grid in enumerate(grids):
        suffix = kind + (f"-{i + 1}" if len(grids) > 1 else "")
        if which != "cost":
            figure_bars(grid, out / f"fig-table-{which}{suffix}")
        if which in ("1", "cost"):
            figure_quality_vs_cost(grid, out / f"fig-quality-vs-cost{suffix}")
