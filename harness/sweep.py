"""Run a grid of cells (tasks x methods x LLMs x encoders x seeds) with one progress view.

A sweep is a thin loop over :func:`harness.runner.run`: the runner already reuses a
finished cell and resumes an unfinished one by its config hash, so rerunning a sweep
after a crash, a kill or a new method landing only computes what is missing. A failing
cell is reported, recorded in the sweep summary and skipped; the rest continue.

Cells are ordered LLM-major so each LLM is loaded once per process
(``harness.backbones.load_llm`` is cached) and shared by every cell that uses it.

Config files are TOML (stdlib ``tomllib``)::

    name = "table1-small"
    out = "results/small/runs"          # relative to the working directory
    data = "synthetic"                  # or a folder of official LaMP files
    split = "dev"
    limit = 40                          # omit for the full split
    tasks = ["lamp1", "lamp2"]
    llms = ["smollm2-135m"]
    encoders = ["minilm-l6"]
    seeds = [0]
    profile = "small"                   # or "paper"; omit: paper on a GPU, small on CPU
    decoding = "free"                   # or "constrained" (classification tasks)
    skip_unregistered = true            # methods not (yet) registered are listed, not failed
    fits_from = ["results/small/runs"]  # more roots whose fits a cell may share (out is always searched)
    methods = ["adhoc", {name = "bm25", params = {k = 1}}, {name = "pplug+rag", grid = {k = [1, 2, 4]}}]

    [generation]                        # explicit settings override the profile's
    num_beams = 4
    batch_size = 16
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from harness import inputs
from harness.api import PROFILES
from harness.settings import GENERATION_KEYS, generation_for, resolve_profile
from harness.store import atomic_write_json, atomic_write_text

SUMMARY_DIR = "_sweeps"


@dataclass(frozen=True)
class MethodSpec:
    """A method name, fixed parameter values and optionally its own encoder (one table column).

    ``encoder`` pins the encoder for this method instead of crossing it with the sweep's
    encoders: the paper's Contriever baseline uses Contriever while PPlug uses bge.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    encoder: str | None = None

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "(" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep varies and fixes; built from a config file and/or CLI flags."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    llms: tuple[str, ...] = ("smollm2-135m",)
    encoders: tuple[str, ...] = ("minilm-l6",)
    seeds: tuple[int, ...] = (0,)
    data: str = "synthetic"
    split: str = "dev"
    limit: int | None = None
    generation: Mapping[str, int] = field(default_factory=dict)  # explicit settings over the profile's
    out: Path = Path("runs")
    device: str = "cpu"
    skip_unregistered: bool = False
    description: str = ""
    profile: str | None = None  # None: paper on a GPU, small on CPU
    decoding: str = "free"
    fits_from: tuple[Path, ...] = ()  # more roots to share fits from (harness.shared_fit)


