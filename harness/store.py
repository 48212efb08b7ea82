"""Results store: one directory per run config, written atomically and resumably.

A run directory ``<out>/<task>/<method>/<hash>/`` holds

* ``config.json`` – the full :class:`RunConfig` plus provenance (versions, git commit),
  written when the run starts predicting (a rejected attempt leaves none);
* ``predictions.jsonl`` – one line per example, appended and flushed per batch, so an
  interrupted run resumes where it stopped (``predictions.shardIofN.jsonl`` per shard);
* ``metrics.json`` – ``official`` and ``parsed`` scores, written when the run completes;
* ``predictions.json`` – LaMP-format ``{"task", "golds": [{"id", "output"}]}`` of the
  stripped raw outputs, the file the official evaluation script reads;
* ``artifacts/`` – what a method learned (safetensors) and ``fit.json``, reused by a rerun.

A lock file (holding the writer's pid and host) keeps two processes from writing the
same run at once. A finished run is verified (:func:`verify_run`) before it is reused.
Every file here is written by :func:`atomic_write_text` and every predictions file is
read by :func:`read_predictions`: other modules import these two instead of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.settings import ENGINE_VERSION, GenerationSettings

TRACKED_PACKAGES = (
    "persona-bench", "torch", "transformers", "peft", "sentence-transformers", "rank-bm25",
    "datasets", "rouge-score", "numpy", "pandas",
)
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
FIT_FILE = "fit.json"  # in a run's artifacts/: what its fit used and cost (written by the runner)
LAMP_PREDICTIONS_FILE = "predictions.json"
PREDICTIONS_GLOB = "predictions*.jsonl"
_DISCARDED = ".discarded-"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's predictions; its hash names the run.

    Provenance that does not change predictions (package versions, git commit, host)
    is recorded beside it in ``config.json`` but is not hashed, so upgrading a package
    does not silently orphan finished runs; the table flags mixed versions instead. What
    *does* change a result is hashed: the evaluated data's checksum, the train data's
    (for methods that train), the method's and task's declared versions, the settings
    profile and the decoding mode.
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
    profile: str = "small"
    decoding: str = "free"
    method_version: int = 1
    task_version: int = 1
    train_checksum: str | None = None  # None for methods that do not train
    engine_version: int = ENGINE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    def _hashed(self) -> dict[str, Any]:
        """What the run hash covers: every field but the shard (every shard of a run writes
        the same directory) and where the data sits (its checksum is hashed)."""
        return {k: v for k, v in self.to_dict().items() if k not in {"shard", "data_location"}}

    @property
    def hash(self) -> str:
        return _digest(self._hashed())

    @property
    def fit_key(self) -> str:
        """The identity of this run's training: its hash without what only prediction reads.

        Two configs that differ only in the decoding mode or the beam width train the same
        way (for a method that declares it, see :mod:`harness.shared_fit`), so they share
        this key and may share one fit. Everything else stays in, the batch size and the
        question limit too (OPPU trains a user's adapter on the profiles of the questions
        batched together).
        """
        payload = {k: v for k, v in self._hashed().items() if k != "decoding"}
        payload["generation"] = {k: v for k, v in payload["generation"].items() if k != "num_beams"}
        return _digest(payload)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunConfig:
        raw = dict(raw)
        raw["generation"] = GenerationSettings(**raw.get("generation", {}))
        if raw.get("shard") is not None:
            raw["shard"] = tuple(raw["shard"])
        return cls(**raw)


def _digest(payload: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``payload`` as sorted JSON (run folder names)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
                             check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# -- writing ---------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write in any way; renamed over ``path`` on success.

    For writers that want a file name (``safetensors.torch.save_file``) as much as for
    text. Readers never see half a file; on an error the temporary file is removed. The
    result gets the mode a plain ``open`` gives (``0666`` less the umask), not the
    ``0600`` of ``mkstemp``, so a shared results folder stays readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_output`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def prediction_line(record: Mapping[str, Any]) -> str:
    """One ``predictions*.jsonl`` line (newline included), the one format every writer uses."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


