"""Read official-format LaMP files into validated :class:`Split` s, naming every problem.

Directory layout
----------------
A *task folder* holds one task's files, flat or one sub-folder per split::

    {split}_questions.json   {split}_outputs.json            (flat: bench data synth / convert)
    {split}/{split}_questions.json   {split}/{split}_outputs.json   (as served by the LaMP site)

The ``data_dir`` handed to the loader may be the task folder itself or a folder above it.
These task folders are tried in order; the first holding ``{split}_questions.json`` wins::

    DATA_DIR                    DATA_DIR/LaMP_k        DATA_DIR/<task name, e.g. lamp2>
    DATA_DIR/time/LaMP_k        DATA_DIR/user/LaMP_k

``bench data download`` (:mod:`tasks.download`) writes
``DEST/{time|user}/LaMP_k/{split}/{split}_*.json`` -- the path of the official URL, with
the user-based files under ``user/`` -- so one cache holds both split kinds. Time-based
wins when both are present, because PPlug reports the time-based dev sets; pass
``DEST/user`` as the data directory to read the user-based files instead.

The outputs file sits next to the questions file. ``test`` may come without one (LaMP
withholds test golds); ``train`` and ``dev`` need theirs, for fitting and scoring.

A ``synthetic.json`` file in the task folder (or any folder between it and ``data_dir``)
marks generated data: the split's source kind becomes ``"synthetic"`` and the marker's
contents land in ``DataSource.detail["synthetic"]``, so tables never mix synthetic and
real numbers.

Validation
----------
Every problem names the file, the record (index, and id when known) and the field, e.g.
``dev_questions.json: record 17 (id "310"): field "profile" must be a list, got str``.
Loading collects all problems (up to :data:`MAX_PROBLEMS`) before raising one
:class:`DataError`, so a user fixes a file in one pass. Repeated item ids inside one
profile happen in the real files and only produce a :class:`DataWarning`.

Real files vary a little, so ids may be strings or integers and item field values
strings or numbers (LaMP-3 ``score`` is both); all are normalized to strings in place.
Extra fields are allowed and kept.

Memory: each file's bytes are read once and hashed, then dropped; the questions file
is decoded record by record (:func:`iter_json_list`), each record becoming an
:class:`Example` before the next is parsed, so the parsed file is never held whole.
Profile items are shared, not copied: time-based LaMP files repeat a user's history in
every one of the user's questions, and an item whose id and content equal an item seen
before in the split is replaced by that first dict, so each distinct item is held once
(``benchmarks/bench_data_scale.py`` measures bytes per item).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import SPLITS, DataSource, Example, Split, TaskSpec

SPLIT_KINDS: tuple[str, ...] = ("time", "user")
MAX_PROBLEMS = 50
SYNTHETIC_MARKER = "synthetic.json"
_FEW = 5  # how many ids to name when reporting a mismatch


class DataError(ValueError):
    """Malformed or missing data; each problem names the file, the record and the field."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = "invalid LaMP data:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class DataWarning(UserWarning):
    """Something odd that the official files are known to contain; loading goes on."""


class Problems:
    """Collects problems (keeping the first ``cap``, counting all) and warnings."""

    def __init__(self, cap: int = MAX_PROBLEMS) -> None:
        self.cap = cap
        self.count = 0
        self.messages: list[str] = []
        self._notes: dict[tuple[str, str], list[Any]] = {}  # (file, what) -> [count, first where]

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < self.cap:
            self.messages.append(message)

    def note(self, file: str, what: str, where: str) -> None:
        """Count a warning-level oddity; one summary per (file, what) is emitted later."""
        entry = self._notes.setdefault((file, what), [0, where])
        entry[0] += 1

    def snapshot(self) -> tuple[int, int, dict[tuple[str, str], list[Any]]]:
        return self.count, len(self.messages), {k: list(v) for k, v in self._notes.items()}

    def restore(self, snapshot: tuple[int, int, dict[tuple[str, str], list[Any]]]) -> None:
        """Forget what was added since :meth:`snapshot`."""
        self.count, n_messages, notes = snapshot
        del self.messages[n_messages:]
        self._notes = {k: list(v) for k, v in notes.items()}

    def report(self) -> list[str]:
        more = self.count - len(self.messages)
        return self.messages + ([f"... and {more} more problems"] if more else [])

    def raise_if_any(self) -> None:
        if self.count:
            raise DataError(self.report())

    def emit_warnings(self) -> None:
        for (file, what), (count, first) in self._notes.items():
            warnings.warn(f"{file}: {count} {what} (first: {first}); kept as they are", DataWarning, stacklevel=3)
        self._notes.clear()


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _id_text(value: Any) -> str | None:
    """An id as text: real LaMP files use strings and integers."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def field_text(value: Any) -> str | None:
    """A field value as text; numbers are accepted (LaMP-3 scores are str or int)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _few(ids: Sequence[str]) -> str:
    shown = ", ".join(f'"{i}"' for i in ids[:_FEW])
    return shown + (", ..." if len(ids) > _FEW else "")


