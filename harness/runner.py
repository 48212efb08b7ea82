"""Run one cell: task x method x models x seed -> predictions -> metrics on disk.

Batches are fixed chunks of the length-sorted example list, so an interrupted run that
resumes, a single process and N sharded processes all predict exactly the same batches
and therefore produce identical predictions.

Order of a run, chosen so that a cached cell is never silently wrong and a failed
attempt leaves nothing a later run inherits:

1. :func:`resolve` checks every input and builds the hashed :class:`RunConfig` (data
   checksums, versions, profile, decoding) without writing anything;
2. a finished run with this hash is verified (:func:`harness.store.verify_run`) and
   reused only when sound; a damaged one is named and repaired;
3. the method is constructed (its own checks) before the run folder exists;
4. under the run's lock: ``--force`` clears the old results, the method fits,
   ``config.json`` is written, missing batches are predicted, metrics are written.
"""

from __future__ import annotations

import dataclasses
import hashlib
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

from harness import distributed, inputs, shared_fit
from harness.api import USER_ARTIFACTS, Example, Method, RunContext, Split, TaskSpec
from harness.metrics import score
from harness.params import recorded_params
from harness.registries import METHODS, TASKS
from harness.settings import GenerationSettings, generation_for, resolve_profile
from harness.store import FIT_FILE, RunConfig, RunDir, atomic_write_json, provenance


@dataclass(frozen=True)
class RunRequest:
    """What a user asks for; the runner resolves it into a hashable :class:`RunConfig`.

    ``profile=None`` means ``paper`` on a GPU and ``small`` elsewhere; ``generation=None``
    means the profile's generation settings (explicit settings replace them whole).
    """

    task: str
    method: str
    params: Mapping[str, Any]
    llm: str = "smollm2-135m"
    encoder: str = "minilm-l6"
    data: str = "synthetic"
    split: str = "dev"
    limit: int | None = None
    seed: int = 0
    generation: GenerationSettings | None = None
    out: Path = Path("runs")
    shard: tuple[int, int] | None = None  # None: from the launcher's env (RANK/WORLD_SIZE), else all
    device: str = "cpu"
    progress: bool = True
    force: bool = False
    profile: str | None = None
    decoding: str = "free"
    #: More results roots to look in for a fit this cell may share (``out`` is always
    #: searched); see :mod:`harness.shared_fit`.
    fits_from: tuple[Path, ...] = ()


@dataclass
class RunResult:
    path: Path
    metrics: dict[str, Any]
    reused: bool


@dataclass(frozen=True)
class Plan:
    """A resolved request: everything checked and loaded, nothing written yet."""

    task: TaskSpec
    method_cls: type[Method]
    params: Any
    split: Split
    train: Split | None
    config: RunConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# What the resident size may grow between the reset and the check that it took.
PEAK_RESET_SLACK_MB = 16.0


def _status_mb(field: str) -> float | None:
    """One memory figure (MiB) of this process from ``/proc/self/status``; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Start a new peak-memory window, so a cell's peak is its own and not the sweep's.

    Linux resets the high-water mark (``VmHWM``) on writing 5 to ``clear_refs``. Some
    kernels and sandboxes accept the write and keep the old mark, so the reset counts only
    when the mark has fallen to the current resident size. Returns whether the window was
    reset; False means :func:`peak_rss_mb` reports the whole process's peak, and the run
    records that scope beside the figure.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    peak, resident = _status_mb("VmHWM"), _status_mb("VmRSS")
    return peak is not None and resident is not None and peak <= resident + PEAK_RESET_SLACK_MB


def peak_rss_mb() -> float:
    """Peak resident memory (MiB) since the last :func:`reset_peak_rss` (Linux), else of the process."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(examples, key=lambda e: (-len(e.input), e.id))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _check_request(request: RunRequest) -> None:
    """The request's own fields (the command line checks the same values by flag name)."""
    inputs.limit(request.limit, "limit")
    inputs.integer(request.seed, "seed")
    inputs.data(request.data, "data")
    inputs.decoding(request.decoding, "decoding")
    inputs.device(request.device, "device")
    inputs.out_dir(request.out, "out")
    if request.shard is not None:
        i, n = request.shard
        if not 0 <= i < n:
            raise inputs.InputError(f"shard {i}/{n}: needs 0 <= i < n")


