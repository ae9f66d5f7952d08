"""The schema a first load pins when none is declared: each column's narrowest type, from sampled values."""

from __future__ import annotations

import pandas as pd

from .dates import DateRules, day_month, day_month_parts
from .schema import is_text_column, text_null, whole_floats_with_gaps
from .types import NULL_STRINGS, infer_type


def infer_schema(frame: pd.DataFrame, sample_rows: int = 1000) -> dict[str, str]:
    """The schema a first load pins: for each column the narrowest type every sampled value fits."""
    head = frame.head(sample_rows)
    return {str(c): _infer_column(head[c]) for c in frame.columns}


def _infer_column(col: pd.Series) -> str:
    if whole_floats_with_gaps(col):
        return "integer"
    kind = infer_type(col.tolist(), share=1.0)
    return (_day_month_kind(col) or kind) if kind == "string" else kind


def _day_month_kind(col: pd.Series) -> str | None:
    """`date` or `timestamp` when every present value is a numeric day/month date (13/02/2026, 1.2.2026) and one
    order reads them all; None otherwise (a column whose values contradict each other stays `string`)."""
    if not is_text_column(col):
        return None
    text = col[~text_null(col)].astype(object).str.strip()
    text = text[~text.str.casefold().isin(NULL_STRINGS)]
    parts = day_month_parts(text) if len(text) else None
    if parts is None or len(parts) < len(text):
        return None
    _, problems = day_month(parts, "timestamp", "", DateRules(quiet=True))
    if problems.notna().any():
        return None
    return "timestamp" if (parts["time"] != "").any() else "date"
