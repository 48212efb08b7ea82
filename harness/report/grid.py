"""A table's content before it is drawn: one setting, its columns, and a cell per task x column.

One setting per table: runs are grouped by everything that changes what a score means
(data kind and generator, split, LLM, settings profile, decoding mode, example limit,
generation caps); the metric set (official or parsed) is chosen for the whole report.
The encoder is per column: the paper's Contriever baseline runs with its own encoder
beside PPlug's bge, so a column whose encoder differs from the table's is labelled with
it. A task whose cells in one setting come from different data files is refused with
the run directories named, because no header could describe it honestly.

Cell values are built from the run records with pandas (mean and sample std over seeds);
uncertainty is added by :mod:`harness.report.significance`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.report.convergence import run_trend
from harness.report.paper import PAPER_ORDER
from harness.report.roles import Roles
from harness.report.runs import Run

TABLES = ("1", "ablation", "2", "3", "cost")
TASK_ORDER = ("lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp6", "lamp7")
#: The kinds of reference a cell is tested against (see :mod:`harness.report.significance`).
REFERENCES = ("adhoc", "control", "best_baseline", "versus")


@dataclass(frozen=True, order=True)
class Setting:
    """Everything besides task, method and seed that changes what a number means."""

    data_kind: str
    data_family: str  # synthetic generator version+seed, or "" for real files
    split: str
    split_kind: str
    llm: str
    profile: str  # "paper" or "small"
    decoding: str  # "free" or "constrained"
    limit: str
    generation: str  # beams and token caps

    def describe(self, *, models: bool = True) -> str:
        data = f"data: {self.data_kind}" + (f" ({self.data_family})" if self.data_family else "")
        parts = [data, f"split: {self.split}" + (f" ({self.split_kind}-based)" if self.split_kind else "")]
        if models:
            parts.append(f"LLM: {self.llm}")
        parts += [f"profile: {self.profile}", f"decoding: {self.decoding} ({self.generation})",
                  f"examples: {'all' if self.limit == 'None' else 'first ' + self.limit}"]
        return "; ".join(parts)


def setting_of(run: Run, *, with_models: bool = True) -> Setting:
    detail = run.data.get("detail") or {}
    marker = detail.get("synthetic") or {}
    family = ""
    if marker:
        family = "generator v{} seed {}".format(marker.get("version", "?"), marker.get("seed", "?"))
    g = run.generation
    generation = f"beams {g.get('num_beams', '?')}, max input {g.get('max_input_tokens', '?')} tokens"
    if g.get("max_new_tokens") is not None:
        generation += f", max new {g['max_new_tokens']}"
    return Setting(
        data_kind=str(run.data.get("kind", "?")), data_family=family, split=run.split,
        split_kind=str(detail.get("split_kind", "")), llm=run.llm if with_models else "*", profile=run.profile,
        decoding=run.decoding, limit=str(run.limit), generation=generation,
    )


def group_runs(runs: Iterable[Run], *, with_models: bool = True) -> dict[Setting, list[Run]]:
    """Split runs into settings; refuse a task that mixes data files within one setting."""
    groups: dict[Setting, list[Run]] = defaultdict(list)
    for run in runs:
        groups[setting_of(run, with_models=with_models)].append(run)
    for setting, members in groups.items():
        by_task: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
        for run in members:
            by_task[run.task][str(run.data.get("checksum"))].append(run)
        for task, checksums in by_task.items():
            if len(checksums) > 1:
                lines = [f"  checksum {c[:12]}…: {', '.join(str(r.path) for r in rs[:3])}" for c, rs in checksums.items()]
                raise ValueError(
                    f"{task} has runs on {len(checksums)} different data files in one setting "
                    f"({setting.describe()}); refusing to put them in one table:\n" + "\n".join(lines)
                    + "\nMove one set of runs to another --runs directory."
                )
    return dict(sorted(groups.items()))


@dataclass(frozen=True, order=True)
class Column:
    """A table column: a method with fixed params and encoder (and LLM x encoder in Table 2)."""

    rank: tuple[Any, ...]
    method: str
    params_key: str
    encoder: str
    models: tuple[str, str] | None = None
    label: str = field(default="", compare=False)


@dataclass(frozen=True)
class Comparison:
    """A paired test of a cell against one reference column of its row.

    The test pools seeds: it resamples questions and holds each column's seed mean fixed,
    so it says nothing about training randomness. ``per_seed`` keeps the advantage on each
    training seed both columns ran (set only when they share two or more), because a
    pooled p under 0.05 whose seeds point different ways would not survive a new training
    run, and a reader must see that before trusting a marker.
    """

    against: str  # the reference column's label
    test: stats.PairedTest
    per_seed: tuple[tuple[int, float], ...] = ()  # (seed, advantage > 0: better), shared seeds only

    @property
    def seeds_agree(self) -> bool:
        """Every shared seed's advantage has the pooled advantage's sign (true with fewer than two)."""
        return all((adv > 0) == (self.test.advantage > 0) and adv != 0 for _, adv in self.per_seed)


@dataclass
class Cell:
    """One task x column: its runs (one per seed) and their statistics per metric."""

    runs: list[Run]
    value: dict[str, float] = field(default_factory=dict)
    per_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> seed -> rescored value
    std: dict[str, float | None] = field(default_factory=dict)
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    tests: dict[str, dict[str, Comparison]] = field(default_factory=lambda: {k: {} for k in REFERENCES})
    note: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    @property
    def under_budget(self) -> bool:
        """Any seed whose fit stopped short of its budget makes the cell not a result."""
        return any(r.trained_to_budget is False for r in self.runs)

    @property
    def trained(self) -> bool:
        """A cell of a trained method: its runs report a budget verdict."""
        return any(r.trained_to_budget is not None for r in self.runs)

    def budget_note(self) -> str:
        """Whether the cell's runs trained to their full budget, with their step counts.

        The budget is the one the run's settings give: the profile's, or the overrides
        the column's label names (e.g. ``max_train_examples=600``), so the note says "its"
        budget and the label says whose."""
        trained = [r for r in self.runs if r.trained_to_budget is not None]
        short = [r for r in trained if r.trained_to_budget is False]
        details = sorted({r.budget_detail() for r in (short or trained)} - {""})
        verdict = (f"{len(short)} of {len(trained)} seeds under budget" if short
                   else "trained to its full budget")
        trends = [t for t in (run_trend(r.path) for r in trained) if t is not None]
        falling = [t for t in trends if not t.converged]
        if len(trained) == 1 and trends:  # one run: its own figures; several: a count
            ending = f"; {trends[0].sentence()}"
        elif falling:
            ending = f"; held-out loss still falling at the end in {len(falling)} of {len(trends)} seeds"
        else:
            ending = "; held-out loss converged in every seed" if trends else ""
        donors = sorted({d for d in (r.fit_shared_from for r in trained) if d})
        if donors:  # train s is the donor's; training done while predicting (OPPU's users) is only there
            ending += (f"; fit shared with run {', '.join(donors)} (same training, other decoding; "
                       "training done while predicting is in that run's cost)")
        return verdict + (f" ({'; '.join(details)})" if details else "") + ending


@dataclass
class Grid:
    """A table's content: rows (task, metric), columns, cells, and what it is about."""

    which: str
    setting: Setting
    metric_set: str
    columns: list[Column]
    tasks: list[str]
    metrics: dict[str, list[str]]
    cells: dict[tuple[str, Column], Cell]
    resamples: int = 0
    notes: list[str] = field(default_factory=list)
    #: A column every other column is also tested against (``bench table --versus``), by label or method.
    versus: str | None = None

    def rows(self) -> list[tuple[str, str]]:
        return [(t, m) for t in self.tasks for m in self.metrics[t]]

    def runs(self) -> list[Run]:
        return [r for c in self.cells.values() for r in c.runs]

    def describe(self) -> str:
        """The setting, the encoder (Table 2 names LLM and encoder per column) and the question count."""
        runs = self.runs()
        if self.which == "2":
            text = self.setting.describe(models=False)
        else:
            main = table_encoder(runs)
            others = sorted({r.encoder for r in runs} - {main})
            text = (f"{self.setting.describe()}; encoder: {main}"
                    + (f" (columns marked [{'/'.join(others)}] use that one)" if others else ""))
        return f"{text}; {self.questions()}"

    def questions(self) -> str:
        """How many questions each task's cells scored (the reader's sense of the CI width)."""
        counts = {t: sorted({r.n_examples for (tt, _), c in self.cells.items() if tt == t for r in c.runs})
                  for t in self.tasks}
        if len({tuple(v) for v in counts.values()}) == 1 and len(next(iter(counts.values()), [])) == 1:
            return f"questions: {next(iter(counts.values()))[0]} per task"
        parts = [f"{t} {v[0]}" if len(v) == 1 else f"{t} {v[0]}–{v[-1]}" for t, v in counts.items()]
        return "questions: " + ", ".join(parts)


