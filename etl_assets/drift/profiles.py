"""Value profiles: what a column's values looked like at the last load, to recognise the column by its values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..types import COLUMN_TYPES, infer_type, is_missing


def type_affinity(a: str, b: str) -> float:
    """How alike two column types are, for matching evidence (symmetric)."""
    if a == b:
        return 1.0
    pair = {a, b}
    if pair in ({"integer", "float"}, {"date", "timestamp"}):
        return 0.7
    if pair == {"boolean", "integer"}:
        return 0.3
    if "string" in pair:
        return 0.2  # text where numbers/dates were expected (or the reverse): likely another column
    return 0.0


@dataclass
class ColumnProfile:
    """Value profile of one column, kept from a load to compare the next load's columns with."""

    type: str
    null_fraction: float
    distinct_fraction: float
    mean_length: float
    numeric_min: float | None = None
    numeric_max: float | None = None

    @classmethod
    def of(cls, values: Sequence[object]) -> ColumnProfile:
        values = list(values)
        present = [v for v in values if not is_missing(v)]
        typ = infer_type(present)
        texts = [str(v).strip() for v in present]
        lo = hi = None
        if typ in ("integer", "float"):
            nums = []
            for v in present:
                try:
                    x = float(v)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if math.isfinite(x):
                    nums.append(x)
            if nums:
                lo, hi = min(nums), max(nums)
        return cls(
            type=typ,
            null_fraction=(len(values) - len(present)) / len(values) if values else 0.0,
            distinct_fraction=len(set(texts)) / len(texts) if texts else 0.0,
            mean_length=sum(map(len, texts)) / len(texts) if texts else 0.0,
            numeric_min=lo,
            numeric_max=hi,
        )

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "null_fraction": self.null_fraction,
            "distinct_fraction": self.distinct_fraction,
            "mean_length": self.mean_length,
            "numeric_min": self.numeric_min,
            "numeric_max": self.numeric_max,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> ColumnProfile:
        def opt(x: object) -> float | None:
            return None if x is None else float(x)  # type: ignore[arg-type]

        typ = str(d.get("type", "string"))
        return cls(
            type=typ if typ in COLUMN_TYPES else "string",
            null_fraction=float(d.get("null_fraction", 0.0)),  # type: ignore[arg-type]
            distinct_fraction=float(d.get("distinct_fraction", 0.0)),  # type: ignore[arg-type]
            mean_length=float(d.get("mean_length", 0.0)),  # type: ignore[arg-type]
            numeric_min=opt(d.get("numeric_min")),
            numeric_max=opt(d.get("numeric_max")),
        )


def profile_similarity(a: ColumnProfile, b: ColumnProfile) -> float:
    """Similarity of two value profiles in [0, 1] (type, nulls, cardinality, length, numeric range)."""
    parts = [
        (0.3, type_affinity(a.type, b.type)),
        (0.15, 1.0 - min(1.0, abs(a.null_fraction - b.null_fraction))),
        (0.2, 1.0 - min(1.0, abs(a.distinct_fraction - b.distinct_fraction))),
        (0.2, (min(a.mean_length, b.mean_length) + 1.0) / (max(a.mean_length, b.mean_length) + 1.0)),
    ]
    if None not in (a.numeric_min, a.numeric_max, b.numeric_min, b.numeric_max):
        lo, hi = max(a.numeric_min, b.numeric_min), min(a.numeric_max, b.numeric_max)  # type: ignore[type-var]
        span = max(a.numeric_max, b.numeric_max) - min(a.numeric_min, b.numeric_min)  # type: ignore[type-var, operator]
        overlap = (1.0 if lo <= hi else 0.0) if span == 0 else max(0.0, hi - lo) / span  # type: ignore[operator]
        parts.append((0.15, overlap))
    return sum(w * s for w, s in parts) / sum(w for w, _ in parts)
