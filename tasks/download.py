"""Fetch the official LaMP files: resumable, checksummed, atomic, with a progress bar.

Layout written (the one :mod:`tasks.loader` reads)::

    DEST/{time|user}/LaMP_k/{split}/{split}_questions.json
    DEST/{time|user}/LaMP_k/{split}/{split}_outputs.json     (train and dev only)
    DEST/{time|user}/LaMP_k/checksums.json                   {relative path: {sha256, size, url}}

Integrity: LaMP publishes no checksums, so the first download records each file's
sha256 and size in ``checksums.json`` (trust on first use) and every later run verifies
the files against it; pinned ``checksums`` (keyed like the manifest, e.g.
``"dev/dev_questions.json"``) are checked instead when given. A mismatch raises
:class:`ChecksumError` and keeps the bad bytes as ``<file>.corrupt`` for inspection.

Transfers go to ``<file>.part`` and are renamed into place only when complete and
verified, so an interrupted run never leaves a truncated file under the real name; the
next run resumes the ``.part`` with an HTTP Range request (and starts over if the
server ignores the range).

Only the standard library's urllib is used, so downloading adds no dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Literal
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from harness.api import SPLITS, TaskSpec
from harness.store import atomic_write_json

OFFICIAL_BASE_URL = "https://ciir.cs.umass.edu/downloads/LaMP"
DOWNLOAD_PAGE = "https://lamp-benchmark.github.io/download"
DOWNLOADABLE: tuple[str, ...] = ("LaMP_1", "LaMP_2", "LaMP_3", "LaMP_4", "LaMP_5", "LaMP_7")
MANIFEST = "checksums.json"
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A file could not be fetched; the message names the URL and what went wrong."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the pinned or recorded one."""


def is_downloadable(task: TaskSpec) -> bool:
    """Whether the LaMP site serves this task's files (LaMP-6's Avocado data is licensed)."""
    return task.lamp_name in DOWNLOADABLE


def task_folder(dest: Path, task: TaskSpec, split_kind: str) -> Path:
    """Where a task's files of one split kind go under ``dest``."""
    return Path(dest) / split_kind / task.lamp_name


def official_urls(task: TaskSpec, split_kind: Literal["time", "user"] = "time", splits: Sequence[str] = SPLITS,
                  base_url: str = OFFICIAL_BASE_URL) -> dict[str, str]:
    """``{path inside the task folder: URL}`` -- the whole official URL scheme in one place.

    User-based files live at ``LaMP_k/{split}/...``, time-based ones at
    ``time/LaMP_k/{split}/...``. LaMP-2's movie-tagging version sits one level down, under
    ``new/``, in both (the folder without ``new/`` holds the retired news-categorisation
    task). Test splits have questions only: LaMP withholds their golds.
    """
    if not is_downloadable(task):
        if task.lamp_name == "LaMP_6":
            raise ValueError("LaMP-6 cannot be downloaded: it is built from the Avocado email corpus, which is "
                             "licensed (LDC2015T03). Build the files with the LaMP repository's scripts and pass "
                             "their folder with --data DIR.")
        raise ValueError(f"{task.name} is not an official LaMP task, so there is nothing to download "
                         f"({task.data_note or 'see its documentation for how to get its data'}).")
    if split_kind not in ("time", "user"):
        raise ValueError(f"split_kind must be 'time' or 'user', not {split_kind!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; LaMP splits are {', '.join(SPLITS)}")
    base = base_url.rstrip("/")
    root = f"{base}/time/{task.lamp_name}" if split_kind == "time" else f"{base}/{task.lamp_name}"
    if task.lamp_name == "LaMP_2":
        root += "/new"
    urls: dict[str, str] = {}
    for split in splits:
        for kind in ("questions", "outputs") if split != "test" else ("questions",):
            rel = f"{split}/{split}_{kind}.json"
            urls[rel] = f"{root}/{rel}"
    return urls


