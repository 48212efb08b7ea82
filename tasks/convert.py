"""Turn a generic per-user table (CSV or JSONL) into LaMP-format questions/outputs files.

This is how a researcher brings their own data: one row per thing a user did (a review,
a tag, a post), with who did it, when, the text it was about and the user's own answer.
The converter writes the official layout that :mod:`tasks.loader` reads::

    {split}_questions.json  [{"id", "input", "profile": [{"id", "date", <fields>}], "user_id"}]
    {split}_outputs.json    {"task": <lamp name>, "golds": [{"id", "output"}]}
    conversion.json         what was read (sha256), every option, and the counts

Rules (the same for every table, so results from different data stay comparable):

* Each user's rows are put in time order (ties and tables without a time column keep file
  order). A question's profile is everything that user did *before* it -- never the
  question itself, never anything later -- cut to the ``max_profile`` most recent items.
* ``split_by="user"``: users are shuffled (seeded) into train/dev/test; each user's
  latest ``questions_per_user`` rows become that user's questions.
* ``split_by="time"`` (LaMP's time-based setting): every user is in every split; the
  latest ``questions_per_user`` rows are test questions, the ones before them dev, and
  every earlier row with at least ``min_history`` rows before it a train question.
* A question needs at least ``min_history`` earlier rows; users without enough are dropped.
* Duplicate rows of a user (same values in the ``dedup_on`` fields) keep the earliest.
* ``max_questions`` caps a split. Questions are listed round-robin over users in a seeded
  order (every user's latest question first), so a cap -- or ``bench run --limit`` --
  keeps as many different users as possible.
* Malformed input is refused with file, line and column named; rows with an empty
  required value are refused too, unless ``skip_incomplete`` is set (then counted).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from string import Formatter
from typing import Any, Literal

from harness.api import SPLITS
from harness.store import atomic_write_json

CONVERTER_VERSION = 1
MAX_REPORTED_PROBLEMS = 20


class ConvertError(ValueError):
    """A table cannot be converted; the message names file, line and column of each problem."""


@dataclass(frozen=True)
class Row:
    """One table row: where it came from (for error messages) and its cells as text."""

    file: str
    line: int
    cells: Mapping[str, str | None]


@dataclass(frozen=True)
class Columns:
    """Which table columns play which role.

    ``fields`` maps profile item field -> column (e.g. ``{"text": "reviewText", "score":
    "overall"}``); ``question_fields`` are extra template-only values that do not go into
    profiles. ``input_template`` is formatted with both to build a question's input.
    """

    user: str
    output: str
    input_template: str
    fields: Mapping[str, str]
    time: str | None = None
    id: str | None = None
    question_fields: Mapping[str, str] = field(default_factory=dict)

    def required(self) -> list[str]:
        """Columns that must be non-empty in every row (the id may be generated)."""
        cols = [self.user, self.output, *self.fields.values(), *self.question_fields.values()]
        if self.time:
            cols.append(self.time)
        if self.id:
            cols.append(self.id)
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class SplitOptions:
    """How rows become questions; every knob is recorded in ``conversion.json``."""

    split_by: Literal["user", "time"] = "user"
    questions_per_user: int = 1
    min_history: int = 1
    max_profile: int | None = None
    dev_fraction: float = 0.15  # split_by="user" only
    test_fraction: float = 0.15  # split_by="user" only
    max_questions: Mapping[str, int] = field(default_factory=dict)  # split -> cap
    dedup: bool = True
    dedup_on: tuple[str, ...] = ()  # item/question field names; () means all of them + output
    labels: tuple[str, ...] = ()  # when set, every output must be one of these
    skip_incomplete: bool = False
    seed: int = 0

    def check(self) -> None:
        if self.split_by not in ("user", "time"):
            raise ConvertError(f"split_by must be 'user' or 'time', not {self.split_by!r}")
        if self.questions_per_user < 1 or self.min_history < 0:
            raise ConvertError("questions_per_user must be >= 1 and min_history >= 0")
        if self.max_profile is not None and self.max_profile < 1:
            raise ConvertError("max_profile must be >= 1 (or None for no cap)")
        if not (0 <= self.dev_fraction and 0 <= self.test_fraction and self.dev_fraction + self.test_fraction < 1):
            raise ConvertError("dev_fraction and test_fraction must be >= 0 and sum to less than 1")
        unknown = set(self.max_questions) - set(SPLITS)
        if unknown:
            raise ConvertError(f"max_questions names unknown splits {sorted(unknown)}; use {', '.join(SPLITS)}")


@dataclass(frozen=True)
class _Item:
    """A validated row: its user, sort key, id and values, ready to be a question or profile item."""

    user: str
    order: tuple[float, int, int]  # (time, file index, line): stable chronological order
    id: str | None
    date: str | None
    fields: dict[str, str]
    question_fields: dict[str, str]
    output: str
    where: str  # "file:line" for messages


@dataclass
class ConversionReport:
    """What a conversion produced; also written as ``conversion.json``."""

    out_dir: Path
    counts: dict[str, dict[str, int]]
    rows: dict[str, int]
    manifest: dict[str, Any]


# -- reading ---------------------------------------------------------------------------------
def read_table(path: Path, *, fmt: str | None = None, delimiter: str = ",", header: bool = True,
               column_names: Sequence[str] | None = None) -> list[Row]:
    """Read a CSV or JSONL table into rows, refusing structural problems by file and line.

    ``fmt`` defaults from the suffix (``.jsonl``/``.ndjson`` -> JSONL, else CSV). A CSV
    without a header needs ``column_names``; with a header they rename its columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    kind = fmt or ("jsonl" if path.suffix.lower() in {".jsonl", ".ndjson"} else "csv")
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "csv":
        return _read_csv(path, delimiter=delimiter, header=header, column_names=column_names)
    raise ConvertError(f"{path}: unknown table format {kind!r} (use csv or jsonl)")


