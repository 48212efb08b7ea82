"""Runs you can trust (issue 16; 12.1, 12.6, 12.7 plumbing): the hash covers every input,
``--force`` starts afresh, a damaged finished run is repaired and never silently reused,
a failed attempt leaves no record, shards never write each other's files, and every bad
input is a clear error with exit status 2 naming the flag.

Most cases use a test-local method that needs no model (it answers with the gold label in
title case), so they run in a moment; the flag checks never get as far as loading one.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from harness.api import Example, Method
from harness.cli import app
from harness.registries import METHODS, TASKS
from harness.runner import RunRequest, run
from harness.settings import GenerationSettings, generation_for
from harness.store import RunDir, find_runs, read_predictions, verify_run

GEN = GenerationSettings(num_beams=1, max_new_tokens=4, batch_size=4)
cli = CliRunner()


@dataclass(frozen=True)
class EchoParams:
    max_train: int = 100  # the "paper" value; the small profile lowers it
    epochs: int = 1
    audit: str = "aligned"  # aligned | misaligned | none

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def validate(self) -> None:
        if self.audit not in ("aligned", "misaligned", "none"):
            raise ValueError(f"audit must be aligned, misaligned or none, got {self.audit!r}")


class Echo(Method):
    """Answers each question with its gold label in title case plus a full stop ("Comedy.").

    That is wrong for LaMP's official scorer and right after parsing, so the two metric
    sets differ in a known way. The runner never hands a method the golds, so the test
    gives them to it (``answers``, id -> gold) from the data, an oracle from outside.
    Counts its fits and predicted examples, and records what ``predict`` saw as outputs.
    """

    Params: ClassVar[type] = EchoParams
    uses_train = True
    description = "test method"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"small": {"max_train": 3}}
    fits: ClassVar[int] = 0
    predicted: ClassVar[int] = 0
    fail_next_fit: ClassVar[bool] = False
    answers: ClassVar[dict[str, str]] = {}
    seen_outputs: ClassVar[list[str | None]] = []

    def fit(self, train: Sequence[Example]) -> None:
        if Echo.fail_next_fit:
            Echo.fail_next_fit = False
            raise RuntimeError("fit failed on purpose")
        Echo.fits += 1
        self.used = min(len(train), self.params.max_train)
        marker = self.ctx.artifacts_dir / "weights.bin"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(b"w" * self.used)

    def fit_summary(self) -> dict[str, Any]:
        return {"train_examples_used": self.used, "profile_seen": self.ctx.profile}

    def predict(self, batch: Sequence[Example]) -> list[str]:
        Echo.predicted += len(batch)
        prompts = [f"prompt: {e.input}" for e in batch]
        if self.params.audit == "aligned":
            self.ctx.record_prompts(prompts)
            self.ctx.record_retrieved([[str(e.profile[0]["id"])] for e in batch])
        elif self.params.audit == "misaligned":
            self.ctx.record_prompts(prompts[:-1])
        Echo.seen_outputs.extend(e.output for e in batch)
        return [Echo.answers.get(e.id, "").title() + "." for e in batch]


class Untrained(Echo):
    uses_train = False


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test methods exist for each test only, so no other test module ever lists them."""
    METHODS.names()  # built-ins first: a test method must not shadow or precede them
    for name, cls in (("integrity-echo", Echo), ("integrity-untrained", Untrained)):
        monkeypatch.setitem(METHODS._items, name, cls)
    Echo.fits = Echo.predicted = 0
    Echo.fail_next_fit = False
    spec = TASKS.get("lamp2")
    Echo.answers = {e.id: e.output or "" for e in spec.load_split(spec, "synthetic", "dev", seed=0).examples}
    Echo.seen_outputs = []


def request(out: Path, **kw: Any) -> RunRequest:
    base = dict(task="lamp2", method="integrity-echo", params={}, llm="tiny-causal", encoder="tiny-encoder",
                data="synthetic", limit=10, seed=0, generation=GEN, out=out, progress=False)
    base.update(kw)
    return RunRequest(**base)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]


def config_of(path: Path) -> dict[str, Any]:
    return json.loads((path / "config.json").read_text())["config"]


@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    from tasks import synthetic
    from tasks.sources import write_synthetic_marker

    spec = TASKS.get("lamp2")
    folder = tmp_path / "data"
    synthetic.generate(spec, folder, seed=0, n_users={"train": 8, "dev": 6, "test": 2}, profile_size=(3, 5))
    write_synthetic_marker(folder, spec, 0)
    return folder


