"""A batch as a PostgreSQL COPY payload: the binary format, built column-wise with numpy (no Python loop per value
or per row), or the text format for the columns the binary one does not cover.

A typed batch (what `schema.coerce` gives) is sent as the server's own binary representation: nothing is
formatted as text here and nothing is parsed there. Each tuple is `int16 field count`, then per field `int32
length` (-1: NULL) and the value's bytes, all big-endian (https://www.postgresql.org/docs/current/sql-copy.html).
Columns whose SQL type or pandas dtype is not one of ours make `encode` return None, and the caller uses
`encode_text`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ...schema import arrow_text
from .values import column_values

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2  # signature, flags, header extension length
TRAILER = b"\xff\xff"
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")

# SQL type (as SQLAlchemy compiles it for PostgreSQL) -> the binary encoding we write for it
SQL_TYPES = {
    "BIGINT": "int8",
    "DOUBLE PRECISION": "float8",
    "FLOAT(53)": "float8",
    "BOOLEAN": "bool",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "DATE": "date",
    "TEXT": "text",
}


class _Column:
    """One column: lengths per row (-1 NULL) and either fixed-width bytes (n x k) or a text buffer + offsets."""

    def __init__(
        self,
        lengths: np.ndarray,
        fixed: np.ndarray | None = None,
        data: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
    ):
        self.lengths, self.fixed, self.data, self.offsets = lengths, fixed, data, offsets


def _fixed(values: np.ndarray, null: np.ndarray, big_endian: str) -> _Column:
    width = np.dtype(big_endian).itemsize
    lengths = np.where(null, -1, width).astype(np.int64)
    return _Column(
        lengths, fixed=np.ascontiguousarray(values.astype(big_endian)).view(np.uint8).reshape(-1, width)
    )


def _encode_column(s: pd.Series, encoding: str) -> _Column | None:
    dtype = s.dtype
    if encoding == "int8" and dtype.kind in "iu":  # int64 and the nullable Int64 alike
        null = s.isna().to_numpy()
        return _fixed(s.to_numpy(dtype=np.int64, na_value=0), null, ">i8")
    if encoding == "float8" and dtype.kind == "f":
        null = s.isna().to_numpy()  # a NaN of a plain float column is NULL too, never 'NaN'
        return _fixed(s.to_numpy(dtype=np.float64, na_value=0.0), null, ">f8")
    if encoding == "bool" and dtype.kind == "b":
        null = s.isna().to_numpy()
        return _fixed(s.to_numpy(dtype=bool, na_value=False), null, "u1")
    if encoding in ("timestamptz", "date") and dtype.kind == "M":
        arr = (s.dt.tz_convert(None) if isinstance(dtype, pd.DatetimeTZDtype) else s).to_numpy()
        null = np.isnat(arr)
        if encoding == "date":
            days = arr.astype("datetime64[D]") - PG_EPOCH.astype("datetime64[D]")
            return _fixed(np.where(null, 0, days.astype(np.int64)), null, ">i4")
        us = (arr.astype("datetime64[us]") - PG_EPOCH).astype(np.int64)  # sub-microsecond digits are cut
        return _fixed(np.where(null, 0, us), null, ">i8")
    if encoding == "text" and (dtype.kind == "O" or isinstance(dtype, pd.StringDtype)):
        arr = arrow_text(s)
        if arr is None:  # not all str: the text format's general path handles it
            return None
        arr = arr.cast(pa.large_string())  # int64 offsets (a no-op for pandas' own Arrow strings)
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
        lengths = np.diff(offsets)
        lengths[arr.is_null().to_numpy(zero_copy_only=False)] = -1
        return _Column(lengths, data=data, offsets=offsets)
    return None


def encode(rows: pd.DataFrame, encodings: dict[str, str | None]) -> bytes | None:
    """The whole batch as one binary COPY payload, or None when a column is not ours to encode."""
    cols = []
    for name in rows.columns:
        enc = encodings.get(name)
        col = _encode_column(rows[name], enc) if enc else None
        if col is None:
            return None
        cols.append(col)
    n, ncols = len(rows), len(cols)
    sizes = [4 + np.maximum(c.lengths, 0) for c in cols]
    row_size = 2 + np.sum(sizes, axis=0) if cols else np.full(n, 2)
    starts = len(HEADER) + np.concatenate(([0], np.cumsum(row_size)[:-1])).astype(np.int64)
    out = np.empty(len(HEADER) + int(row_size.sum()) + len(TRAILER), dtype=np.uint8)
    out[: len(HEADER)] = np.frombuffer(HEADER, np.uint8)
    out[-2:] = 0xFF
    out[starts] = ncols >> 8
    out[starts + 1] = ncols & 0xFF
    pos = starts + 2
    four = np.arange(4)
    for col, size in zip(cols, sizes, strict=True):
        out[pos[:, None] + four] = col.lengths.astype(">i4").view(np.uint8).reshape(-1, 4)
        body = pos + 4
        if col.fixed is not None:
            valid = col.lengths >= 0
            out[body[valid][:, None] + np.arange(col.fixed.shape[1])] = col.fixed[valid]
        else:  # a text column: its buffer and offsets
            data, offsets = col.data, col.offsets
            assert data is not None and offsets is not None
            if len(data):
                # byte j of row r's text goes to body[r] + (j - offsets[r]); NULL and empty rows hold no bytes
                first, last = int(offsets[0]), int(offsets[-1])
                counts = np.diff(offsets)
                out[np.repeat(body - offsets[:-1], counts) + np.arange(first, last)] = data[first:last]
        pos = pos + size
    return out.tobytes()


def encode_text(rows: pd.DataFrame, kinds: dict[str, str | None]) -> str:
    """The batch in COPY's text format, built column-wise (numpy) and joined into lines by the C csv writer."""
    cols = [column_values(rows[c], kinds.get(c), "postgresql") for c in rows.columns]
    # every value is already escaped text (NULL: ""), so a line is a tab join and the batch a newline join
    return "\n".join(map("\t".join, zip(*cols, strict=True))) + "\n"
