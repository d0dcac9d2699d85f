"""Has a release changed? Version signatures of release sources, compared with a cursor.

Pure logic behind the ``release_sensor`` (no Dagster here). A *signature* is a small JSON-able
dict describing what a release source serves right now; its *version* is a short hash of the
parts that matter. The sensor keeps one :class:`WatchEntry` per release in its cursor and asks
:func:`step` what to do on each tick.

What is looked at
-----------------
HTTP sources (the public releases and their mirrors)
    One HEAD request per file: ETag, Last-Modified, Content-Length. For releases whose file
    names carry a date (GEO GSE70138: ``..._inst_info_2017-03-06.txt.gz``) the directory
    listing is read too, and the newest dated name of each file is recorded, so a re-issued
    file under a new date is noticed. The header line of each metadata table (``*_info``) is
    read with a ranged GET of its first 64 KiB, so a change of column set is reported by name.
    Column sets are only re-read when a file's HEAD answer changed (or carries no validators).
Local directories
    Every visible file's size, modification time and a fingerprint (SHA-256 of the whole file
    up to 64 MB, else of its size, first and last 16 MB: the same fingerprint ``release_files``
    records). Files whose size and mtime are unchanged keep their previous fingerprint, so an
    80 GB GCTX is not re-read on every tick. The version ignores mtimes (a ``touch`` is not a
    new release). A directory is only reported once two ticks in a row saw the same version
    (a copy in progress is not ingested half-way) and once it holds a level-4 GCTX and an
    ``inst_info`` table.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from l1000_assets.core.cursor import dump_cursor, load_cursor
from l1000_assets.core.hashing import sha256_file
from l1000_assets.core.releases import download
from l1000_assets.core.releases.registry import DATED_NAME, RELEASE_NAME, ReleaseSource

#: Sub-directory of ``<data root>/releases`` whose sub-directories are local releases.
INCOMING = "incoming"
#: Bytes read from the start of a metadata table to get its header line.
HEADER_BYTES = 64 << 10
FINGERPRINT_BYTES = 16 << 20
METADATA_ROLES = ("inst_info", "gene_info", "pert_info", "cell_info")
_LEVEL4 = re.compile(r"Level4_.*\.gctx$", re.IGNORECASE)
_INST_INFO = re.compile(r"inst_?info([_.][A-Za-z0-9.-]*)?\.txt(\.gz)?$", re.IGNORECASE)
_TABLE = re.compile(r"info.*\.(txt|tsv)(\.gz)?$", re.IGNORECASE)
CURSOR_FORMAT = 1


class SourceUnavailable(Exception):
    """A source could not be checked this time (unreachable, error status, unreadable)."""


# -- local directories ------------------------------------------------------------------------


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file up to 64 MB; beyond that, of its first and last 16 MB and its size.

    The same value ``release_files`` records for local files (its ``sha256``).
    """
    path = Path(path)
    size = path.stat().st_size
    if size <= 4 * FINGERPRINT_BYTES:
        return sha256_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        f.seek(size - FINGERPRINT_BYTES)
        h.update(f.read(FINGERPRINT_BYTES))
        h.update(str(size).encode())
    return h.hexdigest()


def header_columns(first_bytes: bytes, *, gzipped: bool) -> list[str] | None:
    """The tab-separated column names on the first line of a (possibly truncated) table."""
    if gzipped:
        try:
            first_bytes = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(first_bytes)
        except zlib.error:
            return None
    if b"\n" not in first_bytes and len(first_bytes) >= HEADER_BYTES:
        return None  # no complete first line within the bytes read
    line = first_bytes.split(b"\n", 1)[0].rstrip(b"\r")
    text = line.decode("utf-8", errors="replace")
    return [c.strip() for c in text.split("\t")] if text.strip() else None


def _local_columns(path: Path) -> list[str] | None:
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    return header_columns(head, gzipped=head[:2] == b"\x1f\x8b")