# -- 1. the hash covers everything that changes a result -----------------------------------------
def test_changed_train_labels_force_a_refit(tmp_path, small_data):
    first = run(request(tmp_path / "runs", data=str(small_data)))
    assert Echo.fits == 1 and config_of(first.path)["train_checksum"]
    outputs = small_data / "train_outputs.json"
    golds = json.loads(outputs.read_text())
    golds["golds"][0]["output"] = "comedy" if golds["golds"][0]["output"] != "comedy" else "drama"
    outputs.write_text(json.dumps(golds))
    second = run(request(tmp_path / "runs", data=str(small_data)))
    assert not second.reused and second.path != first.path and Echo.fits == 2
    assert config_of(second.path)["train_checksum"] != config_of(first.path)["train_checksum"]
    assert config_of(second.path)["data_checksum"] == config_of(first.path)["data_checksum"]  # same dev split


def test_methods_without_training_hash_no_train_data(tmp_path):
    result = run(request(tmp_path, method="integrity-untrained"))
    assert config_of(result.path)["train_checksum"] is None and Echo.fits == 0
    assert result.metrics["fit"] == {"fit_seconds": 0.0}


def test_fit_json_records_what_the_fit_used(tmp_path, small_data):
    result = run(request(tmp_path, data=str(small_data), profile="small"))
    fit = json.loads((result.path / "artifacts" / "fit.json").read_text())
    assert fit["train_examples_available"] == 8 and fit["train_examples_used"] == 3
    assert fit["profile_seen"] == "small" and result.metrics["fit"] == fit


def test_version_bump_recomputes_instead_of_reusing(tmp_path, monkeypatch):
    first = run(request(tmp_path))
    assert run(request(tmp_path)).reused
    monkeypatch.setattr(Echo, "version", 2)
    bumped = run(request(tmp_path))
    assert not bumped.reused and bumped.path != first.path and Echo.fits == 2
    assert config_of(bumped.path)["method_version"] == 2 and config_of(first.path)["method_version"] == 1
    task = TASKS.get("lamp2")
    monkeypatch.setitem(TASKS._items, "lamp2", dataclasses.replace(task, version=task.version + 1))
    task_bumped = run(request(tmp_path))
    assert not task_bumped.reused and task_bumped.path != bumped.path
    assert config_of(task_bumped.path)["task_version"] == task.version + 1


def test_profile_and_decoding_enter_params_config_and_hash(tmp_path):
    small = run(request(tmp_path, profile="small"))
    paper = run(request(tmp_path, profile="paper"))
    explicit = run(request(tmp_path, profile="small", params={"max_train": "7"}))
    assert len({small.path, paper.path, explicit.path}) == 3
    assert config_of(small.path)["params"]["max_train"] == 3  # the profile's value
    assert config_of(paper.path)["params"]["max_train"] == 100  # the Params default is the paper's
    assert config_of(explicit.path)["params"]["max_train"] == 7  # the user's value wins
    assert (config_of(small.path)["profile"], small.metrics["profile"]) == ("small", "small")
    constrained = run(request(tmp_path, profile="small", decoding="constrained"))
    assert constrained.path != small.path and config_of(constrained.path)["decoding"] == "constrained"
    assert constrained.metrics["decoding"] == "constrained"


def test_profile_defaults_follow_the_device_and_flags_override():
    assert generation_for("paper").num_beams == 4 and generation_for("small").num_beams == 1
    assert generation_for("small").batch_size == 32
    assert generation_for("small", {"num_beams": 3, "batch_size": None}).num_beams == 3
    from harness.settings import resolve_profile

    assert resolve_profile(None, "cuda:0") == "paper" and resolve_profile(None, "cpu") == "small"


def test_constrained_decoding_needs_labels(tmp_path):
    with pytest.raises(ValueError, match="--decoding constrained.*lamp5"):
        run(request(tmp_path, task="lamp5", decoding="constrained"))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# -- official and parsed scores, per-example audit -----------------------------------------------------
def test_predict_never_sees_the_golds(tmp_path):
    result = run(request(tmp_path))
    assert result.metrics["n_examples"] == 10 and len(Echo.seen_outputs) == 10
    assert Echo.seen_outputs == [None] * 10  # the golds stay with the runner, for scoring only
    assert all(r["gold"] for r in records(result.path))


