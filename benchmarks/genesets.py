"""Benchmark: gene-set queries (2 x 150 genes) against a BING-space signature store.

Builds a store of ``--signatures`` random signatures over ``--genes`` genes (standard normal
z-scores, seeded; 10 cell lines x 2 perturbagen types, 4 signatures per perturbagen) with the
store writer (ranks computed, float16 z), then its tau reference (``--reference-queries``),
and times side by side, in one run:

* **one query** and **a batch of ``--batch`` queries**: WTCS of every signature with the
  compiled gene-major kernel (:func:`l1000_assets.core.connectivity.scoring.query_wtcs`)
  beside a vectorized numpy implementation of the same score (the rows of the query's genes
  gathered per block of signatures, sorted, and the ES taken from the hits' positions with
  :func:`l1000_assets.core.connectivity.kernels.es_from_hits`); checked equal;
* the whole query engine (WTCS, NCS, tau, summaries per perturbagen and cell line, top hits,
  MOA enrichment): one query over the whole store and over one cell line (a tenth of it),
  the rank test, and 16 queries together; with the first pass's WTCS kept for the second
  (the default) and computed again (``keep_bytes=0``, what a store too wide for the kept
  bytes gets);
* the store's and the reference's build time and size.

Queries are scored 16 at a time, 8,192 signatures at a time, and keep their top 50
signatures, merged block by block, as the engine does; the WTCS timings are also shown over
a quarter of the store, so that memory can be compared across store widths.

Memory: the peak heap, what Python and numpy allocate (tracemalloc, in a run of its own:
the compiled kernels' per-thread buffers, a few gene-sized arrays, are not in it), and the
peak anonymous RSS above the level before each timed part (sampled every 2 ms from
/proc/self/status, after handing freed memory back with ``malloc_trim``; the memory-mapped
store's pages are file-backed and reported apart, as RssFile), so "beyond the store" is what
a query allocates. The load average of the machine
is printed before and after (other processes share its cores).

Usage: ``python benchmarks/genesets.py [--signatures 100000] [--batch 100] [--dir DIR]``
(``--dir`` keeps the store and reference for a second run; ``--rebuild`` makes them again).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from l1000_assets.core.connectivity.engine import ConnectivityEngine, QueryOptions
from l1000_assets.core.connectivity.gene_sets import RawQuery
from l1000_assets.core.connectivity.kernels import es_from_hits
from l1000_assets.core.connectivity.reference import write_reference
from l1000_assets.core.connectivity.scoring import query_wtcs
from l1000_assets.core.connectivity.store import SignatureStore, StoreWriter, abs_weight_table
from l1000_assets.core.evaluation.connectivity import rank_profiles, wtcs_from_es


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so that what a run allocates shows in
    its RSS instead of reusing what an earlier run left in the allocator."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Peak:
    """Peak anonymous and file-backed RSS above their level at entry, sampled; and, with
    ``heap=True``, the peak of what Python and numpy allocate (tracemalloc: exact, but it
    slows the run, so it is measured in a run of its own)."""

    def __init__(self, heap: bool = False):
        self.heap_traced = heap
        self.heap = 0

    def __enter__(self):
        _trim()
        if self.heap_traced:
            tracemalloc.start()
        self.base_anon, self.base_file = _status("RssAnon:"), _status("RssFile:")
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.anon = max(self.anon, _status("RssAnon:") - self.base_anon)
            self.file = max(self.file, _status("RssFile:") - self.base_file)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.heap_traced:
            self.heap = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def build_store(path: Path, n_sig: int, n_genes: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    genes = pd.DataFrame(
        {
            "gene_id": [str(10_000 + i) for i in range(n_genes)],
            "symbol": [f"G{i}" for i in range(n_genes)],
            "is_landmark": np.arange(n_genes) < 978,
        }
    )
    cells = np.array([f"CELL{i}" for i in range(10)])
    n_pert = max(1, n_sig // 4)
    index = pd.DataFrame(
        {
            "sig_id": [f"s{i}" for i in range(n_sig)],
            "pert_id": [f"P{i % n_pert}" for i in range(n_sig)],
            "pert_iname": [f"pert-{i % n_pert}" for i in range(n_sig)],
            "pert_type": np.where(np.arange(n_sig) % n_pert % 5 == 0, "trt_sh", "trt_cp"),
            "cell_id": cells[np.arange(n_sig) // n_pert % 10],
            "pert_dose": 10.0,
            "pert_dose_unit": "uM",
            "pert_time": 24.0,
            "pert_time_unit": "h",
            "n_replicates": 3,
        }
    )
    table = pa.Table.from_pandas(index, preserve_index=False)
    t0 = time.perf_counter()
    path.mkdir(parents=True)
    writer = StoreWriter(path, genes, n_sig, "bing")
    step = 2048
    for c0 in range(0, n_sig, step):
        z = rng.standard_normal((min(step, n_sig - c0), n_genes), dtype=np.float32)
        writer.write(rank_profiles(z).ranks, z, table.slice(c0, len(z)))
    writer.close({"benchmark": True})
    return time.perf_counter() - t0


_TABLE = abs_weight_table()


def numpy_wtcs(store: SignatureStore, up, down, cols) -> np.ndarray:
    """The same WTCS, vectorized with numpy, of the contiguous columns ``cols``: the rows
    of the query's genes, sorted by rank, and the ES from the hits' positions."""
    n = store.n_genes
    span = slice(int(cols[0]), int(cols[-1]) + 1)
    out = np.empty((len(up), len(cols)), np.float32)
    for q, (u, d) in enumerate(zip(up, down)):
        es = []
        for genes in (u, d):
            ranks = np.asarray(store.ranks[genes, span], np.int64)  # (G, B)
            weights = _TABLE[store.zbits[genes, span]]
            order = np.argsort(ranks, axis=0)
            pos = np.take_along_axis(ranks, order, axis=0).T
            w = np.take_along_axis(weights, order, axis=0).T
            es.append(es_from_hits(pos, w, n))
        out[q] = wtcs_from_es(es[0], es[1])
    return out


CHUNK = 16  # queries scored together, as the engine does
TOP = 50  # hits kept per query


BLOCK = 8192  # signatures scored together, as the engine does


def top_hits(score, up, down, n_sig: int):
    """Score queries ``CHUNK`` at a time and ``BLOCK`` signatures at a time with
    ``score(up, down, cols)`` and keep each query's ``TOP`` best signatures (indices,
    scores), merged block by block as the engine keeps its running top rows: memory is a
    block's scores, not the store's width."""
    index, values = [], []
    for q0 in range(0, len(up), CHUNK):
        best_i = best_s = None
        for c0 in range(0, n_sig, BLOCK):
            cols = np.arange(c0, min(c0 + BLOCK, n_sig), dtype=np.int64)
            s = score(up[q0 : q0 + CHUNK], down[q0 : q0 + CHUNK], cols)
            i = np.broadcast_to(cols, s.shape)
            if best_s is not None:
                s, i = np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i], axis=1)
            keep = np.argpartition(-s, min(TOP, s.shape[1] - 1), axis=1)[:, :TOP]
            best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        index.append(np.take_along_axis(best_i, order, axis=1))
        values.append(np.take_along_axis(best_s, order, axis=1))
    return np.concatenate(index), np.concatenate(values)


def timed(fn, repeat: int = 3):
    """(best seconds, peak, result) of ``repeat`` calls; the peak's ``heap`` from one more
    call, traced."""
    best, peak, result = np.inf, None, None
    for _ in range(repeat):
        with Peak() as p:
            t0 = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - t0
        if seconds < best:
            best, peak = seconds, p
    with Peak(heap=True) as traced:
        fn()
    peak.heap = traced.heap
    return best, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=10_174)
    parser.add_argument("--k", type=int, default=150)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--reference-queries", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="keep the store here")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    print(
        f"cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}, "
        f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    root = args.dir or Path(tempfile.mkdtemp(prefix="l1000-genesets-"))
    store_dir, reference_dir = root / "signatures", root / "reference"
    if args.rebuild:
        shutil.rmtree(root, ignore_errors=True)
    if not (store_dir / "store.json").exists():
        shutil.rmtree(store_dir, ignore_errors=True)
        seconds = build_store(store_dir, args.signatures, args.genes, args.seed)
        size = sum(p.stat().st_size for p in store_dir.iterdir())
        print(
            f"store: {args.signatures:,} signatures x {args.genes:,} genes written in "
            f"{seconds:.1f} s ({args.signatures / seconds:,.0f} signatures/s), {mb(size)} on disk"
        )
    store = SignatureStore(store_dir)
    rng = np.random.default_rng(args.seed + 1)

    def sets(n):
        picks = [rng.choice(store.n_genes, 2 * args.k, replace=False) for _ in range(n)]
        return [p[: args.k].astype(np.int64) for p in picks], [
            p[args.k :].astype(np.int64) for p in picks
        ]

    cols = np.arange(len(store), dtype=np.int64)
    query_wtcs(store, *sets(1), cols[:10])  # compile, or load the cached kernels
    up1, down1 = sets(1)
    upb, downb = sets(args.batch)
    rows = []
    width = len(store) // 4
    runs = (
        ("1 query", (up1, down1), len(store)),
        (f"1 query, {width:,} sigs", (up1, down1), width),
        (f"{args.batch} queries", (upb, downb), len(store)),
    )
    for label, (up, down), n_sig in runs:
        repeat = 3 if len(up) == 1 else 1

        def kernel(u=up, d=down, n_sig=n_sig):
            return top_hits(lambda a, b, c: query_wtcs(store, a, b, c)[0], u, d, n_sig)

        def vectorized(u=up, d=down, n_sig=n_sig):
            return top_hits(lambda a, b, c: numpy_wtcs(store, a, b, c), u, d, n_sig)

        t_kernel, p_kernel, ours = timed(kernel, repeat)
        t_numpy, p_numpy, theirs = timed(vectorized, repeat)
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5)  # the same top scores
        rows.append((label, len(up), n_sig, t_kernel, p_kernel, t_numpy, p_numpy))
    check = slice(0, min(4, args.batch))
    np.testing.assert_allclose(
        query_wtcs(store, upb[check], downb[check], cols[:BLOCK])[0],
        numpy_wtcs(store, upb[check], downb[check], cols[:BLOCK]),
        atol=1e-5,
    )
    print(
        f"\nWTCS of every signature (2 x {args.k} genes; queries {CHUNK} at a time, "
        f"{BLOCK:,} signatures at a time, each query's top {TOP} kept), best of 3:"
    )
    print(
        f"  {'':<22} {'kernel s':>9} {'per query':>9} {'per 100k':>9} {'numpy s':>9} "
        f"{'ratio':>7} {'kernel heap':>12} {'numpy heap':>11} {'kernel anon':>12} "
        f"{'numpy anon':>11} {'store pages':>12}"
    )
    for label, n, n_sig, tk, pk, tn, pn in rows:
        print(
            f"  {label:<22} {tk:>9.3f} {tk / n:>9.3f} {tk / n * 100_000 / n_sig:>9.3f} "
            f"{tn:>9.3f} {tn / tk:>6.1f}x {mb(pk.heap):>12} {mb(pn.heap):>11} "
            f"{mb(pk.anon):>12} {mb(pn.anon):>11} "
            f"{mb(max(pk.file, 0)):>12}"
        )

    if not (reference_dir / "reference.json").exists() or args.rebuild:
        t0 = time.perf_counter()
        with Peak() as peak:
            report = write_reference(store, reference_dir, n_queries=args.reference_queries)
        print(
            f"\nreference: {report.n_queries:,} queries x {len(store):,} signatures in "
            f"{time.perf_counter() - t0:.1f} s, {mb(report.bytes)} on disk, peak anon "
            f"{mb(peak.anon)} (its temporary NCS matrix on disk: "
            f"{mb(4 * report.n_queries * len(store))})"
        )

    genes = root / "genes.parquet"
    store.genes.assign(is_bing=True).to_parquet(genes)
    perts = root / "perturbagens.parquet"
    pd.DataFrame({"pert_id": store.index["pert_id"].unique()}).assign(
        moa=lambda d: "moa-" + (d.index % 50).astype(str), target=None
    ).to_parquet(perts)
    engines = {
        "WTCS kept between passes": ConnectivityEngine(
            store_dir, [genes], [perts], reference_dir=reference_dir
        ),
        "WTCS computed again": ConnectivityEngine(
            store_dir, [genes], [perts], reference_dir=reference_dir, keep_bytes=0
        ),
    }
    symbols = store.genes["symbol"].to_numpy(object)
    raws = [
        RawQuery(f"bench{i}", (root / "bench.gmt",), tuple(symbols[u]), tuple(symbols[d]))
        for i, (u, d) in enumerate(zip(up1 + upb, down1 + downb))
    ]
    cell = str(store.index["cell_id"].iloc[0])
    n_cell = int((store.index["cell_id"] == cell).sum())
    print(
        "\nwhole query (WTCS, NCS, tau, perturbagen and cell summaries, running top 20, MOA "
        f"enrichment; {store.index['pert_id'].nunique():,} perturbagens ranked), best of 3:"
    )
    print(
        f"  {'':<26} {'scope':<22} {'method':<6} {'queries':>7} {'s/query':>8} "
        f"{'peak heap':>10} {'peak anon':>10}"
    )
    for label, engine in engines.items():
        queries, _ = engine.check(raws)
        for options, scope, n in (
            (QueryOptions(method="tau"), f"all {len(store):,}", 1),
            (QueryOptions(method="tau", cell=cell), f"{cell}: {n_cell:,}", 1),
            (QueryOptions(method="mwu"), f"all {len(store):,}", 1),
            (QueryOptions(method="tau"), f"all {len(store):,}", 16),
        ):
            engine.run(queries[:1], options)  # the scope's column lists, loaded once
            seconds, peak, _ = timed(lambda e=engine, q=queries[:n], o=options: e.run(q, o))
            print(
                f"  {label:<26} {scope:<22} {options.method:<6} {n:>7} {seconds / n:>8.3f} "
                f"{mb(peak.heap):>10} {mb(peak.anon):>10}"
            )
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