# -- validation of plain dicts (shared with tasks.hf) ------------------------------------------
def _checked_id(obj: dict[str, Any], where: str, problems: Problems) -> str | None:
    """The object's ``id`` as text, or None after recording why it is missing or malformed."""
    if "id" not in obj:
        problems.add(f'{where}: missing field "id"')
        return None
    text = _id_text(obj["id"])
    if text is None:
        problems.add(f'{where}: field "id" must be a string or integer, got {_type(obj["id"])}')
    return text


def _check_items(profile: list[Any], task: TaskSpec, file: str, where: str, problems: Problems) -> bool:
    """Validate and normalize a profile's items in place; False if any item is malformed."""
    ok = True
    seen: set[str] = set()
    repeated = False
    for j, item in enumerate(profile):
        at = f"{where}: profile item {j}"
        if not isinstance(item, dict):
            problems.add(f"{at}: must be an object, got {_type(item)}")
            ok = False
            continue
        item_id = _checked_id(item, at, problems)
        if item_id is None:
            ok = False
        else:
            item["id"] = item_id
            at = f'{at} (id "{item_id}")'
            repeated = repeated or item_id in seen
            seen.add(item_id)
        for name in task.item_fields:
            if name not in item:
                problems.add(f'{at}: missing field "{name}"')
                ok = False
                continue
            text = field_text(item[name])
            if text is None:
                problems.add(f'{at}: field "{name}" must be a string or number, got {_type(item[name])}')
                ok = False
            else:
                item[name] = text
        date = item.get("date")
        if date is not None:
            text = field_text(date)
            if text is None:
                problems.add(f'{at}: field "date" must be a string, got {_type(date)}')
                ok = False
            else:
                item["date"] = text
    if repeated:
        problems.note(file, "profiles repeat an item id", where)
    return ok


def example_from_record(record: Any, index: int, task: TaskSpec, file: str, problems: Problems,
                        golds: Mapping[str, str] | None = None) -> Example | None:
    """Validate one question record (a plain dict); the Example, or None if malformed.

    The output is looked up in ``golds`` by id. Profile item dicts are normalized in
    place and shared with the Example, not copied.
    """
    where = f"{file}: record {index}"
    if not isinstance(record, dict):
        problems.add(f"{where}: must be an object with id, input and profile, got {_type(record)}")
        return None
    qid = _checked_id(record, where, problems)
    ok = qid is not None
    if qid is not None:
        where = f'{where} (id "{qid}")'
    text = record.get("input")
    if "input" not in record:
        problems.add(f'{where}: missing field "input"')
        ok = False
    elif not isinstance(text, str):
        problems.add(f'{where}: field "input" must be a string, got {_type(text)}')
        ok = False
    profile = record.get("profile")
    if "profile" not in record:
        problems.add(f'{where}: missing field "profile"')
        ok = False
    elif not isinstance(profile, list):
        problems.add(f'{where}: field "profile" must be a list, got {_type(profile)}')
        ok = False
    elif not profile:
        problems.add(f'{where}: field "profile" is empty (every question needs the user\'s history)')
        ok = False
    else:
        ok = _check_items(profile, task, file, where, problems) and ok
    user_id = record.get("user_id")
    if user_id is not None:
        user_id = _id_text(user_id)
        if user_id is None:
            problems.add(f'{where}: field "user_id" must be a string or integer, got {_type(record["user_id"])}')
            ok = False
    if not ok:
        return None
    return Example(id=qid, input=text, profile=tuple(profile), output=golds.get(qid) if golds else None,
                   user_id=user_id)