def test_official_scores_the_raw_output_and_parsed_the_parsed_one(tmp_path):
    result = run(request(tmp_path))
    assert result.metrics["official"]["accuracy"] == 0.0  # "Comedy." is not the label "comedy"
    assert result.metrics["parsed"]["accuracy"] == 1.0
    lamp = json.loads((result.path / "predictions.json").read_text())
    assert all(g["output"].endswith(".") for g in lamp["golds"])  # the official script's input: raw, stripped
    out = cli.invoke(app, ["run", "--method", "integrity-echo", "--task", "lamp2", "--llm", "tiny-causal",
                           "--data", "synthetic", "--limit", "10", "--out", str(tmp_path), "--no-progress",
                           "--beams", "1", "--max-new-tokens", "4", "--batch-size", "4"])
    assert out.exit_code == 0, out.output
    assert '"official"' in out.output and '"parsed"' in out.output and " done" not in out.output


def test_prediction_records_carry_the_prompt_hash_and_retrieved_ids(tmp_path):
    result = run(request(tmp_path))
    for rec in records(result.path):
        assert rec["prompt_sha256"] == hashlib.sha256(f"prompt: {rec_input(rec)}".encode()).hexdigest()
        assert isinstance(rec["retrieved"], list) and len(rec["retrieved"]) == 1
    misaligned = run(request(tmp_path, params={"audit": "misaligned"}))
    assert all(r["prompt_sha256"] is None and r["retrieved"] is None for r in records(misaligned.path))


def rec_input(rec: dict[str, Any]) -> str:
    split = TASKS.get("lamp2").load_split(TASKS.get("lamp2"), "synthetic", "dev", seed=0)
    return {e.id: e.input for e in split.examples}[rec["id"]]


# -- 2. --force starts afresh ------------------------------------------------------------------
def test_force_rewrites_a_hand_edited_prediction_and_clears_artifacts(tmp_path):
    first = run(request(tmp_path))
    jsonl = first.path / "predictions.jsonl"
    lines = jsonl.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["raw"] = edited["prediction"] = "HAND EDIT"
    jsonl.write_text("\n".join([json.dumps(edited), *lines[1:]]) + "\n")
    (first.path / "artifacts" / "stale.bin").write_bytes(b"old")
    forced = run(request(tmp_path, force=True))
    assert not forced.reused and forced.path == first.path and Echo.fits == 2
    assert "HAND EDIT" not in jsonl.read_text() and len(jsonl.read_text().splitlines()) == 10
    assert not (first.path / "artifacts" / "stale.bin").exists()
    assert not [p for p in first.path.iterdir() if p.name.startswith(".discarded")]
    assert forced.metrics["parsed"] == first.metrics["parsed"]


# -- 3. a finished run is verified before it is reused -------------------------------------------
def _tear(path: Path) -> str:
    jsonl = path / "predictions.jsonl"
    data = jsonl.read_bytes()
    jsonl.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 20])  # the last line cut mid-way
    return "predictions.jsonl: line 10 is cut off"


def _bad_lines(path: Path) -> str:
    jsonl = path / "predictions.jsonl"
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join([lines[0], '{"foo": 1}', "[1, 2]", *lines[1:]]) + "\n")
    return "predictions.jsonl: line 2 is not a prediction record"


def _garbage_config(path: Path) -> str:
    (path / "config.json").write_text("not json at all")
    return "config.json: invalid JSON"


def _empty_metrics(path: Path) -> str:
    (path / "metrics.json").write_text("")
    return "metrics.json: invalid JSON"


def _braces_metrics(path: Path) -> str:
    (path / "metrics.json").write_text("{}")
    return "metrics.json: empty"


@pytest.mark.parametrize("damage", [_tear, _bad_lines, _garbage_config, _empty_metrics, _braces_metrics],
                         ids=lambda f: f.__name__.strip("_"))
def test_damaged_finished_run_is_named_and_repaired(tmp_path, capsys, damage):
    first = run(request(tmp_path))
    expected = damage(first.path)
    assert any(expected in p for p in verify_run(first.path))
    Echo.predicted = 0
    repaired = run(request(tmp_path))
    err = capsys.readouterr().err
    assert not repaired.reused and expected in err and str(first.path) in err
    assert Echo.predicted <= 4  # at most the batch holding the lost prediction, never the whole split
    assert verify_run(first.path) == []
    assert repaired.metrics["official"] == first.metrics["official"]
    assert len(records(first.path)) == 10
    assert json.loads((first.path / "config.json").read_text())["hash"] == first.path.name
    assert run(request(tmp_path)).reused