def table_encoder(runs: Sequence[Run]) -> str:
    """The encoder most runs of a table used; columns with another one name theirs."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.encoder] += 1
    return min(counts, key=lambda e: (-counts[e], e)) if counts else ""


def task_rank(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), task) if task in TASK_ORDER else (len(TASK_ORDER), task)


def columns_for(which: str, runs: Sequence[Run], roles: Roles) -> dict[Column, list[Run]]:
    """The columns a table shows and the runs (all tasks, all seeds) behind each.

    Table 1 always carries the paper's nine columns and the declared control of every
    method it shows (a column nobody ran shows ``–``, so a missing control is visible).
    """
    present = {r.method for r in runs}
    by_key: dict[tuple[str, str, str, tuple[str, str] | None], list[Run]] = defaultdict(list)
    for run in runs:
        if roles.in_table(which, run.method, present):
            models = (run.llm, run.encoder) if which == "2" else None
            by_key[(run.method, run.params_key, run.encoder, models)].append(run)
    main_encoder = table_encoder(runs)
    if which == "1" and by_key:
        shown = {method for method, _, _, _ in by_key}
        controls = [c for m in sorted(shown) if (c := roles[m].control) is not None]
        for method in (*PAPER_ORDER, *controls):
            if method not in present:
                by_key.setdefault((method, "{}", main_encoder, None), [])
    variants: dict[str, set[str]] = defaultdict(set)
    for method, params_key, _, _ in by_key:
        variants[method].add(params_key)
    out: dict[Column, list[Run]] = {}
    for (method, params_key, encoder, models), members in by_key.items():
        label = method
        shown = _non_default(method, params_key, members)
        if len(variants[method]) > 1:
            shown = sorted(set(shown) | set(_params_label(params_key, variants[method]).split(", ")) - {"default"})
        if shown:
            label += f" ({', '.join(shown)})"
        if models is not None:
            label = f"{models[0]} + {models[1]}: {label}"
        elif encoder != main_encoder:
            label += f" [{encoder}]"
        out[Column(roles.rank(method, PAPER_ORDER), method, params_key, encoder, models, label)] = members
    ordered = sorted(out, key=lambda c: (c.models or ("", ""), c.rank, _sortable(c.params_key), c.encoder))
    if which != "2":
        ordered = _controls_after_their_method(ordered, roles)
    return {c: out[c] for c in ordered}


def _controls_after_their_method(columns: list[Column], roles: Roles) -> list[Column]:
    """Move each declared control's columns right after the last column of a method declaring it."""
    methods = [c.method for c in columns]
    result = list(columns)
    for control in dict.fromkeys(methods):
        owners = [m for m in roles.controlled_by(control, methods) if m != control]
        if not owners:
            continue
        moving = [c for c in result if c.method == control]
        rest = [c for c in result if c.method != control]
        anchor = max(i for i, c in enumerate(rest) if c.method == owners[0])
        result = rest[: anchor + 1] + moving + rest[anchor + 1:]
    return result


