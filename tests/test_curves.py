"""The convergence report: how far each trained cell trained, and whether it converged."""

from __future__ import annotations

import json
from pathlib import Path

from harness import tables
from harness.report.curves import curves_markdown, load_curves, plot_curves
from tests.test_tables import GOLD2, make_run


def trained_run(root: Path, lr: float, heldout: list[float], early_stopped: bool = False, seed: int = 0) -> Path:
    fit = {"trained_to_budget": True, "optimizer_steps": 10 * (len(heldout) - 1), "budget_steps": 10 * (len(heldout) - 1)}
    path = make_run(root, "lamp2", "pplug", ["comedy"] * 10, GOLD2, params={"lr": lr}, fit=fit, seed=seed)
    steps = list(range(0, 10 * len(heldout), 10))
    loss = {"step": list(range(1, steps[-1] + 1)), "loss": [2.0] * steps[-1],
            "heldout": {"step": steps, "loss": heldout}, "budget_steps": steps[-1],
            "early_stopped": early_stopped, "best_step": steps[heldout.index(min(heldout))]}
    (path / "artifacts").mkdir()
    (path / "artifacts" / "loss.json").write_text(json.dumps(loss))
    return path


def test_convergence_column_tells_a_budget_end_from_a_plateau(tmp_path):
    trained_run(tmp_path, 1e-3, [3.0, 2.0, 1.5, 1.3, 1.2])  # 1.5 -> 1.2 over its last 3 evaluations
    trained_run(tmp_path, 1e-4, [3.0, 1.0, 1.001, 0.995])  # -0.5%: flat
    trained_run(tmp_path, 1e-2, [3.0, 1.0, 1.1, 1.2], early_stopped=True)
    curves, notes = load_curves([tmp_path])
    assert not notes and len(curves) == 3
    table = curves_markdown(curves)
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| pplug")}
    assert "no: still falling (-20.0% over the last 3 evaluations)" in rows["| pplug (lr=0.001)"]
    assert "yes: flat (-0.5% over the last 3 evaluations)" in rows["| pplug (lr=0.0001)"]
    assert "| yes | 1.000 (10) | yes (early stop) |" in rows["| pplug (lr=0.01)"]
    assert [p.name for p in plot_curves(curves, tmp_path)] == ["curves-lamp2.png"]


def test_table_notes_say_when_a_budgeted_cell_was_still_improving(tmp_path):
    trained_run(tmp_path, 1e-3, [3.0, 2.0, 1.5, 1.3, 1.2])
    trained_run(tmp_path, 1e-4, [3.0, 1.0, 1.001, 0.995])
    trained_run(tmp_path, 1e-4, [3.0, 1.5, 1.2, 1.0], seed=1)
    table = tables.render_table(tmp_path, which="1", resamples=0)
    assert ("pplug (lr=0.001): trained to its full budget (40 of 40 optimizer steps); "
            "held-out loss still falling at the end (-20.0% over the last 3 evaluations)") in table
    assert "pplug (lr=0.0001): trained to its full budget (30 of 30 optimizer steps); " \
           "held-out loss still falling at the end in 1 of 2 seeds" in table
