"""Extractors: one per source kind, each yielding Batch(frame, position, location)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..config import ApiSource, CsvSource, RssSource
from .base import Batch, Extractor, ExtractorStats


def make_extractor(
    spec: CsvSource | ApiSource | RssSource, limiter: Any = None, files: Collection[str] | None = None
) -> Extractor:
    """`limiter`: the source's shared RateLimiter (API sources with `rate_limit`); `files`: the CSV files to
    read (paths below the glob's root), None for all."""
    if spec.kind == "csv":
        from .csv import CsvExtractor

        return CsvExtractor(spec, files)
    if spec.kind == "api":
        from .api import ApiExtractor

        return ApiExtractor(spec, limiter)
    from .rss import RssExtractor

    return RssExtractor(spec)


__all__ = ["Batch", "Extractor", "ExtractorStats", "make_extractor"]
