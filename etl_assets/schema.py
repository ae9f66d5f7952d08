"""Column types: inference from sampled values and vectorised coercion into good and quarantined rows."""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .drift import NULL_STRINGS, infer_type

log = logging.getLogger(__name__)

# Arrow's default allocator (mimalloc) keeps what one batch freed for the next; jemalloc without decay hands it
# back at once, so the loader's RSS stays flat over a file of any size (1M rows: peak 429 -> 360 MB).
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and "jemalloc" in pa.supported_memory_backends():
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    pa.jemalloc_set_decay_ms(0)

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
# the spellings met in practice, looked up at C speed; anything else (padded, mixed case) takes the slow path
_BOOL_FAST = {**{v: True for t in _TRUE for v in (t, t.upper(), t.capitalize())},
              **{v: False for f in _FALSE for v in (f, f.upper(), f.capitalize())}}


def _is_null(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) or v == ""


def _is_null_word(v: object) -> bool:
    return isinstance(v, str) and v.strip().casefold() in NULL_STRINGS


# A column's problems: None when every value fitted (the fast paths' answer, free), else text per row ("is not a
# valid integer") or None where the value fitted.
Problems = pd.Series | None


def _no_problems(index: pd.Index) -> pd.Series:
    """None per row, to fill in (a general path's start)."""
    return pd.Series(np.full(len(index), None, dtype=object), index=index)  # Series(None): NaN


def _or_none(problems: pd.Series) -> Problems:
    return problems if problems.notna().any() else None


def _problems(bad: pd.Series, problem: str) -> Problems:
    if not bad.any():
        return None
    return pd.Series(np.where(bad.to_numpy(dtype=bool), problem, None), index=bad.index, dtype=object)


