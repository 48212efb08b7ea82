"""Run one cell: task x method x models x seed -> predictions -> metrics on disk.

Batches are fixed chunks of the length-sorted example list, so an interrupted run that
resumes, a single process and N sharded processes all predict exactly the same batches
and therefore produce identical predictions.
"""

from __future__ import annotations

import dataclasses
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness import distributed
from harness.api import USER_ARTIFACTS, Example, Method, RunContext, Split, TaskSpec, parse_params
from harness.backbones import GenerationSettings
from harness.metrics import score
from harness.registries import METHODS, TASKS
from harness.store import RunConfig, RunDir, atomic_write_json, provenance


@dataclass(frozen=True)
class RunRequest:
    """What a user asks for; the runner resolves it into a hashable :class:`RunConfig`."""

    task: str
    method: str
    params: Mapping[str, Any]
    llm: str = "smollm2-135m"
    encoder: str = "minilm-l6"
    data: str = "synthetic"
    split: str = "dev"
    limit: int | None = None
    seed: int = 0
    generation: GenerationSettings = GenerationSettings()
    out: Path = Path("runs")
    shard: tuple[int, int] | None = None  # None: from the launcher's env (RANK/WORLD_SIZE), else all
    device: str = "cpu"
    progress: bool = True
    force: bool = False


