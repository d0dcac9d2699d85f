"""Benchmark: top-10 nearest perturbagens of one query vector, SQL macro vs numpy.

For each size (default 100,000 and 1,000,000), random unit vectors (``--dim`` floats,
seeded) are written as a ``perturbagen_embeddings`` Parquet file, with a ``perturbagens``
metadata table, into a temporary lake; the catalog is built from the repository's ``sql/``
exactly as the ``warehouse`` asset builds it (the embeddings become a FLOAT[d] table), and
opened read-only. Then, for ``--repeats`` query vectors:

* SQL: ``SELECT * FROM nearest_to(?, k := 10, shrna := 'hairpin')`` with the vector as a plain
  list (list_inner_product, ORDER BY ... LIMIT: a top-k, not a full sort; MOA/target joined
  at build time), fetched;
* numpy: ``X @ q``, ``argpartition`` for the top 10, sorted.

Both answers must agree. Prints the median (and 90th percentile) ms of each, their ratio,
and the catalog build time. One warm-up query each is not timed.

Usage: ``python benchmarks/query.py [--sizes 100000 1000000] [--repeats 21] [--dim 32]``
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.catalog.build import build_catalog, connect_read_only
from l1000_assets.core.embeddings.vectors import (
    DIM_KEY,
    MODEL_VERSION_KEY,
    vector_array,
)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
TYPES = np.array(["trt_cp", "trt_sh", "trt_oe"])


def write_lake(lake: Path, x: np.ndarray, rng: np.random.Generator) -> None:
    n, dim = x.shape
    ids = pa.array([f"P{i:07d}" for i in range(n)])
    types = pa.array(TYPES[rng.integers(0, 3, n)])
    embeddings = pa.table(
        {
            "pert_id": ids,
            "pert_iname": ids,
            "pert_type": types,
            "cell_id": pa.nulls(n, pa.string()),
            "n_profiles": pa.array(np.full(n, 3)),
            "n_signatures": pa.array(np.ones(n, np.int64)),
            "n_cell_lines": pa.array(np.ones(n, np.int64)),
            "embedding": vector_array(x),
        }
    )
    embeddings = embeddings.replace_schema_metadata(
        {MODEL_VERSION_KEY: b"benchmark", DIM_KEY: str(dim).encode()}
    )
    (lake / "embeddings").mkdir(parents=True)
    pq.write_table(embeddings, lake / "embeddings" / "perturbagens.parquet")
    meta = lake / "metadata" / "release=benchmark"
    meta.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "pert_id": ids,
                "pert_iname": ids,
                "pert_type": types,
                "moa": pa.array([f"MOA {i % 500}" for i in range(n)]),
                "target": pa.array([f"T{i % 700}" for i in range(n)]),
                "release": pa.array(["benchmark"] * n),
            }
        ),
        meta / "perturbagens.parquet",
    )


def numpy_top_k(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = x @ q
    part = np.argpartition(-s, k - 1)[:k]
    return part[np.argsort(-s[part], kind="stable")]


def run(n: int, dim: int, k: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = rng.standard_normal((repeats + 1, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="l1000-query-bench-") as tmp:
        lake = Path(tmp) / "lake"
        write_lake(lake, x, rng)
        t0 = time.perf_counter()
        build_catalog(Path(tmp) / "catalog.duckdb", SQL_DIR, lake)
        build_s = time.perf_counter() - t0
        # Every row of the file is a candidate (the benchmark's shRNAs are not collapsed).
        sql = "SELECT * FROM nearest_to(?, k := ?, shrna := 'hairpin')"
        sql_ms, np_ms = [], []
        with connect_read_only(Path(tmp) / "catalog.duckdb") as con:
            threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                rows = con.execute(sql, [q.tolist(), k]).fetchall()
                t1 = time.perf_counter()
                top = numpy_top_k(x, q, k)
                t2 = time.perf_counter()
                if [r[2] for r in rows] != [f"P{j:07d}" for j in top]:
                    raise SystemExit(f"SQL and numpy disagree at n={n}, query {i}")
                if i:  # the first query warms caches
                    sql_ms.append((t1 - t0) * 1e3)
                    np_ms.append((t2 - t1) * 1e3)
    return {
        "n": n,
        "sql": statistics.median(sql_ms),
        "numpy": statistics.median(np_ms),
        "sql_p90": float(np.percentile(sql_ms, 90)),
        "numpy_p90": float(np.percentile(np_ms, 90)),
        "build_s": build_s,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"top-{args.k} nearest perturbagens of one {args.dim}-d query vector, "
        f"median of {args.repeats} queries (after one warm-up)"
    )
    print(
        f"{'embeddings':>12} {'SQL macro ms':>13} {'numpy ms':>9} {'ratio':>6} "
        f"{'SQL p90':>8} {'numpy p90':>10} {'catalog build s':>16} {'threads':>8}"
    )
    for n in args.sizes:
        r = run(n, args.dim, args.k, args.repeats, args.seed)
        print(
            f"{r['n']:>12,} {r['sql']:>13.1f} {r['numpy']:>9.1f} "
            f"{r['sql'] / r['numpy']:>6.2f} {r['sql_p90']:>8.1f} {r['numpy_p90']:>10.1f} "
            f"{r['build_s']:>16.1f} {r['threads']:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