def parse_golds(data: Any, task: TaskSpec, file: str, problems: Problems) -> dict[str, str] | None:
    """``{"task": "LaMP_k", "golds": [{"id", "output"}]}`` -> ``{id: output}``; None if unusable."""
    if not isinstance(data, dict):
        problems.add(f'{file}: top level must be an object with "task" and "golds", got {_type(data)}')
        return None
    if "task" not in data:
        problems.add(f'{file}: missing field "task" (expected "{task.lamp_name}")')
    elif data["task"] != task.lamp_name:
        problems.add(f'{file}: field "task" is {json.dumps(data["task"])}, expected "{task.lamp_name}" '
                     f"(are these {task.name} files?)")
    golds = data.get("golds")
    if not isinstance(golds, list):
        problems.add(f'{file}: field "golds" must be a list, got {_type(golds)}' if "golds" in data
                     else f'{file}: missing field "golds"')
        return None
    out: dict[str, str] = {}
    for i, gold in enumerate(golds):
        where = f"{file}: gold {i}"
        if not isinstance(gold, dict):
            problems.add(f"{where}: must be an object with id and output, got {_type(gold)}")
            continue
        gid = _id_text(gold.get("id"))
        if gid is None:
            problems.add(f'{where}: missing field "id"' if "id" not in gold
                         else f'{where}: field "id" must be a string or integer, got {_type(gold["id"])}')
            continue
        where = f'{where} (id "{gid}")'
        text = field_text(gold.get("output"))
        if text is None:
            problems.add(f'{where}: missing field "output"' if "output" not in gold
                         else f'{where}: field "output" must be a string, got {_type(gold["output"])}')
        elif gid in out:
            problems.add(f'{where}: duplicate id (also an earlier gold)')
        else:
            out[gid] = text
    return out


def build_examples(records: Iterable[Any], golds: Mapping[str, str] | None, task: TaskSpec, *,
                   file: str, golds_file: str, problems: Problems) -> tuple[Example, ...]:
    """Validate question records, attach golds, and check the split as a whole.

    Whole-split checks: duplicate question ids, user_id on all records or none, and
    (when ``golds`` is given) questions without a gold and golds without a question.
    """
    examples: list[Example] = []
    first_index: dict[str, int] = {}  # every readable question id -> its first record
    shared: dict[str, Mapping[str, Any]] = {}  # item id -> first item dict with that id
    with_user = n_records = 0
    for index, record in enumerate(records):
        n_records = index + 1
        rid = _id_text(record.get("id")) if isinstance(record, dict) else None
        if rid is not None and rid in first_index:
            problems.add(f'{file}: record {index} (id "{rid}"): duplicate id (first at record {first_index[rid]})')
            continue
        if rid is not None:
            first_index[rid] = index
        example = example_from_record(record, index, task, file, problems, golds)
        if example is not None:
            with_user += example.user_id is not None
            examples.append(_share_items(example, shared))
    if n_records == 0:
        problems.add(f"{file}: contains no questions")
    if 0 < with_user < len(examples):
        missing = [e.id for e in examples if e.user_id is None]
        problems.add(f'{file}: field "user_id" is on {with_user} of {len(examples)} records; missing on '
                     f"{_few(missing)} (time-based files carry it on every record, user-based on none)")
    if golds is not None:
        no_gold = [e.id for e in examples if e.output is None]
        if no_gold:
            problems.add(f"{golds_file}: {len(no_gold)} of {len(examples)} questions in {file} have no gold "
                         f"output (ids {_few(no_gold)})")
        orphans = [gid for gid in golds if gid not in first_index]
        if orphans:
            problems.add(f"{golds_file}: golds without a question in {file}: {len(orphans)} (ids {_few(orphans)})")
    return tuple(examples)


