"""Resumable, verified downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import socket
import time

import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.releases import download as dl
from l1000_assets.core.releases.download import (
    DownloadError,
    download,
    local_version,
    parse_checksums,
    probe,
)

DATA = random.Random(0).randbytes(300_000)
TEXT = "".join(f"row{i}\t{i * 7 % 1000}\n" for i in range(40_000)).encode()
FAST = {"retries": 3, "backoff": 0.01, "timeout": 5.0, "chunk_size": 16_384}


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
    result = download(
        url, dest, sha512=_sha512(DATA).upper(), progress=lambda *a: calls.append(a), **FAST
    )
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
    with pytest.raises(
        L1000InputError, match=f"{len(DATA):,} bytes.*expected_size says {len(DATA) + 1:,}"
    ) as caught:
        download(url, tmp_path / "f.bin", expected_size=len(DATA) + 1, **FAST)
    assert str(caught.value).startswith(str(tmp_path / "f.bin"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("announced", ["HEAD Content-Length", "Content-Range total"])
def test_a_short_get_is_refused_against_every_size_the_server_announced(site, tmp_path, announced):
    """The GET's own Content-Length agrees with the short body it sends; the size the
    server announced before (HEAD, or the ranged probe when HEAD is refused) does not."""
    url = site.put("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    download(url, dest, **FAST)
    site.put("/f.bin", DATA[::-1])  # a new version, so it is fetched again
    site.refuse_head = announced == "Content-Range total"
    site.short_get["/f.bin"] = 200_000
    with pytest.raises(
        L1000InputError, match=f"downloaded 200,000 bytes.*{announced} says {len(DATA):,}"
    ) as caught:
        download(url, dest, **FAST)
    assert str(caught.value).startswith(str(dest))
    assert dest.read_bytes() == DATA  # the good copy stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.source.json"]
    assert download(url, dest, **FAST).size == len(DATA)  # a whole GET is fine again
    assert dest.read_bytes() == DATA[::-1]


def test_a_short_resumed_range_is_refused_against_its_content_range_total(site, tmp_path):
    url = site.put("/f.bin", DATA)
    site.head_without_length = True
    site.drop_after["/f.bin"] = 100_000
    with pytest.raises(DownloadError):
        download(url, tmp_path / "f.bin", **{**FAST, "retries": 0})
    # The first GET recorded the full length; forget it, as a server without one would.
    meta = tmp_path / "f.bin.part.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "total": None}))
    site.short_get["/f.bin"] = 50_000
    with pytest.raises(
        L1000InputError, match=f"downloaded 150,000 bytes.*Content-Range total says {len(DATA):,}"
    ):
        download(url, tmp_path / "f.bin", **FAST)
    assert not (tmp_path / "f.bin").exists()


@pytest.mark.parametrize("keep", [False, True])
def test_gzip_is_streamed_through_gunzip(site, tmp_path, keep):
    gz = gzip.compress(TEXT)
    url = site.put("/t.txt.gz", gz)
    dest = tmp_path / "t.txt"
    result = download(
        url, dest, sha512=_sha512(gz), keep_compressed=keep, **{**FAST, "chunk_size": 4096}
    )
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
        gz = gz[: len(gz) // 2]
    else:
        gz[len(gz) // 2 : len(gz) // 2 + 64] = bytes(64)
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
    assert version == {
        "size": len(DATA),
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(DATA).hexdigest(),
    }
    with pytest.raises(L1000InputError, match="not found"):
        local_version(tmp_path / "nope")
