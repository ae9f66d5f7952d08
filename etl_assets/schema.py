"""Coercion: each column typed by its declared kind into good rows and quarantined rows (with reasons).

A reference path value by value (`coerce_column`) and vectorised fast paths for text columns
(`coerce_text_column`, Arrow casts first), tested equal; the schema a first load pins (`infer_schema`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .dates import DateRules, timestamps
from .integers import int_values
from .problems import Problems, no_problems, or_none, problems_where
from .types import COLUMN_TYPES, NULL_STRINGS

log = logging.getLogger(__name__)

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
# the spellings met in practice, looked up at C speed; anything else (padded, mixed case) takes the slow path
_BOOL_FAST = {
    **{v: True for t in _TRUE for v in (t, t.upper(), t.capitalize())},
    **{v: False for f in _FALSE for v in (f, f.upper(), f.capitalize())},
}


def _is_null(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) or v == ""


def _is_null_word(v: object) -> bool:
    return isinstance(v, str) and v.strip().casefold() in NULL_STRINGS


def _floats(num: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """Parsed numbers as Float64, and the problems of the values that are not numbers."""
    bad = ~null & num.isna()
    return num.where(~bad & ~null).astype("Float64"), problems_where(bad, "is not a valid float")


_PLAIN_INT = r"^[+-]?[0-9]{1,18}$"  # always within int64, read by Arrow's exact int64 cast
NUL_BYTE = "contains a NUL byte"  # PostgreSQL text cannot hold one
_NOT_JSON = object()
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash + "u0000"


def _int_text(col: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """A column of strings as Int64: plain digit runs (the bulk) by Arrow's exact int64 cast, the rest (padded,
    null words, "5.0", too long, not numbers) value by value."""
    arr = arrow_text(col)
    if arr is None:
        return int_values(col.astype(object), null)
    trimmed = pc.utf8_trim_whitespace(arr)
    plain = pc.fill_null(pc.match_substring_regex(trimmed, _PLAIN_INT), False)
    ints = pc.cast(
        pc.replace_substring_regex(pc.if_else(plain, trimmed, pa.scalar(None, arr.type)), r"^\+", ""),
        pa.int64(),
    )
    out = pd.Series(
        pd.arrays.IntegerArray(
            pc.fill_null(ints, 0).to_numpy(zero_copy_only=False),
            pc.is_null(ints).to_numpy(zero_copy_only=False),
        ),
        index=col.index,
    )
    problems = None
    rest = ~null.to_numpy(dtype=bool) & ~plain.to_numpy(zero_copy_only=False)
    if rest.any():
        text = col[rest].astype(object).str.strip()
        again, why = int_values(text, text.str.casefold().isin(NULL_STRINGS).astype(bool))  # "NA" is no value
        out.loc[again.index] = again.array  # arrays, not Series: pandas would align (and trip) on labels
        if why is not None:
            problems = no_problems(col.index)
            problems.loc[why.index] = why.to_numpy()
    return out, problems


def whole_floats_with_gaps(col: pd.Series) -> bool:
    """A float64 column with gaps whose values are all whole: integers that pandas widened to float64 to hold
    NaN (pd.json_normalize of `{"id": 1}, {"id": null}`); whole numbers without gaps would have stayed int64."""
    if col.dtype.kind != "f" or not col.isna().any():
        return False
    present = col.dropna().to_numpy(dtype="float64")
    return bool(len(present)) and bool(
        (np.isfinite(present) & (present == np.floor(present)) & (np.abs(present) < 2.0**63)).all()
    )


@dataclass
class Coerced:
    # typed, index = source row numbers; one dtype per kind, nulls are the dtype's own missing value (the
    # warehouse writes them as NULL, never NaN): integer Int64, float Float64, boolean boolean, timestamp
    # datetime64[UTC], date naive datetime64 at midnight, string pandas' Arrow-backed `string` (pd.NA) when read
    # from text columns, else object (str or None), json object (str or None)
    good: pd.DataFrame
    bad: pd.DataFrame  # raw rows that failed, with a `_reason` column


def _as_text(v: object) -> object:
    if _is_null(v):
        return None
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def coerce_column(  # noqa: C901 - one branch per column type, each short; a table of lambdas would hide them
    col: pd.Series, kind: str, name: str = "", rules: DateRules | None = None
) -> tuple[pd.Series, Problems]:
    """Any column (an API page's Python ints, floats, bools, dicts...): (typed values, each value's problem)."""
    if kind == "integer" and col.dtype.kind == "i":  # int64 from pd.json_normalize: already exact
        return col.astype("Int64"), None
    obj = col.astype(object)
    null = obj.map(_is_null).astype(bool)
    if kind not in ("string", "json"):  # "NA", "null", "n/a" in a typed column mean no value
        null |= obj.map(_is_null_word).astype(bool)
    if kind == "string" and whole_floats_with_gaps(
        col
    ):  # widened integers: "7", not "7.0"; no rounded digits
        ints, problems = int_values(obj, null)
        return pd.Series(
            [None if v is pd.NA else str(v) for v in ints], index=col.index, dtype=object
        ), problems
    if kind == "string":
        text = obj.map(_as_text)
        # PostgreSQL text cannot hold NUL; the row goes to quarantine (raw kept) rather than fail the batch
        return text, problems_where(text.map(lambda v: isinstance(v, str) and "\x00" in v), NUL_BYTE)
    if kind == "integer":
        return int_values(obj, null)
    if kind == "float":
        stripped = obj.where(null | obj.map(lambda v: not isinstance(v, str)), obj.astype(str).str.strip())
        return _floats(pd.to_numeric(stripped.where(~null, None), errors="coerce"), null)
    if kind == "boolean":

        def to_bool(v: object) -> object:
            if isinstance(v, bool | np.bool_):
                return bool(v)
            s = str(v).strip().lower()
            return True if s in _TRUE else False if s in _FALSE else "bad"

        vals = obj.where(null, obj.map(to_bool))
        bad = ~null & (vals.map(lambda v: isinstance(v, str)))
        return vals.where(~null & ~bad, None).astype("boolean"), problems_where(bad, "is not a valid boolean")
    if kind in ("timestamp", "date"):
        return timestamps(obj[~null].astype(str).str.strip(), col.index, kind, name, rules)
    if kind == "json":

        def dumps(
            v: object,
        ) -> str:  # NaN/Infinity are not JSON (PostgreSQL's jsonb refuses them): ValueError
            return json.dumps(v, ensure_ascii=False, sort_keys=True, allow_nan=False)

        def to_json(v: object) -> object:
            try:
                if isinstance(v, dict | list | int | float | bool):
                    return dumps(v)
                try:
                    return dumps(json.loads(str(v)))
                except ValueError:
                    return dumps(str(v))  # plain text is a valid JSON string value
            except (TypeError, ValueError):
                return _NOT_JSON

        text = obj.where(null, obj.map(to_json)).where(~null, None)
        bad = text.map(lambda t: t is _NOT_JSON)
        nul = text.map(lambda t: isinstance(t, str) and _JSON_NUL.search(t) is not None)  # nor jsonb \u0000
        problems = pd.Series(
            np.where(
                bad,
                "is not valid JSON (NaN, Infinity or a value JSON cannot hold)",
                # numpy stub gap: its ArrayLike leaves out None, which np.where takes as an object scalar
                np.where(nul, NUL_BYTE, None),  # type: ignore[call-overload]
            ),
            index=col.index,
            dtype=object,
        )
        return text.where(~bad, None), or_none(problems)
    raise ValueError(f"unknown column type {kind!r}")


def is_text_column(col: pd.Series) -> bool:
    """Only strings and missing values (a CSV chunk read with dtype=str): the vectorised path applies."""
    if isinstance(col.dtype, pd.StringDtype):
        return True
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")


def text_null(col: pd.Series) -> pd.Series:
    return (col.isna() | (col == "")).astype(bool)


# Arrow parses these spellings exactly as the pandas path below does; any other value sends the column there.
_CANONICAL = {
    "integer": (r"^-?[0-9]{1,18}$", pa.int64()),
    "float": (r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?$", pa.float64()),
    "boolean": (
        None,
        pa.bool_(),
    ),  # Arrow's cast takes exactly true/false in any case, 1 and 0: no regex needed
    "timestamp": (
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})$",
        pa.timestamp("us", tz="UTC"),
    ),
    "date": (None, pa.date32()),  # Arrow's cast takes exactly YYYY-MM-DD (a real day), as the regex did
}


def arrow_text(col: pd.Series) -> pa.Array | None:
    """A column of strings as an Arrow array: zero-copy for pandas' Arrow-backed `str` dtype (what read_csv gives
    with dtype=str); None when it holds values that are not strings."""
    try:
        if isinstance(col.array, pd.arrays.ArrowStringArray):
            arr = pa.array(col.array)
            return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        return pa.array(col.to_numpy(dtype=object, na_value=None), type=pa.large_string(), from_pandas=True)
    except (pa.ArrowException, TypeError):
        return None


def arrow_fast(col: pd.Series, kind: str) -> pd.Series | None:
    """The whole column typed by Arrow's C++ casts when every value is spelled canonically (the usual case for
    machine-written files); None otherwise, and the column takes the general path."""
    if kind not in _CANONICAL:
        return None
    pattern, target = _CANONICAL[kind]
    arr = arrow_text(col)
    if arr is None:
        return None
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
    if (
        pattern is not None
        and pc.all(pc.match_substring_regex(arr, pattern), skip_nulls=True).as_py() is False
    ):
        return None
    try:
        typed = pc.cast(arr, target)
    except pa.ArrowException:  # e.g. a day 2024-02-30: the general path names the value
        return None
    mask = pc.is_null(typed).to_numpy(zero_copy_only=False)
    if kind in ("integer", "float", "boolean"):
        values = pc.fill_null(typed, False if kind == "boolean" else 0).to_numpy(zero_copy_only=False)
        cls = {
            "integer": pd.arrays.IntegerArray,
            "float": pd.arrays.FloatingArray,
            "boolean": pd.arrays.BooleanArray,
        }[kind]
        return pd.Series(cls(values, mask), index=col.index)
    if kind == "date":  # naive datetime64 at midnight, as `dates.as_date` gives
        typed = pc.cast(typed, pa.timestamp("us"))
    return typed.to_pandas().set_axis(col.index)


def coerce_text_column(
    col: pd.Series, kind: str, fast: bool = True, name: str = "", rules: DateRules | None = None
) -> tuple[pd.Series, Problems]:
    """The vectorised twin of `coerce_column` for a column of strings: Arrow first when every value is spelled
    canonically; else parse everything at C speed, and only look again (strip, null words, slower formats) at
    the few values the first pass could not read."""
    # a configured date_format reads every value of its column, ISO 8601 spellings included
    dated = kind in ("date", "timestamp") and rules is not None and rules.format_for(name) is not None
    typed = arrow_fast(col, kind) if fast and not dated else None
    if typed is not None:
        return typed, None
    if kind == "string" and fast and (arr := arrow_text(col)) is not None:
        # stays in Arrow (no Python str per value): NULL is missing or ""; a NUL byte is bad
        values = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
        nul = pc.fill_null(pc.match_substring(arr, "\x00"), False).to_numpy(zero_copy_only=False)
        problems = problems_where(pd.Series(nul, index=col.index), NUL_BYTE)
        return pd.Series(pd.arrays.ArrowStringArray(values), index=col.index), problems
    null = text_null(col)
    if kind in ("string", "json"):
        obj = col.astype(object).where(~null, None)
        if kind == "string":
            return obj, problems_where(obj.str.contains("\x00", regex=False, na=False), NUL_BYTE)
        return coerce_column(obj, kind)  # JSON text is re-serialised value by value either way
    if kind == "integer":
        return _int_text(col, null)
    if kind == "float":
        num = pd.to_numeric(col.astype(object).where(~null), errors="coerce")
        miss = ~null & num.isna()
        if miss.any():  # padded numbers, null words ("NA", "nan" parses as NaN), and what is not a number
            text = col[miss].astype(object).str.strip()
            words = text.str.casefold().isin(NULL_STRINGS).astype(bool)
            null = null.copy()
            null[miss] = words.to_numpy()
            again = pd.to_numeric(text.where(~words), errors="coerce")
            num = num.astype("float64") if num.dtype.kind in "iu" else num
            num[miss] = again.to_numpy(dtype="float64", na_value=np.nan)
        return _floats(num, null)
    if kind == "boolean":
        vals = col.map(_BOOL_FAST)
        miss = ~null & vals.isna()
        if miss.any():
            text = col[miss].astype(object).str.strip()
            words = text.str.casefold().isin(NULL_STRINGS).astype(bool)
            null = null.copy()
            null[miss] = words.to_numpy()
            low = text.str.lower()
            vals = vals.astype(object)
            vals[miss] = low.map(lambda s: True if s in _TRUE else False if s in _FALSE else None).to_numpy()
        bad = ~null & vals.isna()
        return vals.where(~null & ~bad, None).astype("boolean"), problems_where(bad, "is not a valid boolean")
    if kind in ("timestamp", "date"):
        return timestamps(col[~null].astype(object), col.index, kind, name, rules)
    raise ValueError(f"unknown column type {kind!r}")


_UNFORESEEN = (ArithmeticError, TypeError, ValueError, pa.ArrowException)


def _coerce_any(col: pd.Series, kind: str, name: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    if kind not in COLUMN_TYPES:
        raise ValueError(f"unknown column type {kind!r}")
    try:
        if is_text_column(col):
            return coerce_text_column(col, kind, name=name, rules=rules)
        return coerce_column(col, kind, name, rules)
    except _UNFORESEEN as exc:  # a value the vectorised paths did not foresee must not fail the whole batch
        log.warning("column '%s': typed as %s value by value after %s", name, kind, type(exc).__name__)
        return _one_by_one(col, kind, name, rules)


def _one_by_one(col: pd.Series, kind: str, name: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    """The reference path at its slowest: each value alone, so only a value that cannot be typed is quarantined."""
    values, problems = [], []
    for i in range(len(col)):
        one = col.iloc[i : i + 1].astype(object)
        try:
            v, p = coerce_column(one, kind, name, rules)
        except _UNFORESEEN as exc:
            v, _ = coerce_column(pd.Series([None], index=one.index, dtype=object), kind, name, rules)
            p = pd.Series([f"cannot be read as {kind} ({type(exc).__name__})"], index=one.index, dtype=object)
        values.append(v)
        problems.append(p if p is not None else no_problems(one.index))
    return pd.concat(values), or_none(pd.concat(problems))


def coerce(
    frame: pd.DataFrame,
    schema: Mapping[str, str],
    primary_key: Iterable[str] = (),
    dates: DateRules | None = None,
) -> Coerced:
    """Type every column of `schema`; a row with any value that does not fit goes to quarantine with its reason.
    `dates`: the source's date keys and the day/month orders decided so far (pass the same one for every batch
    of a run); a fresh one decides from this batch alone."""
    dates = dates if dates is not None else DateRules()
    typed = {}
    reasons = pd.Series(None, index=frame.index, dtype=object)
    for name, kind in schema.items():
        if name not in frame.columns:
            typed[name] = pd.Series(None, index=frame.index, dtype=object)
            continue
        values, problems = _coerce_any(frame[name], kind, name, dates)
        typed[name] = values
        if problems is not None and (bad := problems.notna()).any():
            first = reasons.isna() & bad
            shown = frame[name][first].astype(str).str.slice(0, 80)
            reasons[first] = [
                f"column '{name}': {v!r} {p}" for v, p in zip(shown, problems[first], strict=True)
            ]
    for key in primary_key:
        missing = reasons.isna() & typed[key].isna()
        if missing.any():
            reasons[missing] = f"primary key column '{key}' is empty"
    bad_mask = reasons.notna()
    good = pd.DataFrame(typed, index=frame.index, copy=False)
    if not bad_mask.any():  # the usual batch: no row to take out, so no copy of every column
        return Coerced(good=good, bad=frame.iloc[:0].assign(_reason=reasons.iloc[:0]))
    bad = frame[bad_mask].copy()
    bad["_reason"] = reasons[bad_mask]
    return Coerced(good=good[~bad_mask], bad=bad)
