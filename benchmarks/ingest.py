"""Benchmark: the ``landmark_profiles`` ingest against a bare h5py read; profiles/s, peak memory.

On a synthetic release of ``--profiles`` profiles x 12,328 genes (and one of half that
size), measured side by side in one run:

* **bare read**: ``h5py`` opens the GCTX and reads ``matrix[s:e, lo:hi]`` in blocks of
  ``--block-size`` samples, ``lo..hi`` spanning the landmark positions (``pr_is_lm == 1``
  in gene_info, mapped to ``0/META/ROW/id``), takes the landmark columns and sums them.
  This is the floor any reader of the same landmark rows pays.
* **ingest**: what the Dagster asset ``landmark_profiles`` runs for all cell lines in one
  run: read the canonical ``instances`` and ``genes`` Parquet tables that ``release_metadata``
  wrote (``read_canonical_instances``, ``read_canonical_landmarks``), find the matrix and
  ``write_landmark_profiles_from_metadata`` for every cell line that has a non-control
  profile, into a scratch Parquet directory. The canonical tables are written first,
  untimed and in their own process, as ``release_metadata`` writes them: ``open_release``
  + ``reconcile``, then ``DataFrame.to_parquet``.
* **ingest, pyarrow writer** (with ``--compare-writers``): the same ingest of the larger
  release with ``writer="pyarrow"`` (pyarrow's own Parquet writer, its best settings for the
  landmark column) instead of the default fast page writer, run right after the fast one;
  the fast / pyarrow throughput and CPU ratios are reported best against best and run by
  run.

Throughput is counted over the release's profiles (every landmark row is read; the
ingest then drops controls), in MB/s of landmark data (``n x 978 x 4`` bytes).

Each measurement runs in a fresh child process, so its peak RSS is its own (the parent
imports only the standard library: on Linux a child's ``ru_maxrss`` starts from its
parent's peak). The releases are generated (untimed, also in a child) first. The OS page
cache is left as it is: one untimed bare-read pass over each release warms it, then bare
read and ingest alternate, ``--repeats`` times each, and the best (minimum) time, with its
user and system CPU seconds, and the highest peak RSS of the repeats are reported, then
every run's time and peak RSS (on a shared or virtualised machine they vary). The
throughput ratio is given best against best, and run by run (each ingest of the larger
release against the bare read run just before it): median and range. The peak memory
ratio of the two releases is given highest against highest (the conservative figure the
target is checked on) and median against median.

Usage::

    python benchmarks/ingest.py --profiles 200000 [--dir /tmp] [--reuse DIR]
        [--block-size 8192] [--repeats 3] [--compression none] [--write-threads 2]
        [--compare-writers]

Scratch space: ~50 KB per profile for the releases (about 15 GB at 200,000), deleted at
the end unless ``--reuse`` names a directory to keep them in.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N_LANDMARKS = 978
SEED = 0

CHILD_RELEASE = """
import json, sys, time
from l1000_assets.core.releases.synthetic import (ReleaseFiles, default_config,
                                                 write_synthetic_release)
root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = ReleaseFiles.for_release(root, n)
t0 = time.perf_counter()
generated = not files.manifest.exists()
if generated:
    write_synthetic_release(root, default_config(n_profiles=n, seed=seed))
print(json.dumps({"generated": generated, "seconds": time.perf_counter() - t0,
                  "root": str(files.root), "level4": str(files.level4),
                  "gene_info": str(files.gene_info)}))
"""

CHILD_BARE = """
import json, resource, sys, time
import h5py, numpy as np, pandas as pd
gctx, gene_info, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
genes = pd.read_csv(gene_info, sep="\\t", dtype=str)
with h5py.File(gctx, "r") as f:
    index = {g.decode(): i for i, g in enumerate(f["0/META/ROW/id"][()])}
rows = np.array([index[g] for g in genes.loc[genes["pr_is_lm"] == "1", "pr_gene_id"]])
lo, hi = int(rows.min()), int(rows.max()) + 1
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
total = 0.0
with h5py.File(gctx, "r") as f:
    m = f["0/DATA/0/matrix"]
    for s in range(0, m.shape[0], block):
        total += float(m[s:s + block, lo:hi][:, rows - lo].sum())