def _share_items(example: Example, shared: dict[str, Mapping[str, Any]]) -> Example:
    """``example`` with every profile item that equals an earlier one (same id, same
    content) replaced by that earlier dict, so repeated histories are held once."""
    profile = list(example.profile)
    changed = False
    for j, item in enumerate(profile):
        first = shared.setdefault(item["id"], item)
        if first is not item and first == item:
            profile[j] = first
            changed = True
    return dataclasses.replace(example, profile=tuple(profile)) if changed else example


_WS = re.compile(r"[ \t\n\r]*")


def iter_json_list(text: str) -> Any:
    """Decode a JSON list one element at a time (a generator over its elements).

    Only the current element is materialised, so a large file's parsed records are never
    all alive at once. Malformed JSON raises :class:`json.JSONDecodeError` with the line
    and column in ``text``, as ``json.loads`` would. ``text`` must start (after
    whitespace) with ``[``.
    """
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()
    if text[pos : pos + 1] != "[":
        raise json.JSONDecodeError("Expecting '['", text, pos)
    pos = _WS.match(text, pos + 1).end()
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            value, pos = decoder.raw_decode(text, pos)
            yield value
            pos = _WS.match(text, pos).end()
            char = text[pos : pos + 1]
            if char == ",":
                pos = _WS.match(text, pos + 1).end()
            elif char == "]":
                pos += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    if _WS.match(text, pos).end() != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)


# -- files -----------------------------------------------------------------------------------------
def _task_folders(task: TaskSpec, data_dir: Path) -> list[Path]:
    names = [data_dir, data_dir / task.lamp_name]
    if task.name != task.lamp_name:
        names.append(data_dir / task.name)
    names += [data_dir / kind / task.lamp_name for kind in SPLIT_KINDS]
    return names


def _how_to_get(task: TaskSpec) -> str:
    from tasks.download import is_downloadable

    ways = []
    if is_downloadable(task):
        ways.append(f"`bench data download --task {task.name}` (official files)")
    if task.has_synthetic_data:
        ways.append(f"`bench data synth --task {task.name} --out DIR` (synthetic data)")
    hint = "Get the data with " + " or ".join(ways) + "." if ways else ""
    note = task.data_note
    return " ".join(part for part in (hint, f"Note: {note}." if note else "") if part)


def _locate(task: TaskSpec, data_dir: Path, split: str) -> tuple[Path, Path, Path | None]:
    """``(task folder, questions, outputs or None)`` for a split; see the module doc."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; LaMP splits are {', '.join(SPLITS)}")
    folders = _task_folders(task, data_dir)
    for folder in folders:
        for questions in (folder / f"{split}_questions.json", folder / split / f"{split}_questions.json"):
            if questions.is_file():
                outputs = questions.with_name(f"{split}_outputs.json")
                return folder, questions, (outputs if outputs.is_file() else None)
    shown = ", ".join(str(f) for f in folders)
    raise DataError(f"no {split}_questions.json for {task.name}: looked for {split}_questions.json and "
                    f"{split}/{split}_questions.json in {shown}. {_how_to_get(task)}")


def find_split_files(task: TaskSpec, data_dir: Path, split: str) -> tuple[Path, Path | None]:
    """Locate ``(questions, outputs)`` for a split (outputs None when absent); see module doc."""
    _, questions, outputs = _locate(task, Path(data_dir), split)
    return questions, outputs


def _read_json(path: Path, hasher: Any, problems: Problems) -> tuple[bool, Any]:
    """Read a file's bytes once, hash them, parse them: ``(ok, value)``."""
    ok, text = _read_text(path, hasher, problems)
    if not ok:
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        _invalid_json(path, exc, problems)
    return False, None


def _read_text(path: Path, hasher: Any, problems: Problems) -> tuple[bool, str]:
    """A file's text, its bytes hashed (and dropped: only the text stays alive)."""
    raw = path.read_bytes()
    hasher.update(raw)
    try:
        return True, raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError as exc:
        problems.add(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})")
    return False, ""


