"""A typed batch's columns as driver-ready values, vectorised per dtype: text for PostgreSQL's COPY, Python
values for SQLite's statements."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def column_values(s: pd.Series, kind: str | None, dialect: str) -> np.ndarray:
    """One column of a typed batch (schema.Coerced.good) as driver-ready values, vectorised per dtype.

    PostgreSQL (text COPY): str (or int/float, which the csv writer formats in C), NULL as "" - an empty
    string never reaches the warehouse: coercion reads it as NULL. SQLite: Python values, None for NULL,
    timestamps and dates as ISO text (what `datetime.isoformat()` gives).
    """
    pg = dialect == "postgresql"
    null_value = "" if pg else None
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        aware = isinstance(dtype, pd.DatetimeTZDtype)
        arr = (s.dt.tz_convert(None) if aware else s).to_numpy()
        mask = np.isnat(arr)
        if kind == "date":
            text = _iso_dates(arr)
        else:
            suffix = "+00:00" if aware else ""
            text = _iso_seconds(arr, suffix)
        text[mask] = null_value
        return text
    if dtype == "boolean" or dtype.kind == "b":
        if pg:
            out = np.where(s.fillna(False).to_numpy(dtype=bool), "t", "f").astype(object)
            out[s.isna().to_numpy()] = null_value
            return out
        return s.to_numpy(dtype=object, na_value=None)
    if dtype.kind in "iuf":  # int64/float64 and the nullable Int64/Float64
        mask = pd.isna(s).to_numpy()  # a float NaN (a frame not made by coerce) is NULL too, never 'NaN'
        arr = s.to_numpy(dtype=object, na_value=None)
        if pg:  # Python's str of an int, and of a float (shortest round-trip repr), as PostgreSQL reads them
            arr = np.array(list(map(str, arr)), dtype=object)
        arr[mask] = null_value
        return arr
    arr = s.to_numpy(dtype=object, na_value=None)
    if pd.api.types.infer_dtype(arr, skipna=True) not in ("string", "empty"):
        arr = np.array([_generic(v, pg) for v in arr], dtype=object)
    mask = pd.isna(arr)
    if pg:
        arr = arr.copy()
        arr[mask] = ""
        joined = "\x1f".join(arr)  # one C scan: does any value need escaping at all?
        if any(c in joined for c in _PG_SPECIAL):
            arr = np.array([_pg_escape(v) for v in arr], dtype=object)
    elif mask.any():
        arr = arr.copy()
        arr[mask] = None
    return arr


_PG_SPECIAL = ("\\", "\t", "\n", "\r")


def _pg_escape(v: str) -> str:
    """COPY's text format: backslash, tab, newline and carriage return are escaped."""
    if not any(c in v for c in _PG_SPECIAL):
        return v
    return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _generic(v: Any, pg: bool) -> Any:
    """A value of an object column that is not text (a frame not made by coerce)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, bool):
        return ("t" if v else "f") if pg else v
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    if isinstance(v, int | float):
        return str(v) if pg else v
    return str(v)


_FOUR_DIGIT_YEARS = (np.datetime64("1000-01-01", "s"), np.datetime64("9999-12-31T23:59:59", "s"))


def _arrow_formats(arr: np.ndarray) -> bool:
    """Arrow's casts to text write a year of four digits as numpy does; other years are left to numpy."""
    valid = arr[~np.isnat(arr)]
    return not len(valid) or bool(_FOUR_DIGIT_YEARS[0] <= valid.min() and valid.max() <= _FOUR_DIGIT_YEARS[1])


def _iso_dates(arr: np.ndarray) -> np.ndarray:
    if _arrow_formats(arr):  # C++ formatting, 5x numpy's
        return pc.cast(pa.array(arr.astype("datetime64[D]"), from_pandas=True), pa.string()).to_numpy(
            zero_copy_only=False
        )
    return np.datetime_as_string(arr, unit="D").astype(object)


def _iso_seconds(arr: np.ndarray, suffix: str) -> np.ndarray:
    """ISO 8601 text of datetime64 values as `isoformat()` writes them: seconds, or microseconds when a value
    has a fraction (nanoseconds when it has those)."""
    if _arrow_formats(arr):  # "YYYY-MM-DD hh:mm:ss" from Arrow's C++ cast, then the T and the zone
        text = pc.replace_substring(
            pc.cast(pa.array(arr.astype("datetime64[s]"), from_pandas=True), pa.string()),
            " ",
            "T",
            max_replacements=1,
        )
        out = pc.binary_join_element_wise(text, pa.scalar(suffix), "").to_numpy(zero_copy_only=False)
    else:
        out = np.char.add(np.datetime_as_string(arr, unit="s"), suffix).astype(object)
    valid = ~np.isnat(arr)
    frac = valid & (arr.astype("datetime64[s]") != arr)
    if frac.any():
        sub_us = valid & (arr.astype("datetime64[us]") != arr)
        us = frac & ~sub_us
        out[us] = np.char.add(np.datetime_as_string(arr[us], unit="us"), suffix)
        if sub_us.any():
            out[sub_us] = np.char.add(np.datetime_as_string(arr[sub_us], unit="ns"), suffix)
    return out
