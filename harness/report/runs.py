"""Finding finished runs on disk and checking them before any of their numbers are used.

A results folder is written by many processes over weeks; some runs in it will be
damaged (a crash between two files, a disk that filled up) or stale (written before the
format or a method changed). A table must never crash on one bad folder and must never
quietly use it either, so every candidate run is verified here and is either loaded or
skipped with a sentence naming its folder and the reason:

* ``config.json`` missing, unreadable or without the run's identity fields;
* ``metrics.json`` empty, ``{}``, unreadable, or lacking the ``official`` and ``parsed``
  metric sets;
* ``metrics.json`` in the format from before official/parsed scoring (a top-level
  ``"metrics"`` key): its single metric set cannot be said to be either;
* predictions with a torn or unreadable line, or fewer/more records than the run scored;
* superseded: a run computed under an older method or task version than another run of
  the same method or task in the folder (issue 12.7: never mix versions).

Reading is strictly read-only and goes through the store's one predictions reader and run
verifier (:func:`harness.store.read_predictions`, :func:`harness.store.verify_run`): a
torn predictions file is reported, not repaired (the runner repairs on resume).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store import FIT_FILE, prediction_files, read_predictions, verify_run

#: The two metric sets a run records: ``official`` scores the stripped raw generation as
#: LaMP's eval/evaluation.py does; ``parsed`` scores ``task.parse_output(raw)``.
METRIC_SETS: tuple[str, ...] = ("official", "parsed")
#: Which prediction-record field each metric set scores (used to recompute it).
PREDICTION_FIELD: dict[str, str] = {"official": "raw", "parsed": "prediction"}
REQUIRED_CONFIG = ("task", "method", "llm", "encoder", "seed", "split")


@dataclass(frozen=True)
class Run:
    """One verified finished run: its identity, setting, scores, cost, fit and predictions."""

    path: Path
    task: str
    method: str
    params: Mapping[str, Any]
    llm: str
    encoder: str
    seed: int
    split: str
    limit: int | None
    generation: Mapping[str, Any]
    profile: str
    decoding: str
    method_version: int | None
    task_version: int | None
    data: Mapping[str, Any]  # metrics.json "data_source": kind, location, checksum, detail, split
    scores: Mapping[str, Mapping[str, float]]  # metric set -> metric -> value
    cost: Mapping[str, Any]
    fit: Mapping[str, Any]
    n_examples: int
    versions: Mapping[str, str | None]
    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def params_key(self) -> str:
        return json.dumps(self.params, sort_keys=True, default=str)

    def metrics(self, metric_set: str) -> Mapping[str, float]:
        return self.scores.get(metric_set, {})

    @property
    def trained_to_budget(self) -> bool | None:
        """The fit's own verdict; None for methods that report no budget (training-free)."""
        value = self.fit.get("trained_to_budget")
        return None if value is None else bool(value)

    @property
    def fit_shared_from(self) -> str | None:
        """The run whose fit this one shares (same training, another decoding), if any."""
        shared = self.fit.get("shared_from")
        return str(shared.get("run")) if isinstance(shared, dict) and shared.get("run") else None

    def budget_detail(self) -> str:
        steps, budget = self.fit.get("optimizer_steps"), self.fit.get("budget_steps")
        return f"{steps} of {budget} optimizer steps" if steps is not None and budget is not None else ""


@dataclass(frozen=True)
class Skipped:
    """A run folder that was not used, and why (shown to the reader, never silent)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class LoadedRuns:
    runs: list[Run]
    skipped: list[Skipped]


class Damaged(ValueError):
    """A run folder that cannot be used; the message is the reason."""


def candidate_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` holding a ``metrics.json``.

    Unlike :func:`harness.store.find_runs` a folder without ``config.json`` is included,
    so that it is named as damaged rather than silently ignored. Artifacts and hidden
    folders (``.discarded-*`` left by an interrupted ``--force``) are not runs.
    """
    root = Path(root)
    return sorted({p.parent for p in root.glob("**/metrics.json")
                   if not any(part == "artifacts" or part.startswith(".")
                              for part in p.relative_to(root).parts[:-1])})


