"""The signature store: level-5 MODZ signatures in the BING gene space, kept as gene ranks
for fast rank look-ups, memory-mapped.

Layout of a store directory (built whole in a temporary sibling and swapped in)::

    index.parquet   one row per signature, in column order: sig_id, pert_id, pert_iname,
                    pert_type, cell_id, pert_dose, pert_dose_unit, pert_time, pert_time_unit,
                    n_replicates
    genes.parquet   one row per gene, in row order: gene_id, symbol, is_landmark
                    (the 978 landmarks first, in the lake's order)
    ranks.npy       int16 (n_genes, n_signatures): position of gene g in signature s ranked
                    by descending z-score (0 = highest; ties in ascending gene row)
    zscores.npy     float16 (n_genes, n_signatures): the MODZ z-scores (3 significant digits;
                    they weigh the hits of CMap's walk)
    store.json      gene space, counts, version, releases, build figures

**Gene-major**, unlike clue-mcp's signature-major ranks: a query reads only the rows of its
own genes (2 x 150 rows of a 10,174-row store: 3% of it), each a contiguous run over the
signatures, so a query's cost and its reads grow with its genes, not with the store's
width. Columns are sorted by perturbagen, then cell line and signature id (the writer sorts them
in place when it closes, one block of gene rows at a time), so a perturbagen's signatures are
one contiguous run of columns: a query scores the store in blocks of whole perturbagens and
keeps only its running top hits (:mod:`~l1000_assets.core.connectivity.engine`). The index
says which column is which, and :meth:`SignatureStore.columns` picks a cell line or
perturbagen type.

Memory: opening a store reads the index (about 200 bytes a signature) and maps the two
matrices; pages are read on demand by the OS and shared by every process that maps them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.embeddings.aggregates import SIGNATURE_COLUMNS
from l1000_assets.core.embeddings.vectors import metadata_field
from l1000_assets.core.errors import L1000InputError, preview_ids

FORMAT = 2
"""2: columns sorted by perturbagen (1: in the order the build completed them)."""
INDEX_FILE = "index.parquet"
GENES_FILE = "genes.parquet"
RANKS_FILE = "ranks.npy"
ZSCORES_FILE = "zscores.npy"
META_FILE = "store.json"
GENE_SPACES = ("bing", "all")
"""``bing``: landmarks and best inferred genes (``is_bing``); ``all``: every gene."""

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_SORT_BLOCK_BYTES = 32 << 20  # gene rows held at a time while the columns are sorted
SORT_KEYS = ("pert_id", "cell_id", "sig_id")
"""The store's column order."""


