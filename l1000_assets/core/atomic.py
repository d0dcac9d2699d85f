"""Atomic writes: write to a temporary sibling, rename into place on success.

A failed or interrupted write leaves the previous good file (or directory) untouched.

Temporaries are named ``.<name>.tmp-<pid>@<host>-<hex>`` beside the target (and the old
directory an :func:`atomic_dir` swap moves aside ``.<name>.old-<pid>@<host>-<hex>``), so a
process killed mid-write (``kill -9``, out of memory, a full disk) leaves them behind. Each
write first removes the ones of its own target whose process no longer runs on this host,
with their companions (``<temporary>.wal``, as DuckDB writes one), and puts back an old
directory moved aside by a swap that was killed between its two renames (then the only
good copy). Temporaries of running processes, of other hosts (a data root on a shared
disk) and of other targets are left alone. Leftovers of the earlier naming,
``.<name>.tmp-<pid>-<hex>``, count as this host's, except a directory while its target is
missing (that naming gave aside copies the same name).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

#: This host, as temporaries name it (letters, digits and '-' only).
HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32] or "host"
_TMP, _OLD = "tmp", "old"


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}@{HOST}-{uuid.uuid4().hex[:8]}")


def aside_name(path: str | Path) -> Path:
    """A fresh name beside ``path`` for its old copy while :func:`atomic_dir` swaps."""
    return _sibling(Path(path), _OLD)


def _leftover(name: str) -> re.Pattern[str]:
    """Temporaries and aside copies of target ``name``: kind, pid, host (None in the
    earlier naming) and an optional companion suffix."""
    return re.compile(
        rf"\.{re.escape(name)}\.(?P<kind>{_TMP}|{_OLD})-(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9-]*))?"
        r"-[0-9a-f]{8}(?P<companion>\.[A-Za-z0-9]+)?"
    )


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # another writer cleaned it first
        pass


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes of this host that no longer
    run, and put back its old directory if a killed swap left only that; returns what was
    removed or put back."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = _leftover(path.name)
    stale: list[tuple[Path, str]] = []
    for entry in parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] not in (None, HOST) or _running(int(match["pid"])):
            continue
        if match["host"] is None and entry.is_dir() and not path.exists():
            # The earlier naming gave an aside copy a temporary's name: with the target
            # gone, this may be its only good copy. Left for the user to look at.
            continue
        kind = _OLD if match["kind"] == _OLD and not match["companion"] else _TMP
        stale.append((entry, kind))
    done = []
    asides = sorted((p for p, kind in stale if kind == _OLD), key=lambda p: p.stat().st_mtime)
    if asides and not path.exists():
        with contextlib.suppress(FileNotFoundError):
            os.replace(asides.pop(), path)
            done.append(path)
    for entry, kind in stale:
        if kind == _TMP or entry in asides:
            _remove(entry)
            done.append(entry)
    return done


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Stale temporaries of ``path`` are removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _sibling(path, _TMP)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; swap it in for ``path`` on success.

    The old directory is moved aside first and deleted only after the new one is in place,
    so at every moment either the old or the new complete directory exists under ``path``
    (or under its aside name, if the process dies between the two renames: the next write
    puts it back). Stale temporaries of ``path`` are removed first
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _sibling(path, _TMP)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = aside_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
