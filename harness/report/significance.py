"""Uncertainty for a grid: bootstrap CIs per cell and paired tests within each task row.

Every cell of a row is rescored from its predictions on the same bootstrap draws
(:mod:`harness.stats`), so two cells' draws are paired. What is rescored follows the
grid's metric set: the raw generation for ``official``, the parsed prediction for
``parsed`` (:data:`harness.report.runs.PREDICTION_FIELD`).

Each cell is tested against up to four references of its row (same LLM x encoder):

* ``adhoc`` — the untrained, unpersonalised baseline;
* ``control`` — the method's declared control (PPlug vs prompt-tuning, OPPU vs
  task-lora): same budget and data without the user's history, so beating it is
  evidence of personalisation rather than task adaptation. Where the control ran in
  several settings, the column agreeing with the tested one on the settings both record
  (soft-token count, learning rates, budget) is the reference, and the table notes any
  shared setting in which the chosen control still differs;
* ``best_baseline`` — for the PPlug families, the best baseline-family column of the row;
* ``versus`` — the column the reader named (``bench table --versus``), for any claim the
  three above do not cover (e.g. "a trained retriever adds nothing over BM25 at the same k").

With several training seeds the test pools them (each column's seed mean on every draw);
each comparison also keeps the advantage per seed both columns ran
(:class:`~harness.report.grid.Comparison`), and the tables give a marker only where those
agree in sign.

A cell whose fit stopped short of its budget is not the method's result: it gets no CI,
no test, and serves as no reference. A task that is not registered here cannot be
rescored; its cells keep metrics.json's values, without CIs, and the table says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from harness import stats
from harness.report.grid import Cell, Column, Comparison, Grid
from harness.report.metric_info import higher_is_better
from harness.report.roles import ADHOC, Roles
from harness.report.runs import load_golds, prediction_texts


def evaluator(task: str) -> stats.Evaluator:
    """Official scoring split into per-example parts and an exact aggregate (harness.metrics).

    Raises the registry's error when the task is not registered.
    """
    from harness.metrics import aggregate, per_example_scores
    from harness.registries import TASKS

    spec = TASKS.get(task)

    def evaluate(preds: Sequence[str], golds: Sequence[str]) -> Callable[[np.ndarray | None], Mapping[str, float]]:
        parts = per_example_scores(spec, list(preds), list(golds))
        return lambda idx: aggregate(spec, parts, idx)

    return evaluate


def add_statistics(grid: Grid, roles: Roles, *, resamples: int = 1000, seed: int = 0) -> None:
    """Fill CIs and paired tests of every row (nothing for the cost table or ``resamples=0``)."""
    grid.resamples = resamples if grid.which != "cost" else 0
    if grid.resamples <= 0:
        return
    for task in grid.tasks:
        _row(grid, task, roles, resamples, seed)


def _row(grid: Grid, task: str, roles: Roles, resamples: int, seed: int) -> None:
    """Bootstrap every cell of a task on shared draws, then the paired tests."""
    row = {col: grid.cells[(task, col)] for col in grid.columns if (task, col) in grid.cells}
    try:
        evaluate = evaluator(task)
    except Exception as exc:  # noqa: BLE001 - unregistered task: its numbers stay, its CIs cannot be made
        grid.notes.append(f"{task}: no CIs or paired tests (the task is not registered here, so its predictions "
                          f"cannot be rescored: {str(exc).split('. ')[0]}); values are those in metrics.json")
        return
    golds = next((g for cell in row.values() if (g := load_golds(cell.runs[0])) is not None), None)
    if golds is None:
        grid.notes.append(f"{task}: no CIs or tests (gold outputs unavailable: rerun, or restore the data files)")
        return
    ids = sorted(golds)
    indices = stats.draw_indices(len(ids), resamples, seed)
    gold_list = [golds[i] for i in ids]
    for col, cell in row.items():
        if cell.under_budget:
            continue
        _bootstrap_cell(grid, task, col, cell, ids, gold_list, evaluate, indices)
    _paired_tests(grid, task, row, roles)


def _bootstrap_cell(grid: Grid, task: str, col: Column, cell: Cell, ids: list[str], gold_list: list[str],
                    evaluate: stats.Evaluator, indices: np.ndarray) -> None:
    if any(set(r.records) != set(ids) for r in cell.runs):
        cell.note = "examples differ from the row's; no CI"
        return
    pred_lists = [prediction_texts(r, ids, grid.metric_set) for r in cell.runs]
    if any(p is None for p in pred_lists):
        cell.note = f"records lack the texts the {grid.metric_set} metrics score; no CI"
        return
    try:
        cell.boot = stats.bootstrap_values(evaluate, pred_lists, gold_list, indices)  # type: ignore[arg-type]
        full = [evaluate(pl, gold_list)(None) for pl in pred_lists]  # type: ignore[arg-type]
    except ValueError as exc:  # the scorer refuses these texts (e.g. a rating of "nan")
        cell.note = f"cannot rescore: {exc}"
        cell.boot = {}
        return
    for metric, values in cell.boot.items():
        cell.ci[metric] = stats.percentile_ci(values)
        cell.per_seed[metric] = {r.seed: f[metric] for r, f in zip(cell.runs, full)}
        recomputed = float(np.mean([f[metric] for f in full]))
        if metric in cell.value and abs(recomputed - cell.value[metric]) > 1e-6:
            grid.notes.append(f"{task} {col.label} {metric}: metrics.json says {cell.value[metric]:.4f}, "
                              f"rescoring the predictions gives {recomputed:.4f} (scorer changed since the run?)")


def _test(cell: Cell, ref: Cell, metric: str) -> stats.PairedTest | None:
    return stats.paired_bootstrap(cell.boot[metric], ref.boot[metric], cell.value[metric], ref.value[metric],
                                  higher_is_better(metric))


def per_seed_advantages(cell: Cell, ref: Cell, metric: str) -> tuple[tuple[int, float], ...]:
    """(seed, advantage) for every training seed both cells ran, oriented so > 0 is better;
    empty unless they share at least two seeds (one seed is the pooled test itself)."""
    mine, theirs = cell.per_seed.get(metric, {}), ref.per_seed.get(metric, {})
    shared = sorted(mine.keys() & theirs.keys())
    if len(shared) < 2:
        return ()
    sign = 1.0 if higher_is_better(metric) else -1.0
    return tuple((s, sign * (mine[s] - theirs[s])) for s in shared)


def _paired_tests(grid: Grid, task: str, row: Mapping[Column, Cell], roles: Roles) -> None:
    for metric in grid.metrics[task]:
        up = higher_is_better(metric)
        scored = {c: cell for c, cell in row.items() if metric in cell.boot and metric in cell.value}
        for col, cell in scored.items():
            same_models = [c for c in scored if c.models == col.models and c != col]
            refs: dict[str, Column | None] = {
                "adhoc": next((c for c in same_models if c.method == ADHOC), None),
                "control": None,
                "best_baseline": None,
            }
            control = roles[col.method].control
            if control is not None:
                refs["control"] = matched_control(col, [c for c in same_models if c.method == control])
                if refs["control"] is not None and (differing := setting_differences(col, refs["control"])):
                    note = (f"{task} {col.label} is tested against its control {refs['control'].label}, which "
                            f"differs in the settings they share ({', '.join(differing)}): no control column "
                            "matches them")
                    if note not in grid.notes:  # once per row, not once per metric
                        grid.notes.append(note)
                if refs["control"] is None and any(c.method == control and c.models == col.models
                                                   for c in row if c != col):
                    grid.notes.append(f"{task} {col.label} vs its control {control}: no test (the control "
                                      "cell is under budget or could not be rescored)")
            if roles.gets_best_baseline_test(col.method):
                baselines = [c for c in same_models if roles.is_baseline(c.method)]
                if baselines:
                    refs["best_baseline"] = max(baselines, key=lambda b: scored[b].value[metric] * (1 if up else -1))
            if grid.versus is not None:
                refs["versus"] = versus_column(grid.versus, [c for c in scored if c.models == col.models], col)
            for kind, ref in refs.items():
                if ref is None:
                    continue
                test = _test(cell, scored[ref], metric)
                if test is not None:
                    cell.tests[kind][metric] = Comparison(ref.label, test,
                                                          per_seed_advantages(cell, scored[ref], metric))


def setting_differences(col: Column, other: Column) -> list[str]:
    """``name=mine vs theirs`` for every parameter both columns record with different values."""
    mine, theirs = json.loads(col.params_key), json.loads(other.params_key)
    return [f"{k}={mine[k]} vs {theirs[k]}" for k in sorted(mine.keys() & theirs.keys()) if mine[k] != theirs[k]]


def matched_control(col: Column, candidates: Sequence[Column]) -> Column | None:
    """The control column to test ``col`` against: the one agreeing with it on the most of
    the settings both record (PPlug with 4 soft tokens against the control with 4, not 1),
    the first in table order on a tie; None when there is no candidate."""
    return min(candidates, key=lambda c: len(setting_differences(col, c)), default=None)


def versus_candidates(name: str, columns: Sequence[Column]) -> list[Column]:
    """The columns ``name`` can mean: the one with that label as printed (``bm25 (k=4)``),
    else every column of the method called ``name``."""
    return [c for c in columns if c.label == name] or [c for c in columns if c.method == name]


def versus_column(name: str, row: Sequence[Column], col: Column) -> Column | None:
    """The column of ``row`` that ``name`` picks for ``col``'s test (None: none, or ``col`` itself).

    A method with several columns must be named by label, so no test silently picks one
    of them (:func:`harness.tables.build_grids` refuses such a name up front).
    """
    found = versus_candidates(name, row)
    return found[0] if len(found) == 1 and found[0] != col else None
