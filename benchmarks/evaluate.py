"""Benchmark: the exact retrieval protocol against a bare blocked matrix product.

Targets (issue "Evaluation"): for 50,000 queries x 50,000 candidates of 32-d embeddings,
the exact protocol (every rank quantile, MCC counts) within 2x of a bare blocked matrix
product of the same shape, timed side by side in this run; working memory independent of
the number of candidates. Also times CMap WTCS retrieval for 1,000 queries x 100,000
candidate profiles (978 landmarks).

    .venv/bin/python benchmarks/evaluate.py                 # all three parts
    .venv/bin/python benchmarks/evaluate.py --n 20000 --skip-wtcs   # quicker

The bare product is ``q[b:b+1024] @ c.T`` over blocks of 1,024 queries with NumPy's
multi-threaded BLAS, writing into one reused output buffer (nothing else done with the
scores). Both are timed ``--repeats`` times, alternating, and the best and median of
each are reported with their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l1000_assets.core.embeddings.vectors import normalize_rows  # noqa: E402
from l1000_assets.core.evaluation.retrieval import retrieval  # noqa: E402


def embeddings(n: int, d: int, per_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: ``n / per_label`` labels, noise comparable to the signal."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, max(n // per_label, 1), n)
    centers = rng.standard_normal((max(n // per_label, 1), d)).astype(np.float32)
    x = centers[labels] + 1.2 * rng.standard_normal((n, d)).astype(np.float32)
    return normalize_rows(x), labels


def bare_product(q: np.ndarray, c: np.ndarray, block: int = 1024) -> float:
    out = np.empty((block, len(c)), np.float32)
    t0 = time.perf_counter()
    for b0 in range(0, len(q), block):
        b1 = min(b0 + block, len(q))
        np.matmul(q[b0:b1], c.T, out=out[: b1 - b0])
    return time.perf_counter() - t0


def exact(q, qy, c, cy, self_index) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = retrieval(q, qy, c, cy, self_index=self_index)
    return time.perf_counter() - t0, result


def part_speed(n: int, d: int, repeats: int) -> None:
    x, y = embeddings(n, d, per_label=10, seed=0)
    print(f"\n== exact protocol vs bare product: {n:,} queries x {n:,} candidates, d={d}")
    retrieval(x[:512], y[:512], x[:4096], y[:4096], self_index=np.arange(512))  # compile
    bare, ours = [], []
    result = None
    for r in range(repeats):
        bare.append(bare_product(x, x))
        t, result = exact(x, y, x, y, np.arange(n))
        ours.append(t)
        print(
            f"  repeat {r + 1}: bare {bare[-1]:.2f} s, exact protocol {t:.2f} s "
            f"({t / bare[-1]:.2f}x)",
            flush=True,
        )
    s = result.summary()
    print(
        f"  bare product      best {min(bare):.2f} s, median {statistics.median(bare):.2f} s "
        f"({n * n / min(bare) / 1e9:.2f} G scores/s)"
    )
    print(
        f"  exact protocol    best {min(ours):.2f} s, median {statistics.median(ours):.2f} s "
        f"({n * n / min(ours) / 1e9:.2f} G scores/s)"
    )
    print(
        f"  ratio (exact / bare): best-to-best {min(ours) / min(bare):.2f}x, median "
        f"{statistics.median(ours) / statistics.median(bare):.2f}x   (target <= 2x)"
    )
    print(
        f"  result: {s.n_positives:,} positives, AUC {s['auc']:.4f}, median q "
        f"{s['median_quantile']:.4f}, top-0.01 {s['recall_top_0.01']:.4f}, MCC {result.mcc:.4f}"
    )


def part_memory(n_queries: int, candidate_counts: list[int], d: int) -> None:
    print(
        f"\n== working memory: {n_queries:,} queries, candidates "
        f"{', '.join(f'{c:,}' for c in candidate_counts)} (tracemalloc peak during the call)"
    )
    peaks = []
    for n_c in candidate_counts:
        x, y = embeddings(n_c, d, per_label=10, seed=1)
        q, qy = x[:n_queries], y[:n_queries]
        retrieval(q[:64], qy[:64], x, y, self_index=np.arange(64))  # one-time allocations
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        retrieval(q, qy, x, y, self_index=np.arange(n_queries))
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        peaks.append(peak)
        # The call keeps one label-ordered float32 copy of the candidates (d x 4 bytes
        # each) and two int64 index entries per candidate: O(candidates), never
        # O(queries x candidates).
        own = (d * 4 + 2 * 8) * n_c
        print(
            f"  {n_c:>9,} candidates: peak {peak / 2**20:7.1f} MiB, of which "
            f"{own / 2**20:6.1f} MiB the candidates' ordered copy and index "
            f"({dt:.1f} s)"
        )
    slope = (peaks[-1] - peaks[0]) / (candidate_counts[-1] - candidate_counts[0])
    print(
        f"  growth: {slope:.0f} bytes per added candidate (one row of an N x N float32 "
        f"matrix would be {4 * candidate_counts[-1]:,} bytes per candidate; the whole "
        f"matrix at {candidate_counts[-1]:,} would be "
        f"{candidate_counts[-1] ** 2 * 4 / 2**30:.1f} GiB)"
    )


def part_wtcs(n_queries: int, n_candidates: int) -> None:
    print(
        f"\n== WTCS retrieval: {n_queries:,} queries x {n_candidates:,} candidate profiles "
        f"(978 landmarks, top/bottom 150 genes)"
    )
    rng = np.random.default_rng(2)
    n_labels = n_candidates // 20
    labels = rng.integers(0, n_labels, n_candidates)
    centers = rng.standard_normal((n_labels, 978)).astype(np.float32)
    profiles = np.empty((n_candidates, 978), np.float32)
    for b0 in range(0, n_candidates, 10_000):
        b1 = min(b0 + 10_000, n_candidates)
        profiles[b0:b1] = centers[labels[b0:b1]] + 2.0 * rng.standard_normal((b1 - b0, 978)).astype(
            np.float32
        )
    retrieval(
        profiles[:50],
        labels[:50],
        profiles[:2000],
        labels[:2000],
        metric="wtcs",
        self_index=np.arange(50),
    )  # compile
    t0 = time.perf_counter()
    result = retrieval(
        profiles[:n_queries],
        labels[:n_queries],
        profiles,
        labels,
        metric="wtcs",
        self_index=np.arange(n_queries),
        block_size=n_queries,
        candidate_block=4096,
    )
    dt = time.perf_counter() - t0
    pairs = n_queries * n_candidates
    print(
        f"  {dt:.1f} s ({pairs / dt / 1e6:.2f} M pairs/s, candidates ranked once); AUC "
        f"{result.summary()['auc']:.4f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="queries = candidates")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-queries", type=int, default=2_000)
    parser.add_argument(
        "--memory-candidates", type=int, nargs="+", default=[25_000, 50_000, 200_000]
    )
    parser.add_argument("--wtcs-queries", type=int, default=1_000)
    parser.add_argument("--wtcs-candidates", type=int, default=100_000)
    parser.add_argument("--skip-wtcs", action="store_true")
    args = parser.parse_args()
    print(f"CPUs available: {len(os.sched_getaffinity(0))}; numpy {np.__version__}")
    part_speed(args.n, args.dim, args.repeats)
    part_memory(args.memory_queries, args.memory_candidates, args.dim)
    if not args.skip_wtcs:
        part_wtcs(args.wtcs_queries, args.wtcs_candidates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
