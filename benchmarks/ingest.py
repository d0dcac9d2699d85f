"""Benchmark: the ``landmark_profiles`` ingest against a bare h5py read; profiles/s, peak memory.

On a synthetic release of ``--profiles`` profiles x 12,328 genes (and one of half that
size), measured side by side in one run:

* **bare read**: ``h5py`` opens the GCTX and reads ``matrix[s:e, lo:hi]`` in blocks of
  ``--block-size`` samples, ``lo..hi`` spanning the landmark positions (``pr_is_lm == 1``
  in gene_info, mapped to ``0/META/ROW/id``), takes the landmark columns and sums them.
  This is the floor any reader of the same landmark rows pays.
* **ingest**: what the Dagster asset ``landmark_profiles`` runs for all cell lines in one
  run: ``open_release`` + ``reconcile`` + ``write_landmark_profiles`` for every cell line
  that has a non-control profile, into a scratch Parquet directory.

Throughput is counted over the release's profiles (every landmark row is read; the
ingest then drops controls), in MB/s of landmark data (``n x 978 x 4`` bytes).

Each measurement runs in a fresh child process, so its peak RSS is its own (the parent
imports only the standard library: on Linux a child's ``ru_maxrss`` starts from its
parent's peak). The releases are generated (untimed, also in a child) first. The OS page cache is left as it is: one untimed bare-read
pass over each release warms it, then bare read and ingest alternate, ``--repeats`` times
each, and the best (minimum) time and the highest peak RSS of the repeats are reported.

Usage::

    python benchmarks/ingest.py --profiles 200000 [--dir /tmp] [--reuse DIR]
        [--block-size 8192] [--repeats 2]

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
from l1000_assets.core.synthetic import ReleaseFiles, default_config, write_synthetic_release
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
t0 = time.perf_counter()
total = 0.0
with h5py.File(gctx, "r") as f:
    m = f["0/DATA/0/matrix"]
    for s in range(0, m.shape[0], block):
        total += float(m[s:s + block, lo:hi][:, rows - lo].sum())
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "checksum": total,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_INGEST = """
import json, resource, sys, time
from pathlib import Path
from l1000_assets.core.ingest import open_release, reconcile, write_landmark_profiles
root, out, block = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
release = open_release("bench", root)
rec = reconcile(release)
inst = release.instances
cells = sorted(inst.loc[inst["profile_class"] != "control", "cell_id"].unique())
report = write_landmark_profiles(
    release, rec, {c: out / f"cell_id={c}" / "bench.parquet" for c in cells}, block_size=block)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rows": report.total, "cell_lines": len(cells),
                  "parquet_bytes": sum(p.stat().st_size for p in out.rglob("*.parquet")),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _release(parent: Path, n: int) -> dict:
    """Paths of the synthetic release of ``n`` profiles under ``parent``, generated if missing."""
    files = _child(CHILD_RELEASE, parent / f"n{n}", n, SEED)
    if files["generated"]:
        print(f"generated the release of {n:,} profiles in {files['seconds']:.0f} s (untimed)",
              flush=True)
    else:
        print(f"reusing the release of {n:,} profiles in {files['root']}", flush=True)
    return files


def _bare(files: dict, block_size: int) -> dict:
    return _child(CHILD_BARE, files["level4"], files["gene_info"], block_size)


def _ingest(files: dict, block_size: int, scratch: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lake-", dir=scratch))
    try:
        return _child(CHILD_INGEST, files["root"], out, block_size)
    finally:
        shutil.rmtree(out)


def _best(runs: list[dict]) -> dict:
    """The fastest run, with the highest peak RSS of all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200_000,
                        help="profiles in the larger release (default: 200,000)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"),
                        help="parent of the scratch directory (default: /tmp)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="keep the releases in DIR: reuse them, generate missing ones there")
    parser.add_argument("--block-size", type=int, default=8192,
                        help="samples per block, for both readers (default: 8192)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed runs of each measurement; the best is reported (default: 2)")
    args = parser.parse_args()
    full_n = args.profiles
    half_n = full_n // 2
    scratch = Path(tempfile.mkdtemp(prefix="l1000-bench-ingest-", dir=args.dir))
    try:
        parent = args.reuse or scratch
        half, full = _release(parent, half_n), _release(parent, full_n)
        for files in (half, full):  # untimed: warm the page cache for every timed run
            _bare(files, args.block_size)
        runs: dict[str, list[dict]] = {"bare": [], "half": [], "full": []}
        for _ in range(args.repeats):
            runs["bare"].append(_bare(full, args.block_size))
            runs["full"].append(_ingest(full, args.block_size, scratch))
            runs["half"].append(_ingest(half, args.block_size, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bare, half_r, full_r = (_best(runs[k]) for k in ("bare", "half", "full"))

    print(f"\nblock size {args.block_size:,} samples; page cache warmed by one untimed bare read "
          f"of each release; bare read and ingest alternated, best of {args.repeats} runs "
          f"each (peak RSS: the highest), each run in a fresh process\n")
    print(f"{'what':<16}{'n':>10}{'seconds':>10}{'profiles/s':>13}{'MB/s':>9}"
          f"{'peak RSS MB':>13}")
    for what, n, r in (("bare h5py read", full_n, bare), ("ingest", half_n, half_r),
                       ("ingest", full_n, full_r)):
        mb = n * N_LANDMARKS * 4 / 1e6
        print(f"{what:<16}{n:>10,}{r['seconds']:>10.2f}{n / r['seconds']:>13,.0f}"
              f"{mb / r['seconds']:>9,.0f}{r['peak_rss_mb']:>13,.0f}")
    for n, r in ((half_n, half_r), (full_n, full_r)):
        print(f"parquet output, {n:,} profiles: {r['parquet_bytes'] / 1e6:,.0f} MB "
              f"({r['rows']:,} non-control profiles, {r['cell_lines']} cell lines)")
    print(f"\ningest / bare read throughput: {bare['seconds'] / full_r['seconds']:.2f}x "
          f"(target >= 0.8)")
    print(f"peak memory ingest {full_n:,}: {full_r['peak_rss_mb']:,.0f} MB (target < 1500)")
    print(f"peak memory {full_n:,} vs {half_n:,}: "
          f"{full_r['peak_rss_mb'] / half_r['peak_rss_mb']:.2f}x (target within 1.2x)")


if __name__ == "__main__":
    main()
