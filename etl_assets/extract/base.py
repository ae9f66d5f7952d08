"""What every extractor yields: a batch of raw records and the position after it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd


@dataclass
class Batch:
    frame: pd.DataFrame  # raw values; index = row numbers within `location` (stable row identity)
    position: dict[str, Any]  # the source's checkpoint once this batch has landed (JSON-serialisable)
    location: str  # file path or URL the rows came from, for lineage, errors and quarantine
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (row, raw text, reason) unparseable rows


class Extractor(Protocol):
    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        """Yield batches starting after `checkpoint` (None: from the beginning)."""
        ...
