"""The lake's pyarrow Parquet writer: the whole file by pyarrow's own writer, with the best
settings found for the 978-float landmark column (the ``writer="pyarrow"`` fallback to the
fast page writer, :mod:`~l1000_assets.core.lake.parquet_pages`).

The landmark column is written PLAIN, without dictionary or statistics, in data pages of
version 2.0; the profile columns keep dictionary encoding and statistics, as in the fast
writer's files. :class:`ArrowLakeFile` takes the same calls as
:class:`~l1000_assets.core.lake.parquet_pages.PageLakeFile`, so the ingest streams either the
same way; the difference is memory: pyarrow writes a row group's column chunks one after the
other, so the landmark values of the open row group are held until it is closed (about
3.9 KB a row: 32 MB per cell line at 8,192-row groups; the ingest makes its default row
groups smaller when many cell lines are written at once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN

#: The landmark values' column path in Parquet (a list's values, as pyarrow names them).
VALUES_PATH = f"{VALUES_COLUMN}.list.element"


class ArrowLakeFile:
    """One lake Parquet file written by :class:`pyarrow.parquet.ParquetWriter`, a row group
    at a time: :meth:`write_page` copies a page's landmark values into the open row group's
    buffer, :meth:`end_row_group` writes them with the profile columns as one row group.

    Parameters
    ----------
    path, schema, compression, dictionary_columns
        As for :class:`~l1000_assets.core.lake.parquet_pages.PageLakeFile`.
    row_group_rows
        The most rows a row group gets (the size of the buffer, taken on the first page).
    data_page_size
        Bytes per data page of the landmark column (about).
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        compression: str,
        dictionary_columns: Sequence[str],
        *,
        row_group_rows: int,
        data_page_size: int,
    ):
        self._schema = schema
        self._capacity = row_group_rows
        self._values: NDArray[np.float32] | None = None
        self._rows = 0
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pq.ParquetWriter(
            self._sink,
            schema,
            compression=compression,
            use_dictionary=list(dictionary_columns),
            write_statistics=list(dictionary_columns),
            column_encoding={VALUES_PATH: "PLAIN"},
            data_page_version="2.0",
            data_page_size=data_page_size,
        )

    @property
    def position(self) -> int:
        """Bytes written to the file so far."""
        return self._sink.tell()

    def fileno(self) -> int:
        return self._sink.fileno()

    def write_page(self, values: NDArray[np.float32]) -> None:
        """Add ``len(values)`` rows of landmark values (``rows x 978`` float32) to the open
        row group."""
        if self._values is None:
            self._values = np.empty((self._capacity, N_LANDMARKS), np.float32)
        n = len(values)
        if self._rows + n > self._capacity:
            raise ValueError(f"{self._rows + n} rows for a row group of {self._capacity}")
        self._values[self._rows : self._rows + n] = values
        self._rows += n

    def end_row_group(self, meta: pa.RecordBatch) -> None:
        """Write the rows added since the last row group, with their profile columns
        ``meta``, as one row group."""
        n = self._rows
        if meta.num_rows != n:
            raise ValueError(f"{meta.num_rows} profile rows for {n} landmark rows")
        values = self._values[:n] if n else np.empty((0, N_LANDMARKS), np.float32)
        # A view of the buffer, not a copy: the writer is done with it when write returns.
        landmarks = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), N_LANDMARKS)
        batch = pa.record_batch([*meta.columns, landmarks], schema=self._schema)
        self._writer.write_batch(batch, row_group_size=max(n, 1))
        self._rows = 0

    def close(self) -> None:
        """Write the footer and close the file."""
        self._writer.close()
        self._sink.close()
        self._values = None

    def abort(self) -> None:
        """Close the file (the caller discards it)."""
        # pyarrow's writer would write its footer when collected anyway: let it now, while
        # the file is open, and let nothing it raises hide the error that got us here.
        with contextlib.suppress(pa.ArrowException, OSError):
            self._writer.close()
        self._sink.close()
        self._values = None
