"""Turn finished runs on disk into the paper's tables (Markdown, LaTeX, CSV) and figures.

What a reader of a table must be able to trust:

* **One setting per table.** Runs are grouped by everything that changes what a score
  means: data kind and generator (synthetic vs real), split and split kind, LLM, example
  limit and decoding settings. The encoder is per column: the paper's Contriever baseline
  runs with its own encoder beside PPlug's bge, so a column whose encoder differs from the
  table's is labelled with it. Each group gets its own table whose header says
  what it is; a task whose cells in one group come from different data files is refused
  with the run directories named, because no header could describe it honestly.
* **Ours and the paper's never mix.** ``--paper`` prints the published figures (from
  SPEC) as a separate, labelled block.
* **Missing is not zero.** A cell without a run shows ``–``.
* **Uncertainty is shown.** 95% bootstrap CIs over examples, a paired test of each
  method against ``adhoc`` (``†``) and of PPlug variants against the best baseline of the
  row (``‡``), and mean ± std when several seeds exist (see :mod:`harness.stats`).

Tables: ``1`` (tasks x methods), ``ablation`` (pplug, pplug-mean, pplug-noinst), ``2``
(adhoc and pplug across LLM x encoder), ``3`` (PPlug with retrieval, by k), ``cost``
(training time, inference time per example, peak memory, stored bytes per user).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import stats
from harness.store import atomic_write_text, find_runs

TABLES = ("1", "ablation", "2", "3", "cost")
FORMATS = ("md", "latex", "csv")
MISSING = "–"
ALPHA = 0.05
ADHOC = "adhoc"
RAG_BASELINES = ("bm25", "recency", "contriever", "random")
ABLATION_METHODS = ("pplug", "pplug-mean", "pplug-noinst")
# Column order of the paper's Table 1, then our additions; unknown (plugin) methods follow.
METHOD_ORDER = (ADHOC, *RAG_BASELINES, "pplug", "pplug-mean", "pplug-noinst", "oppu")
TASK_ORDER = ("lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp6", "lamp7")
METRIC_LABELS = {"accuracy": "acc", "f1": "F1", "mae": "MAE", "rmse": "RMSE", "rouge-1": "R-1", "rouge-L": "R-L"}

# Published figures of the paper's Table 1 (SPEC: time-based dev, FlanT5-XXL + bge-base).
PAPER_SETTING = "PPlug paper (Liu et al., ACL 2025), Table 1: LaMP time-based dev, FlanT5-XXL + bge-base-en-v1.5"
PAPER_METHODS = ("ad-hoc", "BM25", "Recency", "Contriever", "ROPG-RL", "ROPG-KD", "RSPG-Pre", "RSPG-Post", "PPlug")
PAPER_TABLE1: dict[tuple[str, str], tuple[float, ...]] = {
    ("lamp1", "accuracy"): (0.498, 0.629, 0.639, 0.641, 0.682, 0.676, 0.672, 0.670, 0.680),
    ("lamp2", "accuracy"): (0.326, 0.345, 0.361, 0.362, 0.365, 0.365, 0.391, 0.416, 0.565),
    ("lamp2", "f1"): (0.255, 0.282, 0.291, 0.282, 0.292, 0.291, 0.312, 0.337, 0.501),
    ("lamp3", "mae"): (0.335, 0.293, 0.305, 0.297, 0.273, 0.274, 0.266, 0.246, 0.231),
    ("lamp3", "rmse"): (0.639, 0.585, 0.596, 0.592, 0.561, 0.566, 0.560, 0.539, 0.534),
    ("lamp4", "rouge-1"): (0.173, 0.192, 0.194, 0.190, 0.190, 0.193, 0.195, 0.207, 0.216),
    ("lamp4", "rouge-L"): (0.157, 0.175, 0.177, 0.174, 0.174, 0.176, 0.179, 0.188, 0.197),
    ("lamp5", "rouge-1"): (0.472, 0.467, 0.469, 0.471, 0.473, 0.472, 0.479, 0.480, 0.487),
    ("lamp5", "rouge-L"): (0.419, 0.419, 0.422, 0.421, 0.425, 0.423, 0.429, 0.429, 0.435),
    ("lamp7", "rouge-1"): (0.454, 0.451, 0.452, 0.440, 0.458, 0.451, 0.460, 0.468, 0.536),
    ("lamp7", "rouge-L"): (0.401, 0.401, 0.402, 0.391, 0.407, 0.402, 0.409, 0.416, 0.484),
}


# -- metric direction ----------------------------------------------------------------------------
def higher_is_better(metric: str) -> bool:
    """Direction from ``harness.metrics.METRIC_DIRECTION``; a plugin's unknown metric counts as a score."""
    from harness.metrics import METRIC_DIRECTION

    return METRIC_DIRECTION.get(metric, True)


def arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


# -- loading runs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One finished run directory, with what the tables need from its three files."""

    path: Path
    task: str
    method: str
    params: Mapping[str, Any]
    llm: str
    encoder: str
    seed: int
    split: str
    limit: int | None
    generation: Mapping[str, Any]
    data: Mapping[str, Any]  # metrics.json "data_source": kind, location, checksum, detail, split
    metrics: Mapping[str, float]
    cost: Mapping[str, float]
    n_examples: int
    versions: Mapping[str, str | None]

    @property
    def params_key(self) -> str:
        return json.dumps(self.params, sort_keys=True, default=str)


def load_runs(root: Path) -> list[Run]:
    """Every finished run under ``root`` (a directory with both config.json and metrics.json)."""
    runs = []
    for path in find_runs(Path(root)):
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        cfg = config["config"]
        runs.append(Run(
            path=path, task=cfg["task"], method=cfg["method"], params=cfg.get("params") or {},
            llm=cfg["llm"], encoder=cfg["encoder"], seed=int(cfg["seed"]), split=cfg["split"], limit=cfg.get("limit"),
            generation=cfg.get("generation") or {},
            data=metrics.get("data_source") or config.get("data_source") or {
                "kind": cfg["data_kind"], "checksum": cfg["data_checksum"], "location": cfg["data_location"],
                "detail": {}, "split": cfg["split"]},
            metrics=metrics["metrics"], cost=metrics.get("cost") or {}, n_examples=int(metrics.get("n_examples", 0)),
            versions=(config.get("provenance") or {}).get("versions") or {},
        ))
    return runs


def load_predictions(run: Run) -> dict[str, dict[str, Any]]:
    """The run's prediction records by example id (every shard file included)."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(run.path.glob("predictions*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                records[str(rec["id"])] = rec
    return records


def load_golds(run: Run, records: Mapping[str, Mapping[str, Any]]) -> dict[str, str] | None:
    """Gold outputs by id: from the records when the runner stored them, else the data source.

    Older runs did not store golds; then the task's loader re-reads the recorded data
    location, and the checksum must match the run's, otherwise no golds (and no CI).
    """
    if records and all("gold" in r for r in records.values()):
        return {i: str(r["gold"]) for i, r in records.items()}
    from harness.registries import TASKS

    try:
        task = TASKS.get(run.task)
        split = task.load_split(task, str(run.data.get("location")), run.split, seed=run.seed)
    except Exception:  # noqa: BLE001 - any failure just means the golds are unavailable
        return None
    if split.source.checksum != run.data.get("checksum"):
        return None
    return {e.id: e.output or "" for e in split.examples if e.id in records}


# -- grouping: never merge cells from different settings ----------------------------------------
@dataclass(frozen=True, order=True)
class Setting:
    """Everything besides task/method/seed that changes what a number means."""

    data_kind: str
    data_family: str  # synthetic generator version+seed, or "" for real files
    split: str
    split_kind: str
    llm: str
    limit: str
    decoding: str

    def describe(self, *, models: bool = True) -> str:
        data = f"data: {self.data_kind}" + (f" ({self.data_family})" if self.data_family else "")
        parts = [data, f"split: {self.split}" + (f" ({self.split_kind}-based)" if self.split_kind else "")]
        if models:
            parts.append(f"LLM: {self.llm}")
        parts += [f"examples: {'all' if self.limit == 'None' else 'first ' + self.limit}", f"decoding: {self.decoding}"]
        return "; ".join(parts)


def setting_of(run: Run, *, with_models: bool = True) -> Setting:
    detail = run.data.get("detail") or {}
    marker = detail.get("synthetic") or {}
    family = ""
    if marker:
        family = "generator v{} seed {}".format(marker.get("version", "?"), marker.get("seed", "?"))
    g = run.generation
    decoding = f"beams {g.get('num_beams', '?')}, max input {g.get('max_input_tokens', '?')} tokens"
    if g.get("max_new_tokens") is not None:
        decoding += f", max new {g['max_new_tokens']}"
    return Setting(
        data_kind=str(run.data.get("kind", "?")), data_family=family, split=run.split,
        split_kind=str(detail.get("split_kind", "")), llm=run.llm if with_models else "*",
        limit=str(run.limit), decoding=decoding,
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


# -- cells ---------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Column:
    """A table column: a method with fixed params and encoder, under one LLM x encoder in Table 2."""

    rank: tuple[int, str]
    method: str
    params_key: str
    encoder: str
    models: tuple[str, str] | None = None
    label: str = field(default="", compare=False)


@dataclass
class Cell:
    """One task x column: its runs (one per seed) and their statistics per metric."""

    runs: list[Run]
    value: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    p_adhoc: dict[str, stats.PairedTest] = field(default_factory=dict)
    p_best_baseline: dict[str, stats.PairedTest] = field(default_factory=dict)
    note: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


def method_rank(method: str) -> tuple[int, str]:
    """Paper order first; PPlug+retrieval variants after PPlug; plugins last, by name."""
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), method
    if is_pplug_rag(method):
        return METHOD_ORDER.index("pplug-noinst") + 1, method
    return len(METHOD_ORDER) + 1, method


def is_pplug(method: str) -> bool:
    return method.startswith("pplug")


def is_pplug_rag(method: str) -> bool:
    return method.startswith("pplug") and "rag" in method


def columns_for(which: str, runs: Sequence[Run]) -> dict[Column, list[Run]]:
    """The columns a table shows, and the runs (all tasks, all seeds) behind each."""
    wanted: Callable[[str], bool] = {
        "1": lambda m: m not in ABLATION_METHODS[1:] and not is_pplug_rag(m),
        "ablation": lambda m: m in ABLATION_METHODS,
        "2": lambda m: m in (ADHOC, "pplug"),
        "3": lambda m: m in RAG_BASELINES or m == "pplug" or is_pplug_rag(m),
        "cost": lambda m: True,
    }[which]
    by_key: dict[tuple[str, str, str, tuple[str, str] | None], list[Run]] = defaultdict(list)
    for run in runs:
        if wanted(run.method):
            models = (run.llm, run.encoder) if which == "2" else None
            by_key[(run.method, run.params_key, run.encoder, models)].append(run)
    variants: dict[str, set[str]] = defaultdict(set)
    for method, params_key, _, _ in by_key:
        variants[method].add(params_key)
    main_encoder = table_encoder(runs)
    out = {}
    for (method, params_key, encoder, models), members in by_key.items():
        label = method
        if len(variants[method]) > 1:
            label += f" ({_params_label(method, params_key, variants[method])})"
        if models is not None:
            label = f"{models[0]} + {models[1]}: {label}"
        elif encoder != main_encoder:
            label += f" [{encoder}]"
        out[Column(method_rank(method), method, params_key, encoder, models, label)] = members
    return dict(sorted(out.items(), key=lambda kv: (kv[0].models or ("", ""), kv[0].rank,
                                                    _sortable(kv[0].params_key), kv[0].encoder)))


def table_encoder(runs: Sequence[Run]) -> str:
    """The encoder most runs of a table used; columns with another one name theirs."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.encoder] += 1
    return min(counts, key=lambda e: (-counts[e], e)) if counts else ""