def abs_weight_table() -> NDArray[np.float32]:
    """``|z|`` of every float16 bit pattern (65,536 entries, 256 KB): the compiled kernels
    read the float16 z-scores through it as uint16 (numba has no float16 arithmetic)."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    table = np.abs(bits.view(np.float16).astype(np.float32))
    table[~np.isfinite(table)] = 0.0
    return table


def index_schema() -> pa.Schema:
    return pa.schema([metadata_field(c) for c in SIGNATURE_COLUMNS])


class StoreWriter:
    """Write a store into directory ``path`` (a fresh, empty directory, e.g. from
    :func:`~l1000_assets.core.atomic.atomic_dir`), one block of signatures at a time.

    Parameters
    ----------
    path
        The directory to write into.
    genes
        The store's genes in row order: ``gene_id``, ``symbol``, ``is_landmark``.
    n_signatures
        Columns of the store (every signature must be written once).
    gene_space
        Name of the gene space (:data:`GENE_SPACES`), recorded.
    """

    def __init__(self, path: Path, genes: pd.DataFrame, n_signatures: int, gene_space: str):
        self.path = Path(path)
        self.n_genes = len(genes)
        self.n_signatures = int(n_signatures)
        self.gene_space = gene_space
        self._genes = genes[["gene_id", "symbol", "is_landmark"]].reset_index(drop=True)
        self._landmarks = np.flatnonzero(self._genes["is_landmark"].to_numpy(bool))
        self._norms: list[np.ndarray] = []
        shape = (self.n_genes, max(self.n_signatures, 1))
        self._ranks = np.lib.format.open_memmap(
            self.path / RANKS_FILE, mode="w+", dtype=np.int16, shape=shape
        )
        self._z = np.lib.format.open_memmap(
            self.path / ZSCORES_FILE, mode="w+", dtype=np.float16, shape=shape
        )
        self._rows: list[pa.Table] = []
        self.written = 0

    def write(self, ranks: NDArray[np.int16], z: NDArray[np.floating], index: pa.Table) -> None:
        """Append ``b`` signatures: ``ranks`` and ``z`` are ``(b, n_genes)``
        (signature-major, as computed), ``index`` their ``b`` index rows."""
        b = len(ranks)
        if z.shape != ranks.shape or ranks.shape[1:] != (self.n_genes,) or index.num_rows != b:
            raise ValueError(
                f"block of {ranks.shape} ranks, {z.shape} z-scores and {index.num_rows} "
                f"index rows for a store of {self.n_genes} genes"
            )
        if self.written + b > self.n_signatures:
            raise ValueError(f"{self.written + b} signatures into a store of {self.n_signatures}")
        cols = slice(self.written, self.written + b)
        self._ranks[:, cols] = ranks.T
        self._z[:, cols] = np.clip(z, -_FLOAT16_MAX, _FLOAT16_MAX).T
        self._rows.append(index.select(index_schema().names).cast(index_schema()))
        self._norms.append(np.linalg.norm(np.asarray(z, np.float64)[:, self._landmarks], axis=1))
        self.written += b

    def close(self, meta: dict) -> dict:
        """Flush the matrices and write the index, genes and ``store.json`` (``meta`` plus
        the format, counts and version). Returns what ``store.json`` holds."""
        if self.written != self.n_signatures:
            raise ValueError(f"{self.written} of {self.n_signatures} signatures written")
        index = pa.concat_tables(self._rows) if self._rows else index_schema().empty_table()
        norms = np.concatenate(self._norms) if self._norms else np.zeros(0)
        order = column_order(index)
        if not np.array_equal(order, np.arange(len(order))):
            index, norms = index.take(pa.array(order)), norms[order]
            for array in (self._ranks, self._z):
                _permute_columns(array, order)
        for array in (self._ranks, self._z):
            array.flush()
        del self._ranks, self._z
        pq.write_table(index, self.path / INDEX_FILE)
        pq.write_table(
            pa.Table.from_pandas(self._genes.astype({"gene_id": str}), preserve_index=False),
            self.path / GENES_FILE,
        )
        # The version follows the content: the signatures, the genes and every signature's
        # landmark norm (a change of any value moves it), not the time of the build.
        digest = hashlib.sha256(self.gene_space.encode())
        for name in (INDEX_FILE, GENES_FILE):
            digest.update((self.path / name).read_bytes())
        digest.update(np.round(norms, 4).tobytes())
        record = {
            "format": FORMAT,
            "gene_space": self.gene_space,
            "n_genes": self.n_genes,
            "n_signatures": self.n_signatures,
            "version": digest.hexdigest()[:16],
            "landmark_norm": float(np.median(norms)) if len(norms) else 0.0,
            **meta,
        }
        (self.path / META_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        return record


def column_order(index: pa.Table) -> NDArray[np.int64]:
    """The positions of ``index``'s rows sorted by :data:`SORT_KEYS` (the store's order)."""
    if index.num_rows == 0:
        return np.zeros(0, np.int64)
    keys = [(k, "ascending") for k in SORT_KEYS]
    return pc.sort_indices(index, sort_keys=keys).to_numpy().astype(np.int64)


def _permute_columns(array: np.ndarray, order: NDArray[np.int64]) -> None:
    """``array[:, :] = array[:, order]`` in place, a block of rows at a time (memory: the
    block, not the matrix)."""
    n_rows, n_cols = array.shape[0], len(order)
    step = max(1, _SORT_BLOCK_BYTES // max(1, n_cols * array.itemsize))
    for r0 in range(0, n_rows, step):
        rows = slice(r0, min(r0 + step, n_rows))
        array[rows, :n_cols] = np.asarray(array[rows, :n_cols])[:, order]


@dataclass(frozen=True)
class Segments:
    """Items grouped into segments: segment ``s`` holds ``order[offsets[s]:offsets[s + 1]]``."""

    order: NDArray[np.int64]
    offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.offsets) - 1


def segments_of(codes: NDArray[np.integer]) -> tuple[NDArray[np.int64], Segments]:
    """The distinct ``codes`` (sorted) and the items of each, as :class:`Segments`."""
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    starts = starts[: len(codes)].astype(np.int64)
    offsets = np.r_[starts, len(codes)].astype(np.int64)
    return sorted_codes[starts].astype(np.int64), Segments(order.astype(np.int64), offsets)


class SignatureStore:
    """A signature store opened for queries (see the module docstring).

    Parameters
    ----------
    path
        The store directory.

    Raises
    ------
    L1000InputError
        If the directory is not a complete store of this format.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.exists():
            raise L1000InputError(
                self.path, "no signature store: materialize connectivity_signatures first"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise L1000InputError(
                meta_path, f"store format {self.meta.get('format')}, expected {FORMAT}: rebuild it"
            )
        self.index = pq.read_table(self.path / INDEX_FILE).to_pandas()
        self.genes = pq.read_table(self.path / GENES_FILE).to_pandas()
        n = self.meta["n_signatures"]
        self.ranks: NDArray[np.int16] = np.load(self.path / RANKS_FILE, mmap_mode="r")[:, :n]
        z = np.load(self.path / ZSCORES_FILE, mmap_mode="r")[:, :n]
        self.zscores: NDArray[np.float16] = z
        self.zbits: NDArray[np.uint16] = z.view(np.uint16)
        if self.ranks.shape != (len(self.genes), len(self.index)) or z.shape != self.ranks.shape:
            raise L1000InputError(
                self.path,
                f"ranks {self.ranks.shape} and z-scores {z.shape} do not match "
                f"{len(self.genes)} genes x {len(self.index)} signatures: rebuild the store",
            )

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def gene_space(self) -> str:
        return self.meta["gene_space"]

    @property
    def n_genes(self) -> int:
        return self.ranks.shape[0]

    def __len__(self) -> int:
        return self.ranks.shape[1]

    @property
    def landmark_norm(self) -> float:
        """The median L2 norm of the signatures' landmark z-scores (a typical signature's
        strength)."""
        return float(self.meta["landmark_norm"])

    @cached_property
    def landmark_rows(self) -> NDArray[np.int64]:
        """Rows of the landmark genes, in the lake's landmark order."""
        return np.flatnonzero(self.genes["is_landmark"].to_numpy(bool))

    # -- groups --------------------------------------------------------------------------
    @cached_property
    def group_labels(self) -> NDArray[np.object_]:
        """NCS groups of the columns: ``cell_id|pert_type``."""
        return (
            self.index["cell_id"].astype(str) + "|" + self.index["pert_type"].astype(str)
        ).to_numpy(object)

    @cached_property
    def group_codes(self) -> NDArray[np.intp]:
        """Integer code of each column's NCS group."""
        return pd.factorize(self.group_labels, sort=True)[0].astype(np.intp)

    @cached_property
    def pert_cell_codes(self) -> NDArray[np.int64]:
        """Integer code of each column's (perturbagen, cell line): sorted by pert_id, then
        cell_id."""
        keys = self.index["pert_id"].astype(str) + "\x1f" + self.index["cell_id"].astype(str)
        return pd.factorize(keys.to_numpy(object), sort=True)[0].astype(np.int64)

    @cached_property
    def pert_codes(self) -> NDArray[np.int64]:
        """Integer code of each column's perturbagen (sorted by pert_id)."""
        return pd.factorize(self.index["pert_id"].astype(str).to_numpy(object), sort=True)[
            0
        ].astype(np.int64)

    @cached_property
    def pert_of_pert_cell(self) -> NDArray[np.int64]:
        """Perturbagen code of each (perturbagen, cell line) code."""
        out = np.empty(int(self.pert_cell_codes.max(initial=-1)) + 1, np.int64)
        out[self.pert_cell_codes] = self.pert_codes
        return out

    def columns(
        self, *, cell: str | None = None, pert_type: str | None = None
    ) -> NDArray[np.int64]:
        """Columns of one cell line and/or perturbagen type (all when both are None).

        Raises :class:`L1000InputError` naming the index and the values it has when the
        cell line or type is not in the store.
        """
        mask = np.ones(len(self.index), bool)
        for column, value, what in (
            ("cell_id", cell, "cell line"),
            ("pert_type", pert_type, "perturbagen type"),
        ):
            if value is None:
                continue
            values = self.index[column].astype(str)
            if not (values == value).any():
                raise L1000InputError(
                    self.path / INDEX_FILE,
                    f"unknown {what} {value!r}: the store has "
                    f"{preview_ids(sorted(values.unique()), 12)}",
                )
            mask &= (values == value).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    def signature_columns(self, sig_ids: Sequence[str]) -> NDArray[np.int64]:
        """Columns of the signatures ``sig_ids`` (an error naming a few unknown ones)."""
        position = pd.Series(np.arange(len(self.index)), index=self.index["sig_id"].astype(str))
        missing = [s for s in sig_ids if s not in position.index]
        if missing:
            raise L1000InputError(
                self.path / INDEX_FILE, f"unknown signature id(s) {preview_ids(missing)}"
            )
        return position.loc[list(sig_ids)].to_numpy(np.int64)

    def read_z(self, cols: NDArray[np.integer], rows: NDArray[np.integer] | None = None):
        """``(len(cols), n_rows)`` float32 z-scores of signatures ``cols`` (signature-major)
        over gene ``rows`` (default: all)."""
        block = self.zscores[:, np.asarray(cols)]
        if rows is not None:
            block = block[np.asarray(rows)]
        return np.ascontiguousarray(block.T, dtype=np.float32)