def _floats(num: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """Parsed numbers as Float64, and the problems of the values that are not numbers."""
    bad = ~null & num.isna()
    return num.where(~bad & ~null).astype("Float64"), _problems(bad, "is not a valid float")


# Integers are read exactly, never through float64 (which keeps 53 bits: 9007199254740993 would become ...992).
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_EXACT_FLOAT = float(1 << 53)  # from here on a float64 no longer holds every integer: its digits are a guess
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PLAIN_INT = r"^[+-]?[0-9]{1,18}$"  # always within int64, read by Arrow's exact int64 cast
NOT_INTEGER = "is not a valid integer"
BEYOND_INT64 = ("is beyond the 64-bit integer range; declare the column `string` to keep such values exactly "
                "as text")
INEXACT_FLOAT = ("is a floating-point number at or beyond 2^53, whose last digits are not exact; have the source "
                 "send it as text")
NUL_BYTE = "contains a NUL byte"  # PostgreSQL text cannot hold one
_NOT_JSON = object()
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash + "u0000"


def _int_value(v: object) -> int | str:
    """One present value as an exact integer, or the problem (text) why it is not one.

    Text: digits with an optional sign, or an integral decimal/exponent spelling ("5.0", "1e3"), read with
    Decimal (exact); Python/NumPy ints as they are; floats only when whole and below 2^53 (above, a float64
    has already rounded the digits); booleans are not integers."""
    if isinstance(v, bool | np.bool_):
        return NOT_INTEGER
    if isinstance(v, numbers.Integral):
        n = int(v)
    elif isinstance(v, float | np.floating):
        if not math.isfinite(v) or not float(v).is_integer():
            return NOT_INTEGER
        if abs(v) >= _EXACT_FLOAT:
            return INEXACT_FLOAT
        n = int(v)
    else:
        s = str(v).strip()
        if not _NUMBER_RE.fullmatch(s):
            return NOT_INTEGER
        d = Decimal(s)
        if d.is_zero():
            return 0
        if d.adjusted() > 18:  # 19 digits or more before the point: at or beyond 10^19 > 2^63
            return BEYOND_INT64
        if d != d.to_integral_value():
            return NOT_INTEGER
        n = int(d)
    return n if INT64_MIN <= n <= INT64_MAX else BEYOND_INT64


def _int_values(values: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """Any values (Python/NumPy numbers, text, whatever a JSON body holds) as Int64, value by value."""
    out = pd.Series(pd.array([None] * len(values), dtype="Int64"), index=values.index)
    problems = _no_problems(values.index)
    present = values[~null.to_numpy(dtype=bool)]
    if len(present):
        parsed = present.map(_int_value)
        failed = parsed.map(lambda p: isinstance(p, str)).to_numpy(dtype=bool)
        problems.loc[parsed.index[failed]] = parsed[failed].to_numpy()
        ints = parsed[~failed]
        out.loc[ints.index] = pd.array(ints.tolist(), dtype="Int64")
    return out, _or_none(problems)


def _int_text(col: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """A column of strings as Int64: plain digit runs (the bulk) by Arrow's exact int64 cast, the rest (padded,
    null words, "5.0", too long, not numbers) value by value."""
    arr = arrow_text(col)
    if arr is None:
        return _int_values(col.astype(object), null)
    trimmed = pc.utf8_trim_whitespace(arr)
    plain = pc.fill_null(pc.match_substring_regex(trimmed, _PLAIN_INT), False)
    ints = pc.cast(pc.replace_substring_regex(pc.if_else(plain, trimmed, pa.scalar(None, arr.type)), r"^\+", ""),
                   pa.int64())
    out = pd.Series(pd.arrays.IntegerArray(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False),
                                           pc.is_null(ints).to_numpy(zero_copy_only=False)), index=col.index)
    problems = None
    rest = ~null.to_numpy(dtype=bool) & ~plain.to_numpy(zero_copy_only=False)
    if rest.any():
        text = col[rest].astype(object).str.strip()
        again, why = _int_values(text, text.str.casefold().isin(NULL_STRINGS).astype(bool))  # "NA" is no value
        out.loc[again.index] = again.array  # arrays, not Series: pandas would align (and trip) on labels
        if why is not None:
            problems = _no_problems(col.index)
            problems.loc[why.index] = why.to_numpy()
    return out, problems


# Dates written with numbers only (01/02/2026, 1.2.2026, 01-02-26, optionally followed by a time): whether the
# first field is the day or the month is the column's to decide, once, never value by value.
_DAY_MONTH_RE = (r"^(?P<a>[0-9]{1,2})(?P<s1>[./-])(?P<b>[0-9]{1,2})(?P<s2>[./-])(?P<y>[0-9]{4}|[0-9]{2})"
                 r"(?P<t>(?:[ T].*)?)$")  # RE2 (Arrow): no back-references, so s1 == s2 is checked after
_ORDER = {True: "day-first (day/month/year)", False: "month-first (month/day/year)"}


@dataclass
class DateRules:
    """How a source's day/month dates are read: its `date_format` and `dayfirst` keys, and the order each column's
    values decided. One instance lives for a run (the pipeline passes the same one to every batch), so a later
    batch never reads a column in the other order."""

    date_format: str | dict[str, str] | None = None  # one strftime format for every column, or column -> format
    dayfirst: bool | None = None
    decided: dict[str, tuple[bool, str]] = field(default_factory=dict)  # column -> (dayfirst, "values"|"default")
    quiet: bool = False  # inference tries the rules without logging

    @classmethod
    def of(cls, spec: Any) -> DateRules:
        return cls(getattr(spec, "date_format", None), getattr(spec, "dayfirst", None))

    def format_for(self, column: str) -> str | None:
        return self.date_format.get(column) if isinstance(self.date_format, dict) else self.date_format

    def order(self, column: str, day_proofs: int, month_proofs: int, dotted: bool, values: int) -> tuple[bool, str]:
        """Day-first? and why: the key, else the column's earlier decision, else the values that prove an order
        (a first field > 12 proves day-first, a second one month-first; the more numerous wins, a tie goes to the
        default), else the default: day-first for dotted dates (1.2.2026, written day-first wherever dots are
        used), month-first otherwise (pandas' and US exports' reading)."""
        if self.dayfirst is not None:
            return self.dayfirst, "key"
        if column in self.decided:
            return self.decided[column]
        if day_proofs != month_proofs:
            decision = (day_proofs > month_proofs, "values")
        else:
            decision = (dotted, "values" if day_proofs else "default")
        self.decided[column] = decision
        if not self.quiet and decision[1] == "default":
            log.warning("column '%s': %d date value(s) fit both day-first and month-first; reading the column %s "
                        "for this run (set `dayfirst` or `date_format` to decide)", column, values,
                        _ORDER[decision[0]])
        elif not self.quiet and day_proofs and month_proofs:
            log.warning("column '%s': %d value(s) are only valid day-first, %d only month-first; reading the column "
                        "%s, the others are quarantined", column, day_proofs, month_proofs, _ORDER[decision[0]])
        return decision


def _contradiction(dayfirst: bool, how: str) -> str:
    by = {"key": f"set by `dayfirst: {str(dayfirst).lower()}`",
          "values": "decided by this column's values",
          "default": "assumed for this column (its first values fitted both orders)"}[how]
    fix = "" if how == "key" else f"; if that is wrong, set `dayfirst: {str(not dayfirst).lower()}` or `date_format`"
    return f"contradicts the {_ORDER[dayfirst]} order {by}{fix}"


def _utc(text: pd.Series) -> pd.Series:
    """ISO 8601 at C speed; what it cannot read (RFC 822, '10:00 PM', ...) by dateutil, whose day/month guessing
    never gets a say: numeric day/month dates do not reach it (see `_day_month`)."""
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    retry = ts.isna()
    if retry.any():
        ts[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    return ts


def _day_month_parts(text: pd.Series) -> pd.DataFrame:
    """The fields of the values of `text` that are numeric day/month dates, matched at C speed: columns a, b (the
    first two fields), year (4 digits, or 2 by strptime's pivot: 00-68 -> 20xx), dot (dotted), time (the rest)."""
    arr = pa.array(text.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
    m = pc.extract_regex(arr, _DAY_MONTH_RE)
    ok = pc.fill_null(pc.and_kleene(pc.is_valid(m), pc.equal(pc.struct_field(m, "s1"), pc.struct_field(m, "s2"))),
                      False)
    fields = {k: pc.filter(pc.struct_field(m, k), ok) for k in ("a", "b", "y", "s1", "t")}
    year = pc.cast(fields["y"], pa.int64()).to_numpy()
    short = pc.less(pc.utf8_length(fields["y"]), 4).to_numpy(zero_copy_only=False)
    return pd.DataFrame({
        "a": pc.cast(fields["a"], pa.int64()).to_numpy(), "b": pc.cast(fields["b"], pa.int64()).to_numpy(),
        "year": np.where(short, year + np.where(year < 69, 2000, 1900), year),
        "dot": pc.equal(fields["s1"], ".").to_numpy(zero_copy_only=False),
        "time": fields["t"].to_numpy(zero_copy_only=False),
    }, index=text.index[ok.to_numpy(zero_copy_only=False)])


def _day_month(parts: pd.DataFrame, kind: str, column: str, rules: DateRules) -> tuple[pd.Series, pd.Series]:
    """Numeric day/month dates (`_day_month_parts`) in the one order the column has, as UTC timestamps; a value
    that is only valid in the other order is a problem, never read the other way."""
    a, b = parts["a"], parts["b"]
    day_proof = (a > 12) & (a <= 31) & (b >= 1) & (b <= 12)
    month_proof = (b > 12) & (b <= 31) & (a >= 1) & (a <= 12)
    dayfirst, how = rules.order(column, int(day_proof.sum()), int(month_proof.sum()), bool(parts["dot"].all()),
                                len(parts))
    day, month = (a, b) if dayfirst else (b, a)
    valid = (month >= 1) & (month <= 12)
    ts = pd.Series(pd.NaT, index=parts.index, dtype="datetime64[us, UTC]")
    plain = valid & (parts["time"] == "")
    if plain.any():  # a day: from the numbers themselves (an impossible one, 31/02, is NaT)
        ymd = pd.DataFrame({"year": parts["year"][plain], "month": month[plain], "day": day[plain]})
        ts.loc[ymd.index] = pd.to_datetime(ymd, errors="coerce").dt.tz_localize("UTC").astype(ts.dtype).array
    timed = valid & ~plain
    if timed.any():  # with a time: as ISO text, so the time (10:00 PM, a zone) is read as for any timestamp
        iso = (parts["year"][timed].astype(str).str.zfill(4) + "-" + month[timed].astype(str).str.zfill(2) + "-"
               + day[timed].astype(str).str.zfill(2) + parts["time"][timed])
        ts.loc[iso.index] = _utc(iso).astype(ts.dtype).array
    problems = _no_problems(parts.index)
    other_order = month_proof if dayfirst else day_proof
    problems[other_order & ~valid] = _contradiction(dayfirst, how)
    problems[problems.isna() & ts.isna()] = f"is not a valid {kind}"
    return ts, problems


def _dates(text: pd.Series, kind: str, column: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    """Present, stripped date/timestamp text as UTC timestamps, and each value's problem."""
    problems = _no_problems(text.index)
    fmt = rules.format_for(column)
    if fmt is not None:  # the configured format only: a value it does not read is a problem, never a guess
        try:
            ts = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
        except ValueError as exc:  # a bad directive ("%Q"): every value says why
            ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
            return ts, _problems(~ts.notna(), f"cannot be read: date_format {fmt!r} is not a strftime format ({exc})")
        return ts, _problems(ts.isna(), f"does not match date_format {fmt!r} of this column")
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    miss = ts.isna()
    if miss.any():
        rest = text[miss]
        parts = _day_month_parts(rest)
        if len(parts):
            got, why = _day_month(parts, kind, column, rules)
            ts.loc[got.index] = got.array
            problems.loc[why.index] = why.to_numpy()
        other = rest.drop(parts.index)
        if len(other):
            ts.loc[other.index] = pd.to_datetime(other, utc=True, errors="coerce", format="mixed").array
    problems[problems.isna() & ts.isna()] = f"is not a valid {kind}"
    return ts, _or_none(problems)


def _timestamps(text: pd.Series, index: pd.Index, kind: str, name: str,
                rules: DateRules | None) -> tuple[pd.Series, Problems]:
    """The present values of a date/timestamp column (text, unstripped) typed over `index`: ISO 8601 at C speed
    first, then strip, null words and `_dates` for the few values it missed (or for all, under a date_format)."""
    rules = rules if rules is not None else DateRules()
    ts = pd.Series(pd.NaT, index=index, dtype="datetime64[us, UTC]")
    problems = None
    if rules.format_for(name) is None and len(text):
        iso = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        ts.loc[iso.index] = iso.array
        text = text[iso.isna()]
    text = text.str.strip()
    text = text[~text.str.casefold().isin(NULL_STRINGS)]
    if len(text):
        got, why = _dates(text, kind, name, rules)
        ts.loc[got.index] = (got if why is None else got.where(why.isna())).array
        if why is not None:
            problems = _no_problems(index)
            problems.loc[why.index] = why.to_numpy()
    return (_as_date(ts) if kind == "date" else ts), problems


def infer_schema(frame: pd.DataFrame, sample_rows: int = 1000) -> dict[str, str]:
    """The schema a first load pins: for each column the narrowest type every sampled value fits."""
    head = frame.head(sample_rows)
    return {str(c): _infer_column(head[c]) for c in frame.columns}


def _infer_column(col: pd.Series) -> str:
    if _whole_floats_with_gaps(col):
        return "integer"
    kind = infer_type(col.tolist(), share=1.0)
    return (_day_month_kind(col) or kind) if kind == "string" else kind


def _whole_floats_with_gaps(col: pd.Series) -> bool:
    """A float64 column with gaps whose values are all whole: integers that pandas widened to float64 to hold
    NaN (pd.json_normalize of `{"id": 1}, {"id": null}`); whole numbers without gaps would have stayed int64."""
    if col.dtype.kind != "f" or not col.isna().any():
        return False
    present = col.dropna().to_numpy(dtype="float64")
    return bool(len(present)) and bool((np.isfinite(present) & (present == np.floor(present))
                                        & (np.abs(present) < 2.0 ** 63)).all())


def _day_month_kind(col: pd.Series) -> str | None:
    """`date` or `timestamp` when every present value is a numeric day/month date (13/02/2026, 1.2.2026) and one
    order reads them all; None otherwise (a column whose values contradict each other stays `string`)."""
    if not _is_text_column(col):
        return None
    text = col[~_text_null(col)].astype(object).str.strip()
    text = text[~text.str.casefold().isin(NULL_STRINGS)]
    parts = _day_month_parts(text) if len(text) else None
    if parts is None or len(parts) < len(text):
        return None
    _, problems = _day_month(parts, "timestamp", "", DateRules(quiet=True))
    if problems.notna().any():
        return None
    return "timestamp" if (parts["time"] != "").any() else "date"


@dataclass
class Coerced:
    # typed, index = source row numbers; one dtype per kind, nulls are the dtype's own missing value (the
    # warehouse writes them as NULL, never NaN): integer Int64, float Float64, boolean boolean, timestamp
    # datetime64[UTC], date naive datetime64 at midnight, string/json object (str or None)
    good: pd.DataFrame
    bad: pd.DataFrame  # raw rows that failed, with a `_reason` column


def _as_text(v: object) -> object:
    if _is_null(v):
        return None
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def _coerce_column(col: pd.Series, kind: str, name: str = "",
                   rules: DateRules | None = None) -> tuple[pd.Series, Problems]:
    """Any column (an API page's Python ints, floats, bools, dicts...): (typed values, each value's problem)."""
    if kind == "integer" and col.dtype.kind == "i":  # int64 from pd.json_normalize: already exact
        return col.astype("Int64"), None
    obj = col.astype(object)
    null = obj.map(_is_null).astype(bool)
    if kind not in ("string", "json"):  # "NA", "null", "n/a" in a typed column mean no value
        null |= obj.map(_is_null_word).astype(bool)
    if kind == "string" and _whole_floats_with_gaps(col):  # widened integers: "7", not "7.0"; no rounded digits
        ints, problems = _int_values(obj, null)
        return pd.Series([None if v is pd.NA else str(v) for v in ints], index=col.index, dtype=object), problems
    if kind == "string":
        text = obj.map(_as_text)
        # PostgreSQL text cannot hold NUL; the row goes to quarantine (raw kept) rather than fail the batch
        return text, _problems(text.map(lambda v: isinstance(v, str) and "\x00" in v), NUL_BYTE)
    if kind == "integer":
        return _int_values(obj, null)
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
        return vals.where(~null & ~bad, None).astype("boolean"), _problems(bad, "is not a valid boolean")
    if kind in ("timestamp", "date"):
        return _timestamps(obj[~null].astype(str).str.strip(), col.index, kind, name, rules)
    if kind == "json":
        def dumps(v: object) -> str:  # NaN/Infinity are not JSON (PostgreSQL's jsonb refuses them): ValueError
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
        problems = pd.Series(np.where(bad, "is not valid JSON (NaN, Infinity or a value JSON cannot hold)",
                                      np.where(nul, NUL_BYTE, None)), index=col.index, dtype=object)
        return text.where(~bad, None), _or_none(problems)
    raise ValueError(f"unknown column type {kind!r}")


def _is_text_column(col: pd.Series) -> bool:
    """Only strings and missing values (a CSV chunk read with dtype=str): the vectorised path applies."""
    if isinstance(col.dtype, pd.StringDtype):
        return True
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")


def _null_words(text: pd.Series) -> pd.Series:
    return text.str.strip().str.casefold().isin(NULL_STRINGS).astype(bool)


def _text_null(col: pd.Series) -> pd.Series:
    return (col.isna() | (col == "")).astype(bool)


# Arrow parses these spellings exactly as the pandas path below does; any other value sends the column there.
_CANONICAL = {
    "integer": (r"^-?[0-9]{1,18}$", pa.int64()),
    "float": (r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?$", pa.float64()),
    "boolean": (r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$", pa.bool_()),
    "timestamp": (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})$",
                  pa.timestamp("us", tz="UTC")),
    "date": (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", pa.date32()),
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


def _arrow_fast(col: pd.Series, kind: str) -> pd.Series | None:
    """The whole column typed by Arrow's C++ casts when every value is spelled canonically (the usual case for
    machine-written files); None otherwise, and the column takes the general path."""
    if kind not in _CANONICAL:
        return None
    pattern, target = _CANONICAL[kind]
    arr = arrow_text(col)
    if arr is None:
        return None
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
    if pc.all(pc.match_substring_regex(arr, pattern), skip_nulls=True).as_py() is False:
        return None
    try:
        typed = pc.cast(arr, target)
    except pa.ArrowException:  # e.g. a day 2024-02-30: the general path names the value
        return None
    mask = pc.is_null(typed).to_numpy(zero_copy_only=False)
    if kind in ("integer", "float", "boolean"):
        values = pc.fill_null(typed, False if kind == "boolean" else 0).to_numpy(zero_copy_only=False)
        cls = {"integer": pd.arrays.IntegerArray, "float": pd.arrays.FloatingArray,
               "boolean": pd.arrays.BooleanArray}[kind]
        return pd.Series(cls(values, mask), index=col.index)
    if kind == "date":  # naive datetime64 at midnight, as `_as_date` gives
        typed = pc.cast(typed, pa.timestamp("us"))
    return typed.to_pandas().set_axis(col.index)


def _coerce_text_column(col: pd.Series, kind: str, fast: bool = True, name: str = "",
                        rules: DateRules | None = None) -> tuple[pd.Series, Problems]:
    """The vectorised twin of `_coerce_column` for a column of strings: Arrow first when every value is spelled
    canonically; else parse everything at C speed, and only look again (strip, null words, slower formats) at
    the few values the first pass could not read."""
    # a configured date_format reads every value of its column, ISO 8601 spellings included
    dated = kind in ("date", "timestamp") and rules is not None and rules.format_for(name) is not None
    typed = _arrow_fast(col, kind) if fast and not dated else None
    if typed is not None:
        return typed, None
    if kind == "string" and fast and (arr := arrow_text(col)) is not None:  # NULL: missing or ""; NUL bytes: bad
        null = pc.or_kleene(pc.is_null(arr), pc.equal(arr, "")).to_numpy(zero_copy_only=False)
        nul = pc.fill_null(pc.match_substring(arr, "\x00"), False).to_numpy(zero_copy_only=False)
        values = arr.to_numpy(zero_copy_only=False)
        values[null] = None
        return pd.Series(values, index=col.index, dtype=object), _problems(pd.Series(nul, index=col.index),
                                                                           NUL_BYTE)
    null = _text_null(col)
    if kind in ("string", "json"):
        obj = col.astype(object).where(~null, None)
        if kind == "string":
            return obj, _problems(obj.str.contains("\x00", regex=False, na=False), NUL_BYTE)
        return _coerce_column(obj, kind)  # JSON text is re-serialised value by value either way
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
        return vals.where(~null & ~bad, None).astype("boolean"), _problems(bad, "is not a valid boolean")
    if kind in ("timestamp", "date"):
        return _timestamps(col[~null].astype(object), col.index, kind, name, rules)
    raise ValueError(f"unknown column type {kind!r}")


def _as_date(ts: pd.Series) -> pd.Series:
    """The UTC calendar day, as naive datetime64 at midnight (the warehouse writes it as a date)."""
    return ts.dt.tz_convert(None).dt.floor("D")


_KINDS = ("string", "integer", "float", "boolean", "timestamp", "date", "json")
_UNFORESEEN = (ArithmeticError, TypeError, ValueError, pa.ArrowException)


def _coerce_any(col: pd.Series, kind: str, name: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    if kind not in _KINDS:
        raise ValueError(f"unknown column type {kind!r}")
    try:
        if _is_text_column(col):
            return _coerce_text_column(col, kind, name=name, rules=rules)
        return _coerce_column(col, kind, name, rules)
    except _UNFORESEEN as exc:  # a value the vectorised paths did not foresee must not fail the whole batch
        log.warning("column '%s': typed as %s value by value after %s", name, kind, type(exc).__name__)
        return _one_by_one(col, kind, name, rules)


def _one_by_one(col: pd.Series, kind: str, name: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    """The reference path at its slowest: each value alone, so only a value that cannot be typed is quarantined."""
    values, problems = [], []
    for i in range(len(col)):
        one = col.iloc[i:i + 1].astype(object)
        try:
            v, p = _coerce_column(one, kind, name, rules)
        except _UNFORESEEN as exc:
            v, _ = _coerce_column(pd.Series([None], index=one.index, dtype=object), kind, name, rules)
            p = pd.Series([f"cannot be read as {kind} ({type(exc).__name__})"], index=one.index, dtype=object)
        values.append(v)
        problems.append(p if p is not None else _no_problems(one.index))
    return pd.concat(values), _or_none(pd.concat(problems))


def coerce(frame: pd.DataFrame, schema: Mapping[str, str], primary_key: Iterable[str] = (),
           dates: DateRules | None = None) -> Coerced:
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
            reasons[first] = [f"column '{name}': {v!r} {p}" for v, p in zip(shown, problems[first], strict=True)]
    for key in primary_key:
        missing = reasons.isna() & typed[key].isna()
        if missing.any():
            reasons[missing] = f"primary key column '{key}' is empty"
    bad_mask = reasons.notna()
    good = pd.DataFrame(typed, index=frame.index)[~bad_mask]

    bad = frame[bad_mask].copy()
    bad["_reason"] = reasons[bad_mask]
    return Coerced(good=good, bad=bad)
