"""The lake's fast Parquet writer: profile columns encoded by Arrow, landmark values written
as plain data pages straight from the matrix block (see :class:`PageLakeFile`).

Parquet stores the fixed-size list as a LIST column: every one of the 978 values of a row
carries a repetition and a definition level. Arrow's writer builds and encodes those levels
value by value, about three quarters of the CPU an ingest spends writing. For a list that
always holds 978 non-null floats they are the same few bytes for every row, so
:class:`PageLakeFile` writes the landmark column chunk itself: PLAIN data pages (v1) of whole
rows, the levels as RLE runs computed once per page length, the values straight from the
buffer. The profile columns of each row group are encoded by Arrow's writer (dictionary,
statistics) into memory and copied in, their offsets moved to where they land. The schema,
Arrow schema and key-value metadata of the footer are those Arrow writes for the full schema,
so every reader sees exactly the file Arrow's writer would make.

Page headers and the footer are Thrift compact protocol structs, handled here as
``{field id: (compact type, value)}`` dicts (:data:`Struct`): lists are ``(element type,
[values])``, maps ``(key type, value type, [(k, v)])``. Decoding then encoding a struct gives
back its bytes exactly. The field ids and enum values are named below as in
``parquet.thrift`` (one ``IntEnum`` per struct or enum), and read and built with
:func:`_get`, :func:`_elements` and the typed constructors (:func:`_i32` ...).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN


# --------------------------------------------------------------------------------------
# Thrift compact protocol
# --------------------------------------------------------------------------------------
class Compact(IntEnum):
    """Thrift compact protocol type codes."""

    TRUE = 1
    FALSE = 2
    BYTE = 3
    I16 = 4
    I32 = 5
    I64 = 6
    DOUBLE = 7
    BINARY = 8
    LIST = 9
    SET = 10
    MAP = 11
    STRUCT = 12


_INTS = (Compact.I16, Compact.I32, Compact.I64)
_BOOLS = (Compact.TRUE, Compact.FALSE)

#: A decoded struct: field id -> (compact type, value).
Struct = dict[int, tuple[int, object]]


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
    if t == Compact.BINARY:
        n, pos = _read_varint(buf, pos)
        return bytes(buf[pos : pos + n]), pos + n
    if t == Compact.STRUCT:
        fields: Struct = {}
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
            if ft in _BOOLS:
                val: object = ft == Compact.TRUE
            else:
                val, pos = _thrift_read(buf, pos, ft)
            fields[fid] = (ft, val)
            last = fid
    if t == Compact.LIST or t == Compact.SET:
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
    if t in (*_BOOLS, Compact.BYTE):  # a bool in a list is one byte, kept as it is
        return buf[pos], pos + 1
    if t == Compact.DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if t == Compact.MAP:
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
    elif t == Compact.BINARY:
        _write_varint(len(v), out)
        out += v
    elif t == Compact.STRUCT:
        last = 0
        for fid in sorted(v):
            ft, val = v[fid]
            if ft in _BOOLS:
                ft = Compact.TRUE if val else Compact.FALSE
            if 0 < fid - last <= 15:
                out.append((fid - last) << 4 | ft)
            else:
                out.append(ft)
                _write_varint((fid << 1) ^ (fid >> 63), out)
            if ft not in _BOOLS:
                _thrift_write(out, ft, val)
            last = fid
        out.append(0)
    elif t == Compact.LIST or t == Compact.SET:
        et, items = v
        if len(items) < 15:
            out.append(len(items) << 4 | et)
        else:
            out.append(0xF0 | et)
            _write_varint(len(items), out)
        for item in items:
            _thrift_write(out, et, item)
    elif t in (*_BOOLS, Compact.BYTE):
        out.append(v & 0xFF)
    elif t == Compact.DOUBLE:
        out += struct.pack("<d", v)
    elif t == Compact.MAP:
        kt, vt, pairs = v
        _write_varint(len(pairs), out)
        if pairs:
            out.append(kt << 4 | vt)
            for k, val in pairs:
                _thrift_write(out, kt, k)
                _thrift_write(out, vt, val)
    else:
        raise ValueError(f"Thrift compact type {t}")


def _thrift_struct(fields: Struct) -> bytes:
    out = bytearray()
    _thrift_write(out, Compact.STRUCT, fields)
    return bytes(out)


def _i16(value: int) -> tuple[int, int]:
    return Compact.I16, value


def _i32(value: int) -> tuple[int, int]:
    return Compact.I32, value


def _i64(value: int) -> tuple[int, int]:
    return Compact.I64, value


def _struct(fields: Struct) -> tuple[int, Struct]:
    return Compact.STRUCT, fields


def _list(element_type: int, items: list) -> tuple[int, tuple[int, list]]:
    return Compact.LIST, (element_type, items)


def _get(fields: Struct, fid: int):
    """The value of field ``fid`` of a struct."""
    return fields[fid][1]


def _elements(fields: Struct, fid: int) -> list:
    """The elements of list field ``fid`` of a struct (the list itself, to change in place)."""
    return fields[fid][1][1]


# --------------------------------------------------------------------------------------
# parquet.thrift: the enum values and struct field ids used here
# --------------------------------------------------------------------------------------
class Type(IntEnum):
    FLOAT = 4


class FieldRepetitionType(IntEnum):
    REQUIRED = 0
    OPTIONAL = 1
    REPEATED = 2


class Encoding(IntEnum):
    PLAIN = 0
    RLE = 3


class PageType(IntEnum):
    DATA_PAGE = 0
    INDEX_PAGE = 1
    DICTIONARY_PAGE = 2
    DATA_PAGE_V2 = 3


class CompressionCodec(IntEnum):
    UNCOMPRESSED = 0
    SNAPPY = 1
    GZIP = 2
    BROTLI = 4
    ZSTD = 6
    LZ4_RAW = 7


class FileMetaData(IntEnum):
    VERSION = 1
    SCHEMA = 2
    NUM_ROWS = 3
    ROW_GROUPS = 4
    KEY_VALUE_METADATA = 5
    CREATED_BY = 6
    COLUMN_ORDERS = 7


class SchemaElement(IntEnum):
    TYPE = 1
    TYPE_LENGTH = 2
    REPETITION_TYPE = 3
    NAME = 4
    NUM_CHILDREN = 5
    CONVERTED_TYPE = 6
    LOGICAL_TYPE = 10


class RowGroup(IntEnum):
    COLUMNS = 1
    TOTAL_BYTE_SIZE = 2
    NUM_ROWS = 3
    SORTING_COLUMNS = 4
    FILE_OFFSET = 5
    TOTAL_COMPRESSED_SIZE = 6
    ORDINAL = 7


class ColumnChunk(IntEnum):
    FILE_PATH = 1
    FILE_OFFSET = 2
    META_DATA = 3
    OFFSET_INDEX_OFFSET = 4
    OFFSET_INDEX_LENGTH = 5
    COLUMN_INDEX_OFFSET = 6
    COLUMN_INDEX_LENGTH = 7


class ColumnMetaData(IntEnum):
    TYPE = 1
    ENCODINGS = 2
    PATH_IN_SCHEMA = 3
    CODEC = 4
    NUM_VALUES = 5
    TOTAL_UNCOMPRESSED_SIZE = 6
    TOTAL_COMPRESSED_SIZE = 7
    KEY_VALUE_METADATA = 8
    DATA_PAGE_OFFSET = 9
    INDEX_PAGE_OFFSET = 10
    DICTIONARY_PAGE_OFFSET = 11
    STATISTICS = 12
    ENCODING_STATS = 13
    BLOOM_FILTER_OFFSET = 14
    BLOOM_FILTER_LENGTH = 15
    SIZE_STATISTICS = 16


class PageEncodingStats(IntEnum):
    PAGE_TYPE = 1
    ENCODING = 2
    COUNT = 3


class PageHeader(IntEnum):
    TYPE = 1
    UNCOMPRESSED_PAGE_SIZE = 2
    COMPRESSED_PAGE_SIZE = 3
    CRC = 4
    DATA_PAGE_HEADER = 5


class DataPageHeader(IntEnum):
    NUM_VALUES = 1
    ENCODING = 2
    DEFINITION_LEVEL_ENCODING = 3
    REPETITION_LEVEL_ENCODING = 4
    STATISTICS = 5


#: Codec names as pyarrow takes them -> (Parquet codec, :class:`pyarrow.Codec` name).
#: Parquet's "LZ4" in pyarrow is the raw block format (LZ4_RAW).
CODECS: dict[str, tuple[CompressionCodec, str | None]] = {
    "none": (CompressionCodec.UNCOMPRESSED, None),
    "snappy": (CompressionCodec.SNAPPY, "snappy"),
    "gzip": (CompressionCodec.GZIP, "gzip"),
    "brotli": (CompressionCodec.BROTLI, "brotli"),
    "zstd": (CompressionCodec.ZSTD, "zstd"),
    "lz4": (CompressionCodec.LZ4_RAW, "lz4_raw"),
}
_IOV_MAX = 1024  # pieces one writev takes (POSIX allows no fewer than 16; Linux, macOS: 1024)
# File offsets a ColumnChunk holds, in its ColumnMetaData and in itself.
_META_OFFSETS = (
    ColumnMetaData.DATA_PAGE_OFFSET,
    ColumnMetaData.INDEX_PAGE_OFFSET,
    ColumnMetaData.DICTIONARY_PAGE_OFFSET,
    ColumnMetaData.BLOOM_FILTER_OFFSET,
)
_CHUNK_OFFSETS = (ColumnChunk.OFFSET_INDEX_OFFSET, ColumnChunk.COLUMN_INDEX_OFFSET)


def _parquet_footer(buf) -> tuple[Struct, int]:
    """The decoded FileMetaData of the Parquet file in ``buf``, and the offset where it starts."""
    n = struct.unpack_from("<i", buf, len(buf) - 8)[0]
    start = len(buf) - 8 - n
    meta, _ = _thrift_read(buf, start, Compact.STRUCT)
    return meta, start


def _rle_run(count: int, value: int) -> bytes:
    """One run of the RLE/bit-packing hybrid: ``count`` times ``value`` (bit width <= 8)."""
    out = bytearray()
    _write_varint(count << 1, out)
    out.append(value)
    return bytes(out)


def _shift_offsets(chunk: Struct, shift: int) -> None:
    """Move a ColumnChunk's file offsets by ``shift`` bytes."""
    meta = _get(chunk, ColumnChunk.META_DATA)
    for fields, fids in ((meta, _META_OFFSETS), (chunk, _CHUNK_OFFSETS)):
        for fid in fids:
            if fid in fields:
                kind, offset = fields[fid]
                fields[fid] = (kind, offset + shift)


