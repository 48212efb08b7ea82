"""The downloader against a local HTTP server that honours Range and logs every request."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.registries import TASKS
from tasks.download import MANIFEST, ChecksumError, DownloadError, download, official_urls
from tasks.loader import load_split
from tests.test_loader import question

LAMP2 = TASKS.get("lamp2")


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; ``state.mode`` switches misbehaviours on."""
    root = tmp_path / "www"
    root.mkdir()
    log: list[tuple[str, str | None, int]] = []  # (path, Range header, body bytes sent)
    state = SimpleNamespace(mode="normal")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            rng = self.headers.get("Range")
            path = root / self.path.lstrip("/")
            if state.mode == "slow":
                time.sleep(0.6)
            if not path.is_file():
                log.append((self.path, rng, 0))
                self.send_error(404, "Not Found")
                return
            data = path.read_bytes()
            start = 0
            if rng and state.mode != "ignore-range":
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    log.append((self.path, rng, 0))
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.mode == "truncate":  # promise everything, send half, hang up
                body = body[: len(body) // 2]
                self.close_connection = True
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                return
            log.append((self.path, rng, len(body)))

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", root=root, log=log, state=state)
    httpd.shutdown()
    httpd.server_close()


def publish(root: Path, kind: str = "time") -> dict[str, bytes]:
    """Put a small but valid LaMP-2 data set where the official URLs point; return rel -> bytes."""
    base = root / "time" / "LaMP_2" / "new" if kind == "time" else root / "LaMP_2" / "new"
    files = {}
    for split, n in (("train", 30), ("dev", 20), ("test", 5)):
        records = [question(f"{split}{i}", n_items=10, user=f"u{i % 4}") for i in range(n)]
        files[f"{split}/{split}_questions.json"] = json.dumps(records, indent=1).encode()
        if split != "test":
            golds = {"task": "LaMP_2", "golds": [{"id": r["id"], "output": "comedy"} for r in records]}
            files[f"{split}/{split}_outputs.json"] = json.dumps(golds).encode()
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_official_url_scheme():
    time_urls = official_urls(LAMP2, "time", ("dev", "test"))
    assert time_urls == {
        "dev/dev_questions.json": "https://ciir.cs.umass.edu/downloads/LaMP/time/LaMP_2/new/dev/dev_questions.json",
        "dev/dev_outputs.json": "https://ciir.cs.umass.edu/downloads/LaMP/time/LaMP_2/new/dev/dev_outputs.json",
        "test/test_questions.json": "https://ciir.cs.umass.edu/downloads/LaMP/time/LaMP_2/new/test/test_questions.json",
    }
    assert official_urls(LAMP2, "user", ("train",))["train/train_outputs.json"] == \
        "https://ciir.cs.umass.edu/downloads/LaMP/LaMP_2/new/train/train_outputs.json"
    assert official_urls(TASKS.get("lamp4"), "user", ("dev",), base_url="http://h/x/")["dev/dev_questions.json"] == \
        "http://h/x/LaMP_4/dev/dev_questions.json"


def test_undownloadable_tasks_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="LaMP-6 cannot be downloaded.*Avocado"):
        official_urls(TASKS.get("lamp6"))
    with pytest.raises(ValueError, match="amazon-rating is not an official LaMP task"):
        official_urls(TASKS.get("amazon-rating"))
    with pytest.raises(ValueError, match="split_kind must be 'time' or 'user'"):
        official_urls(LAMP2, "random")
    with pytest.raises(ValueError, match="unknown splits"):
        official_urls(LAMP2, "time", ("valid",))


def test_full_download_writes_layout_and_manifest_and_loads(server, tmp_path):
    files = publish(server.root)
    dest = tmp_path / "data"
    paths = download(LAMP2, dest, base_url=server.url, progress=False)

    folder = dest / "time" / "LaMP_2"
    assert paths == [folder / rel for rel in files]
    for rel, data in files.items():
        assert (folder / rel).read_bytes() == data
    assert not list(folder.rglob("*.part"))
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest == {rel: {"sha256": sha(data), "size": len(data), "url": f"{server.url}/time/LaMP_2/new/{rel}"}
                        for rel, data in files.items()}
    assert [r for r, _, _ in server.log] == [f"/time/LaMP_2/new/{rel}" for rel in files]

    split = load_split(LAMP2, dest, "dev")  # the loader finds what the downloader wrote
    assert len(split.examples) == 20 and split.source.detail["split_kind"] == "time"


def test_second_run_verifies_without_downloading(server, tmp_path):
    publish(server.root)
    first = download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)
    requests = len(server.log)
    assert download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False) == first
    assert len(server.log) == requests