def _read_csv(path: Path, *, delimiter: str, header: bool, column_names: Sequence[str] | None) -> list[Row]:
    rows: list[Row] = []
    problems: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            names: list[str] | None = list(column_names) if column_names else None
            start = 1
            for record in reader:
                line, start = start, reader.line_num + 1  # a quoted cell may span lines
                if header and line == 1:
                    names = names or [c.strip() for c in record]
                    if len(set(names)) != len(names):
                        problems.append(f"{path}:1: duplicate column names in header {names}")
                    continue
                if names is None:
                    raise ConvertError(f"{path}: a CSV without a header needs column names")
                if not any(cell.strip() for cell in record):
                    continue  # blank line
                if len(record) != len(names):
                    problems.append(f"{path}:{line}: expected {len(names)} columns ({', '.join(names)}), "
                                    f"found {len(record)}")
                    continue
                rows.append(Row(str(path), line, dict(zip(names, record))))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: malformed CSV ({exc})")
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{path}: not UTF-8 text ({exc})") from exc
    _raise_if(problems)
    return rows


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    problems: list[str] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line_no, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    problems.append(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})")
                    continue
                if not isinstance(obj, dict):
                    problems.append(f"{path}:{line_no}: expected a JSON object, found {type(obj).__name__}")
                    continue
                cells: dict[str, str | None] = {}
                for key, value in obj.items():
                    try:
                        cells[str(key)] = _scalar_text(value)
                    except TypeError as exc:
                        problems.append(f"{path}:{line_no}: column {key!r}: {exc}")
                rows.append(Row(str(path), line_no, cells))
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{path}: not UTF-8 text ({exc})") from exc
    _raise_if(problems)
    return rows


