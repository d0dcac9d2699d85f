"""The tau reference: this lake's own "Touchstone".

CMap's tau of a query against a signature is the signed percentage of a fixed reference
set of queries whose ``|NCS|`` against that signature is smaller than the query's
(Subramanian et al. 2017); CMap's reference queries are its Touchstone signatures. Here the
reference queries are a seeded sample of the store's own signatures (``n_queries``, default
500), each as the query of its top and bottom ``k`` genes (default 150). Their NCS
against every signature is summarized per signature by the quantiles of ``|NCS|`` at
0, 1, ..., 100 percent; tau then interpolates a query's ``|NCS|`` between them
(:func:`~l1000_assets.core.connectivity.scoring.tau_scores`), so its resolution is about one
percentile.

CMap reports tau also per perturbagen and cell line and per perturbagen: the NCS are first
summarized (maximum quantile over a perturbagen's signatures in a cell line, then over its
cell lines) and compared with the reference's NCS summarized the same way. The reference
keeps the three levels' quantiles.

Files of a reference directory (built in a temporary sibling and swapped in)::

    signature_quantiles.npy    float32 (n_signatures, 101), store column order
    cell_quantiles.npy         float32 (n_perturbagen_cell_pairs, 101), store pert-cell codes
    perturbagen_quantiles.npy  float32 (n_perturbagens, 101), store perturbagen codes
    reference.json             store version, queries (sig_id), k, seed, version, figures

Memory and time: the reference queries are scored in blocks of ``query_block`` against the
whole store (``4 x block x signatures`` bytes); their NCS wait in a temporary float32 matrix
on disk (``4 x n_queries x signatures`` bytes, and their summaries beside them) until
every signature's quantiles are taken, a block of columns at a time.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.connectivity.scoring import (
    TAU_LEVELS,
    Levels,
    maxq,
    normalized,
    query_wtcs,
)
from l1000_assets.core.connectivity.store import SignatureStore
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.evaluation.connectivity import DEFAULT_K
from l1000_assets.core.progress import Progress

META_FILE = "reference.json"
LEVEL_FILES = {
    "signature": "signature_quantiles.npy",
    "cell": "cell_quantiles.npy",
    "perturbagen": "perturbagen_quantiles.npy",
}
DEFAULT_QUERIES = 500
_COLUMN_BLOCK = 8192  # signatures whose quantiles are taken at a time


def signature_sets(
    store: SignatureStore, cols: NDArray[np.integer], k: int = DEFAULT_K
) -> tuple[list[NDArray[np.int64]], list[NDArray[np.int64]]]:
    """The up and down sets (store rows) of signatures ``cols``: their ``k`` highest and
    ``k`` lowest genes, highest (lowest) first, from the store's ranks."""
    n = store.n_genes
    if not 1 <= k <= n // 2:
        raise ValueError(f"k must be in [1, {n // 2}], got {k}")
    ranks = np.asarray(store.ranks[:, np.asarray(cols)])  # (n_genes, len(cols))
    up, down = [], []
    for j in range(ranks.shape[1]):
        order = np.argsort(ranks[:, j], kind="stable")
        up.append(order[:k].astype(np.int64))
        down.append(order[::-1][:k].astype(np.int64))
    return up, down


@dataclass(frozen=True)
class ReferenceReport:
    path: Path
    n_queries: int
    n_signatures: int
    seconds: float
    bytes: int
    version: str