dt = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "checksum": total, "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime, "peak_rss_mb": r1.ru_maxrss / 1024}))
"""

CHILD_METADATA = """
import json, sys
from pathlib import Path
from l1000_assets.core.releases.local import open_release
from l1000_assets.core.releases.reconcile import reconcile
root, out = sys.argv[1], Path(sys.argv[2])
release = open_release("bench", root)
rec = reconcile(release)
# As release_metadata writes them (l1000_assets/defs/releases/assets.py).
instances = release.instances[release.instances["inst_id"].isin(rec.instances["inst_id"])]
out.mkdir(parents=True)
instances.to_parquet(out / "instances.parquet", index=False)
release.genes.to_parquet(out / "genes.parquet", index=False)
print(json.dumps({"dir": str(out)}))
"""

CHILD_INGEST = """
import json, resource, sys, time
from pathlib import Path
import pyarrow.compute as pc
from l1000_assets.core.lake.ingest import write_landmark_profiles_from_metadata
from l1000_assets.core.lake.read import read_canonical_instances, read_canonical_landmarks
from l1000_assets.core.releases.local import find_matrix
root, meta, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
block, compression, threads = int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
writer = sys.argv[7]
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
inst = read_canonical_instances(meta / "instances.parquet")
treated = pc.not_equal(inst["profile_class"], "control")
cells = sorted(pc.unique(pc.filter(inst["cell_id"], treated)).to_pylist())
report = write_landmark_profiles_from_metadata(
    find_matrix(root), inst, read_canonical_landmarks(meta / "genes.parquet"),
    {c: out / f"cell_id={c}" / "bench.parquet" for c in cells}, release="bench",
    metadata_path=meta / "instances.parquet", block_size=block,
    compression=None if compression == "none" else compression, write_threads=threads,
    writer=writer)
dt = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "rows": report.total, "cell_lines": len(cells),
                  "parquet_bytes": sum(p.stat().st_size for p in out.rglob("*.parquet")),
                  "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "peak_rss_mb": r1.ru_maxrss / 1024}))
