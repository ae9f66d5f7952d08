"""Value profiles: what a column's values looked like at the last load, to recognise the column by its values."""

from __future__ import annotations

import hashlib
import math
import re
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


TOP_VALUES = 20  # frequent values kept per column
MIN_VALUES = 20  # fewer present values than this say too little about a column to recognise it by


@dataclass
class ColumnProfile:
    """Value profile of one column, kept from a load to compare the next load's columns with."""

    type: str
    null_fraction: float
    distinct_fraction: float
    mean_length: float
    numeric_min: float | None = None
    numeric_max: float | None = None
    count: int = 0  # present values profiled
    quantiles: list[float] | None = None  # p5, p25, p50, p75, p95 of a numeric column
    top: dict[str, float] | None = (
        None  # the most frequent values (casefolded) -> share, of a repetitive column
    )
    shape: str | None = None  # the dominant shape of the text ("A9" letters then digits, "email", ...)

    @classmethod
    def of(cls, values: Sequence[object]) -> ColumnProfile:
        values = list(values)
        present = [v for v in values if not is_missing(v)]
        typ = infer_type(present)
        texts = [str(v).strip() for v in present]
        nums = _numbers(present) if typ in ("integer", "float") else []
        distinct = len(set(texts)) / len(texts) if texts else 0.0
        return cls(
            type=typ,
            null_fraction=(len(values) - len(present)) / len(values) if values else 0.0,
            distinct_fraction=distinct,
            mean_length=sum(map(len, texts)) / len(texts) if texts else 0.0,
            numeric_min=min(nums) if nums else None,
            numeric_max=max(nums) if nums else None,
            count=len(texts),
            quantiles=_quantiles(nums) if nums else None,
            top=_top(texts) if texts and distinct <= 0.5 else None,
            shape=_dominant_shape(texts),
        )

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "null_fraction": self.null_fraction,
            "distinct_fraction": self.distinct_fraction,
            "mean_length": self.mean_length,
            "numeric_min": self.numeric_min,
            "numeric_max": self.numeric_max,
            "count": self.count,
            "quantiles": self.quantiles,
            "top": self.top,
            "shape": self.shape,
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
            count=int(d.get("count") or 0),  # type: ignore[call-overload]
            quantiles=[float(x) for x in quantiles]
            if isinstance(quantiles := d.get("quantiles"), list)
            else None,
            top={str(k): float(v) for k, v in top.items()} if isinstance(top := d.get("top"), dict) else None,
            shape=str(d["shape"]) if d.get("shape") else None,
        )


def _numbers(present: Sequence[object]) -> list[float]:
    nums = []
    for v in present:
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            nums.append(x)
    return nums


def _quantiles(nums: list[float]) -> list[float]:
    xs = sorted(nums)
    return [xs[min(len(xs) - 1, int(q * len(xs)))] for q in (0.05, 0.25, 0.5, 0.75, 0.95)]


def _top(texts: list[str]) -> dict[str, float]:
    """The most frequent values by a short hash of their casefolded text: enough to compare two columns' values,
    and the profile kept in the warehouse's state carries no value of the data itself."""
    counts: dict[str, int] = {}
    for t in texts:
        key = hashlib.blake2b(t.casefold().encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
    return {k: round(n / len(texts), 4) for k, n in ranked}


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_RUNS = re.compile(r"([A9])\1+")


def _shape(text: str) -> str:
    if _EMAIL.match(text):
        return "email"
    coded = "".join("9" if ch.isdigit() else "A" if ch.isalpha() else ch for ch in text[:40])
    return _RUNS.sub(r"\1", coded)  # "AB-1234" and "XY-77" share the shape "A-9"


def _dominant_shape(texts: list[str]) -> str | None:
    """The shape most of the values share (at least 80% of them), else None."""
    if not texts:
        return None
    counts: dict[str, int] = {}
    for t in texts:
        sh = _shape(t)
        counts[sh] = counts.get(sh, 0) + 1
    shape, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return shape if n >= 0.8 * len(texts) else None


def value_match(a: ColumnProfile, b: ColumnProfile) -> float | None:
    """How surely two columns hold the same kind of values, in [0, 1], from what the values themselves show:
    the distribution of a numeric column (quantiles against the joint range), the frequent values of a
    repetitive one, the shape of codes. None when either side has too few values or nothing to compare."""
    if min(a.count, b.count) < MIN_VALUES or type_affinity(a.type, b.type) < 0.7:
        return None if min(a.count, b.count) < MIN_VALUES else 0.0
    scores = []
    if a.quantiles and b.quantiles:
        lo = min(a.quantiles[0], b.quantiles[0])
        hi = max(a.quantiles[-1], b.quantiles[-1])
        span = (hi - lo) or 1.0
        gap = sum(abs(x - y) for x, y in zip(a.quantiles, b.quantiles, strict=True)) / len(a.quantiles)
        scores.append(max(0.0, 1.0 - 2.5 * gap / span))
    if a.top and b.top:
        scores.append(sum(min(share, b.top.get(v, 0.0)) for v, share in a.top.items()))
    if not scores:
        return None
    score = min(scores)
    if a.shape and b.shape and a.shape != b.shape:
        score *= 0.5  # "AB-123" codes against "2024-01-05" dates
    cardinality = 1.0 - min(1.0, abs(a.distinct_fraction - b.distinct_fraction) * 2)
    return round(score * (0.5 + 0.5 * cardinality), 3)


def incompatible(a: ColumnProfile, b: ColumnProfile) -> bool:
    """Values that cannot be one column's: text against numbers, or a near-unique identifier against a few
    repeated values (a count, a rating, a flag), each seen on enough values."""
    if min(a.count, b.count) < MIN_VALUES:
        return False
    if type_affinity(a.type, b.type) <= 0.2:
        return True
    lo, hi = sorted((a.distinct_fraction, b.distinct_fraction))
    return hi >= 0.9 and lo <= 0.3


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