@dataclass(frozen=True)
class SweepCell:
    """One run of the grid."""

    task: str
    method: MethodSpec
    llm: str
    encoder: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.task}/{self.method.label} [{self.llm}, {self.encoder}, seed {self.seed}]"

    @property
    def slug(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-+=." else "_" for c in self.label)
        return safe.strip("_")


@dataclass
class CellOutcome:
    """How a cell ended: ``ran``, ``reused`` (finished before), ``failed`` or ``skipped``."""

    cell: SweepCell
    status: str
    seconds: float = 0.0
    path: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.cell
        return {"task": c.task, "method": c.method.name, "params": dict(c.method.params), "llm": c.llm,
                "encoder": c.encoder, "seed": c.seed, "status": self.status, "seconds": round(self.seconds, 3),
                "path": self.path, "metrics": dict(self.metrics), "error": self.error, "log": self.log}


@dataclass
class SweepReport:
    spec: SweepSpec
    outcomes: list[CellOutcome]
    summary_path: Path

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# -- config --------------------------------------------------------------------------------------
class SweepConfigError(ValueError):
    pass


_SPEC_KEYS = {f.name for f in fields(SweepSpec)}
_GEN_KEYS = set(GENERATION_KEYS)


def load_spec(path: Path, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read a TOML sweep config (YAML too when PyYAML is installed), then apply overrides."""
    path = Path(path)
    if not path.exists():
        raise SweepConfigError(f"no sweep config {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise SweepConfigError(f"{path}: YAML needs PyYAML installed; or write the config as TOML") from exc
            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        if isinstance(exc, SweepConfigError):
            raise
        raise SweepConfigError(f"{path}: {exc}") from exc
    raw.setdefault("name", path.stem)
    return spec_from_mapping({**raw, **(overrides or {})}, where=str(path))


def spec_from_mapping(raw: Mapping[str, Any], where: str = "sweep") -> SweepSpec:
    """Validate a config mapping (unknown keys are errors: a typo must not silently shrink a grid).

    Every bad value names its key and ``where`` (the file), e.g. ``s.toml: 'limit' must be
    an integer, got 'four'``.
    """
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise SweepConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_SPEC_KEYS))}")
    for key in ("tasks", "methods"):
        if not raw.get(key):
            raise SweepConfigError(f"{where}: '{key}' must list at least one entry")
    try:
        return _spec(raw, where)
    except inputs.InputError as exc:
        raise SweepConfigError(str(exc)) from None


def _spec(raw: Mapping[str, Any], where: str) -> SweepSpec:
    key = lambda name: f"{where}: '{name}'"  # how every message names a key
    gen = raw.get("generation", {})
    if not isinstance(gen, Mapping):
        raise SweepConfigError(f"{key('generation')} must be a table of settings")
    bad = set(gen) - _GEN_KEYS
    if bad:
        raise SweepConfigError(f"{where}: unknown generation key(s) {', '.join(sorted(bad))}; "
                               f"known: {', '.join(sorted(_GEN_KEYS))}")
    generation = inputs.generation(gen, {k: f"{where}: 'generation.{k}'" for k in _GEN_KEYS})
    limit = raw.get("limit")
    limit = None if limit == 0 and not isinstance(limit, bool) else inputs.limit(limit, key("limit"))
    seeds = raw.get("seeds", SweepSpec.seeds)
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise SweepConfigError(f"{key('seeds')} must be a list of integers")
    profile = raw.get("profile")
    if profile is not None:
        inputs.choice(profile, PROFILES, key("profile"))
    for name in ("data", "split", "device", "name", "description"):
        if name in raw and not isinstance(raw[name], str):
            raise SweepConfigError(f"{key(name)} must be a string, got {raw[name]!r}")
    if not isinstance(raw.get("skip_unregistered", False), bool):
        raise SweepConfigError(f"{key('skip_unregistered')} must be true or false")
    if not isinstance(raw.get("out", ""), (str, Path)):
        raise SweepConfigError(f"{key('out')} must be a path string")
    fits_from = raw.get("fits_from", [])
    if not isinstance(fits_from, (list, tuple)) or not all(isinstance(r, (str, Path)) for r in fits_from):
        raise SweepConfigError(f"{key('fits_from')} must be a list of path strings")
    for root in fits_from:
        inputs.results_root(Path(root), key("fits_from"))
    return SweepSpec(
        name=str(raw.get("name", "sweep")),
        tasks=_strings(raw["tasks"], "tasks", where),
        methods=tuple(m for entry in raw["methods"] for m in _method_specs(entry, where)),
        llms=_strings(raw.get("llms", SweepSpec.llms), "llms", where),
        encoders=_strings(raw.get("encoders", SweepSpec.encoders), "encoders", where),
        seeds=tuple(inputs.integer(s, key("seeds")) for s in seeds),
        data=inputs.data(raw.get("data", SweepSpec.data), key("data")), split=raw.get("split", SweepSpec.split),
        limit=limit, generation=generation,
        out=Path(raw.get("out", SweepSpec.out)), device=raw.get("device", SweepSpec.device),
        skip_unregistered=raw.get("skip_unregistered", False), description=raw.get("description", ""),
        profile=profile, decoding=inputs.decoding(raw.get("decoding", "free"), key("decoding")),
        fits_from=tuple(Path(r) for r in fits_from),
    )


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SweepConfigError(f"{where}: '{key}' must be a list of names")
    return tuple(value)


def _method_specs(entry: Any, where: str) -> list[MethodSpec]:
    """``"bm25"``, or ``{name, params, grid, encoder}`` where ``grid`` lists values to cross."""
    if isinstance(entry, MethodSpec):
        return [entry]
    if isinstance(entry, str):
        return [MethodSpec(entry)]
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise SweepConfigError(f"{where}: a method is a name or a table with 'name' (got {entry!r})")
    bad = set(entry) - {"name", "params", "grid", "encoder"}
    if bad:
        raise SweepConfigError(f"{where}: method {entry['name']!r} has unknown key(s) {', '.join(sorted(bad))}")
    params = dict(entry.get("params", {}))
    grid = dict(entry.get("grid", {}))
    if any(not isinstance(v, list) or not v for v in grid.values()):
        raise SweepConfigError(f"{where}: every 'grid' value of method {entry['name']!r} must be a non-empty list")
    keys = sorted(grid)
    encoder = entry.get("encoder")
    return [MethodSpec(str(entry["name"]), {**params, **dict(zip(keys, combo))}, None if encoder is None else str(encoder))
            for combo in itertools.product(*(grid[k] for k in keys))]


def cells(spec: SweepSpec) -> list[SweepCell]:
    """The grid in run order: LLM-major (one model load per LLM), then encoder, seed, task, method."""
    grid = [SweepCell(task, method, llm, method.encoder or encoder, seed)
            for llm, encoder, seed, task, method in itertools.product(
                spec.llms, spec.encoders, spec.seeds, spec.tasks, spec.methods)]
    unique: dict[str, SweepCell] = {}
    for cell in grid:  # a method with its own encoder appears once, not once per sweep encoder
        unique.setdefault(cell.label, cell)
    return list(unique.values())


# -- running -------------------------------------------------------------------------------------
def summary_path(spec: SweepSpec) -> Path:
    return spec.out / SUMMARY_DIR / f"{spec.name}.json"


def run_sweep(spec: SweepSpec, *, console: Console | None = None, progress: bool = True) -> SweepReport:
    """Run every cell; never stop for one failing cell; keep the summary file current."""
    from harness.registries import METHODS
    from harness.runner import RunRequest, run

    console = console or Console(stderr=True)
    grid = cells(spec)
    unregistered = sorted({c.method.name for c in grid if c.method.name not in METHODS})
    if spec.data.startswith("synthetic"):
        console.print("[yellow]NOTICE:[/] this sweep runs on SYNTHETIC LaMP-format data: scores measure the harness "
                      "and planted per-user signals, not real users.", highlight=False)
    if unregistered and spec.skip_unregistered:
        console.print(f"[yellow]skipping unregistered method(s):[/] {escape(', '.join(unregistered))}",
                      highlight=False)
    report = SweepReport(spec, [], summary_path(spec))
    profile = resolve_profile(spec.profile, spec.device)
    generation = generation_for(profile, spec.generation)
    log_dir = report.summary_path.parent / spec.name
    started = time.time()
    with _progress(console, progress) as bar:
        overall = bar.add_task(f"sweep {spec.name}", total=len(grid))
        current = bar.add_task("", total=None, visible=False)
        try:
            for cell in grid:
                if spec.skip_unregistered and cell.method.name in unregistered:
                    report.outcomes.append(CellOutcome(cell, "skipped", error="method not registered"))
                    bar.advance(overall)
                    continue
                bar.update(current, description=escape(cell.label), completed=0, visible=True)
                request = RunRequest(
                    task=cell.task, method=cell.method.name, params=dict(cell.method.params), llm=cell.llm,
                    encoder=cell.encoder, data=spec.data, split=spec.split, limit=spec.limit, seed=cell.seed,
                    generation=generation, out=spec.out, device=spec.device, progress=False, profile=profile,
                    decoding=spec.decoding, fits_from=spec.fits_from,
                )
                report.outcomes.append(_run_cell(cell, request, run, log_dir,
                                                 on_batch=lambda _i: bar.advance(current)))
                outcome = report.outcomes[-1]
                if outcome.status == "failed":
                    console.print(f"[red]FAILED[/] {escape(cell.label)}: {escape(outcome.error or '')}  "
                                  f"(log: {outcome.log})", highlight=False)
                bar.advance(overall)
                _write_summary(report, started)
            bar.update(current, visible=False)
        finally:
            _write_summary(report, started)
    return report


def _run_cell(cell: SweepCell, request: Any, run: Any, log_dir: Path, on_batch: Any) -> CellOutcome:
    """One cell, its stderr captured to a log (per-cell notices would drown the progress view)."""
    captured = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(captured):
            result = run(request, on_batch=on_batch)
    except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the sweep
        log = log_dir / f"{cell.slug}.log"
        atomic_write_text(log, captured.getvalue() + "\n" + traceback.format_exc())
        return CellOutcome(cell, "failed", time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}",
                           log=str(log))
    status = "reused" if result.reused else "ran"
    metrics = dict(result.metrics.get("official", {})) if result.metrics else {}
    return CellOutcome(cell, status, time.perf_counter() - start, path=str(result.path), metrics=metrics)


@contextlib.contextmanager
def _progress(console: Console, enabled: bool) -> Iterator[Progress]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not enabled, transient=False) as bar:
        yield bar


def _write_summary(report: SweepReport, started: float) -> None:
    spec = report.spec
    atomic_write_json(report.summary_path, {
        "name": spec.name, "description": spec.description,
        "spec": _spec_dict(spec),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "counts": {s: report.count(s) for s in ("ran", "reused", "failed", "skipped")},
        "cells": [o.to_dict() for o in report.outcomes],
    })


def _spec_dict(spec: SweepSpec) -> dict[str, Any]:
    return json.loads(json.dumps({
        "tasks": spec.tasks,
        "methods": [{"name": m.name, "params": dict(m.params), "encoder": m.encoder} for m in spec.methods],
        "llms": spec.llms, "encoders": spec.encoders, "seeds": spec.seeds, "data": spec.data, "split": spec.split,
        "limit": spec.limit, "generation": dict(spec.generation), "out": str(spec.out), "device": spec.device,
        "skip_unregistered": spec.skip_unregistered, "profile": spec.profile, "decoding": spec.decoding,
        "fits_from": [str(r) for r in spec.fits_from],
    }, default=str))


def with_overrides(spec: SweepSpec, **overrides: Any) -> SweepSpec:
    """Apply CLI flags on top of a config (only flags the user gave, i.e. not None)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    gen = {k: given.pop(k) for k in list(given) if k in _GEN_KEYS}
    if gen:
        given["generation"] = {**spec.generation, **inputs.generation(gen)}
    return replace(spec, **given)


def parse_methods(values: Sequence[str]) -> tuple[MethodSpec, ...]:
    """``--methods adhoc,bm25`` into specs (parameters come from config files)."""
    return tuple(MethodSpec(name) for v in values for name in v.split(",") if name.strip())