# --------------------------------------------------------------------------------------
# Lake files: the profile columns encoded by Parquet, the landmark values written as they are
# --------------------------------------------------------------------------------------
class PageLakeFile:
    """One lake Parquet file, written page by page and row group by row group; see the
    module docstring.

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
        elements = _elements(self._footer, FileMetaData.SCHEMA)
        names = [_get(e, SchemaElement.NAME) for e in elements]
        lm = names.index(VALUES_COLUMN.encode())
        if names[lm + 1 :] != [b"list", b"element"] or (
            _get(elements[lm + 2], SchemaElement.TYPE) != Type.FLOAT
        ):
            raise ValueError(f"{VALUES_COLUMN!r} must be the last column, a list of float32")
        self._path = names[lm:]
        # Every value is defined (non-null): the deepest definition level.
        self._max_def = sum(
            _get(e, SchemaElement.REPETITION_TYPE) != FieldRepetitionType.REQUIRED
            for e in elements[lm:]
        )
        self._row_rep = _rle_run(1, 0) + _rle_run(N_LANDMARKS - 1, 1)  # list start, then 977
        self._levels: dict[int, bytes] = {}
        self._row_groups: list[Struct] = []
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
                PageHeader.TYPE: _i32(PageType.DATA_PAGE),
                PageHeader.UNCOMPRESSED_PAGE_SIZE: _i32(size),
                PageHeader.COMPRESSED_PAGE_SIZE: _i32(compressed),
                PageHeader.DATA_PAGE_HEADER: _struct(
                    {
                        DataPageHeader.NUM_VALUES: _i32(rows * N_LANDMARKS),
                        DataPageHeader.ENCODING: _i32(Encoding.PLAIN),
                        DataPageHeader.DEFINITION_LEVEL_ENCODING: _i32(Encoding.RLE),
                        DataPageHeader.REPETITION_LEVEL_ENCODING: _i32(Encoding.RLE),
                    }
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
        landmarks: Struct = {
            ColumnChunk.FILE_OFFSET: _i64(0),
            ColumnChunk.META_DATA: _struct(
                {
                    ColumnMetaData.TYPE: _i32(Type.FLOAT),
                    ColumnMetaData.ENCODINGS: _list(Compact.I32, [Encoding.PLAIN, Encoding.RLE]),
                    ColumnMetaData.PATH_IN_SCHEMA: _list(Compact.BINARY, self._path),
                    ColumnMetaData.CODEC: _i32(self._codec_id),
                    ColumnMetaData.NUM_VALUES: _i64(n * N_LANDMARKS),
                    ColumnMetaData.TOTAL_UNCOMPRESSED_SIZE: _i64(self._uncompressed),
                    ColumnMetaData.TOTAL_COMPRESSED_SIZE: _i64(self.position - self._group_start),
                    ColumnMetaData.DATA_PAGE_OFFSET: _i64(self._group_start),
                    ColumnMetaData.ENCODING_STATS: _list(
                        Compact.STRUCT,
                        [
                            {
                                PageEncodingStats.PAGE_TYPE: _i32(PageType.DATA_PAGE),
                                PageEncodingStats.ENCODING: _i32(Encoding.PLAIN),
                                PageEncodingStats.COUNT: _i32(self._pages),
                            }
                        ],
                    ),
                }
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
        groups = _elements(small, FileMetaData.ROW_GROUPS)
        if len(groups) != 1:
            raise ValueError("profile columns not in one row group")
        columns = _elements(groups[0], RowGroup.COLUMNS)
        for chunk in columns:
            _shift_offsets(chunk, self.position - 4)  # they land here, not after "PAR1"
        self._put([encoded.slice(4, end - 4)])
        columns.append(landmarks)
        self._row_groups.append(
            {
                RowGroup.COLUMNS: _list(Compact.STRUCT, columns),
                RowGroup.TOTAL_BYTE_SIZE: _i64(
                    sum(
                        _get(_get(c, ColumnChunk.META_DATA), ColumnMetaData.TOTAL_UNCOMPRESSED_SIZE)
                        for c in columns
                    )
                ),
                RowGroup.NUM_ROWS: _i64(n),
                RowGroup.FILE_OFFSET: _i64(self._group_start),
                RowGroup.TOTAL_COMPRESSED_SIZE: _i64(self.position - self._group_start),
                RowGroup.ORDINAL: _i16(len(self._row_groups)),
            }
        )
        self._rows += n
        self._group_rows = self._pages = self._uncompressed = 0

    def close(self) -> None:
        """Write the footer and close the file."""
        footer = dict(self._footer)
        footer[FileMetaData.NUM_ROWS] = _i64(self._rows)
        footer[FileMetaData.ROW_GROUPS] = _list(Compact.STRUCT, self._row_groups)
        encoded = _thrift_struct(footer)
        self._put([encoded, struct.pack("<i", len(encoded)), b"PAR1"])
        self.file.close()

    def abort(self) -> None:
        """Close the file as it is, without a footer (the caller discards it)."""
        self.file.close()
