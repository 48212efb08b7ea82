"""Whether a trained cell had converged when its training ended.

A trained method's score means little if its budget, not the data, ended the training:
the held-out loss still falling at the last evaluation says a longer run would score
differently. Every trained cell writes ``artifacts/loss.json`` (training loss per step,
held-out loss every few steps, whether early stopping ended it); this module reads it
and gives one verdict that both the curves report and the tables' budget notes print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import LOSS_FILE

# A cell has converged when its held-out loss moved by less than STILL_FALLING (relative)
# over its last TAIL_EVALUATIONS evaluations. 1% of a loss near 1 is about the noise of a
# 64-question held-out set between neighbouring evaluations.
TAIL_EVALUATIONS = 3
STILL_FALLING = 0.01


@dataclass(frozen=True)
class Trend:
    """The held-out loss at the end of training: ``verdict`` and its relative ``change``."""

    verdict: str  # "early stop", "flat" or "still falling"
    change: float | None  # over the last TAIL_EVALUATIONS evaluations; None after early stop

    @property
    def converged(self) -> bool:
        return self.verdict != "still falling"

    def _over_tail(self) -> str:
        return f"({self.change:+.1%} over the last {TAIL_EVALUATIONS} evaluations)"

    def sentence(self) -> str:
        """The verdict as a table note says it."""
        if self.change is None:
            return "early-stopped on the held-out loss"
        return f"held-out loss {self.verdict} at the end {self._over_tail()}"

    def __str__(self) -> str:
        """The verdict as the curves table's ``converged`` column says it."""
        if self.change is None:
            return "yes (early stop)"
        return f"{'yes: flat' if self.converged else 'no: still falling'} {self._over_tail()}"


def heldout_trend(heldout_loss: Sequence[float], early_stopped: bool) -> Trend | None:
    """The verdict on a held-out curve; None when too short to tell (or never evaluated)."""
    if early_stopped:
        return Trend("early stop", None)
    if len(heldout_loss) < TAIL_EVALUATIONS:
        return None
    first, last = heldout_loss[-TAIL_EVALUATIONS], heldout_loss[-1]
    change = (last - first) / first
    return Trend("still falling" if change < -STILL_FALLING else "flat", change)


def read_loss(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``artifacts/loss.json``, or None for a run that trained nothing."""
    path = run_dir / "artifacts" / LOSS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_trend(run_dir: Path) -> Trend | None:
    """The verdict for a finished run's folder, from its loss file."""
    raw = read_loss(run_dir)
    if raw is None:
        return None
    return heldout_trend((raw.get("heldout") or {}).get("loss", []), bool(raw.get("early_stopped")))