def _params_label(method: str, params_key: str, all_keys: set[str]) -> str:
    """Only the parameters that differ between a method's variants (e.g. ``k=4``)."""
    mine = json.loads(params_key)
    others = [json.loads(k) for k in all_keys]
    differing = sorted(k for k in mine if any(o.get(k) != mine[k] for o in others))
    return ", ".join(f"{k}={mine[k]}" for k in differing) or "default"


def _sortable(params_key: str) -> tuple[Any, ...]:
    """Sort variants by their parameter values, numerically where numbers (k=2 before k=10)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
                 for _, v in sorted(json.loads(params_key).items()))


def task_rank(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), task) if task in TASK_ORDER else (len(TASK_ORDER), task)


def metric_names(task: str, runs: Sequence[Run]) -> list[str]:
    """The task's declared metric order, else the order in the runs' metrics.json."""
    from harness.registries import TASKS

    try:
        declared = list(TASKS.get(task).metrics)
    except Exception:  # noqa: BLE001 - an unregistered (e.g. plugin) task still tabulates
        declared = []
    seen = list(dict.fromkeys(m for r in runs for m in r.metrics))
    return [m for m in declared if m in seen] + [m for m in seen if m not in declared]


def _evaluator(task: str) -> stats.Evaluator:
    """Official scoring split into per-example parts and an exact aggregate (harness.metrics)."""
    from harness.metrics import aggregate, per_example_scores
    from harness.registries import TASKS

    spec = TASKS.get(task)

    def evaluate(preds: Sequence[str], golds: Sequence[str]) -> Callable[[np.ndarray | None], Mapping[str, float]]:
        parts = per_example_scores(spec, list(preds), list(golds))
        return lambda idx: aggregate(spec, parts, idx)

    return evaluate


@dataclass
class Grid:
    """A table's content: rows (task, metric), columns, cells, and what it is about."""

    which: str
    setting: Setting
    columns: list[Column]
    tasks: list[str]
    metrics: dict[str, list[str]]
    cells: dict[tuple[str, Column], Cell]
    resamples: int
    notes: list[str]

    def rows(self) -> list[tuple[str, str]]:
        return [(t, m) for t in self.tasks for m in self.metrics[t]]

    def describe(self) -> str:
        """The setting, with the encoder (Table 2 names LLM and encoder per column instead)."""
        if self.which == "2":
            return self.setting.describe(models=False)
        runs = [r for c in self.cells.values() for r in c.runs]
        main = table_encoder(runs)
        others = sorted({r.encoder for r in runs} - {main})
        encoder = f"encoder: {main}" + (f" (columns marked [{'/'.join(others)}] use that one)" if others else "")
        return f"{self.setting.describe()}; {encoder}"


