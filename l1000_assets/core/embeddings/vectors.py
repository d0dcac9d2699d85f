"""Embedding vectors in Arrow and Parquet: fixed-size float32 lists, the model version and
width recorded in each file, unit-length rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError

EMBEDDING_COLUMN = "embedding"
SIGNATURE_COLUMN = "signature"
MODEL_VERSION_KEY = b"l1000.model_version"
DIM_KEY = b"l1000.embedding_dim"


EmbedFn = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def model_version(card_path: str | Path) -> str:
    """The model's version: the first 16 hex digits of the SHA-256 of its ``card.json``
    (the ``embedding_model`` asset's data version)."""
    return hashlib.sha256(Path(card_path).read_bytes()).hexdigest()[:16]


_NORMALIZE_BLOCK = 1 << 20
"""Elements of one float64 block of rows in :func:`normalize_rows` (8 MB)."""


def normalize_rows(
    x: NDArray[np.floating], *, out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm, as float32; an all-zero row stays zero.

    The one row normalizer of the project (embedding aggregates, retrieval, protocols).
    Norms and quotients are computed in float64, one block of rows at a time, and rounded
    once to float32, so float32 and float64 inputs of the same values give the same result
    and memory beyond ``out`` is one block (about 8 MB) whatever the number of rows.

    Parameters
    ----------
    x
        ``(n, d)`` vectors, any float dtype.
    out
        A C-contiguous float32 ``(n, d)`` array to write into; it may be ``x`` itself (in
        place, the memory-frugal path). ``None``: a new array.

    Returns
    -------
    numpy.ndarray
        ``out`` (or the new array): ``(n, d)`` float32 unit rows.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if out is None:
        out = np.empty(x.shape, np.float32)
    elif out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape {x.shape}, "
            f"got {out.dtype} {out.shape}"
        )
    step = max(1, _NORMALIZE_BLOCK // max(x.shape[1], 1))
    for r0 in range(0, len(x), step):
        rows = slice(r0, r0 + step)
        block = x[rows].astype(np.float64)
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, np.where(norm > 0, norm, 1.0), out=block)
        out[rows] = block
    return out


def vector_array(x: NDArray[np.floating]) -> pa.FixedSizeListArray:
    """An ``(n, d)`` matrix as a ``fixed_size_list<float32>[d]`` Arrow array (zero-copy)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def vector_matrix(
    column: pa.Array | pa.ChunkedArray, dim: int | None = None
) -> NDArray[np.float32]:
    """A list or fixed-size-list column as an ``(n, d)`` float32 matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = (
            column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
        )
    n = len(column)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if dim is None:
        dim = flat.size // n if n else 0
    return flat.reshape(n, dim)


def embedding_dim(path: str | Path) -> int:
    """The embedding width recorded in a file written here."""
    meta = pq.read_schema(path).metadata or {}
    if DIM_KEY not in meta:
        raise L1000InputError(path, "no embedding dimension recorded: not an embeddings file")
    return int(meta[DIM_KEY])


def recorded_model_version(path: str | Path) -> str:
    """The model version recorded in an embeddings file."""
    meta = pq.read_schema(path).metadata or {}
    if MODEL_VERSION_KEY not in meta:
        raise L1000InputError(path, "no model version recorded: not an embeddings file")
    return meta[MODEL_VERSION_KEY].decode()


def embedding_schema(
    fields: Sequence[pa.Field], dim: int, version: str, column: str = EMBEDDING_COLUMN
) -> pa.Schema:
    """``fields`` and a ``fixed_size_list<float32>[dim]`` ``column``, with the model version
    and the width recorded in the schema metadata."""
    return pa.schema(
        [*fields, pa.field(column, pa.list_(pa.float32(), dim))],
        metadata={MODEL_VERSION_KEY: version.encode(), DIM_KEY: str(dim).encode()},
    )


def metadata_field(name: str) -> pa.Field:
    """The Arrow field of a metadata column: doses and times float64, counts (``n_*``)
    int64, everything else string."""
    if name in ("pert_dose", "pert_time"):
        return pa.field(name, pa.float64())
    if name.startswith("n_"):
        return pa.field(name, pa.int64())
    return pa.field(name, pa.string())


def read_embeddings(
    path: str | Path, columns: Sequence[str]
) -> tuple[pa.Table, NDArray[np.float32]]:
    """Metadata ``columns`` and the ``(n, d)`` embedding matrix of an embeddings file."""
    table = pq.read_table(path, columns=[*columns, EMBEDDING_COLUMN])
    return table.drop_columns([EMBEDDING_COLUMN]), vector_matrix(
        table.column(EMBEDDING_COLUMN), embedding_dim(path)
    )


def single_model_version(files: Sequence[str | Path]) -> str:
    """The one model version recorded in every embeddings file of ``files`` (an
    :class:`L1000InputError` when they come from different models)."""
    versions = {recorded_model_version(f) for f in files}
    if len(versions) != 1:
        raise L1000InputError(
            Path(files[0]).parent.parent,
            f"profile embeddings from {len(versions)} different models "
            f"({', '.join(sorted(versions))}): embed every cell line again",
        )
    return versions.pop()


def single_embedding_dim(files: Sequence[str | Path]) -> int:
    """The one embedding width of every embeddings file of ``files``."""
    dims = {embedding_dim(f) for f in files}
    if len(dims) != 1:
        raise L1000InputError(
            Path(files[0]).parent.parent, f"profile embeddings of different widths {sorted(dims)}"
        )
    return dims.pop()