def resolve(request: RunRequest) -> Plan:
    """Check the request, load the data, build the params and the hashed config; write nothing."""
    _check_request(request)
    task: TaskSpec = TASKS.get(request.task)
    method_name = METHODS.resolve_name(request.method)
    method_cls = METHODS.get(method_name)
    profile = resolve_profile(request.profile, request.device)
    if request.decoding == "constrained" and not task.labels:
        raise inputs.InputError(f"--decoding constrained picks one of the task's labels, and {task.name} "
                                "has none (a generation task); use --decoding free")
    params = inputs.method_params(method_cls, request.params, method_name, profile)
    generation = request.generation if request.generation is not None else generation_for(profile)
    split = load_task_split(task, request.data, request.split, request.seed)
    train = load_task_split(task, request.data, "train", request.seed) if method_cls.uses_train else None
    if split.source.is_synthetic:
        notice(f"NOTICE: {task.name} runs on SYNTHETIC LaMP-format data ({split.source.location}). "
               "Scores measure the harness and planted per-user signals, not real users. "
               "Pass --data DIR for the official LaMP files.")
    config = RunConfig(
        task=task.name, method=method_name, params=recorded_params(params), llm=request.llm,
        encoder=request.encoder, data_kind=split.source.kind, data_location=split.source.location,
        data_checksum=split.source.checksum, split=request.split, limit=request.limit, seed=request.seed,
        generation=generation, shard=request.shard if request.shard is not None else distributed.env_shard(),
        profile=profile, decoding=request.decoding, method_version=int(method_cls.version),
        task_version=int(task.version), train_checksum=train.source.checksum if train is not None else None,
    )
    return Plan(task, method_cls, params, split, train, config)


def notice(message: str) -> None:
    bar = "!" * min(100, len(message) + 4)
    print(f"{bar}\n! {message}\n{bar}", file=sys.stderr)


def run(request: RunRequest, on_batch: Callable[[int], None] | None = None) -> RunResult:
    """Run (or reuse a verified finished, or resume an unfinished) cell and return its metrics."""
    plan = resolve(request)
    task, config = plan.task, plan.config
    examples = list(plan.split.examples[: config.limit] if config.limit else plan.split.examples)
    if not examples:
        raise ValueError(f"split {plan.split.name!r} of {task.name} has no questions to evaluate")
    _check_golds(examples, plan.split)
    rundir = RunDir(request.out, config)
    damaged: list[str] = []
    if rundir.is_complete and not request.force:
        damaged = rundir.verify({e.id for e in examples})
        if not damaged:
            return RunResult(rundir.path, json.loads(rundir.metrics_path.read_text()), reused=True)
        notice(f"finished run {rundir.path} is damaged, repairing it (valid predictions are kept): "
               + "; ".join(damaged))
    peak_scope = "cell" if reset_peak_rss() else "process"
    seed_everything(config.seed)
    ctx = RunContext(task=task, llm_name=config.llm, encoder_name=config.encoder, seed=config.seed,
                     artifacts_dir=rundir.artifacts, generation=config.generation, device=request.device,
                     progress=request.progress, profile=config.profile, decoding=config.decoding)
    method: Method = plan.method_cls(ctx, plan.params)  # its checks run before the run folder exists
    with rundir:
        if request.force:
            rundir.clear()
            if distributed.is_distributed():
                distributed.barrier()  # nobody reads shared files while shard 0 clears them
        elif damaged:
            rundir.discard_results()
        repaired = rundir.repair_predictions()
        if repaired:
            notice(f"repaired predictions in {rundir.path} (dropped what could not be read): " + "; ".join(repaired))
        if not request.force:
            _adopt_shared_fit(method, rundir, (request.out, *request.fits_from))
        fit_info = _fit(method, plan.train, rundir)
        rundir.write_config({"provenance": provenance(), "data_source": _source_dict(plan.split),
                             "method_description": plan.method_cls.description})
        _predict(method, task, examples, rundir, request, on_batch)
        metrics = _finish(task, method, examples, rundir, fit_info, plan.split, peak_scope)
    if metrics is None and config.shard is None:
        raise RuntimeError(f"run {rundir.path}: predictions are missing after predicting every batch")
    return RunResult(rundir.path, metrics or {}, reused=False)