def _sha256_file(path: Path, hasher=None) -> tuple[str, int]:
    """Stream a file through sha256: ``(hex digest, size)``."""
    hasher = hasher or hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _fetch(url: str, part: Path, *, timeout: float, progress: bool, label: str) -> tuple[str, int]:
    """Download ``url`` into ``part``, resuming what is there: ``(sha256, size)`` of the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "persona-bench"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is not a prefix of the file: start over
            part.unlink()
            return _fetch(url, part, timeout=timeout, progress=progress, label=label)
        hint = f" (has the file moved? see {DOWNLOAD_PAGE})" if exc.code == 404 else ""
        raise DownloadError(f"GET {url} failed: HTTP {exc.code} {exc.reason}{hint}") from None
    except (URLError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}. No internet here? Copy the files by hand into the "
                            "layout described in tasks/download.py, or use --data synthetic.") from None
    hasher = hashlib.sha256()
    with response:
        resumed = bool(offset) and response.status == 206
        if resumed:
            start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not start or int(start.group(1)) != offset:
                raise DownloadError(f"GET {url}: asked for bytes {offset}- but the server answered "
                                    f"Content-Range {response.headers.get('Content-Range')!r}")
            _sha256_file(part, hasher)
        else:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        try:
            with open(part, "ab" if resumed else "wb") as fh, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                disable=not progress,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    hasher.update(chunk)
                    bar.update(len(chunk))
        except (TimeoutError, ConnectionError, HTTPException) as exc:  # HTTPException: IncompleteRead
            raise DownloadError(f"GET {url} broke off after {part.stat().st_size} bytes ({exc}); run again "
                                f"to resume from {part}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"GET {url} ended after {size} of {total} bytes; run again to resume from {part}")
    return hasher.hexdigest(), size


def _read_manifest(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{path}: unreadable checksum manifest ({exc}); delete it to record fresh checksums") \
            from None
    if not isinstance(manifest, dict):
        raise DownloadError(f"{path}: checksum manifest must be a JSON object; delete it to record fresh checksums")
    return manifest


def _mismatch(bad: Path, target: Path, digest: str, expected: str, pinned: bool, manifest: Path) -> ChecksumError:
    """Keep the bad bytes as ``<file>.corrupt`` and explain what to do."""
    corrupt = target.with_name(target.name + ".corrupt")
    os.replace(bad, corrupt)
    origin = "the pinned checksum" if pinned else f"the checksum recorded at first download in {manifest}"
    advice = ("" if pinned else
              f" If the official file itself has changed, delete its entry from {manifest} to accept the new one.")
    return ChecksumError(f"{target}: sha256 {digest} does not match {origin} ({expected}); the file was kept as "
                         f"{corrupt}. Run again to fetch a fresh copy.{advice}")


def download(task: TaskSpec, dest: Path, *, split_kind: Literal["time", "user"] = "time",
             splits: Sequence[str] = SPLITS, base_url: str = OFFICIAL_BASE_URL,
             checksums: Mapping[str, str] | None = None, progress: bool = True,
             timeout: float = TIMEOUT_S) -> list[Path]:
    """Fetch (or verify, when already there) a task's official files; return their paths.

    Files already in place are verified, not downloaded again; see the module doc for
    the layout, the manifest and resuming.
    """
    urls = official_urls(task, split_kind, splits, base_url)
    folder = task_folder(dest, task, split_kind)
    manifest_path = folder / MANIFEST
    manifest = _read_manifest(manifest_path)
    pinned = dict(checksums or {})
    paths: list[Path] = []
    for rel, url in urls.items():
        target = folder / rel
        expected = pinned.get(rel) or manifest.get(rel, {}).get("sha256")
        if target.exists():
            digest, size = _sha256_file(target)
            bad = target
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            bad = target.with_name(target.name + ".part")
            digest, size = _fetch(url, bad, timeout=timeout, progress=progress, label=f"{task.lamp_name}/{rel}")
        if expected and digest != expected:
            raise _mismatch(bad, target, digest, expected, rel in pinned, manifest_path)
        if bad != target:
            os.replace(bad, target)
        entry = {"sha256": digest, "size": size, "url": url}
        if manifest.get(rel) != entry:
            manifest[rel] = entry
            atomic_write_json(manifest_path, manifest)
        paths.append(target)
    return paths
