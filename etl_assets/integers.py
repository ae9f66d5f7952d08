"""Integers read exactly, value by value: never through float64, never beyond int64."""

from __future__ import annotations

import math
import numbers
import re
from decimal import Decimal

import numpy as np
import pandas as pd

from .problems import Problems, no_problems, or_none

# Integers are read exactly, never through float64 (which keeps 53 bits: 9007199254740993 would become ...992).
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_EXACT_FLOAT = float(1 << 53)  # from here on a float64 no longer holds every integer: its digits are a guess
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NOT_INTEGER = "is not a valid integer"
BEYOND_INT64 = (
    "is beyond the 64-bit integer range; declare the column `string` to keep such values exactly as text"
)
INEXACT_FLOAT = (
    "is a floating-point number at or beyond 2^53, whose last digits are not exact; have the source "
    "send it as text"
)


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
        if abs(float(v)) >= _EXACT_FLOAT:
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


def int_values(values: pd.Series, null: pd.Series) -> tuple[pd.Series, Problems]:
    """Any values (Python/NumPy numbers, text, whatever a JSON body holds) as Int64, value by value."""
    out = pd.Series(pd.array([None] * len(values), dtype="Int64"), index=values.index)
    problems = no_problems(values.index)
    present = values[~null.to_numpy(dtype=bool)]
    if len(present):
        parsed = present.map(_int_value)
        failed = parsed.map(lambda p: isinstance(p, str)).to_numpy(dtype=bool)
        problems.loc[parsed.index[failed]] = parsed[failed].to_numpy()
        ints = parsed[~failed]
        out.loc[ints.index] = pd.array(ints.tolist(), dtype="Int64")
    return out, or_none(problems)
