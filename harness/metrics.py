"""Official LaMP scoring (``eval/evaluation.py`` of the LaMP repository), one rule set for all.

Every method's predictions go through these functions, so rows in a table differ only by
the method. The rules, as the official script applies them:

* predictions and golds are stripped (``str(x).strip()``);
* classification (LaMP-1, LaMP-2): each text maps to its index in ``task.labels``, anything
  else to -1. Accuracy is ``mean(pred == gold)``; F1 is sklearn's macro F1 with
  ``labels=range(len(labels))``: every listed label counts in the average, and a label
  that is neither gold nor predicted anywhere scores 0 (sklearn's ``zero_division``
  default). A -1 prediction is a false negative for its gold class and a false positive
  for no listed class. Faithful quirk: a gold that is not a label is also -1, so a -1
  prediction for it counts as correct in accuracy (it adds nothing to F1);
* LaMP-3: a prediction is ``float(pred)``; when that fails, whichever of 1 or 5 is farther
  from the gold (5 on a tie, as the official ``abs(1 - y) > abs(5 - y)`` test gives). MAE
  and RMSE. ``float`` also parses ``"nan"`` and ``"inf"``; the official scorer then fails
  inside sklearn ("Input contains NaN"), and so do we, with a clearer message;
* generation: ``rouge_score`` ROUGE-1 / ROUGE-L F-measure without stemming, against the
  single gold. The official script reports the bootstrap median of the mean (``evaluate``'s
  aggregator); we report the exact mean over examples, which that median estimates, so
  the number is deterministic.

Bootstrap CIs and paired tests resample example indices. :func:`per_example_scores` does
the per-example work once (label mapping, number parsing, ROUGE) and :func:`aggregate`
recomputes every metric exactly on any index resample, F1 included.

Metric registry: every metric a task may declare is a :class:`Metric` in :data:`METRICS`,
recording whether higher is better and how per-example values aggregate. The six official
metrics are built in and computed by the official rules above; a task plugin brings its
own metric by registering a :class:`Metric` with a ``per_example(prediction, gold)``
function before it builds its ``TaskSpec`` (or through the ``persona_bench.metrics``
entry point). Its values are added next to the official ones; the official ones never
change. Tables ask :func:`higher_is_better` / :func:`metric_direction`, never a name list.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.api import TaskSpec
from harness.registry import Registry

#: The metrics each task kind produces, in table order.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "regression": ("mae", "rmse"),
    "generation": ("rouge-1", "rouge-L"),
}

#: How per-example values become the metric: their ``mean``, the square root of their
#: mean (``root-mean``: RMSE from squared errors), or ``macro-f1`` over label indices
#: (official F1 only: it is not a function of per-example values).
Aggregation = Literal["mean", "root-mean", "macro-f1"]
AGGREGATIONS: tuple[str, ...] = ("mean", "root-mean", "macro-f1")


@dataclass(frozen=True)
class Metric:
    """One metric a task may declare: its direction, its aggregation, and who computes it.

    ``kinds`` lists the task kinds whose official scorer produces it (built-ins only). A
    plugin's own metric leaves ``kinds`` empty and gives ``per_example(prediction, gold)
    -> float``, called on stripped strings; ``aggregation`` is then ``mean`` or
    ``root-mean`` (``per_example`` then returns squares, as RMSE's parts are squared
    errors). ``per_example`` takes no part in equality, so a plugin module imported
    twice re-registers the same definition without error.
    """

    name: str
    higher_is_better: bool
    aggregation: Aggregation = "mean"
    kinds: tuple[str, ...] = ()
    per_example: Callable[[str, str], float] | None = field(default=None, compare=False)
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name.strip():
            problems.append("name must be a non-empty string")
        if not isinstance(self.higher_is_better, bool):
            problems.append(f"higher_is_better must be True or False, got {self.higher_is_better!r}")
        if self.aggregation not in AGGREGATIONS:
            problems.append(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        unknown = [k for k in self.kinds if k not in KIND_METRICS]
        if unknown:
            problems.append(f"kinds {unknown} are not task kinds ({', '.join(KIND_METRICS)})")
        if not self.kinds:
            if self.per_example is None or not callable(self.per_example):
                problems.append("a metric no official scorer produces needs per_example(prediction, gold) -> float")
            if self.aggregation == "macro-f1":
                problems.append("macro-f1 is the official F1's aggregation; a plugin metric aggregates by "
                                "'mean' or 'root-mean'")
        if problems:
            raise ValueError(f"metric {self.name!r}: " + "; ".join(problems))

    @property
    def direction(self) -> Literal["higher", "lower"]:
        return "higher" if self.higher_is_better else "lower"


def _check_metric(name: str, metric: Metric) -> None:
    if metric.name != name:
        raise ValueError(f"the Metric is called {metric.name!r}; register it under that name")


#: Every metric a task may declare, by name (built-ins and plugins).
METRICS: Registry[Metric] = Registry("metric", "persona_bench.metrics", base=Metric, instances=True,
                                     check=_check_metric)

BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric("accuracy", True, "mean", ("classification",), description="share of exact label matches"),
    Metric("f1", True, "macro-f1", ("classification",), description="sklearn macro F1 over the label list"),
    Metric("mae", False, "mean", ("regression",), description="mean absolute error of the rating"),
    Metric("rmse", False, "root-mean", ("regression",), description="root mean squared error of the rating"),
    Metric("rouge-1", True, "mean", ("generation",), description="ROUGE-1 F-measure, no stemming"),
    Metric("rouge-L", True, "mean", ("generation",), description="ROUGE-L F-measure, no stemming"),
)
for _metric in BUILTIN_METRICS:
    METRICS.register(_metric.name, _metric)

#: Built-in metric name -> True when higher is better. Kept for old callers; it does not
#: know plugin metrics: use :func:`higher_is_better` or :func:`metric_direction`.
METRIC_DIRECTION: dict[str, bool] = {m.name: m.higher_is_better for m in BUILTIN_METRICS}


def register_metric(metric: Metric) -> Metric:
    """Register a plugin's own metric (before building a ``TaskSpec`` that declares it)."""
    return METRICS.register(metric.name, metric)


