"""What one run of a source did: the counts every channel reports (metadata, etl_runs, logs, metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .drift import DriftReport


@dataclass
class IngestStats:
    source: str
    source_type: str
    table: str
    location: str
    run_id: str
    processed: int = 0
    inserted: int = 0
    updated: int = 0
    failed: int = 0
    batches: int = 0
    duration_seconds: float = 0.0
    checkpoint: Mapping[str, Any] | None = None  # as read at the start, then each landed batch's position
    schema: dict[str, str] = field(default_factory=dict)
    drift: list[DriftReport] = field(default_factory=list)  # one report per distinct header seen this run
    drift_files: list[str] = field(default_factory=list)  # the file (or URL) of each report's header
    drift_events: int = 0
    duplicate_keys: int = 0  # rows whose key repeated within a batch (the last one wins)
    http_requests: int = 0  # attempts, retries included
    http_retries: int = 0
    http_statuses: dict[str, int] = field(default_factory=dict)  # final status per request ("error": none)
    http_seconds: float = 0.0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0

    @property
    def unchanged(self) -> int:
        return self.processed - self.failed - self.inserted - self.updated

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("drift", "drift_files")}
        return {**out, "unchanged": self.unchanged}