def build_grid(which: str, setting: Setting, runs: Sequence[Run], *, resamples: int = 1000,
               seed: int = 0) -> Grid | None:
    """Collect cells, then add bootstrap CIs and paired tests (None when nothing to show)."""
    columns = columns_for(which, runs)
    if not columns:
        return None
    cells: dict[tuple[str, Column], Cell] = {}
    for column, members in columns.items():
        by_task: dict[str, list[Run]] = defaultdict(list)
        for run in members:
            by_task[run.task].append(run)
        for task, task_runs in by_task.items():
            cells[(task, column)] = Cell(runs=sorted(task_runs, key=lambda r: r.seed))
    tasks = sorted({t for t, _ in cells}, key=task_rank)
    metrics = {t: metric_names(t, [r for (tt, _), c in cells.items() if tt == t for r in c.runs]) for t in tasks}
    grid = Grid(which, setting, list(columns), tasks, metrics, cells, resamples, [])
    for cell in cells.values():
        for metric in {m for r in cell.runs for m in r.metrics}:
            cell.value[metric], cell.std[metric] = stats.mean_std([r.metrics[metric] for r in cell.runs
                                                                   if metric in r.metrics])
    if which != "cost" and resamples > 0:
        for task in tasks:
            _row_statistics(grid, task, resamples, seed)
    _version_notes(grid)
    return grid


def _row_statistics(grid: Grid, task: str, resamples: int, seed: int) -> None:
    """Bootstrap every cell of a task on shared draws, then the paired tests."""
    row = {col: grid.cells[(task, col)] for col in grid.columns if (task, col) in grid.cells}
    golds: dict[str, str] | None = None
    preds: dict[Column, list[dict[str, dict[str, Any]]]] = {}
    for col, cell in row.items():
        preds[col] = [load_predictions(r) for r in cell.runs]
        if golds is None:
            golds = load_golds(cell.runs[0], preds[col][0])
    if golds is None:
        grid.notes.append(f"{task}: no CIs or tests (gold outputs unavailable: rerun, or restore the data files)")
        return
    ids = sorted(golds)
    evaluate = _evaluator(task)
    indices = stats.draw_indices(len(ids), resamples, seed)
    gold_list = [golds[i] for i in ids]
    for col, cell in row.items():
        if any(set(p) != set(ids) for p in preds[col]):
            cell.note = "examples differ from the row's; no CI"
            continue
        pred_lists = [[p[i]["prediction"] for i in ids] for p in preds[col]]
        cell.boot = stats.bootstrap_values(evaluate, pred_lists, gold_list, indices)
        full = [evaluate(pl, gold_list)(None) for pl in pred_lists]
        for metric, values in cell.boot.items():
            cell.ci[metric] = stats.percentile_ci(values)
            recomputed = float(np.mean([f[metric] for f in full]))
            if metric in cell.value and abs(recomputed - cell.value[metric]) > 1e-6:
                grid.notes.append(f"{task} {col.label} {metric}: metrics.json says {cell.value[metric]:.4f}, "
                                  f"rescoring the predictions gives {recomputed:.4f} (scorer changed since the run?)")
    _paired_tests(grid, task, row)


