"""Official LaMP scoring (``eval/evaluation.py``), applied identically to every method.

* predictions and golds are stripped (``str(x).strip()``);
* classification (LaMP-1, LaMP-2): text -> its index in the label list, anything else
  -1 (always wrong); accuracy, and macro-F1 over the *full* label list with F1 = 0 for a
  label that is never gold nor predicted (sklearn's ``labels=..., average="macro"``);
* LaMP-3: ``float(pred)``; when that fails, whichever of 1 or 5 is farther from the gold
  (5 on a tie, as the official ``abs(1 - y) > abs(5 - y)`` test gives); MAE and RMSE;
* generation: ``rouge_score`` ROUGE-1 / ROUGE-L F-measure without stemming. The official
  script reports the bootstrap median of the mean (through ``evaluate``); we report the
  exact mean over examples, which that median estimates.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import TaskSpec

#: metric name -> True when higher is better.
METRIC_DIRECTION: dict[str, bool] = {
    "accuracy": True, "f1": True, "mae": False, "rmse": False, "rouge-1": True, "rouge-L": True,
}


@functools.lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)


def label_indices(labels: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(str(t).strip(), -1) for t in texts], dtype=np.int64)


def rating_values(predictions: Sequence[str], golds: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """LaMP-3's mapping of prediction and gold strings to numbers."""
    gold = np.array([float(str(g).strip()) for g in golds], dtype=np.float64)
    pred = np.empty(len(predictions), dtype=np.float64)
    for i, (p, y) in enumerate(zip(predictions, gold)):
        try:
            pred[i] = float(str(p).strip())
        except ValueError:
            pred[i] = 1.0 if abs(1 - y) > abs(5 - y) else 5.0
    return pred, gold


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    scores = []
    for c in range(n_labels):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp = float(np.sum((pred == c) & (gold != c)))
        fn = float(np.sum((pred != c) & (gold == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def per_example_scores(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-example quantities from which every metric is an exact aggregate.

    Classification returns the mapped ``pred`` / ``gold`` label indices (accuracy and
    macro-F1 are recomputed from any resample of them); LaMP-3 returns absolute and
    squared errors; generation returns per-example ROUGE F-measures. See
    :func:`aggregate`. This is what bootstrap CIs and paired tests resample.
    """
    _check(predictions, golds)
    if task.kind == "classification":
        return {"pred": label_indices(task.labels, predictions), "gold": label_indices(task.labels, golds)}
    if task.kind == "regression":
        pred, gold = rating_values(predictions, golds)
        return {"abs": np.abs(pred - gold), "sq": (pred - gold) ** 2}
    scorer = _rouge()
    r1, rl = [], []
    for p, g in zip(predictions, golds):
        s = scorer.score(str(g).strip(), str(p).strip())
        r1.append(s["rouge1"].fmeasure)
        rl.append(s["rougeL"].fmeasure)
    return {"rouge-1": np.array(r1), "rouge-L": np.array(rl)}


def aggregate(task: TaskSpec, parts: dict[str, np.ndarray], idx: np.ndarray | None = None) -> dict[str, float]:
    """The task's metrics from :func:`per_example_scores`, optionally over indices ``idx``."""
    take = (lambda a: a) if idx is None else (lambda a: a[idx])
    if task.kind == "classification":
        pred, gold = take(parts["pred"]), take(parts["gold"])
        return {"accuracy": float(np.mean(pred == gold)), "f1": macro_f1(pred, gold, len(task.labels))}
    if task.kind == "regression":
        return {"mae": float(np.mean(take(parts["abs"]))), "rmse": float(math.sqrt(np.mean(take(parts["sq"]))))}
    return {"rouge-1": float(np.mean(take(parts["rouge-1"]))), "rouge-L": float(np.mean(take(parts["rouge-L"])))}


def score(task: TaskSpec, predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """The official metrics of ``predictions`` against ``golds`` (aligned lists)."""
    return aggregate(task, per_example_scores(task, predictions, golds))


def _check(predictions: Sequence[str], golds: Sequence[str]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("nothing to score: no examples")


def _read_lamp(path: Path, task: TaskSpec, role: str) -> dict[str, str]:
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{role} file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise ValueError(f'{path}: expected {{"task": ..., "golds": [{{"id", "output"}}, ...]}}')
    if data.get("task") != task.lamp_name:
        raise ValueError(f'{path}: field "task" is {data.get("task")!r}, expected {task.lamp_name!r} for {task.name}')
    out: dict[str, str] = {}
    for i, rec in enumerate(data["golds"]):
        if not isinstance(rec, dict) or "id" not in rec or "output" not in rec:
            raise ValueError(f'{path}: record {i}: needs fields "id" and "output"')
        key = str(rec["id"])
        if key in out:
            raise ValueError(f'{path}: record {i}: duplicate id "{key}"')
        out[key] = str(rec["output"])
    return out


def score_files(task: TaskSpec, predictions_path: Path, golds_path: Path) -> dict[str, float]:
    """Score LaMP-format predictions against LaMP-format golds, aligned by id."""
    preds = _read_lamp(predictions_path, task, "predictions")
    golds = _read_lamp(golds_path, task, "golds")
    missing = sorted(set(golds) - set(preds))
    extra = sorted(set(preds) - set(golds))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold ids have no prediction in {predictions_path} (e.g. {missing[:5]})")
        if extra:
            parts.append(f"{len(extra)} predicted ids are not in {golds_path} (e.g. {extra[:5]})")
        raise ValueError("; ".join(parts))
    ids = list(golds)
    return score(task, [preds[i] for i in ids], [golds[i] for i in ids])
