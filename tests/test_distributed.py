"""Multi-process runs: launcher env -> shard, fit coordination, 2 gloo processes == 1 process.

The integration tests launch ``bench run`` with ``torchrun --nproc_per_node 2`` on this
CPU (gloo backend) with tiny random models and synthetic data, and compare the merged
run directory with a single-process run of the same config: same directory (hash),
same predictions, same metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import distributed
from harness.settings import GenerationSettings
from harness.runner import RunRequest, resolve

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_defaults(clean_env):
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.env_shard() is None
    assert distributed.init() is False  # never creates a process group alone
    distributed.barrier()  # a no-op
    with distributed.main_first():
        pass
    assert distributed.shard_slice([1, 2, 3]) == [1, 2, 3]
    module = object()
    assert distributed.wrap_ddp(module) is module and distributed.unwrap(module) is module


def test_launcher_env_gives_the_shard(clean_env):
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "1")
    assert distributed.env_shard() == (1, 2)
    assert not distributed.is_main()
    assert distributed.shard_slice(list(range(5))) == [1, 3]
    clean_env.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside world size"):
        distributed.env_shard()


def test_runner_takes_the_shard_from_the_launcher(clean_env):
    req = RunRequest(task="lamp2", method="adhoc", params={}, llm="tiny-causal", encoder="tiny-encoder",
                     data="synthetic", limit=4, generation=GenerationSettings(num_beams=1), progress=False)
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    config = resolve(req).config
    assert config.shard == (1, 2)
    clean_env.setenv("RANK", "0")
    assert resolve(req).config.shard == (0, 2)
    assert resolve(req).config.hash == config.hash  # every shard writes the same run directory
    explicit = RunRequest(**{**req.__dict__, "shard": (0, 3)})
    assert resolve(explicit).config.shard == (0, 3)  # an explicit --shard wins


# -- 2 real processes on gloo --------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    # One thread per process in both the single and the 2-process run: identical float
    # reductions, so trained weights and generations are bit-for-bit comparable.
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _bench(args: list[str], nproc: int = 1) -> None:
    code = "from harness.cli import main; main()"
    if nproc == 1:
        cmd = [sys.executable, "-c", code, *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
        if torchrun is None:
            pytest.skip("torchrun is not installed")
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "--no-python", sys.executable, "-c", code,
               *args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"


def _run_dir(out: Path, task: str, method: str) -> Path:
    (found,) = list((out / task / method).glob("*/metrics.json"))
    return found.parent


def _compare(single: Path, multi: Path) -> None:
    assert single.name == multi.name  # same config hash
    golds = lambda p: json.loads((p / "predictions.json").read_text())  # noqa: E731
    assert golds(multi) == golds(single)  # same predictions, same order
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (single, multi))
    assert m2["official"] == m1["official"] and m2["parsed"] == m1["parsed"]
    assert m2["n_examples"] == m1["n_examples"]
    assert len(list(multi.glob("predictions.shard*of2.jsonl"))) == 2  # both ranks predicted
    raw = lambda p: {r["id"]: r["raw"] for f in p.glob("predictions*.jsonl")  # noqa: E731
                     for r in map(json.loads, f.read_text().splitlines())}
    assert raw(multi) == raw(single)


COMMON = ["--task", "lamp2", "--llm", "tiny-causal", "--encoder", "tiny-encoder", "--data", "synthetic",
          "--beams", "2", "--max-new-tokens", "4", "--batch-size", "3", "--no-progress"]


def test_two_gloo_processes_predict_like_one(tmp_path):
    args = ["run", "--method", "bm25", "--limit", "20", *COMMON]
    _bench([*args, "--out", str(tmp_path / "single")])
    _bench([*args, "--out", str(tmp_path / "multi")], nproc=2)
    _compare(_run_dir(tmp_path / "single", "lamp2", "bm25"), _run_dir(tmp_path / "multi", "lamp2", "bm25"))


def test_two_gloo_processes_fit_once_and_share_the_plugin(tmp_path):
    """PPlug under 2 processes: rank 0 trains and saves, rank 1 waits (gloo barrier), loads."""
    from harness.registries import METHODS

    if "pplug" not in METHODS.names():
        pytest.skip("pplug is not registered")
    args = ["run", "--method", "pplug", "--limit", "12", "-p", "max_steps=2", "-p", "batch_size=4",
            "-p", "micro_batch=4", "-p", "max_train_examples=8", *COMMON]
    _bench([*args, "--out", str(tmp_path / "single")])
    _bench([*args, "--out", str(tmp_path / "multi")], nproc=2)
    single, multi = _run_dir(tmp_path / "single", "lamp2", "pplug"), _run_dir(tmp_path / "multi", "lamp2", "pplug")
    from safetensors.torch import load_file

    weights = "artifacts/pplug.safetensors"
    a, b = (load_file(str(d / weights)) for d in (single, multi))
    assert sorted(a) == sorted(b) and all(a[k].equal(b[k]) for k in a)  # one fit, the same plug-in
    _compare(single, multi)
