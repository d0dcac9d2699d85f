"""The lake's Parquet writer: profile columns encoded by Arrow, landmark values written as
plain data pages straight from the matrix block (see :class:`PageLakeFile`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN

# --------------------------------------------------------------------------------------
# Lake files: the profile columns encoded by Parquet, the landmark values written as they are
# --------------------------------------------------------------------------------------
# Parquet stores the fixed-size list as a LIST column: every one of the 978 values of a row
# carries a repetition and a definition level. Arrow's writer builds and encodes those
# levels value by value, about three quarters of the CPU an ingest spends writing. For a
# list that always holds 978 non-null floats they are the same few bytes for every row, so
# PageLakeFile writes the landmark column chunk itself: PLAIN data pages (v1) of whole rows,
# the levels as RLE runs computed once per page length, the values straight from the
# buffer. The profile columns of each row group are encoded by Arrow's writer (dictionary,
# statistics) into memory and copied in, their offsets moved to where they land. The
# schema, Arrow schema and key-value metadata of the footer are those Arrow writes for the
# full schema, so every reader sees exactly the file Arrow's writer would make.
#
# Page headers and the footer are Thrift compact protocol structs, handled below as
# ``{field id: (compact type, value)}`` dicts: lists are ``(element type, [values])``,
# maps ``(key type, value type, [(k, v)])``. Decoding then encoding a struct gives back
# its bytes exactly.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
_INTS = (_I16, _I32, _I64)
# Parquet enum values used for the landmark column chunk.
_DATA_PAGE, _FLOAT, _PLAIN, _RLE = 0, 4, 0, 3
_REQUIRED, _OPTIONAL, _REPEATED = 0, 1, 2
# Codec names as pyarrow takes them -> (Parquet CompressionCodec, pyarrow.Codec name).
# Parquet's "LZ4" in pyarrow is the raw block format (LZ4_RAW).
CODECS = {
    "none": (0, None),
    "snappy": (1, "snappy"),
    "gzip": (2, "gzip"),
    "brotli": (4, "brotli"),
    "zstd": (6, "zstd"),
    "lz4": (7, "lz4_raw"),
}
_IOV_MAX = 1024  # pieces one writev takes (POSIX allows no fewer than 16; Linux, macOS: 1024)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _thrift_read(buf, pos: int, t: int) -> tuple[object, int]:
    """Decode the compact-protocol value of type ``t`` at ``pos``: ``(value, next pos)``."""
    if t in _INTS:
        v, pos = _read_varint(buf, pos)
        return (v >> 1) ^ -(v & 1), pos
    if t == _BINARY:
        n, pos = _read_varint(buf, pos)
        return bytes(buf[pos : pos + n]), pos + n
    if t == _STRUCT:
        fields: dict[int, tuple[int, object]] = {}
        last = 0
        while True:
            h = buf[pos]
            pos += 1
            if h == 0:
                return fields, pos
            ft, delta = h & 0x0F, h >> 4
            if delta:
                fid = last + delta
            else:
                v, pos = _read_varint(buf, pos)
                fid = (v >> 1) ^ -(v & 1)
            if ft == _TRUE or ft == _FALSE:
                val: object = ft == _TRUE
            else:
                val, pos = _thrift_read(buf, pos, ft)
            fields[fid] = (ft, val)
            last = fid
    if t == _LIST or t == _SET:
        h = buf[pos]
        pos += 1
        n, et = h >> 4, h & 0x0F
        if n == 15:
            n, pos = _read_varint(buf, pos)
        items = []
        for _ in range(n):
            item, pos = _thrift_read(buf, pos, et)
            items.append(item)
        return (et, items), pos
    if t in (_TRUE, _FALSE, _BYTE):  # a bool in a list is one byte, kept as it is
        return buf[pos], pos + 1
    if t == _DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if t == _MAP:
        n, pos = _read_varint(buf, pos)
        if n == 0:
            return (0, 0, []), pos
        kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(n):
            k, pos = _thrift_read(buf, pos, kt)
            v, pos = _thrift_read(buf, pos, vt)
            pairs.append((k, v))
        return (kt, vt, pairs), pos
    raise ValueError(f"Thrift compact type {t}")


def _write_varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _thrift_write(out: bytearray, t: int, v) -> None:
    """Append the compact-protocol encoding of ``v`` (of type ``t``) to ``out``."""
    if t in _INTS:
        _write_varint((v << 1) ^ (v >> 63), out)
    elif t == _BINARY:
        _write_varint(len(v), out)
        out += v
    elif t == _STRUCT:
        last = 0
        for fid in sorted(v):
            ft, val = v[fid]
            if ft == _TRUE or ft == _FALSE:
                ft = _TRUE if val else _FALSE
            if 0 < fid - last <= 15:
                out.append((fid - last) << 4 | ft)
            else:
                out.append(ft)
                _write_varint((fid << 1) ^ (fid >> 63), out)
            if ft != _TRUE and ft != _FALSE:
                _thrift_write(out, ft, val)
            last = fid
        out.append(0)
    elif t == _LIST or t == _SET:
        et, items = v
        if len(items) < 15:
            out.append(len(items) << 4 | et)
        else:
            out.append(0xF0 | et)
            _write_varint(len(items), out)
        for item in items:
            _thrift_write(out, et, item)
    elif t in (_TRUE, _FALSE, _BYTE):
        out.append(v & 0xFF)
    elif t == _DOUBLE:
        out += struct.pack("<d", v)
    elif t == _MAP:
        kt, vt, pairs = v
        _write_varint(len(pairs), out)
        if pairs:
            out.append(kt << 4 | vt)
            for k, val in pairs:
                _thrift_write(out, kt, k)
                _thrift_write(out, vt, val)
    else:
        raise ValueError(f"Thrift compact type {t}")


def _thrift_struct(fields: dict) -> bytes:
    out = bytearray()
    _thrift_write(out, _STRUCT, fields)
    return bytes(out)


def _parquet_footer(buf) -> tuple[dict, int]:
    """The decoded FileMetaData of the Parquet file in ``buf``, and the offset where it starts."""
    n = struct.unpack_from("<i", buf, len(buf) - 8)[0]
    start = len(buf) - 8 - n
    meta, _ = _thrift_read(buf, start, _STRUCT)
    return meta, start


def _rle_run(count: int, value: int) -> bytes:
    """One run of the RLE/bit-packing hybrid: ``count`` times ``value`` (bit width <= 8)."""
    out = bytearray()
    _write_varint(count << 1, out)
    out.append(value)
    return bytes(out)


def _shift_offsets(chunk: dict, shift: int) -> None:
    """Move a ColumnChunk's file offsets by ``shift`` bytes."""
    meta = chunk[3][1]
    for fid in (9, 10, 11, 14):  # data, index and dictionary page, bloom filter
        if fid in meta:
            meta[fid] = (meta[fid][0], meta[fid][1] + shift)
    for fid in (4, 6):  # offset index, column index
        if fid in chunk:
            chunk[fid] = (chunk[fid][0], chunk[fid][1] + shift)


