"""Cells that differ only in decoding share one fit, and share nothing else."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness import inputs
from harness.runner import RunRequest, run
from harness.settings import GenerationSettings
from harness.shared_fit import find_donor
from harness.store import FIT_FILE, RunConfig

GEN = GenerationSettings(num_beams=1, batch_size=4, max_new_tokens=4)
PPLUG = {"max_steps": 2, "batch_size": 4, "micro_batch": 2, "max_train_examples": 12, "heldout_examples": 0,
         "max_history": 8}
WEIGHTS = "pplug.safetensors"


def cell(out: Path, decoding: str = "free", **kw) -> RunRequest:
    base = dict(task="lamp2", method="pplug", params=PPLUG, llm="tiny-causal", encoder="tiny-encoder",
                data="synthetic", limit=4, seed=0, generation=GEN, out=out, progress=False, decoding=decoding)
    base.update(kw)
    return RunRequest(**base)


def fit_record(path: Path) -> dict:
    return json.loads((path / "artifacts" / FIT_FILE).read_text())


def answers(path: Path) -> dict[str, str]:
    return {r["id"]: r["raw"] for r in map(json.loads, (path / "predictions.jsonl").read_text().splitlines())}


def test_fit_key_ignores_decoding_and_beams_only():
    base = RunConfig("lamp2", "pplug", {"lr": 1e-4}, "x", "y", "synthetic", "/a", "c", "dev", None, 0,
                     generation=GEN)
    same = [dataclasses.replace(base, decoding="constrained"),
            dataclasses.replace(base, generation=dataclasses.replace(GEN, num_beams=4))]
    different = [dataclasses.replace(base, params={"lr": 1e-3}), dataclasses.replace(base, seed=1),
                 dataclasses.replace(base, limit=10), dataclasses.replace(base, train_checksum="t"),
                 dataclasses.replace(base, generation=dataclasses.replace(GEN, max_new_tokens=8)),
                 dataclasses.replace(base, generation=dataclasses.replace(GEN, batch_size=8))]
    assert all(c.fit_key == base.fit_key and c.hash != base.hash for c in same)
    assert all(c.fit_key != base.fit_key for c in different)


def test_free_cell_shares_the_constrained_cells_fit_and_predicts_as_if_it_trained(tmp_path):
    constrained = run(cell(tmp_path / "runs", decoding="constrained"))
    free = run(cell(tmp_path / "runs"))
    record = fit_record(free.path)
    assert record["shared_from"]["run"] == constrained.path.name
    donor = fit_record(constrained.path)
    assert record["fit_seconds"] == donor["fit_seconds"]  # the weights' true training cost
    assert (free.path / "artifacts" / WEIGHTS).read_bytes() == (constrained.path / "artifacts" / WEIGHTS).read_bytes()
    fresh = run(cell(tmp_path / "fresh"))
    assert "shared_from" not in fit_record(fresh.path)
    assert fresh.path.name == free.path.name  # the same cell, so the same hash
    assert answers(free.path) == answers(fresh.path)


def test_force_trains_afresh_and_a_cell_without_weights_is_no_donor(tmp_path):
    runs = tmp_path / "runs"
    donor = run(cell(runs, decoding="constrained"))
    forced = run(cell(runs, force=True))
    assert "shared_from" not in fit_record(forced.path)
    (donor.path / "artifacts" / WEIGHTS).unlink()  # as in a committed results folder
    other = run(cell(runs, params={**PPLUG, "lr": 1e-3}, decoding="constrained"))
    assert "shared_from" not in fit_record(other.path)
    config = RunConfig.from_dict(json.loads((forced.path / "config.json").read_text())["config"])
    assert find_donor([runs], config, [WEIGHTS], exclude=forced.path) is None  # the only twin lost its weights
    assert find_donor([runs], config, [WEIGHTS]) == forced.path  # a finished cell is its twins' donor


def test_fits_from_searches_another_root(tmp_path):
    donor = run(cell(tmp_path / "trained", decoding="constrained"))
    shared = run(cell(tmp_path / "scored", fits_from=(tmp_path / "trained",)))
    assert fit_record(shared.path)["shared_from"]["run"] == donor.path.name
    twin = run(cell(tmp_path / "scored", decoding="constrained", fits_from=(tmp_path / "trained",)))
    assert twin.path.name == donor.path.name  # the same cell in another root is a donor too
    assert fit_record(twin.path)["shared_from"]["path"] == str(donor.path)  # the run that trained it
    config = RunConfig.from_dict(json.loads((shared.path / "config.json").read_text())["config"])
    assert find_donor([tmp_path / "trained"], config, ()) is None  # a method that declares no fit files
    with pytest.raises(inputs.InputError, match="--fits-from .*no such folder"):
        inputs.results_root(tmp_path / "missing")