def get_metric(name: str) -> Metric:
    """The registered metric; an unknown name raises :class:`harness.registry.RegistryError`."""
    return METRICS.get(name)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better (raises ``RegistryError`` if unknown)."""
    return get_metric(name).higher_is_better


def metric_direction(name: str) -> Literal["higher", "lower"]:
    """``"higher"`` or ``"lower"``: which way metric ``name`` is better."""
    return get_metric(name).direction


def metric_problems(kind: str, metrics: Sequence[str]) -> list[str]:
    """Why a task of ``kind`` cannot declare ``metrics`` (empty when it can).

    Each metric must be registered, and either produced by the kind's official scorer or
    computed by its own ``per_example`` function.
    """
    if kind not in KIND_METRICS:
        return [f"kind {kind!r} has no official metrics (known: {', '.join(KIND_METRICS)})"]
    problems = []
    for name in metrics:
        if name not in METRICS:
            problems.append(f"metric {name!r} is not registered (known: {', '.join(METRICS.names())}; "
                            "register a plugin metric with harness.metrics.register_metric)")
            continue
        metric = METRICS.get(name)
        if name not in KIND_METRICS[kind] and metric.per_example is None:
            problems.append(f"metric {name!r} is produced only for {', '.join(metric.kinds)} tasks, "
                            f"not {kind} ones")
    return problems


def _own_metrics(task: TaskSpec) -> list[Metric]:
    """The task's declared metrics that its kind's official scorer does not produce."""
    official = KIND_METRICS.get(task.kind, ())
    return [METRICS.get(m) for m in task.metrics if m not in official]


@functools.lru_cache(maxsize=1)
def _rouge():
    """One scorer per process: building it is cheap but not free, and it is stateless."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)