def local_files(root: Path) -> list[Path]:
    """The files of a local release directory, as ``release_files`` lists them."""
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def local_signature(root: str | Path, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Signature of a local release directory (see the module docstring).

    Raises
    ------
    SourceUnavailable
        When ``root`` is not a directory or a file cannot be read.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceUnavailable(f"{root}: directory not found")
    before = (previous or {}).get("files", {})
    files: dict[str, dict[str, Any]] = {}
    columns: dict[str, list[str] | None] = {}
    try:
        for path in local_files(root):
            stat = path.stat()
            old = before.get(path.name)
            if old and old["size"] == stat.st_size and old["mtime_ns"] == stat.st_mtime_ns:
                digest = old["sha256"]
            else:
                digest = fingerprint(path)
            files[path.name] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
            }
            if _TABLE.search(path.name):
                columns[path.name] = (
                    (previous or {}).get("columns", {}).get(path.name)
                    if old and old["sha256"] == digest
                    else _local_columns(path)
                )
    except OSError as exc:
        raise SourceUnavailable(f"{root}: cannot read ({exc})") from None
    return {"kind": "local", "path": str(root), "files": files, "columns": columns}


def local_problem(signature: Mapping[str, Any]) -> str | None:
    """Why a local directory is not (yet) a release, or None when it looks complete."""
    names = list(signature["files"])
    if not any(_LEVEL4.search(n) for n in names):
        return "no level-4 GCTX (…Level4_….gctx) yet"
    if not any(_INST_INFO.search(n) for n in names):
        return "no inst_info table yet"
    return None


def incoming_releases(releases_dir: str | Path) -> dict[str, Path]:
    """Release name -> directory for each sub-directory of ``<releases_dir>/incoming``.

    Names that are not valid release names (letters, digits, ``_``, ``.``, ``-``) and hidden
    directories are left out.
    """
    base = Path(releases_dir) / INCOMING
    if not base.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(base.iterdir())
        if p.is_dir() and not p.name.startswith(".") and RELEASE_NAME.match(p.name)
    }


def invalid_incoming(releases_dir: str | Path) -> list[str]:
    """Sub-directories of ``incoming`` whose names cannot be release names."""
    base = Path(releases_dir) / INCOMING
    if not base.is_dir():
        return []
    return [
        p.name
        for p in sorted(base.iterdir())
        if p.is_dir() and not p.name.startswith(".") and not RELEASE_NAME.match(p.name)
    ]


# -- HTTP sources -----------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                name = unquote(urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1])
                if name:
                    self.names.append(name)


def listing_names(html: str) -> list[str]:
    """File names linked from an HTML directory listing (as GEO's FTP-over-HTTP serves)."""
    parser = _Links()
    parser.feed(html)
    return parser.names


def newest_dated_names(files: Mapping[str, str], listing: Iterable[str]) -> dict[str, str]:
    """Role -> the newest listed name matching each dated file name with any date.

    ``GSE70138_..._inst_info_2017-03-06.txt.gz`` matches ``GSE70138_..._inst_info_<date>.txt.gz``
    for every date; the latest date listed wins. Roles whose names carry no date, or whose
    pattern matches nothing in the listing, are left out.
    """
    listing = list(listing)
    out = {}
    for role, name in files.items():
        match = DATED_NAME.search(name)
        if not match:
            continue
        pattern = re.compile(
            re.escape(name[: match.start(1)])
            + r"(\d{4}-\d{2}-\d{2})"
            + re.escape(name[match.end(1) :])
            + "$"
        )
        dated = sorted((m.group(1), n) for n in listing if (m := pattern.match(n)))
        if dated:
            out[role] = dated[-1][1]
    return out


