"""The watched queries folder: which files are new or changed since the last scan (a query
file with its manifest and the sample sheet that names, see ``manifest``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from l1000_assets.core.connectivity.gene_sets import is_gene_set_file
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.readacross.manifest import MANIFEST_SUFFIX, manifest_path, read_manifest
from l1000_assets.core.readacross.query_files import is_query_file


def query_paths(
    folder: Path, files: list[str], listing: Callable[[Path], list[Path]]
) -> list[Path]:
    """The query files a run reads: ``files`` as given (relative ones under ``folder``), or,
    when none are given, ``listing(folder)`` (the folder's files of the asset's kind)."""
    if not files:
        return listing(folder)
    return [p if p.is_absolute() else folder / p for p in (Path(f).expanduser() for f in files)]


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def scan_queries(
    folder: str | Path,
    seen: dict[str, str],
    *,
    settle_seconds: float = 2.0,
    now: float | None = None,
    accept: Callable[[Path], bool] = is_query_file,
) -> tuple[list[Path], list[Path], dict[str, str]]:
    """Query files in ``folder`` (not recursive) that are new or changed since ``seen``
    (path -> size:mtime fingerprint), and files of other types; ``accept`` says which
    files are query files (default: profile files).

    Files modified in the last ``settle_seconds`` (still being copied) wait for the next
    scan. Returns ``(changed, unsupported, fingerprints)``: the fingerprints of every file
    handled now or before, to pass as ``seen`` next time (removed files drop out).
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    changed, unsupported, current = [], [], {}
    if not folder.is_dir():
        return changed, unsupported, current
    auxiliary = _auxiliary_files(folder)
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() == MANIFEST_SUFFIX or path.resolve() in auxiliary:
            continue  # read with their query file, whose fingerprint includes them
        key = str(path.resolve())
        fingerprint = _query_fingerprint(path)
        if now - path.stat().st_mtime < settle_seconds:
            if key in seen:
                current[key] = seen[key]
            continue
        current[key] = fingerprint
        if seen.get(key) == fingerprint:
            continue
        (changed if accept(path) else unsupported).append(path)
    return changed, unsupported, current


def _auxiliary_files(folder: Path) -> set[Path]:
    """Files that manifests in ``folder`` name (sample sheets, gene mappings)."""
    out: set[Path] = set()
    for manifest in folder.glob(f"*{MANIFEST_SUFFIX}"):
        query = manifest.with_name(manifest.name[: -len(MANIFEST_SUFFIX)])
        try:
            out.update(p.resolve() for p in read_manifest(query).referenced())
        except L1000InputError:
            continue  # reported when its query file is read
    return out


def _query_fingerprint(path: Path) -> str:
    """The file's fingerprint, with its manifest's and the files that one names: a new
    sample sheet re-ranks the query."""
    parts = [file_fingerprint(path)]
    manifest = manifest_path(path)
    if manifest.is_file():
        parts.append(file_fingerprint(manifest))
        try:
            parts += [file_fingerprint(p) for p in read_manifest(path).referenced()]
        except L1000InputError:
            pass
    return "+".join(parts)


def queries_in(folder: str | Path) -> list[Path]:
    """Every profile query file in ``folder`` (sorted), without the files manifests name;
    gene-set files (:func:`~l1000_assets.core.connectivity.gene_sets.is_gene_set_file`) are
    left to the gene-set queries."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    auxiliary = _auxiliary_files(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if is_query_file(p) and not is_gene_set_file(p) and p.resolve() not in auxiliary
    )