def _column_quantiles(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """:func:`_quantiles` of ``x`` ``(m, n)``, a block of columns at a time."""
    out = np.empty((x.shape[1], len(TAU_LEVELS)), np.float32)
    for c0 in range(0, x.shape[1], _COLUMN_BLOCK):
        out[c0 : c0 + _COLUMN_BLOCK] = _quantiles(x[:, c0 : c0 + _COLUMN_BLOCK])
    return out


def _quantiles(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """``(n, 101)`` quantiles of ``|x|`` ``(m, n)`` per column, NaN left out (all-NaN: NaN)."""
    a = np.abs(np.asarray(x, np.float64))
    with np.errstate(all="ignore"):
        missing = np.isnan(a).all(axis=0)
        a[:, missing] = 0.0
        q = np.nanquantile(a, TAU_LEVELS / 100.0, axis=0).T
    q[missing] = np.nan
    return q.astype(np.float32)


def write_reference(
    store: SignatureStore,
    out_dir: str | Path,
    *,
    n_queries: int = DEFAULT_QUERIES,
    k: int = DEFAULT_K,
    seed: int = 0,
    query_block: int = 32,
    progress: Progress | None = None,
) -> ReferenceReport:
    """Build the tau reference of ``store`` into ``out_dir`` (replaced atomically).

    Parameters
    ----------
    store
        The signature store.
    out_dir
        The reference directory.
    n_queries
        Reference queries: a seeded sample of the signatures (all when fewer).
    k
        Genes in each set of a reference query.
    seed
        Seed of the sample.
    query_block
        Reference queries scored together.
    progress
        Called as ``progress(queries_done, n_queries, elapsed_seconds)``.
    """
    t0 = time.perf_counter()
    n_sig = len(store)
    if n_sig < 2:
        raise L1000InputError(store.path, f"{n_sig} signature(s): too few for a reference")
    rng = np.random.default_rng(seed)
    refs = np.sort(rng.choice(n_sig, min(int(n_queries), n_sig), replace=False))
    cols = np.arange(n_sig, dtype=np.int64)
    groups = store.group_codes
    n_groups = int(groups.max()) + 1
    levels = Levels.of(store, cols)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(dir=tmp) as scratch:
        ncs = np.lib.format.open_memmap(
            Path(scratch) / "ncs.npy", mode="w+", dtype=np.float32, shape=(len(refs), n_sig)
        )
        for b0 in range(0, len(refs), query_block):
            block = refs[b0 : b0 + query_block]
            up, down = signature_sets(store, block, k)
            wtcs, _, _ = query_wtcs(store, up, down, cols)
            ncs[b0 : b0 + len(block)] = normalized(wtcs, groups, n_groups)
            if progress is not None:
                progress(b0 + len(block), len(refs), time.perf_counter() - t0)
        ncs.flush()
        # Summaries of every reference query: over a perturbagen's signatures per cell line
        # (store pert-cell codes are 0..n-1, so the summary columns are in code order),
        # then over its cell lines; a block of reference queries at a time.
        cell, pert = (
            np.lib.format.open_memmap(
                Path(scratch) / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(refs), n)
            )
            for name, n in (("cell", len(levels.pert_cells)), ("pert", len(levels.perts)))
        )
        for r0 in range(0, len(refs), query_block):
            rows = slice(r0, r0 + query_block)
            cell[rows] = maxq(ncs[rows], levels.cell_segments)
            pert[rows] = maxq(cell[rows], levels.pert_segments)
        for name, values in (("signature", ncs), ("cell", cell), ("perturbagen", pert)):
            np.save(tmp / LEVEL_FILES[name], _column_quantiles(values))
        del ncs, cell, pert
        digest = hashlib.sha256(store.version.encode())
        digest.update(json.dumps([refs.tolist(), k, seed]).encode())
        meta = {
            "store_version": store.version,
            "n_queries": len(refs),
            "k": k,
            "seed": seed,
            "queries": store.index["sig_id"].iloc[refs].astype(str).tolist(),
            "levels": len(TAU_LEVELS),
            "version": digest.hexdigest()[:16],
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        size = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())
    return ReferenceReport(
        out_dir, len(refs), n_sig, time.perf_counter() - t0, size, meta["version"]
    )


class Reference:
    """A tau reference opened for queries (memory-mapped quantiles).

    Raises :class:`L1000InputError` when the directory holds none, or one built from another
    version of the store.
    """

    def __init__(self, path: str | Path, store: SignatureStore):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.exists():
            raise L1000InputError(
                self.path, "no tau reference: materialize connectivity_reference first"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta["store_version"] != store.version:
            raise L1000InputError(
                meta_path,
                f"built from signature store {self.meta['store_version']}, but the store is "
                f"{store.version}: materialize connectivity_reference again",
            )
        self.quantiles = {
            level: np.load(self.path / name, mmap_mode="r") for level, name in LEVEL_FILES.items()
        }

    @property
    def version(self) -> str:
        return self.meta["version"]