def _invalid_json(path: Path, exc: json.JSONDecodeError, problems: Problems) -> None:
    problems.add(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")


def read_synthetic_marker(folder: Path, data_dir: Path, problems: Problems) -> dict[str, Any] | None:
    """Contents of the nearest ``synthetic.json`` from the task folder up to ``data_dir``."""
    for here in (folder, *folder.parents):
        marker = here / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                content = json.loads(marker.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problems.add(f"{marker}: invalid JSON ({exc})")
                return None
            return content if isinstance(content, dict) else {"value": content}
        if here == data_dir:  # task folders are data_dir / <relative>, so this ends the walk
            break
    return None


def _load(task: TaskSpec, data_dir: Path, split: str, problems: Problems) -> Split | None:
    """Read and validate one split, adding problems; the Split when nothing was wrong."""
    try:
        folder, questions_path, outputs_path = _locate(task, data_dir, split)
    except DataError as exc:
        problems.add(str(exc))
        return None
    if outputs_path is None and split != "test":
        problems.add(f"{questions_path}: no {split}_outputs.json next to it; {split} needs gold outputs "
                     "(only test may come without them)")
        return None
    hasher = hashlib.sha256()
    before = problems.count
    ok, text = _read_text(questions_path, hasher, problems)
    golds = None
    if outputs_path is not None:
        gold_ok, gold_data = _read_json(outputs_path, hasher, problems)
        golds = parse_golds(gold_data, task, str(outputs_path), problems) if gold_ok else None
        del gold_data
    records: Any = None
    if ok and not text.lstrip(" \t\n\r").startswith("["):  # not a list: parse whole to say what it is
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            _invalid_json(questions_path, exc, problems)
            ok = False
        if ok:
            hint = " (this looks like an outputs file)" if isinstance(records, dict) and "golds" in records else ""
            problems.add(f"{questions_path}: top level must be a list of questions, got {_type(records)}{hint}")
            ok = False
    if not ok or (outputs_path is not None and golds is None):
        return None
    snapshot = problems.snapshot()
    try:
        examples = build_examples(iter_json_list(text), golds, task, file=str(questions_path),
                                  golds_file=str(outputs_path), problems=problems)
    except json.JSONDecodeError as exc:  # what json.loads would have said, and nothing else
        problems.restore(snapshot)
        _invalid_json(questions_path, exc, problems)
        return None
    del text, golds
    problems.emit_warnings()
    marker = read_synthetic_marker(folder, data_dir, problems)
    if problems.count > before:
        return None
    files = [str(p.relative_to(folder)) for p in (questions_path, outputs_path) if p is not None]
    detail: dict[str, Any] = {"split_kind": "time" if examples[0].user_id is not None else "user", "files": files}
    if marker is not None:
        detail["synthetic"] = marker
    source = DataSource(kind="synthetic" if marker is not None else "lamp", location=str(folder.resolve()),
                        checksum=hasher.hexdigest(), detail=detail)
    return Split(task=task.name, name=split, examples=examples, source=source)


def load_split(task: TaskSpec, data_dir: Path, split: str = "dev") -> Split:
    """Load one split of official-format files; raise :class:`DataError` naming every problem."""
    problems = Problems()
    loaded = _load(task, Path(data_dir), split, problems)
    problems.raise_if_any()
    assert loaded is not None  # _load returns None only after adding a problem
    return loaded


def present_splits(task: TaskSpec, data_dir: Path) -> tuple[str, ...]:
    """The splits whose questions file is in the folder (in :data:`SPLITS` order)."""
    found = []
    for split in SPLITS:
        try:
            _locate(task, Path(data_dir), split)
        except DataError:
            continue
        found.append(split)
    return tuple(found)


def validate_dir(task: TaskSpec, data_dir: Path, splits: Sequence[str] | None = None) -> list[str]:
    """Every problem in a folder's splits (up to :data:`MAX_PROBLEMS`); empty when valid.

    ``splits=None`` checks the splits that are present: a folder holding only
    ``dev_questions.json`` and ``dev_outputs.json`` (one downloaded split) is valid. A
    folder with none of them, or a named split that is missing, is a problem.
    """
    problems = Problems()
    if splits is None:
        splits = present_splits(task, data_dir)
        if not splits:
            problems.add(f"{data_dir}: no split of {task.name} found (looked for "
                         f"{', '.join(f'{s}_questions.json' for s in SPLITS)}). {_how_to_get(task)}")
    for split in splits:
        _load(task, Path(data_dir), split, problems)
    return problems.report()
