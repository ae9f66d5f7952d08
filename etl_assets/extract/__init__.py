"""Extractors: one per source kind, each yielding Batch(frame, position, location)."""

from __future__ import annotations

from typing import Any

from ..config import ApiSource, CsvSource, RssSource
from .base import Batch, Extractor, ExtractorStats


def make_extractor(spec: CsvSource | ApiSource | RssSource, limiter: Any = None) -> Extractor:
    """`limiter`: the source's shared RateLimiter (API sources with `rate_limit`)."""
    if spec.kind == "csv":
        from .csv import CsvExtractor

        return CsvExtractor(spec)
    if spec.kind == "api":
        from .api import ApiExtractor

        return ApiExtractor(spec, limiter)
    from .rss import RssExtractor

    return RssExtractor(spec)


__all__ = ["Batch", "Extractor", "ExtractorStats", "make_extractor"]