# -- reading -----------------------------------------------------------------------------------
def record_problem(record: Any) -> str | None:
    """Why a parsed predictions line is not a prediction record, or None when it is one."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if not isinstance(record.get("id"), (str, int)) or isinstance(record.get("id"), bool):
        return 'no "id"'
    for key in ("raw", "prediction"):
        if not isinstance(record.get(key), str):
            return f'"{key}" must be a string'
    seconds = record.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return '"seconds" must be a number'
    return None


@dataclass
class PredictionsFile:
    """What :func:`read_predictions` found: valid records by id (file order) and problems."""

    path: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_predictions(path: Path) -> PredictionsFile:
    """Read a ``predictions*.jsonl`` file without ever modifying it.

    A torn last line (a crash mid-write, or another shard still writing), a line that
    is not JSON and a line of the wrong shape (``{"foo": 1}``, ``[1, 2]``) are skipped
    and named in ``problems``; later lines still count. A missing file reads as empty.
    Only a file's writer, or a single-process run while the file is idle, repairs it
    (:meth:`RunDir.repair_predictions`).
    """
    path = Path(path)
    found = PredictionsFile(path)
    if not path.exists():
        return found
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                found.problems.append(f"{path.name}: line {number} is cut off (an interrupted write)")
                break
            if not line.strip():
                found.problems.append(f"{path.name}: line {number} is empty")
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                found.problems.append(f"{path.name}: line {number} is not valid JSON")
                continue
            why = record_problem(record)
            if why is not None:
                found.problems.append(f"{path.name}: line {number} is not a prediction record ({why})")
                continue
            found.records[str(record["id"])] = record
    return found


def _json_file(path: Path, problems: list[str]) -> Any:
    """A JSON file's value, or None after adding a problem naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name}: missing")
    except UnicodeDecodeError:
        problems.append(f"{path.name}: not UTF-8 text")
    except json.JSONDecodeError as exc:
        problems.append(f"{path.name}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    return None


def prediction_files(path: Path) -> list[Path]:
    """Every predictions file of a run folder: the single-process one first, then shards."""
    single = path / "predictions.jsonl"
    shards = sorted(path.glob("predictions.shard*of*.jsonl"))
    return ([single] if single.exists() else []) + shards


def verify_run(path: Path, expected_ids: Collection[str] | None = None) -> list[str]:
    """Every reason a finished run folder cannot be trusted as it is; empty when sound.

    Checks ``config.json`` (a run config whose hash names the folder), ``metrics.json``
    (non-empty ``official`` scores; an older format without them counts as damaged),
    every predictions file (no torn or wrong-shaped lines, a record for each expected
    question, or for ``n_examples`` when the questions are not known) and
    ``predictions.json``. Reads only: damaged shard files stay as their writers left them.
    """
    path = Path(path)
    problems: list[str] = []
    config = _json_file(path / CONFIG_FILE, problems)
    if config is not None:
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict) \
                or not isinstance(config.get("hash"), str):
            problems.append(f"{CONFIG_FILE}: not a run config (needs 'config' and 'hash')")
        elif config["hash"] != path.name:
            problems.append(f"{CONFIG_FILE}: hash {config['hash']!r} does not match the folder {path.name!r}")
    metrics = _json_file(path / METRICS_FILE, problems)
    n_examples = None
    if metrics is not None:
        if not isinstance(metrics, dict) or not metrics:
            problems.append(f"{METRICS_FILE}: empty")
        elif "official" not in metrics:
            older = " (written by an older persona-bench, before official/parsed scores)" \
                if "metrics" in metrics else ""
            problems.append(f"{METRICS_FILE}: no 'official' scores{older}")
        elif not _scores_ok(metrics["official"]) or not _scores_ok(metrics.get("parsed")):
            problems.append(f"{METRICS_FILE}: 'official' and 'parsed' must map metric names to numbers")
        else:
            n_examples = metrics.get("n_examples")
    files = prediction_files(path)
    if not files:
        problems.append("predictions.jsonl: missing")
    records: dict[str, dict[str, Any]] = {}
    for file in files:
        found = read_predictions(file)
        problems += found.problems
        records.update(found.records)
    expected = set(expected_ids) if expected_ids is not None else None
    if expected is not None:
        missing = expected - set(records)
        if missing:
            shown = ", ".join(repr(i) for i in sorted(missing)[:3])
            problems.append(f"predictions: {len(missing)} of {len(expected)} questions have no prediction "
                            f"(e.g. {shown})")
    elif isinstance(n_examples, int) and len(records) < n_examples:
        problems.append(f"predictions: {len(records)} records for the {n_examples} questions metrics.json counts")
    lamp = _json_file(path / LAMP_PREDICTIONS_FILE, problems)
    if lamp is not None:
        count = len(expected) if expected is not None else n_examples
        if not isinstance(lamp, dict) or not isinstance(lamp.get("golds"), list):
            problems.append(f'{LAMP_PREDICTIONS_FILE}: not LaMP format ({{"task", "golds": [...]}})')
        elif isinstance(count, int) and len(lamp["golds"]) != count:
            problems.append(f"{LAMP_PREDICTIONS_FILE}: {len(lamp['golds'])} outputs for {count} questions")
    return problems