def _paired_tests(grid: Grid, task: str, row: Mapping[Column, Cell]) -> None:
    for metric in grid.metrics[task]:
        up = higher_is_better(metric)
        scored = {c: cell for c, cell in row.items() if metric in cell.boot}
        references = [c for c in scored if c.method == ADHOC]
        for col, cell in scored.items():
            ref = next((r for r in references if r.models == col.models), None)
            if ref is not None and col != ref:
                test = stats.paired_bootstrap(cell.boot[metric], scored[ref].boot[metric], cell.value[metric],
                                              scored[ref].value[metric], up)
                if test is not None:
                    cell.p_adhoc[metric] = test
        baselines = [c for c in scored if not is_pplug(c.method)]
        for col, cell in scored.items():
            mine = [b for b in baselines if b.models == col.models]
            if not is_pplug(col.method) or not mine:
                continue
            best = max(mine, key=lambda b: scored[b].value[metric] if up else -scored[b].value[metric])
            test = stats.paired_bootstrap(cell.boot[metric], scored[best].boot[metric], cell.value[metric],
                                          scored[best].value[metric], up)
            if test is not None:
                cell.p_best_baseline[metric] = test


def _version_notes(grid: Grid) -> None:
    """Flag package versions that differ between runs of one table (hashes ignore them)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for cell in grid.cells.values():
        for run in cell.runs:
            for pkg, version in run.versions.items():
                if pkg != "persona-bench":
                    seen[pkg].add(str(version))
    for pkg, versions in sorted(seen.items()):
        if len(versions) > 1:
            grid.notes.append(f"runs used different {pkg} versions: {', '.join(sorted(versions))}")


# -- rendering -----------------------------------------------------------------------------------
TITLES = {
    "1": "Table 1: personalization methods per task",
    "ablation": "Ablation: PPlug vs uniform aggregation (pplug-mean) vs no instruction embedding (pplug-noinst)",
    "2": "Table 2: ad-hoc and PPlug across LLM x encoder",
    "3": "Table 3: PPlug combined with retrieval (k retrieved items)",
    "cost": "Cost: training time, inference time per example, peak memory, stored bytes per user",
}


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _best(grid: Grid, task: str, metric: str) -> set[Column]:
    """Columns whose displayed value is the best of the row (ties share the bold)."""
    shown = {c: round(grid.cells[(task, c)].value[metric], 3) for c in grid.columns
             if (task, c) in grid.cells and metric in grid.cells[(task, c)].value}
    if len(shown) < 2:
        return set()
    target = max(shown.values()) if higher_is_better(metric) else min(shown.values())
    return {c for c, v in shown.items() if v == target}


def _significantly_better(test: stats.PairedTest | None) -> bool:
    return test is not None and test.advantage > 0 and test.p < ALPHA


def _markers(cell: Cell, metric: str) -> str:
    """Markers flag significant *improvements* only; the CSV has every p-value and sign."""
    marks = ""
    if _significantly_better(cell.p_adhoc.get(metric)):
        marks += "†"
    if _significantly_better(cell.p_best_baseline.get(metric)):
        marks += "‡"
    return marks


def _header(grid: Grid) -> list[str]:
    lines = [TITLES[grid.which], grid.describe()]
    if grid.which != "cost":
        seeds = sorted({s for c in grid.cells.values() for s in c.seeds})
        lines.append(
            f"Values: official LaMP metrics (ROUGE: exact mean), mean over seeds {seeds}"
            + (" ± std" if any(len(c.runs) > 1 for c in grid.cells.values()) else "")
            + (f"; [95% CI] by bootstrap over examples ({grid.resamples} resamples); "
               f"† better than adhoc (p<{ALPHA}), ‡ PPlug variant better than the row's best non-PPlug "
               f"method (p<{ALPHA}), both by paired bootstrap on the same examples" if grid.resamples else "")
            + f"; bold: best; {MISSING}: not run."
        )
    return lines + [f"Note: {n}" for n in grid.notes]


def _cell_parts(grid: Grid, task: str, col: Column, metric: str, best: set[Column]) -> tuple[str, str, str, bool]:
    """(value ± std, markers, ci text, bold) for one cell, or the missing mark."""
    cell = grid.cells.get((task, col))
    if cell is None or metric not in cell.value:
        return MISSING, "", "", False
    text = _fmt(cell.value[metric])
    if cell.std.get(metric) is not None:
        text += f" ± {_fmt(cell.std[metric])}"
    ci = cell.ci.get(metric)
    ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
    return text, _markers(cell, metric), ci_text, col in best


def _row_label(task: str, metric: str) -> str:
    return f"{task} {METRIC_LABELS.get(metric, metric)} {arrow(metric)}"


def render_markdown(grid: Grid) -> str:
    if grid.which == "cost":
        return _cost_markdown(grid)
    out = [f"**{line}**" if i == 0 else f"_{line}_" for i, line in enumerate(_header(grid))]
    out += ["", "| task / metric | " + " | ".join(c.label for c in grid.columns) + " |",
            "|---|" + "---|" * len(grid.columns)]
    for task, metric in grid.rows():
        best = _best(grid, task, metric)
        cells = []
        for col in grid.columns:
            text, marks, ci, bold = _cell_parts(grid, task, col, metric, best)
            text = f"**{text}**" if bold else text
            cells.append(" ".join(x for x in (text + marks, ci) if x))
        out.append(f"| {_row_label(task, metric)} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    return (text.replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%").replace("_", "\\_")
            .replace("#", "\\#").replace("±", "$\\pm$").replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$")
            .replace("–", "--").replace("†", "$^\\dagger$").replace("‡", "$^\\ddagger$"))


def render_latex(grid: Grid) -> str:
    if grid.which == "cost":
        head, rows = _cost_rows(grid)
        body = [" & ".join(_latex_escape(x) for x in row) + " \\\\" for row in rows]
    else:
        head = ["task / metric", *(c.label for c in grid.columns)]
        body = []
        for task, metric in grid.rows():
            best = _best(grid, task, metric)
            cells = []
            for col in grid.columns:
                text, marks, ci, bold = _cell_parts(grid, task, col, metric, best)
                text = _latex_escape(text)
                text = f"\\textbf{{{text}}}" if bold else text
                text += _latex_escape(marks)
                if ci:
                    text += f" {{\\scriptsize {ci}}}"
                cells.append(text)
            body.append(" & ".join([_latex_escape(_row_label(task, metric)), *cells]) + " \\\\")
    caption = _latex_escape(" ".join(_header(grid)))
    return "\n".join([
        "\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{l{'r' * (len(head) - 1)}}}", "\\toprule",
        " & ".join(_latex_escape(h) for h in head) + " \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}",
        f"\\caption{{{caption}}}", "\\end{table}",
    ]) + "\n"


CSV_FIELDS = ("source", "table", "setting", "task", "metric", "direction", "column", "method", "params", "llm",
              "encoder", "value", "std", "n_seeds", "ci_low", "ci_high", "advantage_vs_adhoc", "p_vs_adhoc",
              "advantage_vs_best_baseline", "p_vs_best_baseline", "n_examples", "data_kind", "data_checksum",
              "split", "runs")


def _test_fields(name: str, test: stats.PairedTest | None) -> dict[str, Any]:
    """A paired test as CSV fields (advantage > 0: better, whatever the metric's direction)."""
    return {f"advantage_vs_{name}": "" if test is None else test.advantage, f"p_vs_{name}": "" if test is None else test.p}


def csv_rows(grid: Grid) -> list[dict[str, Any]]:
    """Long format: one row per (task, metric, column); cost tables add cost fields as metrics."""
    rows = []
    cost_fields = _cost_fields(grid) if grid.which == "cost" else []
    for (task, col), cell in sorted(grid.cells.items(), key=lambda kv: (task_rank(kv[0][0]), kv[0][1])):
        for metric in grid.metrics[task] + cost_fields:
            if metric in cost_fields:
                values = [r.cost[metric] for r in cell.runs if metric in r.cost]
                if not values:
                    continue
                value, std = stats.mean_std(values)
            elif metric in cell.value:
                value, std = cell.value[metric], cell.std.get(metric)
            else:
                continue
            ci = cell.ci.get(metric)
            first = cell.runs[0]
            rows.append({
                "source": "ours", "table": grid.which, "setting": grid.describe(),
                "task": task, "metric": metric,
                "direction": ("higher" if higher_is_better(metric) else "lower") if metric in cell.value else "",
                "column": col.label, "method": col.method, "params": col.params_key, "llm": first.llm,
                "encoder": first.encoder, "value": value, "std": "" if std is None else std,
                "n_seeds": len(cell.runs), "ci_low": ci[0] if ci else "", "ci_high": ci[1] if ci else "",
                **_test_fields("adhoc", cell.p_adhoc.get(metric)),
                **_test_fields("best_baseline", cell.p_best_baseline.get(metric)),
                "n_examples": first.n_examples, "data_kind": first.data.get("kind"),
                "data_checksum": first.data.get("checksum"), "split": first.split,
                "runs": ";".join(str(r.path) for r in cell.runs),
            })
    return rows


def _write_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    return buf.getvalue()


# -- cost ----------------------------------------------------------------------------------------
COST_FIELDS = ("fit_seconds", "predict_seconds_per_example", "peak_rss_mb", "shared_bytes", "stored_bytes_per_user")
COST_LABELS = {"fit_seconds": "train s", "predict_seconds_per_example": "infer s/ex", "peak_rss_mb": "peak RSS MB",
               "shared_bytes": "stored, shared", "stored_bytes_per_user": "stored per user"}


def _cost_fields(grid: Grid) -> list[str]:
    """The standard cost fields, then any other numeric figure a method reported."""
    extra = sorted({k for c in grid.cells.values() for r in c.runs for k, v in r.cost.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COST_FIELDS})
    return [*COST_FIELDS, *extra]


def _human(value: float, key: str) -> str:
    if key.endswith("bytes_per_user") or key.endswith("_bytes"):
        for unit in ("B", "KB", "MB", "GB"):
            if abs(value) < 1024 or unit == "GB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1024
    if key.endswith("seconds_per_example"):
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _cost_rows(grid: Grid) -> tuple[list[str], list[list[str]]]:
    fields = [f for f in COST_FIELDS if any(f in r.cost for c in grid.cells.values() for r in c.runs)]
    head = ["task", "method", "quality", *(COST_LABELS[f] for f in fields)]
    rows = []
    for task in grid.tasks:
        metric = grid.metrics[task][0]
        for col in grid.columns:
            cell = grid.cells.get((task, col))
            if cell is None:
                continue
            quality = f"{METRIC_LABELS.get(metric, metric)} {arrow(metric)} {_fmt(cell.value[metric])}" \
                if metric in cell.value else MISSING
            costs = []
            for f in fields:
                values = [r.cost[f] for r in cell.runs if f in r.cost]
                costs.append(_human(float(np.mean(values)), f) if values else MISSING)
            rows.append([task, col.label, quality, *costs])
    return head, rows


def _cost_markdown(grid: Grid) -> str:
    head, rows = _cost_rows(grid)
    out = [f"**{line}**" if i == 0 else f"_{line}_" for i, line in enumerate(_header(grid))]
    out += ["", "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out) + "\n"


# -- the paper's published figures ---------------------------------------------------------------
def paper_block(fmt: str) -> str:
    """The paper's Table 1 from SPEC, labelled, in the requested format (never merged with ours)."""
    rows = []
    for (task, metric), values in PAPER_TABLE1.items():
        target = max(values) if higher_is_better(metric) else min(values)
        rows.append((task, metric, values, target))
    if fmt == "csv":
        return _write_csv({"source": "paper", "table": "1", "setting": PAPER_SETTING, "task": task, "metric": metric,
                           "direction": "higher" if higher_is_better(metric) else "lower", "column": method,
                           "method": method, "value": v, "split": "dev"}
                          for task, metric, values, _ in rows for method, v in zip(PAPER_METHODS, values))
    if fmt == "latex":
        body = [" & ".join([_latex_escape(_row_label(t, m)),
                            *(f"\\textbf{{{_fmt(v)}}}" if v == best else _fmt(v) for v in values)]) + " \\\\"
                for t, m, values, best in rows]
        return "\n".join([
            "\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{l{'r' * len(PAPER_METHODS)}}}",
            "\\toprule", " & ".join(["task / metric", *PAPER_METHODS]) + " \\\\", "\\midrule", *body, "\\bottomrule",
            "\\end{tabular}", f"\\caption{{PAPER (published, not computed here): {_latex_escape(PAPER_SETTING)}}}",
            "\\end{table}"]) + "\n"
    out = [f"**PAPER (published figures, not computed here): {PAPER_SETTING}**", "",
           "| task / metric | " + " | ".join(PAPER_METHODS) + " |", "|---|" + "---|" * len(PAPER_METHODS)]
    for task, metric, values, best in rows:
        out.append(f"| {_row_label(task, metric)} | "
                   + " | ".join(f"**{_fmt(v)}**" if v == best else _fmt(v) for v in values) + " |")
    return "\n".join(out) + "\n"


# -- figures -------------------------------------------------------------------------------------
def figure_bars(grid: Grid, path_stem: Path) -> list[Path]:
    """Per task, grouped bars (one group per metric, one bar per column) with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                if cell is None or metric not in cell.value:
                    continue
                v = cell.value[metric]
                ci = cell.ci.get(metric) or (v, v)
                xs.append(k + (j - (len(grid.columns) - 1) / 2) * width)
                ys.append(v)
                lo.append(max(0.0, v - ci[0]))
                hi.append(max(0.0, ci[1] - v))
            if xs:  # an empty bar set would give the legend a handle without this column's colour
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=colors(j % colors.N), label=col.label)
        ax.set_xticks(range(len(metrics)), [f"{METRIC_LABELS.get(m, m)} {arrow(m)}" for m in metrics])
        ax.set_title(task)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    _legend_and_title(fig, axes, f"{TITLES[grid.which]}\n{grid.describe()}", [c.label for c in grid.columns])
    return _save(fig, path_stem)


def figure_quality_vs_cost(grid: Grid, path_stem: Path) -> list[Path]:
    """Per task: the first metric against training time and against inference time per example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                if cell is None or metric not in cell.value:
                    continue
                x = float(np.mean([run.cost.get(key, 0.0) for run in cell.runs]))
                v = cell.value[metric]
                ci = cell.ci.get(metric) or (v, v)
                ax.errorbar([x], [v], yerr=[[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]], fmt="o",
                            color=colors(j % colors.N), label=col.label, capsize=2)
            ax.set_xscale("symlog", linthresh=0.01 if r else 1.0)
            ax.set_xlim(left=0.0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} {arrow(metric)}")
            ax.set_title(task, fontsize=9)
            ax.grid(alpha=0.3)
    _legend_and_title(fig, axes, f"Quality vs cost (error bars: 95% CI)\n{grid.describe()}",
                      [c.label for c in grid.columns])
    return _save(fig, path_stem)


def _legend_and_title(fig: Any, axes: Any, title: str, order: Sequence[str]) -> None:
    """One legend for every column of the figure, in column order (a column may be missing from some tasks)."""
    import textwrap

    found: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    seen = {label: found[label] for label in order if label in found}
    ncol = min(6 if max(map(len, seen), default=0) <= 30 else 3, max(1, len(seen)))
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    width = max(60, int(fig.get_figwidth() * 14))
    wrapped = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    fig.suptitle(wrapped, fontsize=9)
    legend_rows = math.ceil(len(seen) / ncol)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * legend_rows, 1, 1 - 0.035 * (wrapped.count("\n") + 1)))


