"""Benchmark: CMap connectivity (WTCS) of many queries against many candidate profiles.

Random 978-gene float32 profiles (standard normal, seeded) stand in for level-5 signatures:
``--queries`` query profiles give up/down sets of ``--k`` genes, scored against
``--candidates`` candidate profiles with
:func:`l1000_assets.core.evaluation.connectivity.iter_wtcs_blocks`
(blocks of ``--candidate-block`` candidates; every block is consumed, never all scores kept).
The kernel is compiled (or loaded from numba's cache) on a tiny input before timing; the
timed part includes ranking every candidate once.

Prints seconds, candidate profiles per second (each scored against every query), query x
candidate pairs per second, and peak RSS (``resource.getrusage``).

Usage: ``python benchmarks/connectivity.py [--queries 1000] [--candidates 100000] [--threads N]``
"""

import argparse
import resource
import time

import numba
import numpy as np

from l1000_assets.core.evaluation.connectivity import (
    DEFAULT_K,
    iter_wtcs_blocks,
    query_sets,
    wtcs,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=978)
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--candidate-block", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    queries = rng.standard_normal((args.queries, args.genes), dtype=np.float32)
    candidates = rng.standard_normal((args.candidates, args.genes), dtype=np.float32)
    up, down = query_sets(queries, k=args.k)
    wtcs(up[:2], down[:2], candidates[:2])  # compile, or load the cached kernel

    t0 = time.perf_counter()
    best = np.full(args.queries, -np.inf, dtype=np.float32)
    nonzero = 0
    for qs, _, scores in iter_wtcs_blocks(
        up, down, candidates, candidate_block=args.candidate_block
    ):
        np.maximum(best[qs], scores.max(axis=1), out=best[qs])
        nonzero += int(np.count_nonzero(scores))
    seconds = time.perf_counter() - t0

    pairs = args.queries * args.candidates
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"WTCS {args.queries:,} queries x {args.candidates:,} candidates "
        f"({args.genes} genes, k = {args.k}, candidate block {args.candidate_block:,}, "
        f"{numba.get_num_threads()} threads)"
    )
    print(f"seconds              {seconds:,.1f}")
    print(f"candidate profiles/s {args.candidates / seconds:,.0f}")
    print(f"pairs/s              {pairs / seconds:,.0f}")
    print(
        f"peak RSS MB          {peak_mb:,.0f} (candidates alone {candidates.nbytes / 2**20:,.0f})"
    )
    print(
        f"non-zero WTCS        {nonzero / pairs:.3f}; mean best WTCS per query "
        f"{float(best.mean()):.3f}"
    )


if __name__ == "__main__":
    main()
