"""What a table needs to know about a metric: its direction and its short label.

Direction decides bold, the orientation of paired tests and the arrow in a row label, so
it must come from one declared place: the metric registry of :mod:`harness.metrics`
(``METRICS``; a task plugin registers its own metrics there). A metric in a results
folder that nobody registered here is treated as a score (higher is better) and the
table says so, rather than guessing silently.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Short row labels of the official LaMP metrics; any other metric shows its own name.
METRIC_LABELS: dict[str, str] = {
    "accuracy": "acc", "f1": "F1", "mae": "MAE", "rmse": "RMSE", "rouge-1": "R-1", "rouge-L": "R-L",
}


def declared_direction(metric: str) -> bool | None:
    """True when higher is better, False when lower is, None when no registered metric says."""
    from harness.metrics import get_metric
    from harness.registry import RegistryError

    try:
        return get_metric(metric).higher_is_better
    except RegistryError:
        return None


def higher_is_better(metric: str) -> bool:
    """The metric's declared direction; an undeclared metric counts as a score."""
    declared = declared_direction(metric)
    return True if declared is None else declared


def arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


def label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def row_label(task: str, metric: str) -> str:
    return f"{task} {label(metric)} {arrow(metric)}"


def undeclared_notes(metrics: Iterable[str]) -> list[str]:
    """One note per metric whose direction no registry declares (so bold may be wrong)."""
    return [f"metric {m!r} declares no direction; treated as higher is better"
            for m in sorted(set(metrics)) if declared_direction(m) is None]