def _request(
    url: str, *, timeout: float, method: str = "GET", headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One request; the status and up to HEADER_BYTES of the body."""
    request = urllib.request.Request(
        url, method=method, headers={"Accept-Encoding": "identity", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(HEADER_BYTES)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise SourceUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailable(f"{url}: cannot connect ({reason})") from None


def remote_columns(url: str, *, timeout: float) -> list[str] | None:
    """Column names of a remote table, from a ranged GET of its first bytes."""
    _, head = _request(url, timeout=timeout, headers={"Range": f"bytes=0-{HEADER_BYTES - 1}"})
    return header_columns(head, gzipped=head[:2] == b"\x1f\x8b")


def remote_listing(base_url: str, *, timeout: float) -> list[str] | None:
    """Names in the directory listing at ``base_url``, or None when it has none."""
    request = urllib.request.Request(
        base_url.rstrip("/") + "/", headers={"Accept-Encoding": "identity"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get("Content-Type", "")
            body = response.read(8 << 20)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (403, 404, 405, 501):
            return None  # a mirror without listings: HEAD requests still tell changes
        raise SourceUnavailable(f"{base_url}/: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailable(f"{base_url}/: cannot connect ({reason})") from None
    if "html" not in kind and not body.lstrip().startswith(b"<"):
        return None
    return listing_names(body.decode("utf-8", errors="replace"))


def http_signature(
    source: ReleaseSource,
    previous: Mapping[str, Any] | None = None,
    *,
    timeout: float = 30.0,
    probe: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Signature of an HTTP release source (see the module docstring).

    Raises
    ------
    SourceUnavailable
        When the server cannot be reached or answers an error for one of the files.
    """
    probe = probe or download.probe
    before = previous or {}
    files: dict[str, dict[str, Any]] = {}
    for role, name in sorted(source.files.items()):
        try:
            remote = probe(source.url(role), timeout=timeout)
        except download.DownloadError as exc:
            raise SourceUnavailable(str(exc)) from None
        files[role] = {
            "name": name,
            "etag": remote.etag,
            "last_modified": remote.last_modified,
            "content_length": remote.content_length,
        }
    dated: dict[str, str] = {}
    if any(DATED_NAME.search(n) for n in source.files.values()):
        listing = remote_listing(source.base_url, timeout=timeout)
        if listing is not None:
            dated = newest_dated_names(source.files, listing)
    columns: dict[str, list[str] | None] = {}
    for role in METADATA_ROLES:
        if role not in files:
            continue
        now, old = files[role], before.get("files", {}).get(role)
        has_validator = now["etag"] is not None or now["last_modified"] is not None
        if old == now and has_validator and role in before.get("columns", {}):
            columns[role] = before["columns"][role]
        else:
            columns[role] = remote_columns(source.url(role), timeout=timeout)
    return {
        "kind": "http",
        "base_url": source.base_url,
        "files": files,
        "dated": dated,
        "columns": columns,
    }


# -- versions, cursor, decisions --------------------------------------------------------------


def version(signature: Mapping[str, Any]) -> str:
    """A short hash of the parts of a signature that define the release's content."""
    if signature["kind"] == "local":
        core = {
            "files": {n: [f["size"], f["sha256"]] for n, f in signature["files"].items()},
            "columns": signature.get("columns", {}),
        }
    else:
        core = {k: signature.get(k) for k in ("files", "dated", "columns")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def run_key(release: str, release_version: str) -> str:
    """The run key for ingesting one version of one release: requested once, ever."""
    return f"release:{release}:{release_version}"


def describe_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """A one-line account of what changed between two signatures of the same source."""
    if not old:
        return "new release"
    parts = []
    old_files, new_files = old.get("files", {}), new.get("files", {})
    added = sorted(set(new_files) - set(old_files))
    removed = sorted(set(old_files) - set(new_files))
    changed = sorted(
        k
        for k in set(new_files) & set(old_files)
        if _content(new_files[k]) != _content(old_files[k])
    )
    for label, keys in (("new", added), ("removed", removed), ("changed", changed)):
        if keys:
            parts.append(f"{label}: {', '.join(keys)}")
    for role, name in sorted(new.get("dated", {}).items()):
        if old.get("dated", {}).get(role) != name:
            parts.append(f"newly dated {role}: {name}")
    old_cols, new_cols = old.get("columns", {}), new.get("columns", {})
    for key in sorted(set(old_cols) & set(new_cols)):
        a, b = set(old_cols[key] or []), set(new_cols[key] or [])
        if a != b:
            parts.append(f"columns of {key}: +{sorted(b - a)} -{sorted(a - b)}")
    return "; ".join(parts) or "changed"


def _content(entry: Mapping[str, Any]) -> Any:
    return {k: v for k, v in entry.items() if k != "mtime_ns"}


def matches_manifest(signature: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> bool:
    """Whether ``release_files`` already recorded exactly this version (its JSON manifest).

    Local: every file's size and fingerprint. HTTP: every file's ETag / Last-Modified (at least
    one present), and no newer dated name than the one fetched.
    """
    if not manifest or manifest.get("kind") != signature["kind"]:
        return False
    recorded = manifest.get("files", {})
    if signature["kind"] == "local":
        return {n: _content(f) for n, f in signature["files"].items()} == {
            n: {k: f.get(k) for k in ("size", "sha256")} for n, f in recorded.items()
        }
    for role, f in signature["files"].items():
        if role == "checksums":
            continue
        name = f["name"][:-3] if f["name"].endswith(".gz") else f["name"]
        got = recorded.get(name)
        if (
            got is None
            or (f["etag"] is None and f["last_modified"] is None)
            or got.get("etag") != f["etag"]
            or got.get("last_modified") != f["last_modified"]
        ):
            return False
        if signature.get("dated", {}).get(role, f["name"]) != f["name"]:
            return False
    return True


@dataclass
class WatchEntry:
    """What the sensor remembers about one release source."""

    version: str | None = None  # the version last requested (or found ingested)
    signature: dict[str, Any] | None = None  # the signature last seen
    pending: str | None = None  # local: a new version seen once, waiting to settle
    checked: float = 0.0  # when the source was last checked (epoch seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchEntry:
        return cls(
            **{k: data.get(k) for k in ("version", "signature", "pending")},
            checked=float(data.get("checked") or 0.0),
        )


@dataclass
class WatchCursor:
    entries: dict[str, WatchEntry] = field(default_factory=dict)

    def to_json(self) -> str:
        return dump_cursor(
            {
                "format": CURSOR_FORMAT,
                "releases": {k: v.to_json() for k, v in sorted(self.entries.items())},
            }
        )

    @classmethod
    def from_json(cls, raw: str | None) -> WatchCursor:
        """The cursor from its JSON; an empty or unreadable cursor starts afresh."""
        data = load_cursor(raw)
        if data.get("format") != CURSOR_FORMAT:
            return cls()
        return cls({k: WatchEntry.from_json(v) for k, v in data.get("releases", {}).items()})


@dataclass(frozen=True)
class Decision:
    """What to do about one source on one tick."""

    action: str  # "request", "unchanged", "settling", "incomplete", "ingested", "later"
    entry: WatchEntry  # the new cursor entry
    version: str | None = None
    message: str = ""


def step(
    entry: WatchEntry | None,
    signature: Mapping[str, Any] | None,
    *,
    now: float,
    ingested: bool = False,
    settle: bool = False,
) -> Decision:
    """Decide what a tick does for one source, given its signature now.

    Parameters
    ----------
    entry
        The cursor entry (None the first time the source is seen).
    signature
        This tick's signature (None when the source was not checked this tick).
    ingested
        ``release_files`` already recorded this exact version (a fresh cursor, e.g. after
        ``l1000 demo`` or a cursor reset): remember it without requesting a run.
    settle
        Local directories: only request a version seen on two ticks in a row.
    """
    entry = entry or WatchEntry()
    if signature is None:
        return Decision("later", entry)
    new_version = version(signature)
    updated = WatchEntry(
        version=entry.version, signature=dict(signature), pending=None, checked=now
    )
    if new_version == entry.version:
        return Decision("unchanged", updated, new_version)
    if signature["kind"] == "local" and (problem := local_problem(signature)):
        return Decision("incomplete", updated, new_version, problem)
    if entry.version is None and ingested:
        updated.version = new_version
        return Decision("ingested", updated, new_version, "already ingested")
    if settle and entry.pending == new_version:
        message = "unchanged since the previous check: settled"
    else:
        message = describe_change(entry.signature if entry.version else None, signature)
    if settle and entry.pending != new_version:
        updated.pending = new_version
        return Decision(
            "settling",
            updated,
            new_version,
            f"{message}; waiting one more check for the files to settle",
        )
    updated.version = new_version
    return Decision("request", updated, new_version, message)
