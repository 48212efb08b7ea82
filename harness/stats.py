"""Uncertainty for table cells: bootstrap CIs over examples and paired tests between methods.

A LaMP dev set is a sample of questions, so a score is an estimate; two methods a few
hundredths apart may not differ at all. Every cell gets a 95% percentile-bootstrap
interval over examples, and each method is tested against a reference on the *same*
examples.

Why the metric is recomputed exactly on each resample instead of averaging per-example
numbers: macro-F1 and RMSE are not means of per-example values, and a CI must describe
the metric that is reported. ``harness.metrics`` splits scoring into per-example parts
and an exact aggregate, so each resample re-aggregates without re-running ROUGE.

Pairing: every cell of a table row is resampled with the same index draws (same seed,
same example order), so the bootstrap values of two cells are paired and the difference
of their values on one draw is a draw of the paired difference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TIE_TOLERANCE = 1e-12  # float noise must not turn "as extreme as observed" into "less extreme"

Evaluator = Callable[[Sequence[str], Sequence[str]], Callable[[np.ndarray | None], Mapping[str, float]]]
"""``evaluate(preds, golds)`` returns ``metrics_on(idx)``: the exact metrics of the examples
at indices ``idx`` (all when None). Per-example work (label mapping, ROUGE) happens once in
``evaluate``; ``metrics_on`` only aggregates, so a thousand resamples stay cheap."""


def from_scorer(scorer: Callable[[Sequence[str], Sequence[str]], Mapping[str, float]]) -> Evaluator:
    """An evaluator for a scorer with no per-example form: recompute it on every resample."""

    def evaluate(preds: Sequence[str], golds: Sequence[str]) -> Callable[[np.ndarray | None], Mapping[str, float]]:
        def metrics_on(idx: np.ndarray | None) -> Mapping[str, float]:
            if idx is None:
                return scorer(preds, golds)
            return scorer([preds[i] for i in idx], [golds[i] for i in idx])

        return metrics_on

    return evaluate


def draw_indices(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``resamples`` bootstrap draws of ``n`` example indices (shape ``(resamples, n)``)."""
    if n <= 0 or resamples <= 0:
        return np.zeros((0, max(n, 0)), dtype=np.int64)
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_values(evaluate: Evaluator, preds_by_seed: Sequence[Sequence[str]], golds: Sequence[str],
                     indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric on each resample, averaged over seeds (one vector of length R per metric).

    ``preds_by_seed[s][i]`` is seed ``s``'s prediction for example ``i``; all seeds share
    the example order of ``golds``. Averaging over seeds inside each draw makes the
    interval describe the seed-mean that the table reports.
    """
    per_seed = []
    for preds in preds_by_seed:
        metrics_on = evaluate(preds, golds)
        rows = [metrics_on(idx) for idx in indices]
        per_seed.append({m: np.array([row[m] for row in rows], dtype=float) for m in metrics_on(None)})
    return {m: np.mean([values[m] for values in per_seed], axis=0) for m in per_seed[0]}


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of bootstrap values (None without resamples)."""
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of cell A against reference B on the same examples.

    ``advantage`` is A minus B oriented so that positive means A is better (for MAE and
    RMSE that is B minus A); ``p`` is two-sided.
    """

    advantage: float
    p: float


def paired_bootstrap(a_values: np.ndarray, b_values: np.ndarray, a_observed: float, b_observed: float,
                     higher_is_better: bool) -> PairedTest | None:
    """Paired bootstrap test (Koehn 2004; Berg-Kirkpatrick et al. 2012, shifted null).

    The paired differences on shared draws estimate the sampling distribution of the
    difference; centred on the observed difference it stands in for the null of no
    difference, and p is the share of draws at least as far from it as the observed
    difference is from zero, with the +1 correction so p is never reported as 0.
    """
    if a_values.size == 0 or a_values.shape != b_values.shape:
        return None
    observed = a_observed - b_observed
    deltas = a_values - b_values
    extreme = int(np.sum(np.abs(deltas - observed) >= abs(observed) - TIE_TOLERANCE))
    p = (extreme + 1) / (deltas.size + 1)
    return PairedTest(advantage=observed if higher_is_better else -observed, p=min(1.0, p))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation over seeds (no spread from a single seed)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)