"""


def _child(code: str, *args: object) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _release(parent: Path, n: int) -> dict:
    """Paths of the synthetic release of ``n`` profiles under ``parent``, generated if missing."""
    files = _child(CHILD_RELEASE, parent / f"n{n}", n, SEED)
    if files["generated"]:
        print(
            f"generated the release of {n:,} profiles in {files['seconds']:.0f} s (untimed)",
            flush=True,
        )
    else:
        print(f"reusing the release of {n:,} profiles in {files['root']}", flush=True)
    return files


def _bare(files: dict, block_size: int) -> dict:
    return _child(CHILD_BARE, files["level4"], files["gene_info"], block_size)


def _metadata(files: dict, scratch: Path) -> Path:
    """The canonical metadata tables of a release, written (untimed) under ``scratch``."""
    return Path(
        _child(CHILD_METADATA, files["root"], scratch / f"metadata-{Path(files['root']).name}")[
            "dir"
        ]
    )


def _ingest(
    files: dict, meta: Path, args: argparse.Namespace, scratch: Path, writer: str = "fast"
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lake-", dir=scratch))
    try:
        return _child(
            CHILD_INGEST,
            files["root"],
            meta,
            out,
            args.block_size,
            args.compression,
            args.write_threads,
            writer,
        )
    finally:
        shutil.rmtree(out)


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _best(runs: list[dict]) -> dict:
    """The fastest run, with the highest peak RSS of all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profiles",
        type=int,
        default=200_000,
        help="profiles in the larger release (default: 200,000)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/tmp"),
        help="parent of the scratch directory (default: /tmp)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="keep the releases in DIR: reuse them, generate missing ones there",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        default=8192,
        help="samples per block, for both readers (default: 8192)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of each measurement; the best is reported (default: 3)",
    )
    parser.add_argument(
        "--compression", default="none", help="Parquet codec of the lake files (default: none)"
    )
    parser.add_argument(
        "--write-threads",
        type=int,
        default=2,
        help="threads writing Parquet beside the matrix reads (default: 2)",
    )
    parser.add_argument(
        "--compare-writers",
        action="store_true",
        help="also ingest the larger release with writer='pyarrow' and report fast / pyarrow",
    )
    args = parser.parse_args()
    full_n = args.profiles
    half_n = full_n // 2
    scratch = Path(tempfile.mkdtemp(prefix="l1000-bench-ingest-", dir=args.dir))
    try:
        parent = args.reuse or scratch
        half, full = _release(parent, half_n), _release(parent, full_n)
        half_meta, full_meta = _metadata(half, scratch), _metadata(full, scratch)
        for files in (half, full):  # untimed: warm the page cache for every timed run
            _bare(files, args.block_size)
        runs: dict[str, list[dict]] = {"bare": [], "half": [], "full": [], "pyarrow": []}
        for _ in range(args.repeats):
            runs["bare"].append(_bare(full, args.block_size))
            runs["full"].append(_ingest(full, full_meta, args, scratch))
            if args.compare_writers:
                runs["pyarrow"].append(_ingest(full, full_meta, args, scratch, "pyarrow"))
            runs["half"].append(_ingest(half, half_meta, args, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bare, half_r, full_r = (_best(runs[k]) for k in ("bare", "half", "full"))

    print(
        f"\nblock size {args.block_size:,} samples; Parquet compression {args.compression}, "
        f"{args.write_threads} writer thread(s); page cache warmed by one untimed bare read "
        f"of each release; bare read and ingest alternated, best of {args.repeats} runs "
        f"each (peak RSS: the highest), each run in a fresh process\n"
    )
    print(
        f"{'what':<16}{'n':>10}{'seconds':>10}{'profiles/s':>13}{'MB/s':>9}"
        f"{'user s':>9}{'sys s':>8}{'peak RSS MB':>13}"
    )
    rows = [
        ("bare h5py read", full_n, bare),
        ("ingest", half_n, half_r),
        ("ingest", full_n, full_r),
    ]
    if args.compare_writers:
        rows.append(("ingest pyarrow", full_n, _best(runs["pyarrow"])))
    for what, n, r in rows:
        mb = n * N_LANDMARKS * 4 / 1e6
        print(
            f"{what:<16}{n:>10,}{r['seconds']:>10.2f}{n / r['seconds']:>13,.0f}"
            f"{mb / r['seconds']:>9,.0f}{r['user_s']:>9.2f}{r['sys_s']:>8.2f}"
            f"{r['peak_rss_mb']:>13,.0f}"
        )
    labels = {
        "bare": "bare",
        "half": f"ingest {half_n:,}",
        "full": f"ingest {full_n:,}",
        "pyarrow": f"ingest pyarrow {full_n:,}",
    }
    for what, key, digits in (("seconds", "seconds", 2), ("peak RSS MB", "peak_rss_mb", 0)):
        every = [
            f"{labels[k]} " + ", ".join(f"{r[key]:.{digits}f}" for r in rs)
            for k, rs in runs.items()
            if rs
        ]
        print(f"every run, {what}: " + "; ".join(every))
    for n, r in ((half_n, half_r), (full_n, full_r)):
        print(
            f"parquet output, {n:,} profiles: {r['parquet_bytes'] / 1e6:,.0f} MB "
            f"({r['rows']:,} non-control profiles, {r['cell_lines']} cell lines)"
        )
    pairs = sorted(b["seconds"] / f["seconds"] for b, f in zip(runs["bare"], runs["full"]))
    median = _median(pairs)
    print(
        f"\ningest / bare read throughput: {bare['seconds'] / full_r['seconds']:.2f}x, best "
        f"against best (target >= 0.8); run by run (each ingest against the bare read just "
        f"before it): median {median:.2f}x, range {pairs[0]:.2f}-{pairs[-1]:.2f}x"
    )
    print(f"peak memory ingest {full_n:,}: {full_r['peak_rss_mb']:,.0f} MB (target < 1500)")
    med_half, med_full = (_median([r["peak_rss_mb"] for r in runs[k]]) for k in ("half", "full"))
    print(
        f"peak memory {full_n:,} vs {half_n:,}: "
        f"{full_r['peak_rss_mb'] / half_r['peak_rss_mb']:.2f}x, highest against highest "
        f"({full_r['peak_rss_mb']:,.0f} / {half_r['peak_rss_mb']:,.0f} MB; target within "
        f"1.2x); median against median {med_full / med_half:.2f}x "
        f"({med_full:,.0f} / {med_half:,.0f} MB)"
    )
    if args.compare_writers:
        _print_writer_ratio(runs["full"], runs["pyarrow"], full_n)


def _cpu(run: dict) -> float:
    return run["user_s"] + run["sys_s"]


def _print_writer_ratio(fast_runs: list[dict], pyarrow_runs: list[dict], n: int) -> None:
    """Fast against pyarrow writer, the same release: throughput and CPU, best against
    best and run by run (each pyarrow ingest against the fast one just before it)."""
    fast, slow = _best(fast_runs), _best(pyarrow_runs)
    pairs = sorted(p["seconds"] / f["seconds"] for f, p in zip(fast_runs, pyarrow_runs))
    cpu = sorted(_cpu(p) / _cpu(f) for f, p in zip(fast_runs, pyarrow_runs))
    print(
        f"\nfast / pyarrow writer, ingest {n:,}: throughput "
        f"{slow['seconds'] / fast['seconds']:.2f}x best against best, run by run median "
        f"{_median(pairs):.2f}x (range "
        f"{pairs[0]:.2f}-{pairs[-1]:.2f}x); CPU seconds {_cpu(slow) / _cpu(fast):.2f}x best "
        f"against best, run by run median {_median(cpu):.2f}x; peak RSS "
        f"{fast['peak_rss_mb']:,.0f} / {slow['peak_rss_mb']:,.0f} MB"
    )


if __name__ == "__main__":
    main()