def load_runs(root: Path) -> LoadedRuns:
    """Verified runs under ``root``, and the folders skipped with their reasons."""
    runs, skipped = [], []
    for path in candidate_folders(root):
        try:
            runs.append(read_run(path))
        except Damaged as exc:
            skipped.append(Skipped(path, str(exc)))
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:  # a field of the wrong shape
            skipped.append(Skipped(path, f"unreadable ({type(exc).__name__}: {exc})"))
    kept, superseded = drop_superseded(runs)
    return LoadedRuns(kept, skipped + superseded)


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise Damaged(f"no {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Damaged(f"{what} unreadable ({exc.strerror or exc})") from None
    if not text.strip():
        raise Damaged(f"{what} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Damaged(f"{what} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_run(path: Path) -> Run:
    """Read and verify one run folder; raise :class:`Damaged` with the reason."""
    config = _read_json(path / "config.json", "config.json")
    cfg = config.get("config") if isinstance(config, dict) else None
    if not isinstance(cfg, dict):
        raise Damaged('config.json has no "config" object')
    missing = [k for k in REQUIRED_CONFIG if k not in cfg]
    if missing:
        raise Damaged(f"config.json lacks {', '.join(missing)}")
    metrics = _read_json(path / "metrics.json", "metrics.json")
    if not isinstance(metrics, dict) or not metrics:
        raise Damaged("metrics.json holds no scores ({})")
    if "metrics" in metrics:
        raise Damaged('old format (a single "metrics" set from before official/parsed scoring); '
                      "rerun it to tabulate it")
    for name in METRIC_SETS:
        if not isinstance(metrics.get(name), dict) or not metrics[name]:
            raise Damaged(f'metrics.json lacks the "{name}" metric set')
    try:
        n_examples = int(metrics["n_examples"])
        seed = int(cfg["seed"])
    except (KeyError, TypeError, ValueError):
        raise Damaged("metrics.json lacks n_examples, or the seed is not a number") from None
    problems = verify_run(path)
    if problems:
        raise Damaged("; ".join(problems))
    records: dict[str, dict[str, Any]] = {}
    for file in prediction_files(path):
        records.update(read_predictions(file).records)
    if len(records) != n_examples:
        raise Damaged(f"predictions hold {len(records)} records but metrics.json scored {n_examples}")
    return Run(
        path=path, task=str(cfg["task"]), method=str(cfg["method"]), params=cfg.get("params") or {},
        llm=str(cfg["llm"]), encoder=str(cfg["encoder"]), seed=seed, split=str(cfg["split"]),
        limit=cfg.get("limit"), generation=cfg.get("generation") or {},
        profile=str(cfg.get("profile") or metrics.get("profile") or "unrecorded"),
        decoding=str(cfg.get("decoding") or metrics.get("decoding") or "unrecorded"),
        method_version=_int_or_none(cfg.get("method_version")), task_version=_int_or_none(cfg.get("task_version")),
        data=metrics.get("data_source") or config.get("data_source") or {
            "kind": cfg.get("data_kind", "?"), "checksum": cfg.get("data_checksum"),
            "location": cfg.get("data_location"), "detail": {}, "split": cfg["split"]},
        scores={name: {k: float(v) for k, v in metrics[name].items()} for name in METRIC_SETS},
        cost=metrics.get("cost") or {}, fit=_fit_info(path, metrics), n_examples=n_examples,
        versions=(config.get("provenance") or {}).get("versions") or {}, records=records,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _fit_info(path: Path, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """A non-empty ``metrics["fit"]``, else ``artifacts/fit.json`` (an unreadable one counts as absent)."""
    if isinstance(metrics.get("fit"), dict) and metrics["fit"]:
        return metrics["fit"]
    try:
        fit = json.loads((path / "artifacts" / FIT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return fit if isinstance(fit, dict) else {}


def drop_superseded(runs: Sequence[Run]) -> tuple[list[Run], list[Skipped]]:
    """Keep only runs of each method's and each task's newest declared version."""
    newest_method: dict[str, int] = defaultdict(lambda: -1)
    newest_task: dict[str, int] = defaultdict(lambda: -1)
    for run in runs:
        newest_method[run.method] = max(newest_method[run.method], _version(run.method_version))
        newest_task[run.task] = max(newest_task[run.task], _version(run.task_version))
    kept, skipped = [], []
    for run in runs:
        if _version(run.method_version) < newest_method[run.method]:
            skipped.append(Skipped(run.path, f"superseded: {run.method} version {run.method_version}; the folder "
                                             f"also has version {newest_method[run.method]} runs"))
        elif _version(run.task_version) < newest_task[run.task]:
            skipped.append(Skipped(run.path, f"superseded: {run.task} task version {run.task_version}; the folder "
                                             f"also has version {newest_task[run.task]} runs"))
        else:
            kept.append(run)
    return kept, skipped


def _version(value: int | None) -> int:
    return -1 if value is None else value


def prediction_texts(run: Run, ids: Sequence[str], metric_set: str) -> list[str] | None:
    """The texts the metric set scores, in ``ids`` order (None when a record lacks them)."""
    key = PREDICTION_FIELD[metric_set]
    out = []
    for i in ids:
        rec = run.records.get(i)
        if rec is None or key not in rec:
            return None
        out.append(str(rec[key]))
    return out


def load_golds(run: Run) -> dict[str, str] | None:
    """Gold outputs by id: from the records when the runner stored them, else the data source.

    Older runs did not store golds; then the task's loader re-reads the recorded data
    location, and the checksum must match the run's, otherwise no golds (and no CI).
    """
    records = run.records
    if records and all(r.get("gold") is not None for r in records.values()):
        return {i: str(r["gold"]) for i, r in records.items()}
    from harness.registries import TASKS

    try:
        task = TASKS.get(run.task)
        split = task.load_split(task, str(run.data.get("location")), run.split, seed=run.seed)
    except Exception:  # noqa: BLE001 - any failure just means the golds are unavailable
        return None
    if split.source.checksum != run.data.get("checksum"):
        return None
    return {e.id: e.output or "" for e in split.examples if e.id in records}
