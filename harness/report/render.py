"""Drawing grids as Markdown, LaTeX and CSV; the paper's figures as their own block.

What every rendered table says about itself (its header): the table, the data source,
the models, the settings profile, the decoding mode, the metric set (official or parsed)
and the question count; then the statistics used, and notes (runs skipped, methods or
tasks placed generically, rescoring mismatches).

Cell conventions: ``–`` not run (missing is never zero); bold the row's best; ``†``,
``‡`` and ``§`` flag significant improvements over adhoc, over the method's declared
control, and (PPlug families) over the row's best baseline. A cell whose fit stopped
before its budget shows its number struck through with "(under budget)" and is never
bold, tested, or used as a reference. The p-values themselves are in the paired-tests
block under each table and in the CSV.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.report import metric_info
from harness.report.grid import Cell, Column, Comparison, Grid
from harness.report.metric_info import higher_is_better, row_label
from harness.report.paper import (
    PAPER_METHODS,
    PAPER_SETTING,
    PAPER_TABLE1,
    paper_values,
)

FORMATS = ("md", "latex", "csv")
MISSING = "–"
ALPHA = 0.05
UNDER_BUDGET = "(under budget)"
MARKERS = {"adhoc": "†", "control": "‡", "best_baseline": "§"}
TITLES = {
    "1": "Table 1: personalization methods per task",
    "ablation": "Ablation: each method beside its declared variants",
    "2": "Table 2: ad-hoc and PPlug across LLM x encoder",
    "3": "Table 3: PPlug combined with retrieval (k retrieved items)",
    "cost": "Cost: training time, inference time per example, peak memory, stored bytes per user",
}
METRIC_SET_TEXT = {
    "official": "metrics: official (LaMP's eval/evaluation.py on the stripped raw generation; ROUGE: exact mean)",
    "parsed": "metrics: parsed (LaMP's scorer on task.parse_output(raw); NOT the official numbers)",
}


def fmt(value: float) -> str:
    return f"{value:.3f}"


# -- header ----------------------------------------------------------------------------------------
def header(grid: Grid) -> list[str]:
    lines = [TITLES[grid.which], grid.describe(), METRIC_SET_TEXT[grid.metric_set]]
    if grid.which != "cost":
        seeds = sorted({s for c in grid.cells.values() for s in c.seeds})
        several_seeds = any(len(c.runs) > 1 for c in grid.cells.values())
        stats_text = f"values: mean over seeds {seeds}" + (" ± std" if several_seeds else "")
        if grid.resamples:
            stats_text += (f"; [95% CI] by bootstrap over examples ({grid.resamples} resamples); paired bootstrap "
                           f"on the same examples, p<{ALPHA}: † better than adhoc, ‡ better than the method's "
                           "declared control, § (PPlug families) better than the row's best baseline")
            if grid.versus is not None:
                stats_text += f"; every column is also tested against {grid.versus} (paired tests below; no marker)"
            if several_seeds:
                stats_text += ("; with several seeds the test pools them, the paired tests list the advantage on "
                               "each seed both columns ran, and a marker needs every seed to agree in sign")
        stats_text += f"; bold: best; {MISSING}: not run"
        if any(c.under_budget for c in grid.cells.values()):
            stats_text += (f"; a number marked {UNDER_BUDGET} (struck through; in LaTeX parenthesised with "
                           "superscript ub) is not the method's result: its fit stopped before its "
                           "training budget (trained_to_budget false)")
        lines.append(stats_text + ".")
    notes = list(grid.notes)
    notes += [f"{task} {col.label}: {cell.budget_note()}" for (task, col), cell in grid.cells.items()
              if cell.trained]
    notes += metric_info.undeclared_notes(m for ms in grid.metrics.values() for m in ms)
    return lines + [f"Note: {n}" for n in notes]


# -- cells -----------------------------------------------------------------------------------------
def best_columns(grid: Grid, task: str, metric: str) -> set[Column]:
    """Columns whose displayed value is the best of the row (ties share the bold; under-budget cells never)."""
    shown = {c: round(cell.value[metric], 3) for c in grid.columns
             if (cell := grid.cells.get((task, c))) is not None and metric in cell.value and not cell.under_budget}
    if len(shown) < 2:
        return set()
    target = max(shown.values()) if higher_is_better(metric) else min(shown.values())
    return {c for c, v in shown.items() if v == target}


def significantly_better(comparison: Comparison | None) -> bool:
    """p below ALPHA, better, and every training seed both columns ran better too."""
    return (comparison is not None and comparison.test.advantage > 0 and comparison.test.p < ALPHA
            and comparison.seeds_agree)


def per_seed_text(comparison: Comparison) -> str:
    """``; seeds +0.297/-0.120, signs differ`` (empty with fewer than two shared seeds)."""
    if not comparison.per_seed:
        return ""
    values = "/".join(f"{adv:+.3f}" for _, adv in comparison.per_seed)
    return f"; seeds {values}" + ("" if comparison.seeds_agree else ", signs differ")


def markers(cell: Cell, metric: str) -> str:
    """Markers flag significant *improvements* only; the CSV has every p-value and sign."""
    return "".join(mark for kind, mark in MARKERS.items() if significantly_better(cell.tests[kind].get(metric)))


def cell_parts(grid: Grid, task: str, col: Column, metric: str, best: set[Column]) -> tuple[str, str, str, str]:
    """(value ± std, markers, ci text, style) of one cell; style is "", "bold" or "under budget"."""
    cell = grid.cells.get((task, col))
    if cell is None or metric not in cell.value:
        return MISSING, "", "", ""
    text = fmt(cell.value[metric])
    if cell.std.get(metric) is not None:
        text += f" ± {fmt(cell.std[metric])}"  # type: ignore[arg-type]
    if cell.under_budget:
        return text, "", "", "under budget"
    ci = cell.ci.get(metric)
    ci_text = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""
    return text, markers(cell, metric), ci_text, "bold" if col in best else ""


def _advantage(comparison: Comparison | None, name: bool) -> str:
    if comparison is None:
        return MISSING
    test = comparison.test
    return ((f"{comparison.against}: " if name else "")
            + f"{test.advantage:+.3f} (p {test.p:.3f}{per_seed_text(comparison)})")


def paired_rows(grid: Grid) -> tuple[list[str], list[list[str]]]:
    """The p-values behind the markers: one row per (task, metric, column) with a test."""
    head = ["tested row", "column", "vs adhoc", "vs control", "vs best baseline"]
    if grid.versus is not None:
        head.append(f"vs {grid.versus}")
    rows = []
    for task, metric in grid.rows():
        for col in grid.columns:
            cell = grid.cells.get((task, col))
            if cell is None or not any(metric in cell.tests[k] for k in cell.tests):
                continue
            row = [row_label(task, metric), col.label, _advantage(cell.tests["adhoc"].get(metric), False),
                   _advantage(cell.tests["control"].get(metric), True),
                   _advantage(cell.tests["best_baseline"].get(metric), True)]
            if grid.versus is not None:
                row.append(_advantage(cell.tests["versus"].get(metric), False))
            rows.append(row)
    return head, rows


# -- markdown --------------------------------------------------------------------------------------
def _md_table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * numeric_from + "---:|" * (len(head) - numeric_from)]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(grid: Grid) -> str:
    out = [f"**{line}**" if i == 0 else f"_{line}_" for i, line in enumerate(header(grid))]
    if grid.which == "cost":
        head, rows = cost_rows(grid)
        return "\n".join([*out, "", *_md_table(head, rows, numeric_from=2)]) + "\n"
    out += ["", "| task / metric | " + " | ".join(c.label for c in grid.columns) + " |",
            "|---|" + "---|" * len(grid.columns)]
    for task, metric in grid.rows():
        best = best_columns(grid, task, metric)
        cells = []
        for col in grid.columns:
            text, marks, ci, style = cell_parts(grid, task, col, metric, best)
            if style == "under budget":
                cells.append(f"~~{text}~~ {UNDER_BUDGET}")
                continue
            text = f"**{text}**" if style == "bold" else text
            cells.append(" ".join(x for x in (text + marks, ci) if x))
        out.append(f"| {row_label(task, metric)} | " + " | ".join(cells) + " |")
    head, rows = paired_rows(grid)
    if rows:
        out += ["", ("_Paired tests (advantage: positive = better whatever the metric's direction; "
                     "two-sided p, paired bootstrap):_"), "", *_md_table(head, rows, numeric_from=2)]
    return "\n".join(out) + "\n"


# -- latex -----------------------------------------------------------------------------------------
def latex_escape(text: str) -> str:
    return (text.replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%").replace("_", "\\_")
            .replace("#", "\\#").replace("±", "$\\pm$").replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$")
            .replace("–", "--").replace("†", "$^\\dagger$").replace("‡", "$^\\ddagger$").replace("§", "$^\\S$"))


def _latex_table(head: Sequence[str], body: Sequence[str], caption: str) -> str:
    return "\n".join([
        "\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{l{'r' * (len(head) - 1)}}}", "\\toprule",
        " & ".join(latex_escape(h) for h in head) + " \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}",
        f"\\caption{{{caption}}}", "\\end{table}",
    ]) + "\n"


def render_latex(grid: Grid) -> str:
    caption = latex_escape(" ".join(header(grid)))
    if grid.which == "cost":
        head, rows = cost_rows(grid)
        return _latex_table(head, [" & ".join(latex_escape(x) for x in row) + " \\\\" for row in rows], caption)
    head = ["task / metric", *(c.label for c in grid.columns)]
    body = []
    for task, metric in grid.rows():
        best = best_columns(grid, task, metric)
        cells = []
        for col in grid.columns:
            text, marks, ci, style = cell_parts(grid, task, col, metric, best)
            text = latex_escape(text)
            if style == "under budget":
                cells.append(f"({text})\\textsuperscript{{ub}}")
                continue
            text = f"\\textbf{{{text}}}" if style == "bold" else text
            text += latex_escape(marks)
            if ci:
                text += f" {{\\scriptsize {ci}}}"
            cells.append(text)
        body.append(" & ".join([latex_escape(row_label(task, metric)), *cells]) + " \\\\")
    out = _latex_table(head, body, caption)
    p_head, p_rows = paired_rows(grid)
    if p_rows:
        out += _latex_table(p_head, [" & ".join(latex_escape(x) for x in r) + " \\\\" for r in p_rows],
                            "Paired tests of the table above (advantage: positive = better; two-sided p).")
    return out


# -- csv -------------------------------------------------------------------------------------------
CSV_FIELDS = ("source", "table", "setting", "metric_set", "profile", "decoding", "task", "metric", "direction",
              "column", "method", "params", "llm", "encoder", "value", "std", "n_seeds", "ci_low", "ci_high",
              "trained_to_budget", "under_budget_value",
              "advantage_vs_adhoc", "p_vs_adhoc", "per_seed_vs_adhoc",
              "control", "advantage_vs_control", "p_vs_control", "per_seed_vs_control",
              "best_baseline", "advantage_vs_best_baseline", "p_vs_best_baseline", "per_seed_vs_best_baseline",
              "versus", "advantage_vs_versus", "p_vs_versus", "per_seed_vs_versus",
              "n_examples", "data_kind", "data_checksum", "split", "runs")


def _test_fields(kind: str, comparison: Comparison | None, *, named: bool) -> dict[str, Any]:
    """A paired test as CSV fields (advantage > 0: better, whatever the metric's direction)."""
    fields: dict[str, Any] = {f"advantage_vs_{kind}": "" if comparison is None else comparison.test.advantage,
                              f"p_vs_{kind}": "" if comparison is None else comparison.test.p,
                              f"per_seed_vs_{kind}": "" if comparison is None else
                              ";".join(f"{seed}:{adv:+.6g}" for seed, adv in comparison.per_seed)}
    if named:
        fields[kind] = "" if comparison is None else comparison.against
    return fields


def csv_rows(grid: Grid) -> list[dict[str, Any]]:
    """Long format: one row per (task, metric, column); cost tables add cost fields as metrics.

    An under-budget cell's number goes to ``under_budget_value``, never to ``value``.
    """
    rows = []
    cost_fields = extra_cost_fields(grid) if grid.which == "cost" else []
    for task in grid.tasks:
        for col in grid.columns:
            cell = grid.cells.get((task, col))
            if cell is None:
                continue
            for metric in grid.metrics[task] + cost_fields:
                row = _csv_row(grid, task, col, cell, metric, metric in cost_fields)
                if row is not None:
                    rows.append(row)
    return rows


def _csv_row(grid: Grid, task: str, col: Column, cell: Cell, metric: str, is_cost: bool) -> dict[str, Any] | None:
    if is_cost:
        values = [r.cost[metric] for r in cell.runs if metric in r.cost]
        if not values:
            return None
        value, std = stats.mean_std(values)
    elif metric in cell.value:
        value, std = cell.value[metric], cell.std.get(metric)
    else:
        return None
    hidden = cell.under_budget and not is_cost
    ci = cell.ci.get(metric)
    first = cell.runs[0]
    budgets = {r.trained_to_budget for r in cell.runs}
    return {
        "source": "ours", "table": grid.which, "setting": grid.describe(), "metric_set": grid.metric_set,
        "profile": grid.setting.profile, "decoding": grid.setting.decoding, "task": task, "metric": metric,
        "direction": "" if is_cost else ("higher" if higher_is_better(metric) else "lower"),
        "column": col.label, "method": col.method, "params": col.params_key, "llm": first.llm,
        "encoder": first.encoder, "value": "" if hidden else value, "std": "" if std is None or hidden else std,
        "n_seeds": len(cell.runs), "ci_low": ci[0] if ci else "", "ci_high": ci[1] if ci else "",
        "trained_to_budget": "" if budgets == {None} else str(not cell.under_budget).lower(),
        "under_budget_value": value if hidden else "",
        **_test_fields("adhoc", cell.tests["adhoc"].get(metric), named=False),
        **_test_fields("control", cell.tests["control"].get(metric), named=True),
        **_test_fields("best_baseline", cell.tests["best_baseline"].get(metric), named=True),
        **_test_fields("versus", cell.tests["versus"].get(metric), named=True),
        "n_examples": first.n_examples, "data_kind": first.data.get("kind"),
        "data_checksum": first.data.get("checksum"), "split": first.split,
        "runs": ";".join(str(r.path) for r in cell.runs),
    }


def write_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    frame = pd.DataFrame.from_records(list(rows), columns=list(CSV_FIELDS)).astype(object).fillna("")
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


# -- cost ------------------------------------------------------------------------------------------
# The LLM-feedback columns (ROPG/RSPG): feedback is computed once per LLM, task and
# settings and shared through the cache, so a cell that found it there shows its records
# as reused and only the seconds it spent itself; ``train s`` includes them.
# OPPU trains each user's adapter when it first meets the user, i.e. while predicting: that
# time is inside ``infer s/ex`` and shown on its own beside ``train s``.
COST_FIELDS = ("fit_seconds", "user_train_seconds", "feedback_records", "feedback_reused", "feedback_seconds",
               "predict_seconds_per_example", "peak_rss_mb", "shared_bytes", "stored_bytes_per_user")
COST_LABELS = {"fit_seconds": "train s", "user_train_seconds": "per-user train s (in infer s/ex)",
               "feedback_records": "feedback records",
               "feedback_reused": "of which reused", "feedback_seconds": "feedback s (in train s)",
               "predict_seconds_per_example": "infer s/ex", "peak_rss_mb": "peak RSS MB",
               "shared_bytes": "stored, shared", "stored_bytes_per_user": "stored per user"}


def extra_cost_fields(grid: Grid) -> list[str]:
    """The standard cost fields, then any other numeric figure a method reported."""
    extra = sorted({k for r in grid.runs() for k, v in r.cost.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COST_FIELDS})
    return [*COST_FIELDS, *extra]


def human(value: float, key: str) -> str:
    if key.endswith(("bytes_per_user", "_bytes")):
        for unit in ("B", "KB", "MB", "GB"):
            if abs(value) < 1024 or unit == "GB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1024
    if key.endswith(("_records", "_reused")):  # counts
        return f"{value:.0f}"
    if key.endswith("seconds_per_example"):
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def cost_rows(grid: Grid) -> tuple[list[str], list[list[str]]]:
    fields = [f for f in COST_FIELDS if any(f in r.cost for r in grid.runs())]
    head = ["task", "method", "quality", *(COST_LABELS[f] for f in fields)]
    rows = []
    for task in grid.tasks:
        metric = grid.metrics[task][0]
        for col in grid.columns:
            cell = grid.cells.get((task, col))
            if cell is None:
                continue
            quality = MISSING
            if metric in cell.value:
                quality = f"{metric_info.label(metric)} {metric_info.arrow(metric)} {fmt(cell.value[metric])}"
                if cell.under_budget:
                    quality = f"~~{quality}~~ {UNDER_BUDGET}"
            costs = []
            for f in fields:
                values = [r.cost[f] for r in cell.runs if f in r.cost]
                text = human(float(np.mean(values)), f) if values else MISSING
                if f == "peak_rss_mb" and any(r.cost.get("peak_rss_scope") == "process" for r in cell.runs):
                    text += " (process peak)"  # the kernel kept the old mark: not this cell's own
                costs.append(text)
            rows.append([task, col.label, quality, *costs])
    return head, rows


# -- the paper's published figures ---------------------------------------------------------------
def paper_block(fmt_name: str) -> str:
    """The paper's Table 1 from SPEC, labelled, in the requested format (never merged with ours)."""
    if fmt_name == "csv":
        return write_csv({"source": "paper", "table": "1", "setting": PAPER_SETTING, "metric_set": "official",
                          "task": v.task, "metric": v.metric,
                          "direction": "higher" if higher_is_better(v.metric) else "lower",
                          "column": v.column, "method": v.method, "value": v.value, "split": "dev"}
                         for v in paper_values())
    rows = []
    for (task, metric), values in PAPER_TABLE1.items():
        best = max(values) if higher_is_better(metric) else min(values)
        rows.append((row_label(task, metric), [(fmt(v), v == best) for v in values]))
    if fmt_name == "latex":
        body = [" & ".join([latex_escape(name), *(f"\\textbf{{{t}}}" if b else t for t, b in cells)]) + " \\\\"
                for name, cells in rows]
        return _latex_table(["task / metric", *PAPER_METHODS], body,
                            f"PAPER (published, not computed here): {latex_escape(PAPER_SETTING)}")
    out = [f"**PAPER (published figures, not computed here): {PAPER_SETTING}**", "",
           "| task / metric | " + " | ".join(PAPER_METHODS) + " |", "|---|" + "---|" * len(PAPER_METHODS)]
    out += [f"| {name} | " + " | ".join(f"**{t}**" if b else t for t, b in cells) + " |" for name, cells in rows]
    return "\n".join(out) + "\n"
