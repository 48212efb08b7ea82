"""LaMP data as Hugging Face ``datasets``: load a ``save_to_disk`` folder or hub id, export one.

Schema: a ``DatasetDict`` with splits ``train``/``dev``/``test``; columns ``id``,
``input``, ``profile`` (a list of item dicts), ``output`` (None on test) and, for
time-based data, ``user_id``. Rows are checked by the same validator as the official
files (:func:`tasks.loader.build_examples`), so both sources accept and refuse the same
data with the same messages; the "file" in a message is ``<source>[<split>]``.

Arrow stores profile items as structs holding every key seen in the column, filling the
missing ones with None; the loader drops None-valued keys again, so items come back as
they went in (an item whose value was literally None loses that key).

A ``synthetic.json`` marker is carried over by :func:`export_hf` and honoured by
:func:`load_hf` exactly as in :mod:`tasks.loader`, so exported synthetic data is never
taken for real data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets

from harness.api import DataSource, Example, Split, TaskSpec
from tasks.loader import (
    SPLITS,
    SYNTHETIC_MARKER,
    DataError,
    Problems,
    build_examples,
    field_text,
    find_split_files,
    load_split,
    read_synthetic_marker,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "input", "profile")


def _open(source: str, split: str) -> tuple[datasets.Dataset, Path | None]:
    """The split's Dataset, and the local folder it came from (None for a hub id)."""
    local = Path(source).expanduser()
    if local.is_dir():
        try:
            loaded = datasets.load_from_disk(str(local))
        except FileNotFoundError as exc:
            raise DataError(f"{local}: not a Hugging Face datasets folder saved with save_to_disk ({exc}); "
                            "make one with `bench data export-hf`") from None
    else:
        local = None
        try:
            loaded = datasets.load_dataset(source)
        except Exception as exc:  # noqa: BLE001 - network, auth and not-found errors all end up here
            raise DataError(f"could not load {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                            "Without network access, pass a local folder saved with save_to_disk "
                            "(`bench data export-hf` writes one).") from exc
    if not isinstance(loaded, datasets.DatasetDict):
        raise DataError(f"{source}: holds a single Dataset; expected a DatasetDict with splits {', '.join(SPLITS)}")
    if split not in loaded:
        raise DataError(f"{source}: no split {split!r} (it has {', '.join(loaded) or 'none'})")
    return loaded[split], local


def _without_nones(row: dict[str, Any]) -> dict[str, Any]:
    """Undo Arrow's struct padding: drop None-valued keys from each profile item."""
    profile = row.get("profile")
    if isinstance(profile, list):
        row["profile"] = [{k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
                          for item in profile]
    return row


def _golds(ds: datasets.Dataset, split: str, label: str, problems: Problems) -> dict[str, str] | None:
    """``{id: output}`` from the ``output`` column; None for a test split without golds."""
    if "output" not in ds.column_names:
        if split != "test":
            problems.add(f'{label}: missing column "output" ({split} needs gold outputs)')
        return None
    outputs = list(ds["output"])
    if split == "test" and all(o is None for o in outputs):
        return None
    golds: dict[str, str] = {}
    for index, (qid, value) in enumerate(zip(ds["id"], outputs)):
        if value is None:
            continue  # reported by build_examples as a question without a gold
        text = field_text(value)
        if text is None:
            problems.add(f'{label}: record {index} (id "{qid}"): field "output" must be a string, got '
                         f"{type(value).__name__}")
        else:
            golds[str(qid)] = text
    return golds


def _checksum(ds: datasets.Dataset) -> tuple[str, list[str]]:
    """sha256 over the split's Arrow files, streamed; and their paths."""
    hasher = hashlib.sha256()
    files = [f["filename"] for f in ds.cache_files]
    for name in files:
        with open(name, "rb") as fh:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
    return (hasher.hexdigest() if files else ds._fingerprint), files  # in-memory datasets have no files


def load_hf(task: TaskSpec, source: str, split: str) -> Split:
    """Load one split from a ``save_to_disk`` folder or a hub id, validated like official files."""
    ds, local = _open(source, split)
    label = f"{source}[{split}]"
    problems = Problems()
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    for column in missing:
        problems.add(f'{label}: missing column "{column}"')
    problems.raise_if_any()
    golds = _golds(ds, split, label, problems)
    columns = [c for c in (*REQUIRED_COLUMNS, "user_id") if c in ds.column_names]
    rows = (_without_nones(row) for row in ds.select_columns(columns))
    examples = build_examples(rows, golds, task, file=label, golds_file=label, problems=problems)
    problems.emit_warnings()
    marker = read_synthetic_marker(local, local, problems) if local is not None else None
    problems.raise_if_any()
    checksum, files = _checksum(ds)
    detail: dict[str, Any] = {
        "split_kind": "time" if examples[0].user_id is not None else "user", "format": "hf-datasets",
        "files": [str(Path(f).relative_to(local)) if local else Path(f).name for f in files],
    }
    if marker is not None:
        detail["synthetic"] = marker
    location = str(local.resolve()) if local else source
    return Split(task=task.name, name=split, examples=examples,
                 source=DataSource(kind="synthetic" if marker is not None else "hf-datasets",
                                   location=location, checksum=checksum, detail=detail))


def _row(example: Example) -> dict[str, Any]:
    return {"id": example.id, "input": example.input, "profile": list(example.profile),
            "output": example.output, "user_id": example.user_id}


def export_hf(task: TaskSpec, data_dir: Path, out: Path) -> Path:
    """Convert the official files in ``data_dir`` (every split present) to a datasets folder.

    Written to a temporary folder beside ``out`` and renamed, so ``out`` is either
    complete or absent. ``out`` must not exist yet, or be empty.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose a new one")
    present = []
    for split in SPLITS:
        try:
            find_split_files(task, Path(data_dir), split)
        except DataError:
            continue
        present.append(split)
    if not present:
        find_split_files(task, Path(data_dir), "dev")  # raises, saying where it looked and how to get data
    bundle, marker = {}, None
    for split in present:  # one split in memory at a time, besides the Arrow tables built so far
        loaded = load_split(task, Path(data_dir), split)
        bundle[split] = datasets.Dataset.from_list([_row(e) for e in loaded.examples])
        marker = loaded.source.detail.get("synthetic", marker)
        del loaded
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        datasets.DatasetDict(bundle).save_to_disk(str(tmp))
        if marker is not None:
            (tmp / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