def test_resume_requests_only_the_missing_bytes(server, tmp_path):
    files = publish(server.root)
    data = files["dev/dev_questions.json"]
    part = tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])

    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)

    assert ("/time/LaMP_2/new/dev/dev_questions.json", "bytes=1000-", len(data) - 1000) in server.log
    assert (tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json").read_bytes() == data
    assert not part.exists()
    manifest = json.loads((tmp_path / "time" / "LaMP_2" / MANIFEST).read_text())
    assert manifest["dev/dev_questions.json"]["sha256"] == sha(data)  # hash covers the resumed prefix too


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    files = publish(server.root)
    data = files["dev/dev_questions.json"]
    part = tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that is not a prefix")
    server.state.mode = "ignore-range"

    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)

    assert ("/time/LaMP_2/new/dev/dev_questions.json", "bytes=28-", len(data)) in server.log
    assert (tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json").read_bytes() == data


def test_part_longer_than_the_file_starts_over(server, tmp_path):
    files = publish(server.root)
    data = files["dev/dev_outputs.json"]
    part = tmp_path / "time" / "LaMP_2" / "dev" / "dev_outputs.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(data) + 10))

    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)

    path = "/time/LaMP_2/new/dev/dev_outputs.json"
    assert [entry for entry in server.log if entry[0] == path] == [(path, f"bytes={len(data) + 10}-", 0),
                                                                   (path, None, len(data))]
    assert (tmp_path / "time" / "LaMP_2" / "dev" / "dev_outputs.json").read_bytes() == data


def test_broken_transfer_keeps_the_part_and_the_next_run_resumes(server, tmp_path):
    files = publish(server.root)
    data = files["dev/dev_questions.json"]
    server.state.mode = "truncate"
    with pytest.raises(DownloadError, match="run again to resume") as info:
        download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)
    assert "/time/LaMP_2/new/dev/dev_questions.json" in str(info.value)
    part = tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json.part"
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json").exists()

    server.state.mode = "normal"
    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)
    assert server.log[-2] == ("/time/LaMP_2/new/dev/dev_questions.json", f"bytes={len(data) // 2}-",
                              len(data) - len(data) // 2)
    assert (tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json").read_bytes() == data


def test_pinned_checksum_mismatch_keeps_the_bytes_as_corrupt(server, tmp_path):
    files = publish(server.root)
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False,
                 checksums={"dev/dev_questions.json": wrong})
    target = tmp_path / "time" / "LaMP_2" / "dev" / "dev_questions.json"
    msg = str(info.value)
    assert str(target) in msg and wrong in msg and sha(files["dev/dev_questions.json"]) in msg
    assert "pinned checksum" in msg
    assert not target.exists()
    assert target.with_name("dev_questions.json.corrupt").read_bytes() == files["dev/dev_questions.json"]
    assert not (tmp_path / "time" / "LaMP_2" / MANIFEST).exists()  # nothing verified, nothing recorded


def test_pinned_checksum_match_passes(server, tmp_path):
    files = publish(server.root)
    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False,
             checksums={rel: sha(data) for rel, data in files.items()})
    assert (tmp_path / "time" / "LaMP_2" / "dev" / "dev_outputs.json").read_bytes() == files["dev/dev_outputs.json"]


def test_file_changed_after_download_fails_against_the_manifest(server, tmp_path):
    files = publish(server.root)
    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)
    target = tmp_path / "time" / "LaMP_2" / "dev" / "dev_outputs.json"
    target.write_bytes(b'{"task": "LaMP_2", "golds": []}')

    with pytest.raises(ChecksumError) as info:
        download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)
    assert str(target) in str(info.value) and MANIFEST in str(info.value)
    assert target.with_name("dev_outputs.json.corrupt").exists() and not target.exists()

    download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False)  # fetches a fresh copy
    assert target.read_bytes() == files["dev/dev_outputs.json"]


def test_http_404_names_url_and_status(server, tmp_path):
    publish(server.root, kind="time")  # nothing published under the user-based path
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download(LAMP2, dest, split_kind="user", splits=("dev",), base_url=server.url, progress=False)
    msg = str(info.value)
    assert f"GET {server.url}/LaMP_2/new/dev/dev_questions.json failed: HTTP 404" in msg
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_unreachable_server_is_a_clear_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"cannot reach http://127.0.0.1:{port}/time/LaMP_2/new/dev/dev_questions"):
        download(LAMP2, tmp_path, splits=("dev",), base_url=f"http://127.0.0.1:{port}", progress=False)


def test_timeout_is_a_clear_error(server, tmp_path):
    publish(server.root)
    server.state.mode = "slow"
    with pytest.raises(DownloadError, match="cannot reach .*dev_questions.json: timed out"):
        download(LAMP2, tmp_path, splits=("dev",), base_url=server.url, progress=False, timeout=0.2)
