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
  MOA enrichment) for one query;
* the store's and the reference's build time and size.

Queries are scored 16 at a time and keep their top 50 signatures, as the engine does.
Memory: peak anonymous RSS above the level before each timed part (sampled every 2 ms from
/proc/self/status; the memory-mapped store's pages are file-backed and reported apart, as
RssFile), so "beyond the store" is what a query allocates. The load average of the machine
is printed before and after (other processes share its cores).

Usage: ``python benchmarks/genesets.py [--signatures 100000] [--batch 100] [--dir DIR]``
(``--dir`` keeps the store and reference for a second run; ``--rebuild`` makes them again).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
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


class Peak:
    """Peak anonymous and file-backed RSS above their level at entry, sampled."""

    def __enter__(self):
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


def numpy_wtcs(store: SignatureStore, up, down, block: int = 8192) -> np.ndarray:
    """The same WTCS, vectorized with numpy: per block of signatures, the rows of the
    query's genes, sorted by rank, and the ES from the hits' positions."""
    table = abs_weight_table()
    n, n_sig = store.n_genes, len(store)
    out = np.empty((len(up), n_sig), np.float32)
    for c0 in range(0, n_sig, block):
        cols = slice(c0, min(c0 + block, n_sig))
        for q, (u, d) in enumerate(zip(up, down)):
            es = []
            for genes in (u, d):
                ranks = np.asarray(store.ranks[genes, cols], np.int64)  # (G, B)
                weights = table[store.zbits[genes, cols]]
                order = np.argsort(ranks, axis=0)
                pos = np.take_along_axis(ranks, order, axis=0).T
                w = np.take_along_axis(weights, order, axis=0).T
                es.append(es_from_hits(pos, w, n))
            out[q, cols] = wtcs_from_es(es[0], es[1])
    return out


CHUNK = 16  # queries scored together, as the engine does
TOP = 50  # hits kept per query


def top_hits(score, up, down):
    """Score queries ``CHUNK`` at a time with ``score(up, down)`` and keep each query's
    ``TOP`` best signatures (indices, scores), as a query keeps its hits."""
    index, values = [], []
    for q0 in range(0, len(up), CHUNK):
        s = score(up[q0 : q0 + CHUNK], down[q0 : q0 + CHUNK])
        best = np.argpartition(-s, TOP, axis=1)[:, :TOP]
        top = np.take_along_axis(s, best, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        index.append(np.take_along_axis(best, order, axis=1))
        values.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(index), np.concatenate(values)


def timed(fn, repeat: int = 3):
    """(best seconds, peak, result) of ``repeat`` calls."""
    best, peak, result = np.inf, None, None
    for _ in range(repeat):
        with Peak() as p:
            t0 = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - t0
        if seconds < best:
            best, peak = seconds, p
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
    for label, (up, down) in (("1 query", (up1, down1)), (f"{args.batch} queries", (upb, downb))):
        repeat = 3 if len(up) == 1 else 1

        def kernel(u=up, d=down):
            return top_hits(lambda a, b: query_wtcs(store, a, b, cols)[0], u, d)

        def vectorized(u=up, d=down):
            return top_hits(lambda a, b: numpy_wtcs(store, a, b), u, d)

        t_kernel, p_kernel, ours = timed(kernel, repeat)
        t_numpy, p_numpy, theirs = timed(vectorized, repeat)
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5)  # the same top scores
        rows.append((label, t_kernel, p_kernel, t_numpy, p_numpy))
    check = slice(0, min(4, args.batch))
    np.testing.assert_allclose(
        query_wtcs(store, upb[check], downb[check], cols)[0],
        numpy_wtcs(store, upb[check], downb[check]),
        atol=1e-5,
    )
    print(
        f"\nWTCS of every signature ({len(store):,} signatures, 2 x {args.k} genes; "
        f"queries {CHUNK} at a time, each query's top {TOP} kept), best of 3:"
    )
    print(
        f"  {'':<12} {'kernel s':>9} {'per query':>9} {'numpy s':>9} {'ratio':>7} "
        f"{'kernel anon':>12} {'numpy anon':>11} {'store pages':>12}"
    )
    for label, tk, pk, tn, pn in rows:
        n = int(label.split()[0])
        print(
            f"  {label:<12} {tk:>9.3f} {tk / n:>9.3f} {tn:>9.3f} {tn / tk:>6.1f}x "
            f"{mb(pk.anon):>12} {mb(pn.anon):>11} {mb(max(pk.file, 0)):>12}"
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
    engine = ConnectivityEngine(store_dir, [genes], [perts], reference_dir=reference_dir)
    symbols = store.genes["symbol"].to_numpy(object)
    raw = RawQuery("bench", (root / "bench.gmt",), tuple(symbols[up1[0]]), tuple(symbols[down1[0]]))
    queries, _ = engine.check([raw])
    engine.run(queries, QueryOptions(method="tau"))
    t_engine, p_engine, (result,) = timed(lambda: engine.run(queries, QueryOptions(method="tau")))
    print(
        f"\nwhole query (WTCS, NCS, tau, perturbagen and cell summaries, top hits, MOA "
        f"enrichment), 1 query: {t_engine:.3f} s, peak anon {mb(p_engine.anon)} "
        f"({store.index['pert_id'].nunique():,} perturbagens ranked)"
    )
    t_mwu, p_mwu, _ = timed(lambda: engine.run(queries, QueryOptions(method="mwu")))
    print(
        f"SigCom rank test (mwu) with the same summaries: {t_mwu:.3f} s, peak anon {mb(p_mwu.anon)}"
    )
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