@dataclass
class RunResult:
    path: Path
    metrics: dict[str, Any]
    reused: bool


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reset_peak_rss() -> None:
    """Start a new peak-memory window, so a cell's peak is its own and not the sweep's.

    Linux resets the high-water mark (``VmHWM``) on writing 5 to ``clear_refs``; elsewhere
    this does nothing and :func:`peak_rss_mb` falls back to the whole process's peak.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory (MiB) since the last :func:`reset_peak_rss` (Linux), else of the process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def storage_cost(artifacts: Path) -> dict[str, float]:
    """What a method keeps on disk: shared bytes, and bytes per user (``users/``, one entry each)."""
    def size(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0

    users = artifacts / USER_ARTIFACTS
    entries = [e for e in users.iterdir() if not e.name.startswith(".")] if users.is_dir() else []
    per_user = sum(size(e) for e in entries)
    return {"shared_bytes": float(size(artifacts) - size(users)),
            "stored_bytes_per_user": per_user / len(entries) if entries else 0.0}


def load_task_split(task: TaskSpec, data: str, split: str, seed: int) -> Split:
    if task.load_split is None:
        raise ValueError(f"task {task.name!r} declares no data loader (TaskSpec.load_split)")
    return task.load_split(task, data, split, seed=seed)


def fixed_batches(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """Length-sorted fixed batches: fewer pad tokens, and the same batches on every run."""
    order = sorted(examples, key=lambda e: (-len(e.input), e.id))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def resolve(request: RunRequest) -> tuple[TaskSpec, type[Method], Any, Split, RunConfig]:
    task: TaskSpec = TASKS.get(request.task)
    method_name = METHODS.resolve_name(request.method)
    method_cls = METHODS.get(method_name)
    params = parse_params(method_cls.Params, request.params)
    split = load_task_split(task, request.data, request.split, request.seed)
    if split.source.is_synthetic:
        notice(f"NOTICE: {task.name} runs on SYNTHETIC LaMP-format data ({split.source.location}). "
               "Scores measure the harness and planted per-user signals, not real users. "
               "Pass --data DIR for the official LaMP files.")
    config = RunConfig(
        task=task.name, method=method_name, params=dataclasses.asdict(params), llm=request.llm,
        encoder=request.encoder, data_kind=split.source.kind, data_location=split.source.location,
        data_checksum=split.source.checksum, split=request.split, limit=request.limit, seed=request.seed,
        generation=request.generation, shard=request.shard if request.shard is not None else distributed.env_shard(),
    )
    return task, method_cls, params, split, config


def notice(message: str) -> None:
    bar = "!" * min(100, len(message) + 4)
    print(f"{bar}\n! {message}\n{bar}", file=sys.stderr)


def run(request: RunRequest, on_batch: Callable[[int], None] | None = None) -> RunResult:
    """Run (or reuse, or resume) one cell and return its metrics."""
    task, method_cls, params, split, config = resolve(request)
    rundir = RunDir(request.out, config)
    if rundir.is_complete and not request.force:
        return RunResult(rundir.path, _read_json(rundir.metrics_path), reused=True)
    with rundir:
        reset_peak_rss()
        rundir.write_config({"provenance": provenance(), "data_source": _source_dict(split),
                             "method_description": method_cls.description})
        seed_everything(config.seed)
        ctx = RunContext(task=task, llm_name=config.llm, encoder_name=config.encoder, seed=config.seed,
                         artifacts_dir=rundir.artifacts, generation=config.generation, device=request.device,
                         progress=request.progress)
        method: Method = method_cls(ctx, params)
        examples = list(split.examples[: config.limit] if config.limit else split.examples)
        _check_golds(examples, split)
        fit_info = _fit(method, task, request, rundir)
        batches = fixed_batches(examples, config.generation.batch_size)
        if config.shard is not None:
            index, count = config.shard
            batches = batches[index::count]
        done = rundir.done_predictions()
        todo = [b for b in batches if any(e.id not in done for e in b)]
        seed_everything(config.seed)
        bar = tqdm(total=len(batches), initial=len(batches) - len(todo), desc=f"{task.name}/{config.method}",
                   unit="batch", disable=not request.progress)
        for i, batch in enumerate(todo):
            start = time.perf_counter()
            raw = method.predict(batch)
            if len(raw) != len(batch):
                raise RuntimeError(f"method {config.method} returned {len(raw)} predictions for {len(batch)} examples")
            per_example = (time.perf_counter() - start) / len(batch)
            rundir.append_predictions([
                {"id": e.id, "user": e.user_key, "raw": r, "prediction": task.parse_output(r),
                 "gold": e.output, "seconds": per_example}  # gold: lets tables bootstrap without the data
                for e, r in zip(batch, raw) if e.id not in done
            ])
            bar.update(1)
            if on_batch is not None:
                on_batch(i)
        bar.close()
        metrics = _finish(task, method, examples, rundir, fit_info, split)
    return RunResult(rundir.path, metrics or {}, reused=False)


def _fit(method: Method, task: TaskSpec, request: RunRequest, rundir: RunDir) -> dict[str, Any]:
    """Fit once; the timing of the first fit is kept so resumed runs report true cost.

    Under a launcher (several processes, see :mod:`harness.distributed`): a method with
    ``data_parallel_fit = True`` is fitted by every rank together (it averages gradients
    and rank 0 saves); any other method is fitted by rank 0 first while the others wait,
    and then by the others, which find and load rank 0's artifact.
    """
    if not method.uses_train:
        return {"fit_seconds": 0.0}
    train = load_task_split(task, request.data, "train", request.seed)
    if not distributed.is_distributed():
        return _fit_and_record(method, train, rundir)
    if getattr(method, "data_parallel_fit", False):
        _fit_and_record(method, train, rundir, write=distributed.is_main())
        distributed.barrier()  # rank 0's fit.json is on disk for everyone
        return _read_json(rundir.artifacts / "fit.json")
    with distributed.main_first():  # rank 0 fits, saves, records; the others then load
        info = _fit_and_record(method, train, rundir)
    return info


def _fit_and_record(method: Method, train: Split, rundir: RunDir, write: bool = True) -> dict[str, Any]:
    fit_path = rundir.artifacts / "fit.json"
    start = time.perf_counter()
    method.fit(list(train.examples))
    if fit_path.exists():
        return _read_json(fit_path)
    info = {"fit_seconds": time.perf_counter() - start, "fit_peak_rss_mb": peak_rss_mb(),
            "train_examples": len(train.examples), "train_checksum": train.source.checksum}
    if write:
        atomic_write_json(fit_path, info)
    return info


def _check_golds(examples: Sequence[Example], split: Split) -> None:
    missing = [e.id for e in examples if e.output is None]
    if missing:
        raise ValueError(f"split {split.name!r} of {split.task} has no gold outputs for {len(missing)} "
                         f"questions (e.g. {missing[:3]}); evaluate on a split with outputs (train/dev)")


def _finish(task: TaskSpec, method: Method, examples: Sequence[Example], rundir: RunDir,
            fit_info: Mapping[str, Any], split: Split) -> dict[str, Any] | None:
    """Write metrics once every example has a prediction (all shards, when sharded)."""
    records = {r["id"]: r for r in rundir.iter_all_predictions()}
    if any(e.id not in records for e in examples):
        return None  # other shards still running; the last one to finish writes metrics
    ordered = [records[e.id] for e in examples]
    preds = [r["prediction"] for r in ordered]
    golds = [e.output or "" for e in examples]
    n_users = len({e.user_key for e in examples})
    metrics = {
        "task": task.name,
        "method": rundir.config.method,
        "metrics": score(task, preds, golds),
        "n_examples": len(examples),
        "n_users": n_users,
        "data_source": _source_dict(split),
        "cost": {
            **fit_info,
            "predict_seconds": sum(r["seconds"] for r in ordered),
            "predict_seconds_per_example": sum(r["seconds"] for r in ordered) / len(ordered),
            "peak_rss_mb": peak_rss_mb(),
            **storage_cost(rundir.artifacts),
            **method.cost(),
        },
    }
    rundir.write_final(task.lamp_name, ordered, metrics)
    return metrics


def _source_dict(split: Split) -> dict[str, Any]:
    return {"kind": split.source.kind, "location": split.source.location, "checksum": split.source.checksum,
            "detail": dict(split.source.detail), "split": split.name}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