def without_golds(batch: Sequence[Example]) -> list[Example]:
    """The batch as a method may see it at prediction time: no gold outputs.

    The runner keeps the golds for scoring; a method that peeked at ``output`` in
    ``predict`` would score perfectly and silently, so it is handed ``None`` instead.
    """
    return [dataclasses.replace(e, output=None) for e in batch]


def _predict(method: Method, task: TaskSpec, examples: Sequence[Example], rundir: RunDir, request: RunRequest,
             on_batch: Callable[[int], None] | None) -> None:
    """Predict every batch (of this shard) that has an example without a stored prediction."""
    config = rundir.config
    batches = fixed_batches(examples, config.generation.batch_size)
    if config.shard is not None:
        index, count = config.shard
        batches = batches[index::count]
    done = rundir.done_predictions()
    todo = [b for b in batches if any(e.id not in done for e in b)]
    seed_everything(config.seed)
    bar = tqdm(total=len(batches), initial=len(batches) - len(todo), desc=f"{task.name}/{config.method}",
               unit="batch", disable=not request.progress)
    ctx = method.ctx
    for i, batch in enumerate(todo):
        ctx.last_prompts = None  # what this predict call records, and nothing older
        ctx.last_retrieved = None
        start = time.perf_counter()
        raw = method.predict(without_golds(batch))
        if len(raw) != len(batch):
            raise RuntimeError(f"method {config.method} returned {len(raw)} predictions for {len(batch)} examples")
        per_example = (time.perf_counter() - start) / len(batch)
        prompts = _aligned(ctx.last_prompts, len(batch))
        retrieved = _aligned(ctx.last_retrieved, len(batch))
        rundir.append_predictions([
            {"id": e.id, "user": e.user_key, "raw": str(r), "prediction": task.parse_output(str(r)),
             "gold": e.output, "seconds": per_example,  # gold: lets tables bootstrap without the data
             "prompt_sha256": hashlib.sha256(prompts[j].encode()).hexdigest() if prompts else None,
             "retrieved": list(retrieved[j]) if retrieved else None}
            for j, (e, r) in enumerate(zip(batch, raw)) if e.id not in done
        ])
        bar.update(1)
        if on_batch is not None:
            on_batch(i)
    bar.close()


def _aligned(values: Sequence[Any] | None, n: int) -> Sequence[Any] | None:
    """Per-example audit values only when there is exactly one per example of the batch."""
    return values if values is not None and len(values) == n else None


def _fit(method: Method, train: Split | None, rundir: RunDir) -> dict[str, Any]:
    """Fit once; the timing of the first fit is kept so resumed runs report true cost.

    Under a launcher (several processes, see :mod:`harness.distributed`): a method with
    ``data_parallel_fit = True`` is fitted by every rank together (it averages gradients
    and rank 0 saves); any other method is fitted by rank 0 first while the others wait,
    and then by the others, which find and load rank 0's artifact.
    """
    if not method.uses_train or train is None:
        return {"fit_seconds": 0.0}
    if not distributed.is_distributed():
        return _fit_and_record(method, train, rundir)
    if getattr(method, "data_parallel_fit", False):
        _fit_and_record(method, train, rundir, write=distributed.is_main())
        distributed.barrier()  # rank 0's fit.json is on disk for everyone
        return json.loads((rundir.artifacts / FIT_FILE).read_text())
    with distributed.main_first():  # rank 0 fits, saves, records; the others then load
        info = _fit_and_record(method, train, rundir)
    return info


