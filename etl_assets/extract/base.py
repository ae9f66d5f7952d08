"""What every extractor yields: a batch of raw records and the position after it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd


@dataclass
class Batch:
    frame: pd.DataFrame  # raw values; index = row numbers within `location` (files: stable row identity)
    position: dict[str, Any]  # the source's checkpoint once this batch has landed (JSON-serialisable)
    location: str  # file path or URL the rows came from, for lineage, errors and quarantine
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (row, raw text, reason) unparseable rows
    # Row identity without a primary key (README "Row identity"), whatever the batching:
    version: str | None = None  # files: the content's SHA-256; a row is location + version + row number
    replaces: bool = False  # files: the first batch of a version; the location's other versions' rows go with it
    row_ids: list[str] | None = None  # APIs and feeds: one content hash per row (`content_id`), frame order


def content_id(record: Any) -> str:
    """A record's identity from its content alone: canonical JSON (sorted keys, no spaces), 160-bit BLAKE2b.
    The same record has the same id on any page, in any batch, in any run."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


class Extractor(Protocol):
    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        """Yield batches starting after `checkpoint` (None: from the beginning)."""
        ...
