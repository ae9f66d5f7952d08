"""Column types, the words that mean "no value", and the type sampled values fit.

One home for what config (the `columns` key), schema inference, coercion and drift matching all mean by a
column type.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

COLUMN_TYPES = ("string", "integer", "float", "boolean", "timestamp", "date", "json")
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date", "json"]

NULL_STRINGS = frozenset({"", "nan", "null", "none", "n/a", "na", "nat", "#n/a"})  # empty in a typed column
_BOOL_STRINGS = {"true", "false", "t", "f", "yes", "no"}
_INT_RE = re.compile(r"[+-]?(?:0|[1-9]\d*)")  # leading zeros ("00501") mark identifiers: string
# bare digit runs are integers (or, with leading zeros, identifiers), never floats
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?")
_ISO_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_US_DATE_RE = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*[AaPp][Mm])?)?"
)
_TYPE_SHARE = 0.95  # a type is inferred when it covers this share of non-empty values


def is_missing(v: object) -> bool:
    """None, NaN, NA/NaT or a null word: no value, whatever its Python type."""
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip().casefold() in NULL_STRINGS
    if type(v).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(v, float):
        return math.isnan(v)
    try:
        ne = v != v  # numpy NaN scalars
        return isinstance(ne, bool) and ne
    except Exception:  # noqa: BLE001 - exotic objects compare however they like
        return False


def _kind(v: object) -> str:  # noqa: C901 - one test per type, narrowest first
    """The narrowest type one non-missing value fits."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "boolean"
    if isinstance(v, numbers.Integral):
        return "integer"
    if isinstance(v, (numbers.Real, Decimal)):
        return "float"
    if isinstance(v, datetime) or type(v).__name__ == "datetime64":
        return "timestamp"
    if isinstance(v, date):
        return "date"
    if isinstance(v, (dict, list, tuple)):
        return "json"
    s = str(v).strip()
    low = s.casefold()
    if low in _BOOL_STRINGS:
        return "boolean"
    if _INT_RE.fullmatch(s):
        return "integer"
    if _FLOAT_RE.fullmatch(s):
        return "float"
    if _ISO_PREFIX.match(s):
        try:
            parsed = datetime.fromisoformat(s.replace(" ", "T", 1) if len(s) > 10 else s)
        except ValueError:
            return "string"
        return (
            "date"
            if len(s) == 10 and parsed == datetime(parsed.year, parsed.month, parsed.day)
            else "timestamp"
        )
    m = _US_DATE_RE.fullmatch(s)
    if m and 1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31:
        return "timestamp" if m.group(4) else "date"
    if s[:1] in "[{":
        try:
            if isinstance(json.loads(s), (dict, list)):
                return "json"
        except ValueError:
            pass
    return "string"


def infer_type_and_count(values: Iterable[object], share: float = _TYPE_SHARE) -> tuple[str, int]:
    """:func:`infer_type` and the number of present values it was decided on."""
    kinds: dict[str, int] = {}
    n = 0
    for v in values:
        if is_missing(v):
            continue
        k = _kind(v)
        kinds[k] = kinds.get(k, 0) + 1
        n += 1
    if n == 0:
        return "string", 0
    need = share * n
    ints, floats = kinds.get("integer", 0), kinds.get("float", 0)
    dates, stamps = kinds.get("date", 0), kinds.get("timestamp", 0)
    if kinds.get("boolean", 0) >= need:
        return "boolean", n
    if ints >= need:
        return "integer", n
    if ints + floats >= need:
        return "float", n
    if dates >= need:
        return "date", n
    if dates + stamps >= need:
        return "timestamp", n
    if kinds.get("json", 0) >= need:
        return "json", n
    return "string", n


def infer_type(values: Sequence[object], share: float = _TYPE_SHARE) -> str:
    """One of :data:`COLUMN_TYPES` for sampled values.

    CSV strings count by their content ("12" integer, "1.5" float, "true"/"false" boolean, ISO or
    US-style dates and timestamps, JSON objects/arrays); None, "", NaN and null-like strings are
    ignored; a type is chosen when it covers 95% of the remaining values (coercion quarantines the
    rest); all-empty gives "string". Pinning a schema asks for share=1.0: every value must fit.
    """
    return infer_type_and_count(values, share)[0]


def coercible(expected: str, observed: str) -> bool:
    """Can values of the observed type be loaded into a column of the expected type?"""
    if expected == observed or expected == "string":
        return True
    return (expected, observed) in {("float", "integer"), ("timestamp", "date")}
