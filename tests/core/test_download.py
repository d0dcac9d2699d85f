"""Resumable, verified downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from l1000_assets.core import download as dl
from l1000_assets.core.download import (DownloadError, download, local_version,
                                        parse_checksums, probe)
from l1000_assets.core.errors import L1000InputError

DATA = random.Random(0).randbytes(300_000)
TEXT = "".join(f"row{i}\t{i * 7 % 1000}\n" for i in range(40_000)).encode()
FAST = {"retries": 3, "backoff": 0.01, "timeout": 5.0, "chunk_size": 16_384}


class Site:
    """In-memory files with ETag / Last-Modified, plus knobs to make the server misbehave."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, tuple[bytes, str, str]] = {}
        self.versions = 0
        self.log: list[tuple[str, str, dict[str, str]]] = []
        # Path -> body bytes the next GET sends before the server drops the connection.
        self.drop_after: dict[str, int] = {}
        # (method, path) -> statuses to answer the next requests with, in order.
        self.fail_next: dict[tuple[str, str], list[int]] = {}
        self.refuse_head = False
        self.head_without_length = False
        # Run once at the start of the next GET (to change a file between HEAD and GET).
        self.on_get: Callable[[], None] | None = None

    def put(self, path: str, data: bytes) -> str:
        self.versions += 1
        etag = f'"v{self.versions}-{hashlib.md5(data).hexdigest()[:8]}"'
        modified = formatdate(1_600_000_000 + self.versions, usegmt=True)
        self.files[path] = (data, etag, modified)
        return self.base + path

    def requests(self, method: str) -> list[dict[str, str]]:
        return [headers for m, _, headers in self.log if m == method]


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            site.log.append((self.command, self.path, dict(self.headers)))
            if head and site.refuse_head:
                self.send_error(405)
                return
            if not head and site.on_get is not None:
                hook, site.on_get = site.on_get, None
                hook()
            failures = site.fail_next.get((self.command, self.path))
            if failures:
                self.send_error(failures.pop(0))
                return
            if self.path not in site.files:
                self.send_error(404)
                return
            data, etag, modified = site.files[self.path]
            start, status = 0, 200
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if wanted and if_range in (None, etag, modified):
                first, last = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted).groups()
                start = int(first)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = data[:int(last) + 1] if last else data
                status = 206
            body = data[start:]
            self.send_response(status)
            if not (head and site.head_without_length):
                self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range",
                                 f"bytes {start}-{len(data) - 1}/{len(site.files[self.path][0])}")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            cut = site.drop_after.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])

    return Handler


@pytest.fixture
def site(monkeypatch) -> Iterator[Site]:
    # A proxy from the environment would intercept requests meant for the local server.
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield site
    server.shutdown()
    server.server_close()
    thread.join()


def _sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def test_probe_reports_validators(site):
    url = site.put("/f.bin", DATA)
    version = probe(url, timeout=5)
    _, etag, modified = site.files["/f.bin"]
    assert version == dl.RemoteVersion(url, etag, modified, len(DATA))
    assert [m for m, _, _ in site.log] == ["HEAD"]


def test_probe_falls_back_to_a_one_byte_get_when_head_is_refused(site, tmp_path):
    url = site.put("/f.bin", DATA)
    site.refuse_head = True
    assert probe(url, timeout=5).content_length == len(DATA)
    assert site.requests("GET")[-1]["Range"] == "bytes=0-0"
    download(url, tmp_path / "f.bin", **FAST)
    site.log.clear()
    assert download(url, tmp_path / "f.bin", **FAST).skipped
    assert [h.get("Range") for h in site.requests("GET")] == ["bytes=0-0"]