def _scores_ok(scores: Any) -> bool:
    return isinstance(scores, dict) and bool(scores) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values())


# -- the run directory --------------------------------------------------------------------------
class RunLocked(RuntimeError):
    """Another live process holds the run's lock; the message says which one."""


def describe_holder(lock_path: Path) -> str:
    """``pid 123 on host (since ...)`` from a lock file, or a vaguer phrase if unreadable."""
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunDir:
    """A run's directory and the operations the runner needs on it."""

    def __init__(self, root: Path, config: RunConfig) -> None:
        self.config = config
        self.path = Path(root) / config.task / config.method / config.hash
        self.artifacts = self.path / "artifacts"
        self._lock_fh: Any = None

    @property
    def predictions_jsonl(self) -> Path:
        """This process's own predictions file (the only one it ever writes)."""
        return self.path / ("predictions.jsonl" if self.config.shard is None else
                            f"predictions.shard{self.config.shard[0]}of{self.config.shard[1]}.jsonl")

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def is_complete(self) -> bool:
        return self.metrics_path.exists()

    def verify(self, expected_ids: Collection[str] | None = None) -> list[str]:
        return verify_run(self.path, expected_ids)

    # -- locking ----------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / (".lock" if self.config.shard is None else f".lock.shard{self.config.shard[0]}")

    def __enter__(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        # "a+": opening must not truncate, or a waiting process would erase the holder's name
        self._lock_fh = open(self.lock_path, "a+", encoding="utf-8")  # held for the run: closed in __exit__
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_fh.close()
            self._lock_fh = None
            raise RunLocked(f"run {self.path} is being written by {describe_holder(self.lock_path)}; "
                            "wait for it to finish, or use another --out") from exc
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        self._lock_fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- starting afresh -----------------------------------------------------------------------
    def clear(self) -> None:
        """``--force``: move this run's results aside, then delete them.

        ``metrics.json`` goes first, so no reader ever sees a finished run with parts
        missing; each move is an atomic rename. A single process (or shard 0, which owns
        the shared files) clears everything but the locks and the other shards' files of
        the same shard count; any other shard clears only its own predictions file and
        the merged results, which the last shard to finish rewrites.
        """
        if not self.path.exists():
            return
        own = self.predictions_jsonl.name
        merged = [METRICS_FILE, LAMP_PREDICTIONS_FILE]
        shard = self.config.shard
        if shard is not None and shard[0] != 0:
            names = [*merged, own]
        else:
            siblings = set() if shard is None else {f"predictions.shard{i}of{shard[1]}.jsonl"
                                                     for i in range(shard[1]) if i != shard[0]}
            rest = sorted(p.name for p in self.path.iterdir()
                          if p.name not in siblings and p.name not in merged and not p.name.startswith(".lock"))
            names = [*merged, *rest]
        self._discard([self.path / n for n in names])

    def discard_results(self) -> None:
        """Unmark a damaged finished run (its merged results go) so it can be repaired."""
        self._discard([self.metrics_path, self.path / LAMP_PREDICTIONS_FILE])

    def _discard(self, paths: list[Path]) -> None:
        present = [p for p in paths if p.exists() or p.is_symlink()]
        if not present:
            return
        trash = Path(tempfile.mkdtemp(dir=self.path, prefix=_DISCARDED))
        for p in present:
            if p.name.startswith(_DISCARDED):  # left by a crash in an earlier clear
                shutil.rmtree(p, ignore_errors=True)
                continue
            os.replace(p, trash / p.name)
        shutil.rmtree(trash, ignore_errors=True)

    # -- config -----------------------------------------------------------------------------
    def write_config(self, extra: Mapping[str, Any]) -> None:
        """Record the run's config; called when prediction starts, never for a rejected attempt.

        A readable config of this run that is already there stays (the first writer's
        provenance is the run's origin); a damaged one is replaced.
        """
        problems: list[str] = []
        if self.config_path.exists():
            existing = _json_file(self.config_path, problems)
            if not problems and isinstance(existing, dict) and existing.get("hash") == self.config.hash \
                    and isinstance(existing.get("config"), dict):
                return
        atomic_write_json(self.config_path, {"config": self.config.to_dict(), "hash": self.config.hash, **extra})

    # -- predictions --------------------------------------------------------------------------
    def repair_predictions(self) -> list[str]:
        """Rewrite damaged predictions files without their bad lines; the problems found.

        This process's own file is always repaired. A single-process run also repairs the
        other files (shards of an earlier run), but only while it can take the lock of the
        file's writer, i.e. when nobody is writing it; a shard never touches another
        shard's file. Each rewrite is atomic, so a crash mid-repair loses nothing.
        """
        problems = _repair(self.predictions_jsonl)
        if self.config.shard is None:
            for path in prediction_files(self.path):
                if path == self.predictions_jsonl or read_predictions(path).ok:
                    continue
                index = path.name.removeprefix("predictions.shard").split("of")[0]
                with _try_lock(self.path / f".lock.shard{index}") as idle:
                    if idle:
                        problems += _repair(path)
        return problems

    def done_predictions(self) -> dict[str, dict[str, Any]]:
        """Valid predictions already on disk in any of the run's files (read-only)."""
        records: dict[str, dict[str, Any]] = {}
        for path in prediction_files(self.path):
            records.update(read_predictions(path).records)
        return records

    def append_predictions(self, records: list[dict[str, Any]]) -> None:
        with open(self.predictions_jsonl, "a", encoding="utf-8") as fh:
            fh.write("".join(prediction_line(rec) for rec in records))
            fh.flush()
            os.fsync(fh.fileno())

    def write_final(self, lamp_name: str, ordered: list[dict[str, Any]], metrics: Mapping[str, Any]) -> None:
        """The LaMP-format file holds the stripped raw outputs: what the official script scores."""
        atomic_write_json(self.path / LAMP_PREDICTIONS_FILE,
                          {"task": lamp_name, "golds": [{"id": r["id"], "output": r["raw"].strip()} for r in ordered]})
        atomic_write_json(self.metrics_path, metrics)


def _repair(path: Path) -> list[str]:
    found = read_predictions(path)
    if found.problems:
        atomic_write_text(path, "".join(prediction_line(r) for r in found.records.values()))
    return found.problems


@contextlib.contextmanager
def _try_lock(lock_path: Path) -> Iterator[bool]:
    """Hold ``lock_path``'s lock for the body if nobody holds it; yields whether we do."""
    with open(lock_path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def find_runs(root: Path) -> Iterator[Path]:
    """Every run directory under ``root`` that has both config.json and metrics.json.

    Hidden folders (``.discarded-*`` left by an interrupted ``--force``) are not runs.
    Callers that tabulate should :func:`verify_run` each and skip (and name) damaged ones.
    """
    root = Path(root)
    for metrics in sorted(root.glob(f"**/{METRICS_FILE}")):
        if any(part.startswith(".") for part in metrics.relative_to(root).parts[:-1]):
            continue
        if (metrics.parent / CONFIG_FILE).exists():
            yield metrics.parent
