"""A paired test of two finished runs on the questions both answered (``bench compare``).

Tables group cells by identical settings: a cell run on the first N questions (``--limit``,
as for OPPU, whose per-user stage is the costly part) gets its own table, apart from the
full-split cells it is meant to be read against, and runs in two results roots never
meet. A researcher still needs to ask "is A better than B on the same questions?", so
this module answers exactly that: it restricts both runs to their shared question ids,
rescores each with the official scorer (or the parsed set) and runs the tables' paired
bootstrap (:mod:`harness.stats`) on the same draws.

It refuses what would make the answer wrong rather than merely different: another task,
split or data file (the same id would be a different question), and golds that disagree.
A run that stopped short of its training budget is not its method's result (as in the
tables): it is compared only when the caller says so, and the report says it.
Differences that are part of the question (decoding mode, models, profile, params) are
printed beside the numbers, never hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import stats
from harness.report.metric_info import arrow, higher_is_better
from harness.report.runs import (
    METRIC_SETS,
    Damaged,
    Run,
    load_golds,
    prediction_texts,
    read_run,
)
from harness.report.significance import evaluator


@dataclass(frozen=True)
class MetricComparison:
    """One metric on the shared questions: both values, their 95% CIs, A's advantage and p."""

    metric: str
    a: float
    b: float
    a_ci: tuple[float, float] | None
    b_ci: tuple[float, float] | None
    test: stats.PairedTest | None


@dataclass(frozen=True)
class RunComparison:
    a: Run
    b: Run
    metric_set: str
    shared: int
    resamples: int
    metrics: list[MetricComparison]
    notes: list[str] = field(default_factory=list)


def compare_paths(a: Path, b: Path, *, metric_set: str = "official", resamples: int = 1000, seed: int = 0,
                  allow_under_budget: bool = False) -> RunComparison:
    """Read both run folders (verified as the tables read them) and compare them."""
    runs = []
    for path in (a, b):
        try:
            runs.append(read_run(path))
        except Damaged as exc:
            raise ValueError(f"{path}: {exc}") from None
    return compare_runs(*runs, metric_set=metric_set, resamples=resamples, seed=seed,
                        allow_under_budget=allow_under_budget)


def compare_runs(a: Run, b: Run, *, metric_set: str = "official", resamples: int = 1000, seed: int = 0,
                 allow_under_budget: bool = False) -> RunComparison:
    """Paired bootstrap of ``a`` against ``b`` on their shared questions.

    Raises ValueError when the two runs cannot be compared question by question.
    """
    if metric_set not in METRIC_SETS:
        raise ValueError(f"unknown metric set {metric_set!r}; choose one of {', '.join(METRIC_SETS)}")
    for what, mine, theirs in (("task", a.task, b.task), ("split", a.split, b.split),
                               ("data checksum", a.data.get("checksum"), b.data.get("checksum"))):
        if mine != theirs:
            raise ValueError(f"{a.path} and {b.path} differ in {what} ({mine} vs {theirs}): their question "
                             "ids do not name the same questions")
    notes = []
    for run in (a, b):
        if run.trained_to_budget is False:
            if not allow_under_budget:
                raise ValueError(f"{run.path} stopped short of its training budget ({run.budget_detail()}): it is "
                                 "not its method's result (pass --allow-under-budget to compare it anyway)")
            notes.append(f"{run.path} stopped short of its training budget ({run.budget_detail()}): "
                         "not its method's result")
    ids = [i for i in a.records if i in b.records]
    if not ids:
        raise ValueError(f"{a.path} and {b.path} share no question")
    gold_a, gold_b = load_golds(a), load_golds(b)
    if gold_a is None and gold_b is None:
        raise ValueError("neither run's gold outputs are available (rerun, or restore the data files)")
    disagree = [i for i in ids if gold_a is not None and gold_b is not None and gold_a[i] != gold_b[i]]
    if disagree:
        raise ValueError(f"the runs' gold outputs disagree on {len(disagree)} shared question(s), e.g. "
                         f"{disagree[0]!r}: not the same data")
    golds_by_id = gold_a if gold_a is not None else gold_b
    golds = [golds_by_id[i] for i in ids]  # type: ignore[index]
    preds = []
    for run in (a, b):
        texts = prediction_texts(run, ids, metric_set)
        if texts is None:
            raise ValueError(f"{run.path}: records lack the texts the {metric_set} metrics score")
        preds.append(texts)
    evaluate = evaluator(a.task)
    indices = stats.draw_indices(len(ids), resamples, seed)
    observed = [evaluate(p, golds)(None) for p in preds]
    boots = [stats.bootstrap_values(evaluate, [p], golds, indices) for p in preds] if resamples > 0 else [{}, {}]
    results = []
    for metric in observed[0]:
        va, vb = float(observed[0][metric]), float(observed[1][metric])
        ba, bb = boots[0].get(metric, np.zeros(0)), boots[1].get(metric, np.zeros(0))
        results.append(MetricComparison(
            metric=metric, a=va, b=vb, a_ci=stats.percentile_ci(ba), b_ci=stats.percentile_ci(bb),
            test=stats.paired_bootstrap(ba, bb, va, vb, higher_is_better(metric))))
    if a.decoding != b.decoding:
        notes.append(f"the runs decode differently (A {a.decoding}, B {b.decoding}): the difference includes "
                     "the decoding mode")
    return RunComparison(a=a, b=b, metric_set=metric_set, shared=len(ids), resamples=resamples,
                         metrics=results, notes=notes)