def test_old_format_metrics_are_damaged_and_hidden_folders_are_not_runs(tmp_path):
    first = run(request(tmp_path))
    old = json.loads((first.path / "metrics.json").read_text())
    (first.path / "metrics.json").write_text(json.dumps({"metrics": old["official"], "task": "lamp2"}))
    assert any("older persona-bench" in p for p in verify_run(first.path))
    hidden = first.path / ".discarded-x"
    hidden.mkdir()
    for name in ("metrics.json", "config.json"):
        (hidden / name).write_text("{}")
    assert list(find_runs(tmp_path)) == [first.path]


# -- 4. a failed attempt leaves no record ----------------------------------------------------------
def test_rejected_params_create_no_folder(tmp_path):
    with pytest.raises(ValueError, match="-p/--param: method .integrity-echo.: epochs must be >= 1"):
        run(request(tmp_path, params={"epochs": "0"}))
    with pytest.raises(ValueError, match="audit must be"):
        run(request(tmp_path, params={"audit": "sometimes"}))
    assert not tmp_path.exists() or not any(tmp_path.rglob("*"))


def test_failed_fit_leaves_no_config_and_a_later_run_writes_its_own(tmp_path):
    Echo.fail_next_fit = True
    with pytest.raises(RuntimeError, match="on purpose"):
        run(request(tmp_path))
    (folder,) = list(tmp_path.glob("lamp2/integrity-echo/*"))
    assert not (folder / "config.json").exists() and not (folder / "metrics.json").exists()
    result = run(request(tmp_path))
    assert result.path == folder and verify_run(folder) == []


# -- 5. shards never write each other's files ----------------------------------------------------
def test_a_finishing_shard_reads_a_torn_sibling_file_without_touching_it(tmp_path):
    first = run(request(tmp_path, shard=(0, 2)))
    assert first.metrics == {}
    sibling = first.path / "predictions.shard0of2.jsonl"
    with open(sibling, "a") as fh:
        fh.write('{"id": "still-being-writ')  # shard 0 caught mid-write
    before = sibling.read_bytes()
    second = run(request(tmp_path, shard=(1, 2)))
    assert second.metrics["official"] is not None
    assert sibling.read_bytes() == before  # read, never truncated
    assert any("predictions.shard0of2.jsonl: line" in p for p in verify_run(first.path))
    again = run(request(tmp_path, shard=(0, 2)))  # the owner repairs its own file
    assert not again.reused and read_predictions(sibling).ok and verify_run(first.path) == []