def _scalar_text(value: Any) -> str | None:
    """JSON scalars as the text a CSV would hold: 5 and 5.0 both become "5"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected a string or number, found {json.dumps(value)[:60]}")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _raise_if(problems: Sequence[str]) -> None:
    if problems:
        shown = list(problems[:MAX_REPORTED_PROBLEMS])
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise ConvertError(f"{len(problems)} malformed row(s):\n  " + "\n  ".join(shown))


# -- validation ------------------------------------------------------------------------------
def parse_time(text: str) -> datetime:
    """Unix seconds (int or float) or ISO 8601; naive times are taken as UTC."""
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))  # ValueError if neither
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _validate(rows: Iterable[Row], columns: Columns, options: SplitOptions,
              file_index: Mapping[str, int]) -> tuple[list[_Item], int]:
    """Check every row; return the good ones and how many incomplete ones were skipped."""
    template_fields = {name for _, name, _, _ in Formatter().parse(columns.input_template) if name}
    known = set(columns.fields) | set(columns.question_fields)
    missing_fields = template_fields - known
    if missing_fields:
        raise ConvertError(f"input template uses {sorted(missing_fields)}, which no --field or "
                           f"--question-field provides (have: {sorted(known)})")
    items: list[_Item] = []
    problems: list[str] = []
    skipped = 0
    required = columns.required()
    for row in rows:
        where = f"{row.file}:{row.line}"
        absent = [c for c in required if c not in row.cells]
        if absent:
            problems.extend(f"{where}: column {c!r}: missing (row has {sorted(row.cells)})" for c in absent)
            continue
        empty = [c for c in required if not (row.cells[c] or "").strip()]
        if empty:
            if options.skip_incomplete:
                skipped += 1
            else:
                problems.extend(f"{where}: column {c!r}: empty value" for c in empty)
            continue
        cell = {c: (row.cells[c] or "").strip() for c in required}
        output = cell[columns.output]
        if options.labels and output not in options.labels:
            problems.append(f"{where}: column {columns.output!r}: {output!r} is not one of the labels "
                            f"{list(options.labels)}")
            continue
        when: datetime | None = None
        if columns.time:
            try:
                when = parse_time(cell[columns.time])
            except ValueError:
                problems.append(f"{where}: column {columns.time!r}: cannot read {cell[columns.time]!r} as a time "
                                "(unix seconds or ISO 8601)")
                continue
        items.append(_Item(
            user=cell[columns.user],
            order=(when.timestamp() if when else 0.0, file_index[row.file], row.line),
            id=cell[columns.id] if columns.id else None,
            date=when.strftime("%Y-%m-%d %H:%M:%S") if when else None,
            fields={f: cell[c] for f, c in columns.fields.items()},
            question_fields={f: cell[c] for f, c in columns.question_fields.items()},
            output=output,
            where=where,
        ))
    _raise_if(problems)
    return items, skipped


# -- splitting ---------------------------------------------------------------------------------
def _by_user(items: Sequence[_Item], options: SplitOptions) -> tuple[dict[str, list[_Item]], int]:
    """Group by user in time order, dropping later duplicates; return groups and #duplicates."""
    groups: dict[str, list[_Item]] = defaultdict(list)
    for item in sorted(items, key=lambda i: (i.user, i.order)):
        groups[item.user].append(item)
    duplicates = 0
    if options.dedup:
        for user, group in groups.items():
            seen: set[tuple[str, ...]] = set()
            kept = []
            for item in group:
                values = {**item.fields, **item.question_fields, "output": item.output}
                key = tuple(values[k] for k in (options.dedup_on or sorted(values)))
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                kept.append(item)
            groups[user] = kept
    return dict(groups), duplicates


def _assign_ids(groups: Mapping[str, list[_Item]]) -> dict[str, list[tuple[str, _Item]]]:
    """Item ids: the id column when given (must be unique), else ``<user>-<n>`` in time order."""
    out: dict[str, list[tuple[str, _Item]]] = {}
    first_seen: dict[str, str] = {}
    problems = []
    for user, group in groups.items():
        pairs = []
        for n, item in enumerate(group):
            item_id = item.id if item.id is not None else f"{user}-{n}"
            if item_id in first_seen:
                problems.append(f"{item.where}: id {item_id!r} already used at {first_seen[item_id]}")
            first_seen.setdefault(item_id, item.where)
            pairs.append((item_id, item))
        out[user] = pairs
    _raise_if(problems)
    return out


def _question_positions(n: int, split_of_user: str | None, options: SplitOptions) -> dict[str, list[int]]:
    """Which positions of a user's time-ordered items (n of them, enough) are questions, per split."""
    q, h = options.questions_per_user, options.min_history
    if split_of_user is not None:  # split by user
        return {split_of_user: list(range(n - q, n))}
    return {"train": list(range(h, n - 2 * q)), "dev": list(range(n - 2 * q, n - q)), "test": list(range(n - q, n))}


def _user_splits(users: Sequence[str], options: SplitOptions) -> dict[str, str | None]:
    if options.split_by == "time":
        return {u: None for u in users}
    order = list(users)
    random.Random(options.seed).shuffle(order)
    n_dev = round(len(order) * options.dev_fraction)
    n_test = round(len(order) * options.test_fraction)
    return {u: "dev" if i < n_dev else "test" if i < n_dev + n_test else "train" for i, u in enumerate(order)}


def _round_robin(per_user: Mapping[str, list[dict[str, Any]]], seed: int, cap: int | None) -> list[dict[str, Any]]:
    """Users in a seeded order; round r takes every user's r-th latest question."""
    users = sorted(per_user)
    random.Random(seed).shuffle(users)
    latest_first = {u: list(reversed(per_user[u])) for u in users}
    out: list[dict[str, Any]] = []
    for r in range(max((len(v) for v in latest_first.values()), default=0)):
        out.extend(latest_first[u][r] for u in users if r < len(latest_first[u]))
    return out[:cap] if cap is not None else out


