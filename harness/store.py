"""Results store: one directory per run config, written atomically and resumably.

A run directory ``<out>/<task>/<method>/<hash>/`` holds

* ``config.json`` – the full :class:`RunConfig` plus provenance (versions, git commit);
* ``predictions.jsonl`` – one line per example, appended and flushed per batch, so an
  interrupted run resumes where it stopped;
* ``metrics.json`` – official scores, written when the run completes;
* ``predictions.json`` – LaMP-format ``{"task", "golds": [{"id", "output"}]}`` that the
  official evaluation script reads;
* ``artifacts/`` – what a method learned (safetensors), reused by a rerun.

A lock file keeps two processes from writing the same run at once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.backbones import GenerationSettings

TRACKED_PACKAGES = (
    "persona-bench", "torch", "transformers", "peft", "sentence-transformers", "rank-bm25",
    "faiss-cpu", "datasets", "rouge-score", "numpy",
)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's predictions; its hash names the run.

    Provenance that does not change predictions (package versions, git commit, host)
    is recorded beside it in ``config.json`` but is not hashed, so upgrading a package
    does not silently orphan finished runs; the table flags mixed versions instead.
    """

    task: str
    method: str
    params: Mapping[str, Any]
    llm: str
    encoder: str
    data_kind: str
    data_location: str
    data_checksum: str
    split: str
    limit: int | None
    seed: int
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    shard: tuple[int, int] | None = None  # (index, count) for multi-process prediction

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    @property
    def hash(self) -> str:
        # The shard is not hashed: every shard of a run writes the same directory.
        payload = {k: v for k, v in self.to_dict().items() if k not in {"shard", "data_location"}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunConfig:
        raw = dict(raw)
        raw["generation"] = GenerationSettings(**raw.get("generation", {}))
        if raw.get("shard") is not None:
            raw["shard"] = tuple(raw["shard"])
        return cls(**raw)


def provenance() -> dict[str, Any]:
    """Package versions, git commit and host facts recorded with every run."""
    versions = {}
    for pkg in TRACKED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class RunLocked(RuntimeError):
    pass


class RunDir:
    """A run's directory and the operations the runner needs on it."""

    def __init__(self, root: Path, config: RunConfig) -> None:
        self.config = config
        self.path = Path(root) / config.task / config.method / config.hash
        self.artifacts = self.path / "artifacts"
        self._lock_fh: Any = None

    @property
    def predictions_jsonl(self) -> Path:
        return self.path / ("predictions.jsonl" if self.config.shard is None else
                            f"predictions.shard{self.config.shard[0]}of{self.config.shard[1]}.jsonl")

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def is_complete(self) -> bool:
        return self.metrics_path.exists()

    # -- locking ----------------------------------------------------------------------------
    def __enter__(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        lock_name = ".lock" if self.config.shard is None else f".lock.shard{self.config.shard[0]}"
        self._lock_fh = open(self.path / lock_name, "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_fh.close()
            raise RunLocked(f"another process is writing {self.path}; wait for it or use another --out") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- config -----------------------------------------------------------------------------
    def write_config(self, extra: Mapping[str, Any]) -> None:
        path = self.path / "config.json"
        if path.exists():
            return  # first writer's provenance stays: it is the run's origin
        atomic_write_json(path, {"config": self.config.to_dict(), "hash": self.config.hash, **extra})

    # -- predictions --------------------------------------------------------------------------
    def done_predictions(self, path: Path | None = None) -> dict[str, dict[str, Any]]:
        """Predictions already on disk; a torn last line from a crash is dropped."""
        path = path or self.predictions_jsonl
        done: dict[str, dict[str, Any]] = {}
        if not path.exists():
            return done
        valid_bytes = 0
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break
                if not line.endswith(b"\n"):
                    break
                done[str(rec["id"])] = rec
                valid_bytes += len(line)
        if valid_bytes != path.stat().st_size:
            with open(path, "r+b") as fh:  # cut the torn tail so appends stay line-aligned
                fh.truncate(valid_bytes)
        return done

    def append_predictions(self, records: list[dict[str, Any]]) -> None:
        with open(self.predictions_jsonl, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def shard_files(self) -> list[Path]:
        return sorted(self.path.glob("predictions.shard*of*.jsonl"))

    def iter_all_predictions(self) -> Iterator[dict[str, Any]]:
        for path in [self.path / "predictions.jsonl", *self.shard_files()]:
            yield from self.done_predictions(path).values()

    def write_final(self, lamp_name: str, ordered: list[dict[str, Any]], metrics: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "predictions.json",
                          {"task": lamp_name, "golds": [{"id": r["id"], "output": r["prediction"]} for r in ordered]})
        atomic_write_json(self.metrics_path, metrics)


def find_runs(root: Path) -> Iterator[Path]:
    """Every completed run directory under ``root``."""
    for metrics in sorted(Path(root).glob("**/metrics.json")):
        if (metrics.parent / "config.json").exists():
            yield metrics.parent