def _non_default(method: str, params_key: str, members: Sequence[Run]) -> list[str]:
    """``k=v`` for each parameter that differs from the method's default under the runs'
    profile, so a column run with e.g. ``history_text=fields`` never reads as the default.
    Empty for unregistered methods (their defaults are unknown) and for empty columns."""
    from harness.params import method_params
    from harness.registries import METHODS
    from harness.registry import RegistryError

    if not members:
        return []
    try:
        defaults = dataclasses.asdict(method_params(METHODS.get(method), {}, profile=members[0].profile, name=method))
    except (RegistryError, ValueError, TypeError):
        return []
    mine = json.loads(params_key)
    return [f"{k}={mine[k]}" for k in sorted(mine) if k in defaults and defaults[k] != mine[k]]


def _params_label(params_key: str, all_keys: set[str]) -> str:
    """Only the parameters that differ between a method's variants (e.g. ``k=4``)."""
    mine = json.loads(params_key)
    others = [json.loads(k) for k in all_keys]
    differing = sorted(k for k in mine if any(o.get(k) != mine[k] for o in others))
    return ", ".join(f"{k}={mine[k]}" for k in differing) or "default"


def _sortable(params_key: str) -> tuple[Any, ...]:
    """Sort variants by their parameter values, numerically where numbers (k=2 before k=10)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
                 for _, v in sorted(json.loads(params_key).items()))


def metric_names(task: str, runs: Sequence[Run], metric_set: str) -> list[str]:
    """The task's declared metric order, else the order in the runs' metrics.json."""
    from harness.registries import TASKS

    try:
        declared = list(TASKS.get(task).metrics)
    except Exception:  # noqa: BLE001 - an unregistered (e.g. plugin) task still tabulates
        declared = []
    seen = list(dict.fromkeys(m for r in runs for m in r.metrics(metric_set)))
    return [m for m in declared if m in seen] + [m for m in seen if m not in declared]


def build_grid(which: str, setting: Setting, runs: Sequence[Run], roles: Roles, *,
               metric_set: str = "official") -> Grid | None:
    """Columns and cells with their seed means (None when nothing belongs in the table)."""
    columns = columns_for(which, runs, roles)
    if not any(columns.values()):
        return None
    cells: dict[tuple[str, Column], Cell] = {}
    records = []
    for column, members in columns.items():
        for run in members:
            for metric, value in run.metrics(metric_set).items():
                records.append({"task": run.task, "column": column, "metric": metric, "value": value})
    frame = pd.DataFrame.from_records(records, columns=["task", "column", "metric", "value"])
    by_cell: dict[tuple[str, Column], list[Run]] = defaultdict(list)
    for column, members in columns.items():
        for run in members:
            by_cell[(run.task, column)].append(run)
    for key, members in by_cell.items():
        cells[key] = Cell(runs=sorted(members, key=lambda r: r.seed))
    summary = frame.groupby(["task", "column", "metric"], sort=False)["value"].agg(["mean", "std"])
    for (task, column, metric), row in summary.iterrows():
        cell = cells[(task, column)]
        cell.value[metric] = float(row["mean"])
        cell.std[metric] = None if pd.isna(row["std"]) else float(row["std"])
    tasks = sorted({t for t, _ in cells}, key=task_rank)
    metrics = {t: metric_names(t, [r for (tt, _), c in cells.items() if tt == t for r in c.runs], metric_set)
               for t in tasks}
    grid = Grid(which, setting, metric_set, list(columns), tasks, metrics, cells)
    _version_notes(grid)
    return grid


def _version_notes(grid: Grid) -> None:
    """Flag package versions that differ between runs of one table (hashes ignore them)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for run in grid.runs():
        for pkg, version in run.versions.items():
            if pkg != "persona-bench":
                seen[pkg].add(str(version))
    for pkg, versions in sorted(seen.items()):
        if len(versions) > 1:
            grid.notes.append(f"runs used different {pkg} versions: {', '.join(sorted(versions))}")
