"""Resumable, verified downloads of release files over HTTP(S), using only the standard library.

:func:`download` fetches one URL to a local path:

* Bytes arrive in a ``.part`` file beside the target, with a small ``.part.json`` sidecar
  recording the URL and the ETag / Last-Modified those bytes came from. An interrupted
  transfer (in this call, on retry, or in a later call) resumes with ``Range`` plus
  ``If-Range``, so a file that changed on the server is never stitched onto old bytes.
* Transient failures (connection errors, timeouts, short reads, 5xx, 408, 429) are retried
  with exponential backoff; other 4xx statuses fail at once.
* The finished bytes are checked against every size the server announced for that version
  (the HEAD ``Content-Length``, or the ``Content-Range`` total of the probe when HEAD is
  refused; the GET's ``Content-Length``; the ``Content-Range`` totals of resumed ranges),
  ``expected_size`` and ``sha512``, optionally gunzipped as a stream, and only then renamed
  onto the target, so the target only ever appears complete and verified (a server that
  sends a short body with a matching short ``Content-Length`` is caught too).
* A ``<name>.source.json`` sidecar beside the target records what was fetched; a later call
  whose HEAD request shows the same ETag, Last-Modified and Content-Length does nothing.

Not safe for concurrent calls with the same target: they would share the ``.part`` file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.hashing import file_digests
from l1000_assets.core.progress import Progress

T = TypeVar("T")

#: ``progress(done_bytes, total_bytes, elapsed_seconds)``, as :class:`ProgressReporter` takes.

# Statuses worth retrying: the server is overloaded or asks us to come back later.
_RETRY_STATUSES = frozenset({408, 429})
# A server that refuses HEAD answers one of these; probe() then asks for one byte instead.
_HEAD_REFUSED = frozenset({405, 501})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{128}) [ *](.+)")


class DownloadError(OSError):
    """A URL could not be fetched: unreachable, an error status, or retries exhausted.

    The message always starts with the URL. ``status`` is the HTTP status when the server
    answered one; ``transient`` says whether a retry might succeed.
    """

    def __init__(
        self, url: str, problem: str, *, status: int | None = None, transient: bool = False
    ):
        self.url = url
        self.problem = problem
        self.status = status
        self.transient = transient
        super().__init__(f"{url}: {problem}")


@dataclass(frozen=True)
class RemoteVersion:
    """What a server says about a URL without sending it (``None`` when a header is absent)."""

    url: str
    etag: str | None
    last_modified: str | None
    content_length: int | None
    #: Where ``content_length`` came from, as named in errors.
    length_source: str = "HEAD Content-Length"


@dataclass(frozen=True)
class DownloadResult:
    """The outcome of :func:`download`.

    Attributes
    ----------
    path
        The final file (decompressed when gunzipped).
    size, sha256
        Size and SHA-256 of ``path``.
    etag, last_modified
        The validators of the remote bytes ``path`` was made from.
    url
        The URL asked for.
    skipped
        True when ``path`` was already up to date and nothing was transferred.
    resumed_from
        Byte offset at which the final transfer started: non-zero when earlier partial data
        was reused, 0 when the data arrived in one piece (or nothing was transferred).
    compressed_path
        The kept compressed file when ``keep_compressed=True`` and gunzipping, else None.
    """

    path: Path
    size: int
    sha256: str
    etag: str | None
    last_modified: str | None
    url: str
    skipped: bool
    resumed_from: int
    compressed_path: Path | None = None


def probe(url: str, *, timeout: float = 60.0) -> RemoteVersion:
    """Ask the server for a URL's ETag, Last-Modified and Content-Length (one HEAD request).

    A server that refuses HEAD (405 or 501) is asked for the first byte with a ranged GET
    instead, whose ``Content-Range`` gives the full size. Redirects are followed.

    Parameters
    ----------
    url
        An ``http://`` or ``https://`` URL.
    timeout
        Seconds to wait for the connection and for each read.

    Returns
    -------
    RemoteVersion

    Raises
    ------
    DownloadError
        Naming the URL when it is not HTTP(S), the server is unreachable or times out, or
        it answers an error status (``status`` and ``transient`` tell which).
    """
    try:
        with _open(url, method="HEAD", timeout=timeout) as response:
            return _version(url, response.headers, _content_length(response.headers))
    except DownloadError as exc:
        if exc.status not in _HEAD_REFUSED:
            raise
    with _open(url, headers={"Range": "bytes=0-0"}, timeout=timeout) as response:
        if response.status == 206:
            length, source = _content_range(response.headers)[2], "Content-Range total"
        else:
            length, source = _content_length(response.headers), "GET Content-Length"
        return _version(url, response.headers, length, source)


def download(
    url: str,
    dest: str | Path,
    *,
    expected_size: int | None = None,
    sha512: str | None = None,
    gunzip: bool | None = None,
    keep_compressed: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: Progress | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming, retrying and verifying; skip it if unchanged.

    Parameters
    ----------
    url
        An ``http://`` or ``https://`` URL.
    dest
        The final file. Its parent directory is created if needed.
    expected_size
        Size in bytes of the remote (compressed) file, checked after the transfer.
    sha512
        Hex SHA-512 of the remote (compressed) bytes, checked after the transfer.
    gunzip
        Stream-decompress the downloaded bytes into ``dest``. Default: when the URL path
        ends in ``.gz`` and ``dest`` does not.
    keep_compressed
        When gunzipping, keep the verified compressed bytes as ``<dest>.gz`` (reported as
        ``compressed_path``) instead of deleting them. Ignored when not gunzipping.
    retries
        Failed attempts in a row to retry after. The count restarts whenever an attempt
        added bytes, so a flaky connection still finishes a large file.
    backoff
        Seconds before the first retry; doubled for each further failure in a row.
    timeout
        Seconds to wait for a connection and for each read.
    chunk_size
        Bytes per read, write and decompression step (bounds memory).
    progress
        Called as ``progress(done, total, elapsed)`` after each chunk with the bytes this call
        has fetched, the bytes it has to fetch (0 when the server does not say) and the
        seconds since the call started; bytes resumed from earlier partial data are not
        counted, so rates and ETAs stay right.

    Returns
    -------
    DownloadResult

    Raises
    ------
    DownloadError
        Naming the URL: the server is unreachable or answers an error status. A 4xx other
        than 408, 416 and 429 fails at once; anything else once ``retries`` is used up. This
        includes the initial HEAD request: when it fails the call raises even if a good
        copy of ``dest`` exists, and the caller decides whether to use that copy.
    L1000InputError
        Naming ``dest`` when the size differs from ``expected_size`` or from any size the
        server announced for the version fetched, or the SHA-512 does not match, or naming
        ``<dest>.gz`` when the gzip data is truncated or corrupt. The bad data is deleted and
        ``dest`` is left as it was.

    Notes
    -----
    Skipping: ``dest`` is left alone when its ``<dest>.source.json`` sidecar records this URL,
    the HEAD request reports at least one of ETag and Last-Modified, the ETag, Last-Modified
    and Content-Length all equal the recorded ones, ``dest`` has the recorded size, and the
    recorded SHA-512, size and gunzip choice agree with this call's arguments (and, with
    ``keep_compressed``, the compressed file is still there). A server that sends neither
    validator is therefore downloaded in full every time.

    Resuming: a ``.part`` file is reused only when its sidecar records this URL, the same
    ETag and Last-Modified as the HEAD request, and a validator usable in ``If-Range`` (a
    strong ETag, else Last-Modified). The server still decides: a 200 answer to the ranged
    request restarts from zero, and a 416 either confirms the part is complete or restarts.
    """
    dest = Path(dest)
    if gunzip is None:
        gunzip = urlsplit(url).path.endswith(".gz") and dest.suffix != ".gz"
    compressed = dest.with_name(dest.name + ".gz") if gunzip else None
    keep = gunzip and keep_compressed
    sidecar = dest.with_name(dest.name + ".source.json")
    partial = _Partial((compressed or dest).with_name((compressed or dest).name + ".part"))

    remote = _with_retries(
        lambda: probe(url, timeout=timeout), url=url, retries=retries, backoff=backoff
    )
    recorded = _read_json(sidecar)
    if recorded is not None and _up_to_date(
        recorded,
        remote,
        dest,
        compressed if keep else None,
        sha512=sha512,
        expected_size=expected_size,
        gunzip=gunzip,
    ):
        return DownloadResult(
            path=dest,
            size=recorded["size"],
            sha256=recorded["sha256"],
            etag=remote.etag,
            last_modified=remote.last_modified,
            url=url,
            skipped=True,
            resumed_from=0,
            compressed_path=compressed if keep else None,
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial.discard_unless_resumable(remote)
    meter = _Meter(progress)
    announced: dict[str, int] = {}  # Content-Range totals of the ranges fetched
    resumed_from = _with_retries(
        lambda: _fetch_rest(
            url,
            partial,
            remote,
            timeout=timeout,
            chunk_size=chunk_size,
            meter=meter,
            announced=announced,
        ),
        url=url,
        retries=retries,
        backoff=backoff,
        position=partial.size,
    )

    meta = partial.meta() or {}
    size = partial.size()
    sizes = [(meta.get("total"), "the server's Content-Length")]
    # The probe's size holds for the bytes fetched when they are of the version it saw
    # (a file changed between HEAD and GET has another size, and new validators).
    if (meta.get("etag"), meta.get("last_modified")) == (remote.etag, remote.last_modified):
        sizes.append((remote.content_length, remote.length_source))
    sizes += [(total, source) for source, total in announced.items()]
    for expected, source in [*sizes, (expected_size, "expected_size")]:
        if expected is not None and size != expected:
            partial.discard()
            raise L1000InputError(
                dest,
                f"downloaded {size:,} bytes from {url}, but {source} "
                f"says {expected:,}; deleted the download",
            )

    # A gunzipped result is hashed while decompressing; only the compressed SHA-512 is read here.
    algorithms = (["sha512"] if sha512 else []) + ([] if gunzip else ["sha256"])
    hashes = file_digests(partial.path, algorithms, chunk_size=chunk_size)
    if sha512 and hashes["sha512"] != sha512.lower():
        partial.discard()
        raise L1000InputError(
            dest,
            f"SHA-512 of the bytes from {url} is {hashes['sha512']}, "
            f"expected {sha512.lower()}; deleted the download",
        )

    if gunzip:
        try:
            out_size, sha256 = _gunzip(
                partial.path,
                dest,
                chunk_size=chunk_size,
                before_replace=lambda: sidecar.unlink(missing_ok=True),
            )
        except _CorruptGzip as exc:
            partial.discard()
            raise L1000InputError(
                compressed,
                f"gzip data from {url} is truncated or corrupt "
                f"({exc}); deleted it, {dest.name} not written",
            ) from None
        if keep:
            os.replace(partial.path, compressed)
            partial.meta_path.unlink(missing_ok=True)
        else:
            partial.discard()
    else:
        out_size, sha256 = size, hashes["sha256"]
        sidecar.unlink(missing_ok=True)
        os.replace(partial.path, dest)
        partial.meta_path.unlink(missing_ok=True)

    etag, last_modified = meta.get("etag"), meta.get("last_modified")
    record = {
        "url": url,
        "etag": etag,
        "last_modified": last_modified,
        "content_length": size,
        "size": out_size,
        "sha256": sha256,
        "sha512": hashes.get("sha512"),
        "gunzip": gunzip,
    }
    with atomic_file(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return DownloadResult(
        path=dest,
        size=out_size,
        sha256=sha256,
        etag=etag,
        last_modified=last_modified,
        url=url,
        skipped=False,
        resumed_from=resumed_from,
        compressed_path=compressed if keep else None,
    )


def parse_checksums(path: str | Path) -> dict[str, str]:
    """Read a ``SHA512SUMS``-style file (plain or gzipped): file name -> lower-case hex.

    Lines are ``<128 hex digits>  <name>`` or ``<hex> *<name>`` (binary mode), as written
    by ``sha512sum``; blank lines and ``#`` comments are ignored.

    Raises
    ------
    L1000InputError
        Naming the file: it is missing, a line does not parse (its number is given), or a
        name is listed twice with different checksums.
    """
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "checksum file not found")
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    sums: dict[str, str] = {}
    try:
        with (
            gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")
        ) as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                match = _CHECKSUM_LINE.fullmatch(line)
                if match is None:
                    raise L1000InputError(
                        path, f"line {number} is not '<sha512 hex>  <file name>': {line[:80]!r}"
                    )
                digest, name = match.group(1).lower(), match.group(2)
                if sums.setdefault(name, digest) != digest:
                    raise L1000InputError(
                        path, f"{name!r} is listed twice with different checksums"
                    )
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
        raise L1000InputError(path, f"unreadable checksum file ({exc})") from None
    return sums


def local_version(path: str | Path) -> dict[str, Any]:
    """Size, modification time (ns) and SHA-256 of a local file, hashed as a stream.

    Raises
    ------
    L1000InputError
        When ``path`` is not an existing file.
    """
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "file not found")
    stat = path.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": file_digests(path, ["sha256"])["sha256"],
    }


