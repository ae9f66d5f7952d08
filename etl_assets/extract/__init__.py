"""Extractors: one per source kind, each yielding Batch(frame, position, location)."""

from __future__ import annotations

from ..config import ApiSource, CsvSource, RssSource
from .base import Batch, Extractor


def make_extractor(spec: CsvSource | ApiSource | RssSource) -> Extractor:
    if spec.kind == "csv":
        from .csv import CsvExtractor

        return CsvExtractor(spec)
    if spec.kind == "api":
        from .api import ApiExtractor

        return ApiExtractor(spec)
    from .rss import RssExtractor

    return RssExtractor(spec)


__all__ = ["Batch", "Extractor", "make_extractor"]
