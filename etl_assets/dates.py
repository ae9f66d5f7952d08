"""Dates and timestamps: ISO 8601 at C speed, a source's `date_format`, and day/month dates in one order per
column (`DateRules`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .problems import Problems, no_problems, or_none, problems_where
from .types import NULL_STRINGS

if TYPE_CHECKING:
    from .config import SourceSpec

log = logging.getLogger(__name__)


# Dates written with numbers only (01/02/2026, 1.2.2026, 01-02-26, optionally followed by a time): whether the
# first field is the day or the month is the column's to decide, once, never value by value.
_DAY_MONTH_RE = (
    r"^(?P<a>[0-9]{1,2})(?P<s1>[./-])(?P<b>[0-9]{1,2})(?P<s2>[./-])(?P<y>[0-9]{4}|[0-9]{2})"
    r"(?P<t>(?:[ T].*)?)$"
)  # RE2 (Arrow): no back-references, so s1 == s2 is checked after
_ORDER = {True: "day-first (day/month/year)", False: "month-first (month/day/year)"}


@dataclass
class DateRules:
    """How a source's day/month dates are read: its `date_format` and `dayfirst` keys, and the order each column's
    values decided. One instance lives for a run (the pipeline passes the same one to every batch), so a later
    batch never reads a column in the other order."""

    date_format: str | dict[str, str] | None = (
        None  # one strftime format for every column, or column -> format
    )
    dayfirst: bool | None = None
    decided: dict[str, tuple[bool, str]] = field(
        default_factory=dict
    )  # column -> (dayfirst, "values"|"default")
    quiet: bool = False  # inference tries the rules without logging

    @classmethod
    def of(cls, spec: SourceSpec) -> DateRules:
        return cls(spec.date_format, spec.dayfirst)

    def format_for(self, column: str) -> str | None:
        return self.date_format.get(column) if isinstance(self.date_format, dict) else self.date_format

    def order(
        self, column: str, day_proofs: int, month_proofs: int, dotted: bool, values: int
    ) -> tuple[bool, str]:
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
            log.warning(
                "column '%s': %d date value(s) fit both day-first and month-first; reading the column %s "
                "for this run (set `dayfirst` or `date_format` to decide)",
                column,
                values,
                _ORDER[decision[0]],
            )
        elif not self.quiet and day_proofs and month_proofs:
            log.warning(
                "column '%s': %d value(s) are only valid day-first, %d only month-first; reading the column "
                "%s, the others are quarantined",
                column,
                day_proofs,
                month_proofs,
                _ORDER[decision[0]],
            )
        return decision


def _contradiction(dayfirst: bool, how: str) -> str:
    by = {
        "key": f"set by `dayfirst: {str(dayfirst).lower()}`",
        "values": "decided by this column's values",
        "default": "assumed for this column (its first values fitted both orders)",
    }[how]
    fix = (
        ""
        if how == "key"
        else f"; if that is wrong, set `dayfirst: {str(not dayfirst).lower()}` or `date_format`"
    )
    return f"contradicts the {_ORDER[dayfirst]} order {by}{fix}"


def _utc(text: pd.Series) -> pd.Series:
    """ISO 8601 at C speed; what it cannot read (RFC 822, '10:00 PM', ...) by dateutil, whose day/month guessing
    never gets a say: numeric day/month dates do not reach it (see `day_month`)."""
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    retry = ts.isna()
    if retry.any():
        ts[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    return ts


def day_month_parts(text: pd.Series) -> pd.DataFrame:
    """The fields of the values of `text` that are numeric day/month dates, matched at C speed: columns a, b (the
    first two fields), year (4 digits, or 2 by strptime's pivot: 00-68 -> 20xx), dot (dotted), time (the rest)."""
    arr = pa.array(text.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
    m = pc.extract_regex(arr, _DAY_MONTH_RE)
    ok = pc.fill_null(
        pc.and_kleene(pc.is_valid(m), pc.equal(pc.struct_field(m, "s1"), pc.struct_field(m, "s2"))), False
    )
    fields = {k: pc.filter(pc.struct_field(m, k), ok) for k in ("a", "b", "y", "s1", "t")}
    year = pc.cast(fields["y"], pa.int64()).to_numpy()
    short = pc.less(pc.utf8_length(fields["y"]), 4).to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {
            "a": pc.cast(fields["a"], pa.int64()).to_numpy(),
            "b": pc.cast(fields["b"], pa.int64()).to_numpy(),
            "year": np.where(short, year + np.where(year < 69, 2000, 1900), year),
            "dot": pc.equal(fields["s1"], ".").to_numpy(zero_copy_only=False),
            "time": fields["t"].to_numpy(zero_copy_only=False),
        },
        index=text.index[ok.to_numpy(zero_copy_only=False)],
    )


def day_month(parts: pd.DataFrame, kind: str, column: str, rules: DateRules) -> tuple[pd.Series, pd.Series]:
    """Numeric day/month dates (`day_month_parts`) in the one order the column has, as UTC timestamps; a value
    that is only valid in the other order is a problem, never read the other way."""
    a, b = parts["a"], parts["b"]
    day_proof = (a > 12) & (a <= 31) & (b >= 1) & (b <= 12)
    month_proof = (b > 12) & (b <= 31) & (a >= 1) & (a <= 12)
    dayfirst, how = rules.order(
        column, int(day_proof.sum()), int(month_proof.sum()), bool(parts["dot"].all()), len(parts)
    )
    day, month = (a, b) if dayfirst else (b, a)
    valid = (month >= 1) & (month <= 12)
    ts = pd.Series(pd.NaT, index=parts.index, dtype="datetime64[us, UTC]")
    plain = valid & (parts["time"] == "")
    if plain.any():  # a day: from the numbers themselves (an impossible one, 31/02, is NaT)
        ymd = pd.DataFrame({"year": parts["year"][plain], "month": month[plain], "day": day[plain]})
        ts.loc[ymd.index] = pd.to_datetime(ymd, errors="coerce").dt.tz_localize("UTC").astype(ts.dtype).array
    timed = valid & ~plain
    if timed.any():  # with a time: as ISO text, so the time (10:00 PM, a zone) is read as for any timestamp
        iso = (
            parts["year"][timed].astype(str).str.zfill(4)
            + "-"
            + month[timed].astype(str).str.zfill(2)
            + "-"
            + day[timed].astype(str).str.zfill(2)
            + parts["time"][timed]
        )
        ts.loc[iso.index] = _utc(iso).astype(ts.dtype).array
    problems = no_problems(parts.index)
    other_order = month_proof if dayfirst else day_proof
    problems[other_order & ~valid] = _contradiction(dayfirst, how)
    problems[problems.isna() & ts.isna()] = f"is not a valid {kind}"
    return ts, problems


def _dates(text: pd.Series, kind: str, column: str, rules: DateRules) -> tuple[pd.Series, Problems]:
    """Present, stripped date/timestamp text as UTC timestamps, and each value's problem."""
    problems = no_problems(text.index)
    fmt = rules.format_for(column)
    if fmt is not None:  # the configured format only: a value it does not read is a problem, never a guess
        try:
            ts = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
        except ValueError as exc:  # a bad directive ("%Q"): every value says why
            ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
            return ts, problems_where(
                ~ts.notna(), f"cannot be read: date_format {fmt!r} is not a strftime format ({exc})"
            )
        return ts, problems_where(ts.isna(), f"does not match date_format {fmt!r} of this column")
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    miss = ts.isna()
    if miss.any():
        rest = text[miss]
        parts = day_month_parts(rest)
        if len(parts):
            got, why = day_month(parts, kind, column, rules)
            ts.loc[got.index] = got.array
            problems.loc[why.index] = why.to_numpy()
        other = rest.drop(parts.index)
        if len(other):
            ts.loc[other.index] = pd.to_datetime(other, utc=True, errors="coerce", format="mixed").array
    problems[problems.isna() & ts.isna()] = f"is not a valid {kind}"
    return ts, or_none(problems)


def timestamps(
    text: pd.Series, index: pd.Index, kind: str, name: str, rules: DateRules | None
) -> tuple[pd.Series, Problems]:
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
            problems = no_problems(index)
            problems.loc[why.index] = why.to_numpy()
    return (as_date(ts) if kind == "date" else ts), problems


def as_date(ts: pd.Series) -> pd.Series:
    """The UTC calendar day, as naive datetime64 at midnight (the warehouse writes it as a date)."""
    return ts.dt.tz_convert(None).dt.floor("D")
