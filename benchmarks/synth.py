"""Benchmark: write a synthetic release; print profiles/s and peak memory.

Each measurement runs in a fresh child process so its peak RSS is its own. Printed side by
side in one run:

* the synthetic release at ``--profiles`` and at half that size (peak memory must not
  grow with the release: it is streamed plate by plate);
* a bare h5py write of a matrix of the same shape and chunking (random blocks generated
  up front), the floor any GCTX writer pays for the bytes.

Usage: ``python benchmarks/synth.py --profiles 200000 [--dir /tmp/bench]``
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD_SYNTH = """
import json, resource, sys, time
from l1000_assets.core.releases.synthetic import default_config, write_synthetic_release
n, out = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
files = write_synthetic_release(out, default_config(n_profiles=n))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "peak_rss_mb": peak,
                  "bytes": files.level4.stat().st_size}))
"""

CHILD_BARE = """
import json, resource, sys, time
import h5py, numpy as np
n, out = int(sys.argv[1]), sys.argv[2]
block = np.random.default_rng(0).standard_normal((1000, 12328), dtype=np.float32)
t0 = time.perf_counter()
with h5py.File(out, "w") as f:
    d = f.create_dataset("0/DATA/0/matrix", shape=(n, 12328), dtype="float32", chunks=(1000, 1000))
    for s in range(0, n, 1000):
        e = min(s + 1000, n)
        d[s:e] = block[: e - s]
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "peak_rss_mb": peak,
                  "bytes": __import__("os").path.getsize(out)}))
"""


def _child(code: str, n: int, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, str(n), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="scratch directory (needs ~50 KB per profile; default: a temp dir)",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="l1000-bench-", dir=args.dir))
    rows = []
    try:
        for label, code, n in (
            ("synthetic release", CHILD_SYNTH, args.profiles // 2),
            ("synthetic release", CHILD_SYNTH, args.profiles),
            ("bare h5py write", CHILD_BARE, args.profiles),
        ):
            out = scratch / f"run-{len(rows)}"
            if code is CHILD_BARE:
                out = out.with_suffix(".gctx")
            r = _child(code, n, out)
            rows.append((label, n, r))
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            print(
                f"{label:<18} n={n:>9,}  {r['seconds']:8.1f} s"
                f"  {n / r['seconds']:9,.0f} profiles/s"
                f"  {r['bytes'] / r['seconds'] / 1e6:7.0f} MB/s"
                f"  peak RSS {r['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    half, full, bare = rows
    print(
        f"\npeak memory, {full[1]:,} vs {half[1]:,} profiles: "
        f"{full[2]['peak_rss_mb'] / half[2]['peak_rss_mb']:.2f}x"
    )
    print(f"synthetic throughput / bare h5py write: {bare[2]['seconds'] / full[2]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
