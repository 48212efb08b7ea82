"""The runner and results store: reuse, resume after a crash or a kill, shards, locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.settings import GenerationSettings
from harness.runner import RunRequest, run
from harness.store import RunConfig, RunDir, RunLocked

GEN = GenerationSettings(num_beams=1, max_new_tokens=6, batch_size=4)


def request(out: Path, **kw) -> RunRequest:
    base = dict(task="lamp2", method="adhoc", params={}, llm="tiny-causal", encoder="tiny-encoder",
                data="synthetic", limit=12, seed=0, generation=GEN, out=out, progress=False)
    base.update(kw)
    return RunRequest(**base)


def predictions(path: Path) -> dict[str, str]:
    return {g["id"]: g["output"] for g in json.loads((path / "predictions.json").read_text())["golds"]}


def test_run_writes_config_predictions_metrics_and_reuses(tmp_path):
    first = run(request(tmp_path))
    assert not first.reused
    files = {p.name for p in first.path.iterdir()}
    assert {"config.json", "predictions.jsonl", "predictions.json", "metrics.json"} <= files
    config = json.loads((first.path / "config.json").read_text())
    assert config["config"]["task"] == "lamp2" and config["config"]["seed"] == 0
    assert config["data_source"]["kind"] == "synthetic" and len(config["data_source"]["checksum"]) == 64
    assert config["provenance"]["versions"]["torch"]
    assert "git_commit" in config["provenance"]
    lamp = json.loads((first.path / "predictions.json").read_text())
    assert lamp["task"] == "LaMP_2" and len(lamp["golds"]) == 12
    assert set(first.metrics["official"]) == {"accuracy", "f1"}
    again = run(request(tmp_path))
    assert again.reused and again.path == first.path and again.metrics == first.metrics


def test_config_hash_is_stable_and_sensitive():
    a = RunConfig("lamp2", "bm25", {"k": 1}, "x", "y", "synthetic", "/a", "c", "dev", None, 0)
    b = RunConfig("lamp2", "bm25", {"k": 1}, "x", "y", "synthetic", "/elsewhere", "c", "dev", None, 0)
    c = RunConfig("lamp2", "bm25", {"k": 2}, "x", "y", "synthetic", "/a", "c", "dev", None, 0)
    assert a.hash == b.hash  # where the data sits does not matter, its checksum does
    assert a.hash != c.hash
    assert RunConfig.from_dict(a.to_dict()) == a


class Crash(RuntimeError):
    pass


def test_crash_then_resume_equals_uninterrupted(tmp_path):
    clean = run(request(tmp_path / "clean"))

    def crash_after_first(i: int) -> None:
        if i == 1:
            raise Crash()

    with pytest.raises(Crash):
        run(request(tmp_path / "crashy"), on_batch=crash_after_first)
    partial = next((tmp_path / "crashy").glob("lamp2/adhoc/*/predictions.jsonl"))
    lines = partial.read_text().splitlines()
    assert len(lines) == 8  # two batches of four were flushed before the crash
    with open(partial, "a") as fh:
        fh.write('{"id": "torn')  # a torn line from a crash mid-write
    resumed = run(request(tmp_path / "crashy"))
    assert predictions(resumed.path) == predictions(clean.path)
    assert resumed.metrics["official"] == clean.metrics["official"]
    assert len(partial.read_text().splitlines()) == 12


def test_killed_process_resumes_to_the_same_predictions(tmp_path):
    """Kill a real `bench run` with SIGKILL mid-way, rerun it, compare with a clean run."""
    args = ["--method", "adhoc", "--task", "lamp2", "--llm", "tiny-causal", "--data", "synthetic",
            "--limit", "24", "--beams", "4", "--max-new-tokens", "24", "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-c", "from harness.cli import main; main()", "run", *args]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jsonl = None
    while proc.poll() is None:
        found = list((tmp_path / "killed").glob("lamp2/adhoc/*/predictions.jsonl"))
        if found and found[0].read_text().count("\n") >= 4:
            jsonl = found[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert jsonl is not None, "the run finished before it could be killed"
    assert not (jsonl.parent / "metrics.json").exists()
    subprocess.run([*cmd, "--out", str(tmp_path / "killed")], env=env, check=True, capture_output=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "clean")], env=env, check=True, capture_output=True)
    resumed = jsonl.parent
    clean = next((tmp_path / "clean").glob("lamp2/adhoc/*"))
    assert resumed.name == clean.name
    assert predictions(resumed) == predictions(clean)
    assert json.loads((resumed / "metrics.json").read_text())["official"] == \
        json.loads((clean / "metrics.json").read_text())["official"]


def test_shards_merge_into_the_single_process_result(tmp_path):
    single = run(request(tmp_path / "single"))
    first = run(request(tmp_path / "sharded", shard=(0, 2)))
    assert first.metrics == {}  # the other shard has not run yet
    second = run(request(tmp_path / "sharded", shard=(1, 2)))
    assert second.path.name == single.path.name
    assert predictions(second.path) == predictions(single.path)
    assert second.metrics["official"] == single.metrics["official"]


def test_two_writers_never_share_a_run(tmp_path):
    config = RunConfig("lamp2", "adhoc", {}, "x", "y", "synthetic", "/a", "c", "dev", None, 0)
    with RunDir(tmp_path, config):
        with pytest.raises(RunLocked, match=rf"being written by pid {os.getpid()} on "):
            with RunDir(tmp_path, config):
                pass


def test_unknown_method_and_bad_params_fail_clearly(tmp_path):
    from harness.registry import RegistryError

    with pytest.raises(RegistryError, match="Did you mean 'adhoc'"):
        run(request(tmp_path, method="adhok"))
    with pytest.raises(ValueError, match="-p/--param: method 'adhoc' has no parameter 'k'"):
        run(request(tmp_path, params={"k": "3"}))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="per-cell peak memory needs Linux /proc")
def test_peak_memory_window_restarts_per_cell():
    from harness.runner import _status_mb, peak_rss_mb, reset_peak_rss

    resident = _status_mb("VmRSS")
    block = bytearray(300 * 2**20)  # touch 300 MiB above what is resident now, then free it
    block[:: 4096] = b"x" * len(block[:: 4096])
    del block
    before = peak_rss_mb()
    if before < resident + 250:
        pytest.skip("this kernel's VmHWM did not record the block: nothing to reset")
    if reset_peak_rss():  # a new cell: the earlier cell's peak must not be charged to it
        assert peak_rss_mb() < resident + 100
    else:  # the kernel kept the old mark: the reset says so rather than pretending
        assert peak_rss_mb() >= before - 1


def test_run_records_whether_its_peak_memory_is_its_own(tmp_path):
    from harness.runner import reset_peak_rss

    scope = "cell" if reset_peak_rss() else "process"
    result = run(request(tmp_path))
    assert result.metrics["cost"]["peak_rss_scope"] == scope


def test_fit_record_written_after_prediction_reaches_the_cost_block(tmp_path):
    """A method that trains while predicting (OPPU's per-user stage) knows its full budget
    only at the end: metrics.json's fit and cost blocks must both carry the final figures."""
    from harness.api import Method
    from harness.registries import METHODS

    class TrainsWhilePredicting(Method):
        uses_train = True

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.users_trained = 0

        def predict(self, batch):
            self.users_trained += len(batch)
            return ["comedy"] * len(batch)

        def fit_summary(self):
            return {"users_trained": self.users_trained}

    METHODS.register("trains-while-predicting", TrainsWhilePredicting)
    try:
        metrics = run(request(tmp_path, method="trains-while-predicting", limit=5)).metrics
    finally:
        METHODS.unregister("trains-while-predicting")
    assert metrics["fit"]["users_trained"] == metrics["cost"]["users_trained"] == 5


def test_storage_cost_splits_shared_and_per_user_bytes(tmp_path):
    from harness.runner import storage_cost

    assert storage_cost(tmp_path / "none") == {"shared_bytes": 0.0, "stored_bytes_per_user": 0.0}
    (tmp_path / "plugin.safetensors").write_bytes(b"x" * 100)
    users = tmp_path / "users"
    (users / "b").mkdir(parents=True)
    (users / "a.safetensors").write_bytes(b"x" * 10)  # a user as one file
    (users / "b" / "1.bin").write_bytes(b"x" * 5)  # a user as a folder
    (users / "b" / "2.bin").write_bytes(b"x" * 15)
    (users / ".a.safetensors.tmp").write_bytes(b"x" * 999)  # a half-written file is no user
    assert storage_cost(tmp_path) == {"shared_bytes": 100.0, "stored_bytes_per_user": 15.0}
