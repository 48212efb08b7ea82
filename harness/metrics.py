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
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import TaskSpec

#: metric name -> True when higher is better.
METRIC_DIRECTION: dict[str, bool] = {
    "accuracy": True, "f1": True, "mae": False, "rmse": False, "rouge-1": True, "rouge-L": True,
}

#: The metrics each task kind produces, in table order.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "regression": ("mae", "rmse"),
    "generation": ("rouge-1", "rouge-L"),
}


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
    * generation: ``"rouge-1"`` and ``"rouge-L"`` (per-example F-measure).

    Paired tests may use ``parts[metric]`` directly for every metric but F1.
    """
    _check(task, predictions, golds)
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
    produced = KIND_METRICS.get(task.kind)
    if produced is None:
        raise ValueError(f"task {task.name}: kind {task.kind!r} has no official metrics (known: {', '.join(KIND_METRICS)})")
    unknown = [m for m in task.metrics if m not in produced]
    if unknown:
        raise ValueError(f"task {task.name}: {task.kind} tasks are scored with {', '.join(produced)}, "
                         f"not {', '.join(unknown)}")
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
