"""A batch as a PostgreSQL COPY payload: the binary format, built column-wise with numpy (no Python loop per value
or per row), or the text format for the columns the binary one does not cover.

A typed batch (what `schema.coerce` gives) is sent as the server's own binary representation: nothing is
formatted as text here and nothing is parsed there. Each tuple is `int16 field count`, then per field `int32
length` (-1: NULL) and the value's bytes, all big-endian (https://www.postgresql.org/docs/current/sql-copy.html).
Columns whose SQL type or pandas dtype is not one of ours make `encode` return None, and the caller uses
`encode_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...schema import arrow_text
from .values import column_values

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2  # signature, flags, header extension length
TRAILER = b"\xff\xff"
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")
_PG_EPOCH_UTC = datetime(2000, 1, 1, tzinfo=UTC)

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
    """One column: lengths per row (-1 NULL), and its values: native numbers written in the `wire` (big-endian)
    dtype, one constant (np.void) for every row, or an Arrow text array."""

    def __init__(
        self,
        lengths: np.ndarray,
        values: np.ndarray | np.void | None = None,
        wire: str | None = None,
        text: pa.Array | None = None,
    ):
        self.lengths, self.values, self.wire, self.text = lengths, values, wire, text


def _fixed(values: np.ndarray, null: np.ndarray, wire: str) -> _Column:
    return _Column(np.where(null, -1, np.dtype(wire).itemsize).astype(np.int32), values, wire)


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
        arr = arr.cast(pa.large_binary())  # the same buffers, as bytes with int64 offsets
        lengths = pc.binary_length(arr).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        return _Column(lengths, text=arr)
    return None


def _constant_bytes(encoding: str | None, value: object) -> bytes | None:
    """One value of a column that is the same in every row (the lineage), in the binary format; None: NULL.
    Raises LookupError when the encoding is not one we write constants in."""
    if value is None:
        return None
    if encoding == "text" and isinstance(value, str):
        return value.encode()
    if encoding == "timestamptz" and isinstance(value, datetime) and value.tzinfo is not None:
        return ((value - _PG_EPOCH_UTC) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)
    raise LookupError(encoding)


def _constant(value: bytes | None, n: int) -> _Column:
    if not value:  # NULL (-1) or empty: the length alone
        return _Column(np.full(n, -1 if value is None else 0, np.int32))
    return _Column(np.full(n, len(value), np.int32), np.void(value), f"V{len(value)}")


def encode(
    rows: pd.DataFrame,
    encodings: dict[str, str | None],
    constants: Sequence[tuple[str | None, object]] = (),
    *,
    header: bool = True,
    trailer: bool = True,
) -> bytes | None:
    """The whole batch as one binary COPY payload, or None when a column is not ours to encode. `constants`:
    (encoding, value) of columns after the batch's that hold one value in every row (the lineage). Without
    `header` / `trailer`: a piece of a payload sent in several (the first piece has the header, the last the
    trailer)."""
    cols = []
    for name in rows.columns:
        enc = encodings.get(name)
        col = _encode_column(rows[name], enc) if enc else None
        if col is None:
            return None
        cols.append(col)
    try:
        cols += [_constant(_constant_bytes(enc, v), len(rows)) for enc, v in constants]
    except LookupError:
        return None
    return _assemble(cols, len(rows), HEADER if header else b"", TRAILER if trailer else b"")


def _assemble(cols: list[_Column], n: int, header: bytes = HEADER, trailer: bytes = TRAILER) -> bytes:
    """The tuples, row-major. The fixed-width fields between two text values (the field count, lengths,
    numbers, dates, the next text's length) form one segment, a packed numpy record per row; the rows are then
    the segments and the text columns joined element-wise by Arrow's C++ kernel (a memcpy per piece)."""
    pieces: list[pa.Array] = []
    fields: list[tuple[np.ndarray | int, str, np.ndarray | np.void | None, str | None]] = [
        (len(cols), ">i2", None, None)
    ]
    for col in cols:
        fields.append((col.lengths, ">i4", col.values, col.wire))
        if col.text is not None:
            pieces += [_segment(fields, n), col.text]
            fields = []
    if fields:
        pieces.append(_segment(fields, n))
    joined = (
        pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, _EMPTY, null_handling="skip")
    )
    _, offsets, data = joined.buffers()
    off = np.frombuffer(offsets, np.int64, len(joined) + 1, joined.offset * 8)
    return b"".join((header, memoryview(data)[int(off[0]) : int(off[-1])], trailer))


_EMPTY = pa.scalar(b"", pa.large_binary())


def _segment(
    fields: list[tuple[np.ndarray | int, str, np.ndarray | np.void | None, str | None]], n: int
) -> pa.Array:
    """Fixed-width fields side by side, as one binary value per row; a NULL value's bytes are left out. Each
    field is written through a packed record dtype: a typed strided copy, byte-swapped on the way."""
    names: list[str] = []
    formats: list[str] = []
    items: list[tuple[str, Any, Any]] = []  # (field, what to write in it, the lengths that say NULL)
    for i, (head, head_wire, values, wire) in enumerate(fields):
        names.append(f"h{i}")
        formats.append(head_wire)
        items.append((f"h{i}", head, None))
        if values is not None and wire is not None:
            names.append(f"v{i}")
            formats.append(wire)
            items.append((f"v{i}", values, head))
    layout = np.dtype({"names": names, "formats": formats})  # packed: no padding between fields
    rec = np.empty(n, layout)
    for name, value, _ in items:
        rec[name] = value
    width = layout.itemsize
    m = rec.view(np.uint8).reshape(n, width)
    keep = None
    for name, _, lengths in items:
        if isinstance(lengths, np.ndarray) and (null := lengths < 0).any():
            keep = np.ones(m.shape, bool) if keep is None else keep
            start = layout.fields[name][1] if layout.fields else 0
            keep[null, start : start + layout[name].itemsize] = False
    if keep is None:
        data, offsets = m.reshape(-1), np.arange(0, n * width + 1, width, dtype=np.int64)
    else:
        data, offsets = m[keep], np.zeros(n + 1, np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def encode_text(rows: pd.DataFrame, kinds: dict[str, str | None]) -> str:
    """The batch in COPY's text format, built column-wise (numpy) and joined into lines by the C csv writer."""
    cols = [column_values(rows[c], kinds.get(c), "postgresql") for c in rows.columns]
    # every value is already escaped text (NULL: ""), so a line is a tab join and the batch a newline join
    return "\n".join(map("\t".join, zip(*cols, strict=True))) + "\n"