def differences(a: Run, b: Run) -> list[str]:
    """``setting: A's vs B's`` for every recorded setting in which the two runs differ."""
    fields = {"models": (f"{a.llm} + {a.encoder}", f"{b.llm} + {b.encoder}"), "profile": (a.profile, b.profile),
              "decoding": (a.decoding, b.decoding), "seed": (a.seed, b.seed),
              "questions run": (a.n_examples, b.n_examples)}
    out = [f"{name}: {mine} vs {theirs}" for name, (mine, theirs) in fields.items() if mine != theirs]
    for key in sorted(set(a.params) | set(b.params)):
        mine, theirs = (json.dumps(r.params[key], default=str) if key in r.params else "unset" for r in (a, b))
        if mine != theirs:
            out.append(f"{key}: {mine} vs {theirs}")
    return out


def _ci(ci: tuple[float, float] | None) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else ""


def render_comparison(result: RunComparison) -> str:
    """Markdown: what was compared, on how many questions, then one row per metric."""
    a, b = result.a, result.b
    lines = [
        f"# {a.task}: A against B on the {result.shared} questions both answered",
        "",
        f"- A: {a.method} (`{a.path}`)",
        f"- B: {b.method} (`{b.path}`)",
        (f"- A's setting: {a.llm} + {a.encoder}, profile {a.profile}, decoding {a.decoding}, seed {a.seed}; "
         "B's is the same except where the next line says"),
        f"- A vs B differ in: {'; '.join(differences(a, b)) or 'nothing recorded but the method'}",
        (f"- Data: {a.data.get('kind', '?')} {a.split} split, checksum {str(a.data.get('checksum'))[:12]}; "
         f"{result.metric_set} metrics"
         + (" (LaMP's scorer on the raw generation)" if result.metric_set == "official" else "")),
        f"- Paired bootstrap over questions, {result.resamples} resamples; advantage > 0 means A is better.",
        *(f"- Note: {n}" for n in result.notes),
        "",
        "| metric | A | B | A's advantage | p |",
        "|---|---|---|---|---|",
    ]
    for m in result.metrics:
        advantage = f"{m.test.advantage:+.3f}" if m.test else "–"
        p = f"{m.test.p:.3f}" if m.test else "–"
        lines.append(f"| {m.metric} {arrow(m.metric)} | {m.a:.3f}{_ci(m.a_ci)} | {m.b:.3f}{_ci(m.b_ci)} "
                     f"| {advantage} | {p} |")
    return "\n".join(lines) + "\n"
