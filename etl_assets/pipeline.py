"""The one ingest loop every source kind goes through.

    extractor.batches(checkpoint) -> schema (declared, pinned or inferred) -> coerce -> warehouse.load
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .config import CsvSource
from .errors import SourceError
from .extract import Batch, make_extractor
from .schema import coerce, infer_schema
from .warehouse import ROW_ID, Warehouse

log = logging.getLogger(__name__)

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently; we shorten them ourselves, stably


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
    checkpoint: dict[str, Any] | None = None
    schema: dict[str, str] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return self.processed - self.failed - self.inserted - self.updated

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unchanged": self.unchanged}


def column_name(raw: Any) -> str:
    name = str(raw).strip() or "unnamed"
    if len(name.encode("utf-8")) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return name.encode("utf-8")[:50].decode("utf-8", "ignore") + "_" + digest


def _row_ids(batch: Batch) -> list[str]:
    # Without a primary key, a row is who it is by where it came from: location + row number.
    return [hashlib.sha1(f"{batch.location}#{i}".encode()).hexdigest() for i in batch.frame.index]


def _quarantine_rows(batch: Batch, bad: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"location": batch.location, "row_number": int(i), "reason": reason,
            "raw": json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}, default=str, ensure_ascii=False)}
           for i, reason, row in zip(bad.index, bad["_reason"], bad.drop(columns="_reason").to_dict("records"),
                                     strict=True)]


def _rejected_rows(batch: Batch) -> list[dict[str, Any]]:
    return [{"location": batch.location, "row_number": line, "reason": f"line {line}: {reason}", "raw": raw or None}
            for line, raw, reason in batch.rejected]


class Ingest:
    """Run one source to the end of its input, committing batch by batch."""

    def __init__(self, spec: Any, warehouse: Warehouse, run_id: str,
                 on_batch: Callable[[IngestStats], None] | None = None):
        self.spec, self.wh, self.run_id, self.on_batch = spec, warehouse, run_id, on_batch
        self.key = list(spec.primary_key or [ROW_ID])
        self.schema: dict[str, str] | None = dict(spec.columns) if spec.columns else None
        location = spec.path if isinstance(spec, CsvSource) else spec.url
        self.stats = IngestStats(spec.name, spec.kind, spec.table_name, location, run_id)

    def _resolve_schema(self, frame: pd.DataFrame) -> dict[str, str]:
        if self.schema is None:
            self.schema = self.wh.pinned_schema(self.spec.name, self.spec.table_name)
            if self.schema is None:
                self.schema = infer_schema(frame)
                log.info("source %s: inferred and pinned schema %s", self.spec.name, self.schema)
        observed = [c for c in frame.columns]
        missing = [c for c in self.schema if c not in observed and c in (self.spec.columns or {})]
        if missing and len(frame.columns):
            raise SourceError(self.spec.name, f"{self.stats.location}", f"expected column(s) {missing} missing "
                              f"from the data (got {observed[:20]})",
                              "map the new names in `column_map` or fix `columns`")
        extra = [c for c in observed if c not in self.schema]
        if extra:
            policy = self.spec.drift.on_new_column
            if policy == "fail":
                raise SourceError(self.spec.name, self.stats.location, f"new column(s) {extra}",
                                  "add them to `columns` or set drift.on_new_column: evolve")
            if policy == "evolve":
                added = infer_schema(frame[extra])
                log.warning("source %s: new column(s) %s added to table %s", self.spec.name, added,
                            self.spec.table_name)
                self.schema = {**self.schema, **added}
        return self.schema

    def run(self) -> IngestStats:
        spec, stats = self.spec, self.stats
        started = time.monotonic()
        started_at = datetime.now(UTC)
        self.wh.record_run(run_id=self.run_id, source=spec.name, source_type=spec.kind, status="started",
                           started_at=started_at)
        try:
            extractor = make_extractor(spec)
            checkpoint = self.wh.checkpoint(spec.name)
            stats.checkpoint = checkpoint
            for batch in extractor.batches(checkpoint):
                self._land(batch)
            status, error = "success", None
        except Exception as exc:
            status, error = "failure", str(exc)
            raise
        finally:
            stats.duration_seconds = round(time.monotonic() - started, 3)
            self.wh.record_run(run_id=self.run_id, source=spec.name, source_type=spec.kind, status=status,
                               started_at=started_at, finished_at=datetime.now(UTC),
                               records_processed=stats.processed, records_inserted=stats.inserted,
                               records_updated=stats.updated, records_failed=stats.failed, error=error)
        log.info("source %s: done: %d processed, %d inserted, %d updated, %d quarantined in %.2fs",
                 spec.name, stats.processed, stats.inserted, stats.updated, stats.failed, stats.duration_seconds)
        return stats

    def _land(self, batch: Batch) -> None:
        spec, stats = self.spec, self.stats
        frame = batch.frame
        rename = {c: column_name(c) for c in frame.columns}
        rename.update({k: v for k, v in spec.column_map.items() if k in frame.columns})
        frame = frame.rename(columns=rename)
        dup = list(frame.columns[frame.columns.duplicated()])
        if dup:
            raise SourceError(spec.name, batch.location, f"duplicate column names {dup}",
                              "rename the columns in the source or use `column_map`")
        table, rows, quarantined = None, pd.DataFrame(), []
        if len(frame.columns):
            schema = self._resolve_schema(frame)
            table = self.wh.ensure_table(spec.table_name, schema, self.key)
            if self.key == [ROW_ID]:
                frame = frame.assign(**{ROW_ID: _row_ids(batch)})
                schema = {ROW_ID: "string", **schema}
            coerced = coerce(frame, schema, self.key)
            rows, quarantined = coerced.good, _quarantine_rows(batch, coerced.bad)
        quarantined += _rejected_rows(batch)
        result = self.wh.load(source=spec.name, table=table, key=self.key, rows=rows, quarantined=quarantined,
                              position=batch.position, run_id=self.run_id, location=batch.location,
                              schema=self.schema)
        stats.batches += 1
        stats.processed += len(frame) + len(batch.rejected)
        stats.inserted += result.inserted
        stats.updated += result.updated
        stats.failed += result.quarantined
        stats.checkpoint = batch.position
        stats.schema = dict(self.schema or {})
        if result.quarantined:
            log.warning("source %s: %d row(s) of %s quarantined, first: %s", spec.name, result.quarantined,
                        batch.location, quarantined[0]["reason"])
        log.info("source %s: batch %d from %s: %d rows, %d inserted, %d updated", spec.name, stats.batches,
                 batch.location, len(frame), result.inserted, result.updated)
        if self.on_batch:
            self.on_batch(stats)


def ingest(spec: Any, warehouse: Warehouse, run_id: str, **kw: Any) -> IngestStats:
    return Ingest(spec, warehouse, run_id, **kw).run()