def _save(fig: Any, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


# -- entry point ---------------------------------------------------------------------------------
def build_grids(runs: Sequence[Run], which: str, *, resamples: int = 1000, seed: int = 0) -> list[Grid]:
    """One grid per setting (Table 2 puts LLM x encoder in the columns, not the setting)."""
    grids = []
    for setting, members in group_runs(runs, with_models=which != "2").items():
        grid = build_grid(which, setting, members, resamples=resamples, seed=seed)
        if grid is not None:
            grids.append(grid)
    return grids


def render_table(runs: Path, which: str = "1", fmt: str = "md", paper: bool = False, out: Path | None = None,
                 *, resamples: int = 1000, seed: int = 0) -> str:
    """Render one of the paper's tables from the runs under ``runs``; write it and figures to ``out``.

    Mixed settings become separate tables, each with a header saying what it is.
    """
    if which not in TABLES:
        raise ValueError(f"unknown table {which!r}; choose one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not Path(runs).exists():
        raise ValueError(f"no results directory {runs}")
    loaded = load_runs(Path(runs))
    if not loaded:
        raise ValueError(f"no finished runs under {runs} (a finished run has config.json and metrics.json)")
    grids = build_grids(loaded, which, resamples=resamples, seed=seed)
    if not grids:
        raise ValueError(f"no runs under {runs} belong in table {which!r} "
                         f"(methods present: {', '.join(sorted({r.method for r in loaded}))})")
    if fmt == "csv":
        parts = [_write_csv(row for g in grids for row in csv_rows(g))]
    else:
        render = render_markdown if fmt == "md" else render_latex
        parts = [render(g) for g in grids]
        if len(grids) > 1:
            note = (f"{len(grids)} separate tables: the runs differ in data, split, models, example limit or "
                    "decoding, which are never merged.")
            parts.insert(0, (f"% {note}\n" if fmt == "latex" else f"_{note}_\n"))
    if paper:
        if which == "1":
            parts.append(paper_block(fmt) if fmt != "csv" else paper_block(fmt).split("\n", 1)[1])
        elif fmt != "csv":
            parts.append(("% " if fmt == "latex" else "_") + "SPEC carries only the paper's Table 1; "
                         f"no published figures are shown for table {which}." + ("" if fmt == "latex" else "_") + "\n")
    text = "\n".join(parts)
    if out is not None:
        _write_outputs(Path(out), which, fmt, text, grids)
    return text


def _write_outputs(out: Path, which: str, fmt: str, text: str, grids: Sequence[Grid]) -> None:
    """The table file, and figures next to it (one set per setting)."""
    ext = {"md": "md", "latex": "tex", "csv": "csv"}[fmt]
    atomic_write_text(out / f"table-{which}.{ext}", text)
    for i, grid in enumerate(grids):
        suffix = f"-{i + 1}" if len(grids) > 1 else ""
        if which != "cost":
            figure_bars(grid, out / f"fig-table-{which}{suffix}")
        if which in ("1", "cost"):
            figure_quality_vs_cost(grid, out / f"fig-quality-vs-cost{suffix}")