def test_download_verifies_records_and_skips_unchanged(site, tmp_path):
    url = site.put("/f.bin", DATA)
    dest = tmp_path / "sub" / "f.bin"
    calls = []
    result = download(url, dest, sha512=_sha512(DATA).upper(), progress=lambda *a: calls.append(a),
                      **FAST)
    assert dest.read_bytes() == DATA
    assert (result.size, result.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert (result.skipped, result.resumed_from, result.etag) == (False, 0, site.files["/f.bin"][1])
    assert calls[-1][:2] == (len(DATA), len(DATA)) and len(calls) > 1
    record = json.loads((tmp_path / "sub" / "f.bin.source.json").read_text())
    assert record["sha512"] == _sha512(DATA) and record["content_length"] == len(DATA)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin", "f.bin.source.json"]

    site.log.clear()
    again = download(url, dest, sha512=_sha512(DATA), **FAST)
    assert again.skipped and again.sha256 == result.sha256
    assert [m for m, _, _ in site.log] == ["HEAD"]


def test_changed_etag_triggers_a_new_download(site, tmp_path):
    url = site.put("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    download(url, dest, **FAST)
    site.put("/f.bin", DATA[::-1])
    result = download(url, dest, **FAST)
    assert not result.skipped and dest.read_bytes() == DATA[::-1]
    assert result.etag == site.files["/f.bin"][1]
    assert download(url, dest, **FAST).skipped


def test_interrupted_transfer_resumes_with_a_range_request(site, tmp_path):
    url = site.put("/f.bin", DATA)
    half = len(DATA) // 2
    site.drop_after["/f.bin"] = half
    result = download(url, tmp_path / "f.bin", **FAST)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    first, second = site.requests("GET")
    assert "Range" not in first
    assert second["Range"] == f"bytes={half}-"
    assert second["If-Range"] == site.files["/f.bin"][1]
    assert result.resumed_from == half
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.source.json"]


def test_partial_from_an_earlier_call_is_resumed(site, tmp_path):
    url = site.put("/f.bin", DATA)
    site.drop_after["/f.bin"] = 100_000
    with pytest.raises(DownloadError, match="gave up after 1 failed attempts"):
        download(url, tmp_path / "f.bin", **{**FAST, "retries": 0})
    assert (tmp_path / "f.bin.part").stat().st_size == 100_000
    assert not (tmp_path / "f.bin").exists()
    result = download(url, tmp_path / "f.bin", **FAST)
    assert result.resumed_from == 100_000 and (tmp_path / "f.bin").read_bytes() == DATA
    assert site.requests("GET")[-1]["Range"] == "bytes=100000-"


@pytest.mark.parametrize("when", ["before HEAD", "between HEAD and GET"])
def test_partial_of_a_changed_file_is_not_stitched(site, tmp_path, when):
    url = site.put("/f.bin", DATA)
    site.drop_after["/f.bin"] = 100_000
    with pytest.raises(DownloadError):
        download(url, tmp_path / "f.bin", **{**FAST, "retries": 0})
    new = random.Random(1).randbytes(250_000)
    if when == "before HEAD":
        site.put("/f.bin", new)
    else:
        site.on_get = lambda: site.put("/f.bin", new)
    result = download(url, tmp_path / "f.bin", **FAST)
    assert (tmp_path / "f.bin").read_bytes() == new and result.resumed_from == 0
    assert result.etag == site.files["/f.bin"][1]
    last_get = site.requests("GET")[-1]
    # Changed before HEAD: the stale part is dropped up front; after HEAD, If-Range catches it.
    assert ("Range" in last_get) == (when == "between HEAD and GET")


def test_complete_partial_is_not_fetched_again(site, tmp_path, monkeypatch):
    gz = gzip.compress(TEXT)
    url = site.put("/t.txt.gz", gz)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_gunzip", crash)
    with pytest.raises(KeyboardInterrupt):
        download(url, tmp_path / "t.txt", **FAST)
    monkeypatch.undo()
    assert (tmp_path / "t.txt.gz.part").read_bytes() == gz
    # Without a Content-Length in HEAD, the 416 answer to the ranged GET says it is complete.
    site.head_without_length = True
    site.log.clear()
    result = download(url, tmp_path / "t.txt", **FAST)
    assert (tmp_path / "t.txt").read_bytes() == TEXT and result.resumed_from == len(gz)
    assert site.requests("GET")[0]["Range"] == f"bytes={len(gz)}-"


def test_sha512_mismatch_is_rejected_and_leaves_dest_alone(site, tmp_path):
    url = site.put("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    download(url, dest, **FAST)
    corrupted = bytearray(DATA)
    corrupted[1234] ^= 0xFF
    site.put("/f.bin", bytes(corrupted))
    with pytest.raises(L1000InputError) as caught:
        download(url, dest, sha512=_sha512(DATA), **FAST)
    message = str(caught.value)
    assert message.startswith(str(dest)) and "SHA-512" in message
    assert _sha512(DATA) in message and _sha512(bytes(corrupted)) in message
    assert dest.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.source.json"]

    with pytest.raises(L1000InputError):
        download(url, tmp_path / "new.bin", sha512=_sha512(DATA), **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.source.json"]


def test_size_mismatch_is_rejected(site, tmp_path):
    url = site.put("/f.bin", DATA)
    with pytest.raises(L1000InputError, match=f"{len(DATA):,} bytes.*expected_size says "
                                                f"{len(DATA) + 1:,}") as caught:
        download(url, tmp_path / "f.bin", expected_size=len(DATA) + 1, **FAST)
    assert str(caught.value).startswith(str(tmp_path / "f.bin"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("keep", [False, True])
def test_gzip_is_streamed_through_gunzip(site, tmp_path, keep):
    gz = gzip.compress(TEXT)
    url = site.put("/t.txt.gz", gz)
    dest = tmp_path / "t.txt"
    result = download(url, dest, sha512=_sha512(gz), keep_compressed=keep,
                      **{**FAST, "chunk_size": 4096})
    assert dest.read_bytes() == TEXT
    assert (result.size, result.sha256) == (len(TEXT), hashlib.sha256(TEXT).hexdigest())
    kept = tmp_path / "t.txt.gz"
    assert result.compressed_path == (kept if keep else None)
    assert kept.exists() == keep and (not keep or kept.read_bytes() == gz)
    assert not (tmp_path / "t.txt.gz.part").exists()
    assert download(url, dest, keep_compressed=keep, **FAST).skipped


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_bad_gzip_stream_is_rejected(site, tmp_path, damage):
    gz = bytearray(gzip.compress(TEXT))
    if damage == "truncated":
        gz = gz[:len(gz) // 2]
    else:
        gz[len(gz) // 2: len(gz) // 2 + 64] = bytes(64)
    url = site.put("/t.txt.gz", bytes(gz))
    with pytest.raises(L1000InputError, match="truncated or corrupt") as caught:
        download(url, tmp_path / "t.txt", **FAST)
    assert str(caught.value).startswith(str(tmp_path / "t.txt.gz"))
    assert list(tmp_path.iterdir()) == []


def test_404_fails_fast_naming_the_url(site, tmp_path):
    url = site.base + "/missing.bin"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        download(url, tmp_path / "m.bin", retries=5, backoff=10.0, timeout=5.0)
    assert time.monotonic() - started < 2
    assert str(caught.value).startswith(url) and caught.value.status == 404
    assert len(site.log) == 1 and list(tmp_path.iterdir()) == []


def test_transient_500_is_retried(site, tmp_path):
    url = site.put("/f.bin", DATA)
    site.fail_next[("HEAD", "/f.bin")] = [503]
    site.fail_next[("GET", "/f.bin")] = [500]
    download(url, tmp_path / "f.bin", **FAST)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert len(site.requests("HEAD")) == 2 and len(site.requests("GET")) == 2

    site.put("/f.bin", DATA[::-1])
    site.fail_next[("GET", "/f.bin")] = [500] * 10
    with pytest.raises(DownloadError, match="gave up after 3 failed attempts.*HTTP 500"):
        download(url, tmp_path / "f.bin", **{**FAST, "retries": 2})
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/f.bin"
    with pytest.raises(DownloadError, match="cannot connect") as caught:
        download(url, tmp_path / "f.bin", **{**FAST, "retries": 1})
    assert isinstance(caught.value, OSError) and str(caught.value).startswith(url)
    with pytest.raises(DownloadError, match="cannot connect"):
        probe(url, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_parse_checksums_plain_and_gzipped(tmp_path):
    a, b = _sha512(b"a"), _sha512(b"b")
    text = f"# GEO checksums\n{a}  GSE1_a.txt.gz\n\n{b.upper()} *GSE1 b.gctx\r\n"
    (tmp_path / "SUMS.txt").write_text(text)
    (tmp_path / "SUMS.txt.gz").write_bytes(gzip.compress(text.encode()))
    expected = {"GSE1_a.txt.gz": a, "GSE1 b.gctx": b}
    assert parse_checksums(tmp_path / "SUMS.txt") == expected
    assert parse_checksums(tmp_path / "SUMS.txt.gz") == expected

    (tmp_path / "bad.txt").write_text(f"{a}  ok\nnot a checksum line\n")
    with pytest.raises(L1000InputError, match="line 2"):
        parse_checksums(tmp_path / "bad.txt")


def test_local_version(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    version = local_version(path)
    assert version == {"size": len(DATA), "mtime_ns": path.stat().st_mtime_ns,
                       "sha256": hashlib.sha256(DATA).hexdigest()}
    with pytest.raises(L1000InputError, match="not found"):
        local_version(tmp_path / "nope")