def label_indices(labels: Sequence[str], texts: Sequence[Any]) -> np.ndarray:
    """Each stripped text's index in ``labels``, -1 when it is not exactly a label."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(str(t).strip(), -1) for t in texts], dtype=np.int64)


def rating_values(predictions: Sequence[Any], golds: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """LaMP-3's numbers for prediction and gold strings (see the module docstring)."""
    gold = np.empty(len(golds), dtype=np.float64)
    for i, g in enumerate(golds):
        try:
            gold[i] = float(str(g).strip())
        except ValueError:
            raise ValueError(f"gold {i} ({str(g)!r}) is not a number; LaMP-3 golds are ratings 1..5") from None
    pred = np.empty(len(predictions), dtype=np.float64)
    for i, (p, y) in enumerate(zip(predictions, gold)):
        try:
            pred[i] = float(str(p).strip())
        except ValueError:
            pred[i] = 1.0 if abs(1 - y) > abs(5 - y) else 5.0
    for name, values, texts in (("prediction", pred, predictions), ("gold", gold, golds)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name} {i} ({str(texts[i])!r}) parses to {values[i]}; the official LaMP-3 scorer rejects "
                f"non-finite ratings ({bad.size} such {name}s)"
            )
    return pred, gold


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """sklearn's ``f1_score(gold, pred, labels=range(n_labels), average="macro")``.

    Per label c, F1 = 2·tp / (#gold == c + #pred == c), and 0 when both counts are 0; the
    macro average is over all ``n_labels``. -1 entries count for no label.
    """
    valid_pred, valid_gold = pred[pred >= 0], gold[gold >= 0]
    tp = np.bincount(gold[(pred == gold) & (gold >= 0)], minlength=n_labels)
    denom = np.bincount(valid_pred, minlength=n_labels) + np.bincount(valid_gold, minlength=n_labels)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    return float(np.mean(f1))