class _CorruptGzip(Exception):
    """Raised by :func:`_gunzip` when the compressed stream cannot be decoded to its end."""


class _KeepMethodRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects without turning HEAD into GET (urllib's default does), so a
    redirected probe does not start sending the whole file."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
        return new


def _open(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float,
    pass_statuses: Iterable[int] = (),
) -> Any:
    """Send one request; errors become :class:`DownloadError` (error responses whose status
    is in ``pass_statuses`` are returned instead, to be read like a response)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(url, "only http:// and https:// URLs can be downloaded")
    # Identity encoding: sizes, ranges and checksums must refer to the file's own bytes.
    request = urllib.request.Request(
        url, method=method, headers={"Accept-Encoding": "identity", **(headers or {})}
    )
    opener = urllib.request.build_opener(_KeepMethodRedirects)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in pass_statuses:
            return exc
        exc.close()
        raise DownloadError(
            url,
            f"HTTP {exc.code} {exc.reason}",
            status=exc.code,
            transient=exc.code >= 500 or exc.code in _RETRY_STATUSES,
        ) from None
    except urllib.error.URLError as exc:
        raise DownloadError(url, f"cannot connect: {exc.reason}", transient=True) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(url, f"request failed: {exc!r}", transient=True) from None


def _with_retries(
    attempt: Callable[[], T],
    *,
    url: str,
    retries: int,
    backoff: float,
    position: Callable[[], int] = lambda: 0,
) -> T:
    """Call ``attempt`` until it succeeds, sleeping with exponential backoff after transient
    failures; ``position`` (bytes on disk) going up counts as progress and resets the count."""
    failures, mark = 0, position()
    while True:
        try:
            return attempt()
        except DownloadError as exc:
            if not exc.transient:
                raise
            now = position()
            failures = 1 if now > mark else failures + 1
            mark = now
            if failures > retries:
                raise DownloadError(
                    url,
                    f"gave up after {failures} failed attempts in a row; last: {exc.problem}",
                    status=exc.status,
                ) from None
            time.sleep(backoff * 2 ** (failures - 1))


class _Partial:
    """The ``.part`` file and its JSON sidecar naming the remote version its bytes came from."""

    def __init__(self, path: Path):
        self.path = path
        self.meta_path = path.with_name(path.name + ".json")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def meta(self) -> dict[str, Any] | None:
        return _read_json(self.meta_path)

    def start(
        self, url: str, etag: str | None, last_modified: str | None, total: int | None
    ) -> None:
        # Sidecar first: a crash in between leaves a sidecar without data, which is harmless.
        with atomic_file(self.meta_path) as tmp:
            tmp.write_text(
                json.dumps(
                    {"url": url, "etag": etag, "last_modified": last_modified, "total": total}
                )
            )
        self.path.write_bytes(b"")

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)

    def discard_unless_resumable(self, remote: RemoteVersion) -> None:
        meta = self.meta()
        if not (
            meta
            and self.path.exists()
            and meta.get("url") == remote.url
            and _if_range(meta.get("etag"), meta.get("last_modified"))
            and meta.get("etag") == remote.etag
            and meta.get("last_modified") == remote.last_modified
            and (remote.content_length is None or self.size() <= remote.content_length)
        ):
            self.discard()


class _Meter:
    """Report progress for the bytes this call fetches, not counting resumed bytes."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.started = time.monotonic()
        self.base: int | None = None
        self.total = 0

    def begin(self, offset: int, total: int | None) -> None:
        if self.base is None or offset < self.base:
            self.base = offset
        self.total = max(total - self.base, 0) if total is not None else 0

    def update(self, position: int) -> None:
        if self.progress is not None:
            self.progress(position - (self.base or 0), self.total, time.monotonic() - self.started)


def _fetch_rest(
    url: str,
    partial: _Partial,
    remote: RemoteVersion,
    *,
    timeout: float,
    chunk_size: int,
    meter: _Meter,
    announced: dict[str, int],
) -> int:
    """One GET attempt that completes ``partial``; returns the offset it started at. The
    ``Content-Range`` total of a ranged answer is recorded in ``announced``."""
    offset = partial.size()
    meta = partial.meta() or {}
    if offset and offset == remote.content_length:
        # Already complete (discard_unless_resumable checked it is the same version).
        return offset
    headers = {}
    validator = _if_range(meta.get("etag"), meta.get("last_modified"))
    if offset and validator:
        headers = {"Range": f"bytes={offset}-", "If-Range": validator}
    response = _open(url, headers=headers, timeout=timeout, pass_statuses=(416,))
    with response:
        if response.status == 416:
            total = _content_range(response.headers)[2]
            if total == offset:
                return offset
            partial.discard()
            raise DownloadError(
                url,
                f"range from byte {offset:,} not satisfiable (file is {total} bytes); restarting",
                status=416,
                transient=True,
            )
        if response.status == 206:
            start, _, total = _content_range(response.headers)
            if total is not None:
                announced["Content-Range total"] = total
            if start != offset:
                partial.discard()
                raise DownloadError(
                    url,
                    f"asked for bytes from {offset:,}, got them from {start}; restarting",
                    status=206,
                    transient=True,
                )
        else:
            # A 200 to a ranged request: the server ignored the range or If-Range found the
            # file changed; either way the old bytes are useless.
            offset = 0
            total = _content_length(response.headers)
            partial.start(
                url, response.headers.get("ETag"), response.headers.get("Last-Modified"), total
            )
        meter.begin(offset, total)
        length = _content_length(response.headers)
        received = 0
        with open(partial.path, "ab") as out:
            while chunk := _read(response, chunk_size, url):
                out.write(chunk)
                received += len(chunk)
                meter.update(offset + received)
        if length is not None and received < length:
            # http.client reports a closed connection as a short read, not an error.
            raise DownloadError(
                url,
                f"connection closed after {offset + received:,} of {offset + length:,} bytes",
                transient=True,
            )
    return offset


def _read(response: Any, size: int, url: str) -> bytes:
    try:
        return response.read(size)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(url, f"transfer interrupted: {exc!r}", transient=True) from None


def _gunzip(
    src: Path, dest: Path, *, chunk_size: int, before_replace: Callable[[], None]
) -> tuple[int, str]:
    """Decompress ``src`` into ``dest`` atomically in bounded memory; return size and SHA-256.

    ``before_replace`` runs once the output is complete, just before it replaces ``dest``.
    """
    if src.stat().st_size == 0:
        # gzip.open reads an empty file as an empty stream rather than an error.
        raise _CorruptGzip("empty file")
    digest = hashlib.sha256()
    size = 0
    with atomic_file(dest) as tmp:
        with gzip.open(src, "rb") as stream, open(tmp, "wb") as out:
            while True:
                try:
                    chunk = stream.read(chunk_size)
                except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                    raise _CorruptGzip(str(exc)) from None
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        before_replace()
    return size, digest.hexdigest()


def _up_to_date(
    recorded: dict[str, Any],
    remote: RemoteVersion,
    dest: Path,
    kept: Path | None,
    *,
    sha512: str | None,
    expected_size: int | None,
    gunzip: bool,
) -> bool:
    return (remote.etag is not None or remote.last_modified is not None) and (
        recorded.get("url") == remote.url
        and recorded.get("etag") == remote.etag
        and recorded.get("last_modified") == remote.last_modified
        and recorded.get("content_length") == remote.content_length
        and recorded.get("gunzip") == gunzip
        and (sha512 is None or recorded.get("sha512") == sha512.lower())
        and (expected_size is None or recorded.get("content_length") == expected_size)
        and dest.is_file()
        and dest.stat().st_size == recorded.get("size")
        and (kept is None or (kept.is_file() and kept.stat().st_size == remote.content_length))
    )


def _if_range(etag: str | None, last_modified: str | None) -> str | None:
    """The validator to send in If-Range: a strong ETag, else Last-Modified (weak ETags are
    not allowed there), else None, meaning a partial download cannot be resumed safely."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified


def _version(
    url: str, headers: Any, length: int | None, source: str = "HEAD Content-Length"
) -> RemoteVersion:
    return RemoteVersion(
        url=url,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        content_length=length,
        length_source=source,
    )


def _content_length(headers: Any) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _content_range(headers: Any) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` from a Content-Range header; None for parts it leaves out."""
    match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
    if match is None:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(total) if total and total != "*" else None,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    """A sidecar's content, or None when it is missing or unreadable (treated as absent)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
