"""Atomic file and directory replacement."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from l1000_assets.core.atomic import atomic_dir, atomic_file
from tests.conftest import REPO


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "good"
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_atomic_dir_swaps_whole_directory(tmp_path):
    target = tmp_path / "release"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["release"]


# --------------------------------------------------------------------------------------
# Temporaries of killed processes: removed at the start of the next write
# --------------------------------------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from l1000_assets.core.atomic import atomic_dir, atomic_file
kind, target = sys.argv[1], sys.argv[2]
block = (atomic_dir if kind == "dir" else atomic_file)(target)
tmp = block.__enter__()
if kind == "dir":
    (tmp / "part.parquet").write_bytes(b"x" * 100_000)
else:
    tmp.write_bytes(b"x" * 100_000)
    Path(str(tmp) + ".wal").write_bytes(b"wal")  # a companion, as DuckDB's write-ahead log
print(tmp, flush=True)
time.sleep(120)
"""


def _holder(kind: str, target) -> tuple[subprocess.Popen, Path]:
    """A real process that is in the middle of an atomic write of ``target``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline().strip()
    assert line, "the holding process did not start"
    return proc, Path(line)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: its pid no longer runs


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_temporaries_of_a_killed_process_go_at_the_next_write(tmp_path, kind):
    target = tmp_path / ("cell_id=A549" if kind == "dir" else "l1000.duckdb")
    write = atomic_dir if kind == "dir" else atomic_file
    killed, stale = _holder(kind, target)
    live, running = _holder(kind, target)
    try:
        _kill(killed)
        assert stale.exists() and running.exists()
        # Look-alikes that are not temporaries of this target stay.
        others = [tmp_path / f".other.tmp-{killed.pid}-0123abcd", tmp_path / ".notes.txt"]
        for other in others:
            other.write_text("keep")
        with write(target) as tmp:
            assert not stale.exists() and not Path(str(stale) + ".wal").exists()
            (tmp / "a").write_text("new") if kind == "dir" else tmp.write_text("new")
        assert running.exists(), "a running process's temporary must stay"
        assert all(o.read_text() == "keep" for o in others)
    finally:
        _kill(live)
    with write(target) as tmp:
        (tmp / "a").write_text("again") if kind == "dir" else tmp.write_text("again")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, *(o.name for o in others)]
    )


def test_a_copy_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    """A process killed between atomic_dir's two renames leaves the only good copy under its
    aside name: the next write puts it back instead of deleting it."""
    target = tmp_path / "cell_id=A549"
    with atomic_dir(target) as tmp:
        (tmp / "good.parquet").write_text("good")
    swap = (
        "import os, sys, time\n"
        "from l1000_assets.core.atomic import aside_name\n"
        "os.replace(sys.argv[1], aside_name(sys.argv[1]))\n"
        "print('moved', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", swap, str(target)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout.readline().strip() == "moved"
    _kill(proc)
    assert not target.exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(target):
            raise RuntimeError("this write fails too")
    assert (target / "good.parquet").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["cell_id=A549"]


def test_leftovers_of_the_earlier_naming_go_too(tmp_path):
    target = tmp_path / "cell_id=A549"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    legacy = tmp_path / f".cell_id=A549.tmp-{proc.pid}-0123abcd"
    legacy.mkdir()
    (legacy / "part.parquet").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["cell_id=A549"]
    # With the target gone, an earlier-named directory may be an aside copy: it stays.
    shutil.rmtree(target)
    legacy.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("3")
    assert legacy.is_dir()