# -- 6. every bad input is a clear error, rc 2 ----------------------------------------------------
BASE = ["run", "--method", "adhoc", "--task", "lamp2", "--llm", "tiny-causal", "--data", "synthetic", "--no-progress"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--limit", "-1"], "--limit"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-2"], "--batch-size"),
    (["--beams", "0"], "--beams"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--max-input-tokens", "0"], "--max-input-tokens"),
    (["--data", "synthetic:abc"], "--data"),
    (["--profile", "huge"], "--profile"),
    (["--decoding", "beam"], "--decoding"),
    (["--shard", "2/2"], "--shard"),
    (["--device", "tpu"], "--device"),
    (["-p", "k=3"], "-p/--param: method 'adhoc' has no parameter 'k'"),
])
def test_bad_run_flags_exit_2_naming_the_flag(tmp_path, args, flag):
    result = cli.invoke(app, [*BASE, "--out", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_cuda_without_a_gpu_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = cli.invoke(app, [*BASE, "--out", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 2 and "--device cuda: no CUDA GPU" in result.output


def test_pplug_zero_epochs_exits_2(tmp_path):
    if "pplug" not in METHODS:
        pytest.skip("pplug is not registered")
    result = cli.invoke(app, [*BASE[:2], "pplug", *BASE[3:], "--out", str(tmp_path / "runs"), "-p", "epochs=0"])
    assert result.exit_code == 2 and "-p/--param: method 'pplug'" in result.output and "epochs" in result.output
    assert not (tmp_path / "runs").exists()


def test_out_that_is_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli.invoke(app, [*BASE, "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "--out" in result.output and "is a file" in result.output


def test_read_only_and_full_output_folders_exit_2(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    real_mkdir = pathlib.Path.mkdir

    def refuse(self: Path, *a: Any, **kw: Any) -> None:
        if str(self).startswith(str(out)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *a, **kw)

    args = ["run", "--method", "integrity-echo", "--task", "lamp2", "--data", "synthetic", "--limit", "4",
            "--no-progress", "--out", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "mkdir", refuse)
        result = cli.invoke(app, args)
    assert result.exit_code == 2 and "Permission denied" in result.output and "--out" in result.output

    def full(self: RunDir, recs: list[dict[str, Any]]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.predictions_jsonl))

    monkeypatch.setattr(RunDir, "append_predictions", full)
    result = cli.invoke(app, args)
    assert result.exit_code == 2 and "No space left on device" in result.output and "--out" in result.output


def test_locked_cell_says_who_holds_it(tmp_path):
    args = ["run", "--method", "integrity-echo", "--task", "lamp2", "--data", "synthetic", "--limit", "4",
            "--no-progress", "--out", str(tmp_path)]
    assert cli.invoke(app, args).exit_code == 0
    (folder,) = list(tmp_path.glob("lamp2/integrity-echo/*"))
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.truncate(0)
        fh.write(json.dumps({"pid": 4242, "host": "elsewhere", "since": "2025-01-01T00:00:00"}))
        fh.flush()
        result = cli.invoke(app, [*args, "--force"])
    assert result.exit_code == 2 and "pid 4242 on elsewhere" in result.output


def test_shard_done_only_for_sharded_runs(tmp_path):
    args = ["run", "--method", "integrity-echo", "--task", "lamp2", "--data", "synthetic", "--limit", "4",
            "--no-progress", "--batch-size", "2", "--out", str(tmp_path)]
    sharded = cli.invoke(app, [*args, "--shard", "0/2"])
    assert sharded.exit_code == 0 and "shard 0/2 done" in sharded.output
    single = cli.invoke(app, [*args, "--out", str(tmp_path / "single")])
    assert single.exit_code == 0 and " done" not in single.output and "finished" in single.output


def test_bad_sweep_inputs_exit_2_naming_flag_or_key_and_file(tmp_path):
    seeds = cli.invoke(app, ["sweep", "--tasks", "lamp2", "--methods", "adhoc", "--seeds", "a,b", "--dry-run"])
    assert seeds.exit_code == 2 and "--seeds" in seeds.output
    data = cli.invoke(app, ["sweep", "--tasks", "lamp2", "--methods", "adhoc", "--data", "synthetic:abc", "--dry-run"])
    assert data.exit_code == 2 and "--data" in data.output
    path = tmp_path / "bad.toml"
    path.write_text('tasks = ["lamp2"]\nmethods = ["adhoc"]\nlimit = "four"\n')
    result = cli.invoke(app, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2 and "'limit' must be an integer" in result.output and "bad.toml" in result.output
    path.write_text('tasks = ["lamp2"]\nmethods = ["adhoc"]\nprofile = "huge"\n[generation]\nnum_beams = 0\n')
    result = cli.invoke(app, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2 and "generation.num_beams" in result.output


def test_sweep_files_set_profile_and_decoding(tmp_path):
    from harness import sweep as sw

    spec = sw.spec_from_mapping({"tasks": ["lamp2"], "methods": ["adhoc"], "profile": "paper",
                                 "decoding": "constrained", "generation": {"batch_size": 8}})
    assert (spec.profile, spec.decoding, dict(spec.generation)) == ("paper", "constrained", {"batch_size": 8})


# -- 7. result files honour the umask ------------------------------------------------------------
def test_result_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        result = run(request(tmp_path))
    finally:
        os.umask(old)
    for name in ("config.json", "metrics.json", "predictions.json", "predictions.jsonl", "artifacts/fit.json"):
        assert stat.S_IMODE((result.path / name).stat().st_mode) == 0o644, name


# -- 8. bench data validate checks the splits present -----------------------------------------
def test_data_validate_accepts_a_dev_only_folder(tmp_path, small_data):
    dev_only = tmp_path / "dev-only"
    dev_only.mkdir()
    for name in ("dev_questions.json", "dev_outputs.json"):
        (dev_only / name).write_bytes((small_data / name).read_bytes())
    ok = cli.invoke(app, ["data", "validate", "--task", "lamp2", str(dev_only)])
    assert ok.exit_code == 0 and "(dev)" in ok.output
    named = cli.invoke(app, ["data", "validate", "--task", "lamp2", str(dev_only), "--split", "train"])
    assert named.exit_code == 1 and "no train_questions.json" in named.output