def _render_input(columns: Columns, item: _Item) -> str:
    try:
        return columns.input_template.format(**item.fields, **item.question_fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConvertError(f"input template {columns.input_template!r} cannot be filled: {exc}") from exc


# -- the whole conversion ----------------------------------------------------------------------
def convert_rows(rows: Sequence[Row], out_dir: Path, *, columns: Columns, options: SplitOptions, lamp_name: str,
                 sources: Sequence[Path] = (), extra_manifest: Mapping[str, Any] | None = None) -> ConversionReport:
    """Convert validated-on-the-fly rows into LaMP-format files in ``out_dir`` (atomically).

    ``sources`` are the files the rows came from (hashed into ``conversion.json``);
    ``extra_manifest`` is added to it (recipes record the dataset, citation and terms).
    """
    options.check()
    known = {*columns.fields, *columns.question_fields, "output"}
    if set(options.dedup_on) - known:
        raise ConvertError(f"dedup_on names unknown fields {sorted(set(options.dedup_on) - known)}; "
                           f"known: {sorted(known)}")
    file_index = {str(p): i for i, p in enumerate(sources)}
    for row in rows:
        file_index.setdefault(row.file, len(file_index))
    items, skipped = _validate(rows, columns, options, file_index)
    groups, duplicates = _by_user(items, options)
    identified = _assign_ids(groups)
    needed = options.min_history + options.questions_per_user * (1 if options.split_by == "user" else 2)
    eligible = sorted(u for u, pairs in identified.items() if len(pairs) >= needed)
    user_split = _user_splits(eligible, options)  # fractions are of the users that can ask

    per_split: dict[str, dict[str, list[dict[str, Any]]]] = {s: defaultdict(list) for s in SPLITS}
    for user in eligible:
        pairs = identified[user]
        positions = _question_positions(len(pairs), user_split[user], options)
        for split, where in positions.items():
            for pos in where:
                qid, item = pairs[pos]
                history = pairs[:pos]
                if options.max_profile is not None:
                    history = history[-options.max_profile:]
                profile = [{"id": hid, **({"date": h.date} if h.date else {}), **h.fields} for hid, h in history]
                per_split[split][user].append({
                    "question": {"id": qid, "input": _render_input(columns, item), "profile": profile,
                                 "user_id": user},
                    "gold": {"id": qid, "output": item.output},
                })

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    counts: dict[str, dict[str, int]] = {}
    try:
        for s in SPLITS:
            chosen = _round_robin(per_split[s], options.seed, options.max_questions.get(s))
            counts[s] = {"questions": len(chosen), "users": len({c["question"]["user_id"] for c in chosen})}
            atomic_write_json(tmp / f"{s}_questions.json", [c["question"] for c in chosen])
            atomic_write_json(tmp / f"{s}_outputs.json", {"task": lamp_name, "golds": [c["gold"] for c in chosen]})
        row_counts = {"read": len(rows), "skipped_incomplete": skipped, "duplicates_dropped": duplicates,
                      "users": len(identified), "users_with_too_little_history": len(identified) - len(eligible)}
        manifest = {
            "converter": "persona-bench tasks.convert", "version": CONVERTER_VERSION, "task": lamp_name,
            "sources": {str(p): sha256_file(Path(p)) for p in sources},
            "columns": asdict(columns), "options": asdict(options), "counts": counts, "rows": row_counts,
            "time_order": "time column, ties in file order" if columns.time else
                          "file order (no time column): items have no 'date'",
            **(extra_manifest or {}),
        }
        atomic_write_json(tmp / "conversion.json", manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            tmp.rename(out_dir)
        except OSError:
            if not (out_dir / "conversion.json").is_file():
                raise
            shutil.rmtree(tmp)  # a concurrent conversion of the same input finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ConversionReport(out_dir, counts, row_counts, manifest)


def convert_table(paths: Sequence[Path], out_dir: Path, *, columns: Columns, options: SplitOptions, lamp_name: str,
                  fmt: str | None = None, delimiter: str = ",", header: bool = True,
                  column_names: Sequence[str] | None = None) -> ConversionReport:
    """Read one or more tables with the same columns and convert them together."""
    rows: list[Row] = []
    for path in paths:
        rows.extend(read_table(Path(path), fmt=fmt, delimiter=delimiter, header=header, column_names=column_names))
    return convert_rows(rows, out_dir, columns=columns, options=options, lamp_name=lamp_name, sources=paths)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_mapping(items: Sequence[str], what: str) -> dict[str, str]:
    """``["text=reviewText", "score"]`` -> ``{"text": "reviewText", "score": "score"}`` (CLI helper)."""
    out: dict[str, str] = {}
    for item in items:
        name, _, column = item.partition("=")
        name, column = name.strip(), (column or name).strip()
        if not name or not column:
            raise ConvertError(f"{what} {item!r} must look like field=column")
        out[name] = column
    return out