class PageLakeFile:
    """One lake Parquet file, written page by page and row group by row group; see the
    comment above.

    Each row group is written as its landmark column chunk (:meth:`write_page`, whole rows
    a page) followed by its profile columns (:meth:`end_row_group`); the footer lists the
    chunks in schema order, with their offsets.
    """

    def __init__(
        self, path: Path, schema: pa.Schema, compression: str, dictionary_columns: Sequence[str]
    ):
        self._codec_id, name = CODECS[compression]
        self._codec = pa.Codec(name) if name else None
        self._compression = compression
        self._dictionary_columns = list(dictionary_columns)
        # Only the row group is kept from the files the profile columns are encoded into.
        self._meta_schema = pa.schema([f for f in schema if f.name != VALUES_COLUMN])
        sink = pa.BufferOutputStream()
        pq.ParquetWriter(sink, schema, compression=compression).close()
        self._footer, _ = _parquet_footer(sink.getvalue())
        elements = self._footer[2][1][1]
        names = [e[4][1] for e in elements]
        lm = names.index(VALUES_COLUMN.encode())
        if names[lm + 1 :] != [b"list", b"element"] or elements[lm + 2][1][1] != _FLOAT:
            raise ValueError(f"{VALUES_COLUMN!r} must be the last column, a list of float32")
        self._path = names[lm:]
        # Every value is defined (non-null): the deepest definition level.
        self._max_def = sum(e[3][1] != _REQUIRED for e in elements[lm:])
        self._row_rep = _rle_run(1, 0) + _rle_run(N_LANDMARKS - 1, 1)  # list start, then 977
        self._levels: dict[int, bytes] = {}
        self._row_groups: list[dict] = []
        self._rows = 0
        self._group_rows = self._pages = self._uncompressed = 0
        self._group_start = 0
        self.file = open(path, "wb", buffering=0)
        self.position = 0
        self._put([b"PAR1"])

    def fileno(self) -> int:
        return self.file.fileno()

    def _put(self, parts: Sequence) -> None:
        """Append ``parts`` (bytes-like objects) to the file."""
        size = sum(len(p) for p in parts) if len(parts) > 1 else -1
        if size > 0 and hasattr(os, "writev") and len(parts) <= _IOV_MAX:
            written = os.writev(self.file.fileno(), parts)
            self.position += written
            if written == size:
                return
            # A partial write (rare): write the rest piece by piece.
            parts = [memoryview(b"".join(parts))[written:]]
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                n = self.file.write(view)
                self.position += n
                view = view[n:]

    def _page_levels(self, rows: int) -> bytes:
        """Repetition then definition levels of a page of ``rows`` rows (v1: each
        prefixed with its length)."""
        if rows not in self._levels:
            rep = self._row_rep * rows
            dfn = _rle_run(rows * N_LANDMARKS, self._max_def)
            self._levels[rows] = (
                struct.pack("<i", len(rep)) + rep + struct.pack("<i", len(dfn)) + dfn
            )
        return self._levels[rows]

    def write_page(self, values: NDArray[np.float32]) -> None:
        """Append a data page of ``len(values)`` rows to the current row group's landmark
        chunk; ``values``: ``rows x 978`` float32, C-contiguous, written as they are."""
        rows = len(values)
        if self._group_rows == 0:
            self._group_start = self.position
        # Parquet is little-endian: no copy unless the machine is not.
        data = memoryview(np.ascontiguousarray(values, "<f4").reshape(-1).view(np.uint8))
        levels = self._page_levels(rows)
        size = len(levels) + len(data)
        if self._codec is None:
            payload = [levels, data]
            compressed = size
        else:
            payload = [self._codec.compress(b"".join([levels, data]), asbytes=True)]
            compressed = len(payload[0])
        header = _thrift_struct(
            {
                1: (_I32, _DATA_PAGE),
                2: (_I32, size),
                3: (_I32, compressed),
                5: (
                    _STRUCT,
                    {
                        1: (_I32, rows * N_LANDMARKS),
                        2: (_I32, _PLAIN),
                        3: (_I32, _RLE),
                        4: (_I32, _RLE),
                    },
                ),
            }
        )
        self._put([header, *payload])
        self._uncompressed += len(header) + size
        self._pages += 1
        self._group_rows += rows

    def end_row_group(self, meta: pa.RecordBatch) -> None:
        """Write the profile columns ``meta`` of the rows paged since the last row group
        and close the row group."""
        n = self._group_rows
        if meta.num_rows != n:
            raise ValueError(f"{meta.num_rows} profile rows for {n} landmark rows")
        landmarks = {
            2: (_I64, 0),
            3: (
                _STRUCT,
                {
                    1: (_I32, _FLOAT),
                    2: (_LIST, (_I32, [_PLAIN, _RLE])),
                    3: (_LIST, (_BINARY, self._path)),
                    4: (_I32, self._codec_id),
                    5: (_I64, n * N_LANDMARKS),
                    6: (_I64, self._uncompressed),
                    7: (_I64, self.position - self._group_start),
                    9: (_I64, self._group_start),
                    13: (
                        _LIST,
                        (
                            _STRUCT,
                            [{1: (_I32, _DATA_PAGE), 2: (_I32, _PLAIN), 3: (_I32, self._pages)}],
                        ),
                    ),
                },
            ),
        }
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(
            sink,
            self._meta_schema,
            compression=self._compression,
            use_dictionary=self._dictionary_columns,
            write_statistics=self._dictionary_columns,
            store_schema=False,
        ) as writer:
            writer.write_batch(meta, row_group_size=max(n, 1))
        encoded = sink.getvalue()
        small, end = _parquet_footer(encoded)
        if len(small[4][1][1]) != 1:
            raise ValueError("profile columns not in one row group")
        columns = small[4][1][1][0][1][1][1]
        for chunk in columns:
            _shift_offsets(chunk, self.position - 4)  # they land here, not after "PAR1"
        self._put([encoded.slice(4, end - 4)])
        columns.append(landmarks)
        self._row_groups.append(
            {
                1: (_LIST, (_STRUCT, columns)),
                2: (_I64, sum(c[3][1][6][1] for c in columns)),
                3: (_I64, n),
                5: (_I64, self._group_start),
                6: (_I64, self.position - self._group_start),
                7: (_I16, len(self._row_groups)),
            }
        )
        self._rows += n
        self._group_rows = self._pages = self._uncompressed = 0

    def close(self) -> None:
        """Write the footer and close the file."""
        footer = dict(self._footer)
        footer[3] = (_I64, self._rows)
        footer[4] = (_LIST, (_STRUCT, self._row_groups))
        encoded = _thrift_struct(footer)
        self._put([encoded, struct.pack("<i", len(encoded)), b"PAR1"])
        self.file.close()

    def abort(self) -> None:
        """Close the file as it is, without a footer (the caller discards it)."""
        self.file.close()