def _adopt_shared_fit(method: Method, rundir: RunDir, roots: Sequence[Path]) -> None:
    """Link in the fit of a finished cell that trained exactly as this one would.

    Only for a cell that has no fit of its own yet; under a launcher rank 0 adopts while
    the others wait, then finds the fit already there.
    """
    if not method.uses_train or (rundir.artifacts / FIT_FILE).exists():
        return
    with distributed.main_first():
        if (rundir.artifacts / FIT_FILE).exists():
            return
        donor = shared_fit.find_donor(roots, rundir.config, method.fit_files(), exclude=rundir.path)
        if donor is not None:
            shared_fit.adopt(donor, rundir.artifacts)
            notice(f"{rundir.config.method}: sharing the fit of {donor} (same training; the cells differ "
                   "only in decoding or beam width); --force trains afresh")


def _fit_and_record(method: Method, train: Split, rundir: RunDir, write: bool = True) -> dict[str, Any]:
    """Fit, then record what the fit used: the method's own summary over the runner's figures."""
    fit_path = rundir.artifacts / FIT_FILE
    start = time.perf_counter()
    method.fit(list(train.examples))
    existing = _readable_json(fit_path)
    if existing is not None:  # a resumed run: the first fit's record stays
        return existing
    info = {"fit_seconds": time.perf_counter() - start, "fit_peak_rss_mb": peak_rss_mb(),
            "train_examples_available": len(train.examples), "train_checksum": train.source.checksum,
            **method.fit_summary()}
    if write:
        atomic_write_json(fit_path, info)
    return info


def _readable_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and value else None


def _check_golds(examples: Sequence[Example], split: Split) -> None:
    missing = [e.id for e in examples if e.output is None]
    if missing:
        raise ValueError(f"split {split.name!r} of {split.task} has no gold outputs for {len(missing)} "
                         f"questions (e.g. {missing[:3]}); evaluate on a split with outputs (train/dev)")


def _finish(task: TaskSpec, method: Method, examples: Sequence[Example], rundir: RunDir,
            fit_info: Mapping[str, Any], split: Split, peak_scope: str) -> dict[str, Any] | None:
    """Write metrics once every example has a prediction (all shards, when sharded).

    ``peak_scope`` says whether the peak-memory figures are this cell's own ("cell") or the
    whole process's ("process", where the kernel kept the old high-water mark).

    ``official`` scores the stripped raw generation exactly as LaMP's evaluation script
    does; ``parsed`` scores ``task.parse_output(raw)``, a separate, labelled metric set.
    """
    records = rundir.done_predictions()  # read-only: other shards' files are never touched
    if any(e.id not in records for e in examples):
        return None  # other shards still running; the last one to finish writes metrics
    ordered = [records[e.id] for e in examples]
    golds = [e.output or "" for e in examples]
    config = rundir.config
    seconds = sum(float(r["seconds"]) for r in ordered)
    # fit_summary() again: methods that train per user while predicting (OPPU's stage 2)
    # know their full budget only now; the fit and cost blocks both carry the final record.
    fit_final = {**fit_info, **(method.fit_summary() if method.uses_train else {})}
    metrics = {
        "task": task.name,
        "method": config.method,
        "official": score(task, [r["raw"].strip() for r in ordered], golds),
        "parsed": score(task, [r["prediction"] for r in ordered], golds),
        "decoding": config.decoding,
        "profile": config.profile,
        "n_examples": len(examples),
        "n_users": len({e.user_key for e in examples}),
        "data_source": _source_dict(split),
        "fit": fit_final,
        "cost": {
            **fit_final,
            "predict_seconds": seconds,
            "predict_seconds_per_example": seconds / len(ordered),
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_scope": peak_scope,
            **storage_cost(rundir.artifacts),
            **method.cost(),
        },
    }
    rundir.write_final(task.lamp_name, ordered, metrics)
    return metrics


def _source_dict(split: Split) -> dict[str, Any]:
    return {"kind": split.source.kind, "location": split.source.location, "checksum": split.source.checksum,
            "detail": dict(split.source.detail), "split": split.name}