def per_example_scores(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-example parts from which :func:`aggregate` recomputes every metric exactly.

    Keys, each an array with one entry per example (arrays, so that ``parts[k][idx]``
    resamples them):

    * classification: ``"accuracy"`` (1.0 / 0.0), and ``"pred_index"`` / ``"gold_index"``
      (label indices, -1 off the list). Macro-F1 is not a mean of per-example values; it is
      recomputed from the index pairs of a resample;
    * regression: ``"mae"`` (absolute error) and ``"rmse"`` (squared error; the metric is
      the square root of its mean);
    * generation: ``"rouge-1"`` and ``"rouge-L"`` (per-example F-measure);
    * any plugin metric the task declares: its ``per_example`` values, under its name.

    Paired tests may use ``parts[metric]`` directly for every ``mean`` metric (see
    ``Metric.aggregation``); F1 and RMSE are recomputed per resample.
    """
    _check(task, predictions, golds)
    parts = _official_parts(task, predictions, golds)
    for metric in _own_metrics(task):
        per_example = metric.per_example
        assert per_example is not None  # metric_problems refused it otherwise
        parts[metric.name] = np.array([float(per_example(str(p).strip(), str(g).strip()))
                                       for p, g in zip(predictions, golds)], dtype=np.float64)
    return parts


def _official_parts(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> dict[str, np.ndarray]:
    """The official per-example parts of the task's kind (see :func:`per_example_scores`)."""
    if task.kind == "classification":
        pred, gold = label_indices(task.labels, predictions), label_indices(task.labels, golds)
        return {"accuracy": (pred == gold).astype(np.float64), "pred_index": pred, "gold_index": gold}
    if task.kind == "regression":
        pred, gold = rating_values(predictions, golds)
        return {"mae": np.abs(pred - gold), "rmse": (pred - gold) ** 2}
    scorer = _rouge()
    r1 = np.empty(len(golds), dtype=np.float64)
    rl = np.empty(len(golds), dtype=np.float64)
    for i, (p, g) in enumerate(zip(predictions, golds)):
        s = scorer.score(str(g).strip(), str(p).strip())
        r1[i], rl[i] = s["rouge1"].fmeasure, s["rougeL"].fmeasure
    return {"rouge-1": r1, "rouge-L": rl}


def aggregate(
    task: TaskSpec, parts: Mapping[str, np.ndarray], idx: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """The task's metrics from :func:`per_example_scores`, over the examples at ``idx``.

    ``idx`` may repeat indices (a bootstrap resample); ``None`` means all examples, which
    gives exactly :func:`score`.
    """
    if idx is not None:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("nothing to score: the index resample is empty")
        parts = {key: values[idx] for key, values in parts.items()}
    out = _official_aggregate(task, parts)
    for metric in _own_metrics(task):
        mean = float(np.mean(parts[metric.name]))
        out[metric.name] = math.sqrt(mean) if metric.aggregation == "root-mean" else mean
    return out


def _official_aggregate(task: TaskSpec, parts: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The official metrics of the task's kind from (resampled) parts."""
    if task.kind == "classification":
        return {
            "accuracy": float(np.mean(parts["accuracy"])),
            "f1": macro_f1(parts["pred_index"], parts["gold_index"], len(task.labels)),
        }
    if task.kind == "regression":
        return {"mae": float(np.mean(parts["mae"])), "rmse": math.sqrt(float(np.mean(parts["rmse"])))}
    return {"rouge-1": float(np.mean(parts["rouge-1"])), "rouge-L": float(np.mean(parts["rouge-L"]))}


def score(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """The official metrics of ``predictions`` against ``golds`` (aligned, same length)."""
    return aggregate(task, per_example_scores(task, predictions, golds))


def _check(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> None:
    """Refuse what the official rules cannot score, before any per-example work."""
    problems = metric_problems(task.kind, task.metrics)
    if problems:
        raise ValueError(f"task {task.name}: " + "; ".join(problems))
    if task.kind == "classification" and not task.labels:
        raise ValueError(f"task {task.name}: a classification task needs its label list")
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    if len(golds) == 0:
        raise ValueError(f"nothing to score for {task.name}: no examples")


def _read_lamp(path: Path, task: TaskSpec, role: str) -> dict[str, str]:
    """``{id: output}`` from a LaMP outputs-format file, naming the file in every error."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{role} file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{role} file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise ValueError(f'{role} file {path}: expected {{"task": ..., "golds": [{{"id": ..., "output": ...}}, ...]}}')
    if data.get("task") != task.lamp_name:
        raise ValueError(f'{role} file {path}: field "task" is {data.get("task")!r}, '
                         f"expected {task.lamp_name!r} for {task.name}")
    out: dict[str, str] = {}
    for i, rec in enumerate(data["golds"]):
        if not isinstance(rec, dict) or "id" not in rec or "output" not in rec:
            raise ValueError(f'{role} file {path}: record {i} needs fields "id" and "output"')
        key = str(rec["id"])
        if key in out:
            raise ValueError(f"{role} file {path}: record {i} repeats id {key!r}")
        out[key] = str(rec["output"])
    return out


def _first_few(ids: set[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in sorted(ids)[:n])
    return shown + (", ..." if len(ids) > n else "")


def score_files(task: TaskSpec, predictions_path: Path, golds_path: Path) -> dict[str, float]:
    """Score LaMP-format predictions against LaMP-format golds, aligned by id.

    Both files are ``{"task": "LaMP_k", "golds": [{"id", "output"}, ...]}``; the task
    names must be ``task.lamp_name`` and the id sets must be equal (as the official
    script asserts), so a partial predictions file fails loudly instead of scoring a
    subset.
    """
    preds = _read_lamp(predictions_path, task, "predictions")
    golds = _read_lamp(golds_path, task, "golds")
    if not golds:
        raise ValueError(f"golds file {golds_path}: no records to score")
    missing, extra = set(golds) - set(preds), set(preds) - set(golds)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} gold ids from {golds_path} have no prediction "
                            f"in {predictions_path}: {_first_few(missing)}")
        if extra:
            problems.append(f"{len(extra)} ids in {predictions_path} are not in {golds_path}: {_first_few(extra)}")
        raise ValueError("; ".join(problems))
    ids = list(golds)
    return score(task, [preds[i] for i in ids], [golds[i] for i in ids])
