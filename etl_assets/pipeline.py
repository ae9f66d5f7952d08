"""The one ingest loop every source kind goes through.

extractor.batches(checkpoint) -> schema (declared, pinned or inferred) -> coerce -> warehouse.load
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import faults
from .column_names import refuse_clashes, refuse_reserved, safe_names
from .concurrency import read_ahead, write_behind
from .config import CsvSource, SourceSpec
from .drift import DriftReport
from .errors import SourceError
from .extract import Batch, ExtractorStats, make_extractor
from .extract.base import this_run
from .extract.csv import CsvExtractor
from .logs import bind, event_fields, unbind
from .reconcile import DriftBlocked, Reconciler
from .redaction import redact
from .run_stats import IngestStats
from .source_lock import SourceLock
from .warehouse import (
    LINEAGE,
    ROW_ID,
    DriftEvent,
    QuarantinedRow,
    SchemaState,
    Warehouse,
    database_error,
    file_row_prefix,
)

if TYPE_CHECKING:  # pandas and the typing stack come with the first batch: a rerun on unchanged files never
    import pandas as pd  # imports them

log = logging.getLogger(__name__)
_RUN_COUNTS = "batches duration_seconds drift_events http_requests http_retries rate_limit_waits".split()


@dataclass
class _Prepared:
    batch: Batch
    processed: int
    rows: pd.DataFrame  # the typed rows to land (empty when the batch has none)
    table: sa.Table | None = None
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    events: list[DriftEvent] = field(default_factory=list)
    state: SchemaState | None = None  # to pin with this batch (a header's first batch)
    duplicate_keys: int = 0
    schema: dict[str, str] = field(default_factory=dict)
    drift: list[tuple[str, DriftReport]] = field(default_factory=list)  # (file of its header, report)


class Ingest:
    """Run one source to the end of its input, committing batch by batch."""

    def __init__(
        self, spec: SourceSpec, warehouse: Warehouse, run_id: str, files: Collection[str] | None = None
    ):
        self.spec, self.wh, self.run_id = spec, warehouse, run_id
        self.files = files  # CSV: the files (paths below the glob's root, partition keys) to read; None: all
        self.key = list(spec.primary_key or [ROW_ID])
        self.reconciler: Reconciler | None = None
        # a file's new version replaces its rows
        self.by_file = self.key == [ROW_ID] and isinstance(spec, CsvSource)
        self._renames_logged: set[tuple] = set()
        self.dates: Any = None  # DateRules: date keys, and the day/month order each column decided this run
        location = redact(spec.location)
        self.stats = IngestStats(spec.name, spec.kind, spec.table_name, location, run_id)

    def run(self) -> IngestStats:
        """The source to the end of its input, holding its lock; a database failure is one line."""
        lock = self.lock = SourceLock(self.wh.engine, self.spec.name)
        try:
            lock.acquire(when_alone=self._mark_abandoned)
            return self._run()
        except sa.exc.SQLAlchemyError as exc:
            raise database_error(self.spec.name, repr(self.wh), exc) from None
        finally:
            lock.release()

    def _mark_abandoned(self) -> None:
        for run_id in self.wh.mark_abandoned(self.spec.name, self.run_id):
            log.warning(
                "source %s: run %s ended without finishing (killed?); marked abandoned",
                self.spec.name,
                run_id,
                extra=event_fields("run_abandoned", abandoned_run_id=run_id),
            )

    def _run(self) -> IngestStats:
        spec, stats = self.spec, self.stats
        started = time.monotonic()
        started_at = datetime.now(UTC)
        self.wh.record_run(
            run_id=self.run_id,
            source=spec.name,
            source_type=spec.kind,
            status="started",
            started_at=started_at,
        )
        bound = bind(source=spec.name, run_id=self.run_id)  # retries and rate-limit waits log with these
        log.info(
            "source %s: run %s started",
            spec.name,
            self.run_id,
            extra=event_fields("run_started", source_type=spec.kind),
        )
        extractor = limiter = None
        try:
            limit = spec.rate_limit
            limiter = self.wh.rate_limiter(spec.name, limit.calls, limit.period_seconds) if limit else None
            extractor = make_extractor(spec, limiter, self.files)
            if isinstance(extractor, CsvExtractor):  # exactly the files listed now, each locked (source_lock)
                self.lock.hold_files(extractor.pin())  # a partition whose file is gone fails here
                stats.checkpoint = {"files": {}}  # this run's files (the whole map is in etl_checkpoints)
            self.reconciler = Reconciler(spec, self.wh.schema_state(spec.name, spec.table_name))
            checkpoint = self.wh.checkpoint(spec.name)
            stats.checkpoint = stats.checkpoint or checkpoint
            with write_behind(self._commit) as land:
                for batch in read_ahead(extractor.batches(checkpoint)):
                    faults.hit("after_batch_read", batch)
                    land(self._prepare(batch))
            status, error = "success", None
        except DriftBlocked as exc:
            status, error = "failure", redact(str(exc))
            assert self.reconciler is not None  # only reconciling raises it
            blocking = self.reconciler.events(exc.report)
            self.wh.record_drift(spec.name, self.run_id, blocking)
            self._log_drift(blocking, None)
            raise
        except sa.exc.SQLAlchemyError as exc:
            status, error = "failure", str(database_error(spec.name, repr(self.wh), exc))
            raise
        except Exception as exc:
            status, error = "failure", redact(str(exc))
            raise
        finally:
            if limiter is not None:
                limiter.close()
            if extractor is not None:
                self._take(extractor.stats())
            stats.duration_seconds = round(time.monotonic() - started, 3)
            try:
                self.wh.record_run(
                    run_id=self.run_id,
                    source=spec.name,
                    source_type=spec.kind,
                    status=status,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                    records_processed=stats.processed,
                    records_inserted=stats.inserted,
                    records_updated=stats.updated,
                    records_failed=stats.failed,
                    error=error,
                )
            except sa.exc.SQLAlchemyError as exc:  # the warehouse went away: the run's own error says more
                log.warning(
                    "source %s: run %s could not be recorded: %s",
                    spec.name,
                    self.run_id,
                    database_error(spec.name, repr(self.wh), exc).problem,
                )
            if error is not None:
                log.error(
                    "source %s: run %s failed: %s",
                    spec.name,
                    self.run_id,
                    error,
                    extra=event_fields("run_failed", **self._counts(), status=status, error=error),
                )
            unbind(bound)
        log.info(
            "source %s: done: %d processed, %d inserted, %d updated, %d quarantined in %.2fs",
            spec.name,
            stats.processed,
            stats.inserted,
            stats.updated,
            stats.failed,
            stats.duration_seconds,
            extra=event_fields(
                "run_finished", source=spec.name, run_id=self.run_id, status="success", **self._counts()
            ),
        )
        return stats

    def _counts(self) -> dict[str, Any]:
        s = self.stats
        return {
            "source_type": s.source_type,
            **{f"records_{k}": getattr(s, k) for k in ("processed", "inserted", "updated", "failed")},
            **{k: getattr(s, k) for k in _RUN_COUNTS},
        }

    def _log_drift(self, events: list[DriftEvent], location: str | None) -> None:
        for e in events:
            log.warning(
                "source %s: schema drift %s: expected %s, observed %s",
                self.spec.name,
                e["decision"],
                e["expected"],
                e["observed"],
                extra=event_fields(
                    "schema_drift",
                    source=self.spec.name,
                    run_id=self.run_id,
                    location=location,
                    expected=e["expected"],
                    observed=e["observed"],
                    confidence=e["confidence"],
                    decision=e["decision"],
                ),
            )

    def _take(self, x: ExtractorStats) -> None:
        """The extractor's own counts (HTTP, rate limit) into the run's stats: every field, same name."""
        for f in fields(x):
            value = getattr(x, f.name)
            setattr(self.stats, f.name, dict(value) if isinstance(value, dict) else value)

    def _prepare(self, batch: Batch) -> _Prepared:
        """Reconcile and type a batch (main thread): the CPU-bound half of landing it."""
        from .arrow_pool import configure_arrow
        from .batch_rows import quarantine_rows, rejected_rows, row_ids
        from .dates import DateRules
        from .schema import coerce

        configure_arrow()  # once per process (a CSV read has done it already)
        spec, self.dates = self.spec, self.dates or DateRules.of(self.spec)  # one DateRules per run
        frame = self._named(batch)  # column_map: see reconcile
        out = _Prepared(batch, len(frame) + len(batch.rejected), frame.iloc[:0, :0])  # no rows until typed
        rec = self.reconciler
        assert rec is not None  # made by `_run` before the first batch is read
        refuse_reserved(spec.name, rec.schema or {}, batch.location)  # a declared lineage name, before drift
        if len(frame.columns):
            fit = rec.reconcile(frame, batch.location)
            frame, out.events = fit.frame, fit.events
            out.state = rec.state() if fit.changed else None  # once per header, not per batch
            assert rec.schema is not None  # reconciling pins one
            schema = dict(rec.schema)
            self._check_table(schema, batch.location)
            out.table = self.wh.ensure_table(
                spec.table_name, schema, self.key, source=spec.name, location_index=self.by_file
            )
            if self.key == [ROW_ID]:
                frame = frame.assign(**{ROW_ID: row_ids(batch)})
                schema = {ROW_ID: "string", **schema}
            if fit.blocked:  # drift.on_missing_required: quarantine - the whole batch, with the reason
                out.quarantined = quarantine_rows(batch, frame.assign(_reason=fit.blocked))
            else:
                coerced = coerce(frame, schema, self.key, self.dates)
                out.rows, out.quarantined = coerced.good, quarantine_rows(batch, coerced.bad)
                out.duplicate_keys = int(out.rows.duplicated(subset=self.key).sum())
        elif batch.replaces and self.by_file and rec.schema:  # an empty new version replaces the old rows too
            out.table = self.wh.ensure_table(
                spec.table_name, dict(rec.schema), self.key, source=spec.name, location_index=True
            )
        out.quarantined += rejected_rows(batch)
        out.schema = dict(rec.schema or {})
        out.drift = list(rec.reports.values())
        return out

    def _named(self, batch: Batch) -> pd.DataFrame:
        """The batch under names the warehouse can hold (`safe_names`); a renamed lineage name WARNs once per header."""
        raw = list(batch.frame.columns)
        names, renamed = safe_names(self.spec.name, batch.location, raw)
        if renamed and tuple(raw) not in self._renames_logged:
            self._renames_logged.add(tuple(raw))
            for old, new in renamed.items():
                log.warning(
                    "source %s: column '%s' of %s has the name of a lineage column; it lands as '%s'",
                    self.spec.name,
                    old,
                    batch.location,
                    new,
                    extra=event_fields(
                        "column_renamed",
                        source=self.spec.name,
                        location=batch.location,
                        observed=old,
                        column=new,
                    ),
                )
        return batch.frame.set_axis(names, axis=1)

    def _check_table(self, schema: dict[str, str], location: str) -> None:
        """Before any DDL: the table's names are distinct on every dialect, none is a lineage name, and there are
        no more of them than a table may have."""
        spec = self.spec
        refuse_reserved(spec.name, schema, location)
        names = ([ROW_ID] if self.key == [ROW_ID] else []) + list(schema) + list(LINEAGE)
        existing = self.wh.existing_columns(spec.table_name)
        refuse_clashes(spec.name, location, names, names, existing=existing)
        names = list(dict.fromkeys([*existing, *names]))
        if len(names) > self.wh.max_columns:
            raise SourceError(
                spec.name,
                location,
                f"the table would have {len(names)} columns ({len(schema)} from "
                f"the source, the rest lineage), more than {self.wh.dialect} allows in a table "
                f"({self.wh.max_columns})",
                "declare the `columns` to keep and set drift.on_new_column: ignore, or split the source",
            )

    def _commit(self, p: _Prepared) -> None:
        """Land a prepared batch in one transaction (writer thread), then count it."""
        spec, stats, batch = self.spec, self.stats, p.batch
        result = self.wh.load(
            source=spec.name,
            table=p.table,
            key=self.key,
            rows=p.rows,
            quarantined=p.quarantined,
            position=batch.position,
            run_id=self.run_id,
            location=batch.location,
            schema=p.state,
            drift_events=p.events,
            replaces=file_row_prefix(batch.location, batch.version or "")
            if batch.replaces and self.by_file
            else None,
        )
        if result.deleted:
            log.info(
                "source %s: %s changed: its %d row(s) from an earlier version were replaced",
                spec.name,
                batch.location,
                result.deleted,
                extra=event_fields(
                    "file_replaced", source=spec.name, location=batch.location, records_deleted=result.deleted
                ),
            )
        stats.drift_events += len(p.events)
        stats.duplicate_keys += p.duplicate_keys
        stats.batches += 1
        stats.processed += p.processed
        stats.inserted += result.inserted
        stats.updated += result.updated
        stats.failed += result.quarantined
        stats.checkpoint = this_run(stats.checkpoint, batch)
        stats.schema, stats.drift = p.schema, [d for _, d in p.drift]
        stats.drift_files = [f for f, _ in p.drift]
        self._log_drift(p.events, batch.location)
        if result.quarantined:
            log.warning(
                "source %s: %d row(s) of %s quarantined, first: %s",
                spec.name,
                result.quarantined,
                batch.location,
                p.quarantined[0]["reason"],
                extra=event_fields(
                    "quarantine",
                    source=spec.name,
                    run_id=self.run_id,
                    location=batch.location,
                    records_failed=result.quarantined,
                    reason=p.quarantined[0]["reason"],
                ),
            )
        records = p.processed - len(batch.rejected)
        log.info(
            "source %s: batch %d from %s: %d rows, %d inserted, %d updated",
            spec.name,
            stats.batches,
            batch.location,
            records,
            result.inserted,
            result.updated,
            extra=event_fields(
                "batch_loaded",
                source=spec.name,
                run_id=self.run_id,
                location=batch.location,
                batch=stats.batches,
                records=records,
                records_inserted=result.inserted,
                records_updated=result.updated,
                records_failed=result.quarantined,
            ),
        )
        faults.hit("after_commit")


def ingest(
    spec: SourceSpec, warehouse: Warehouse, run_id: str, files: Collection[str] | None = None
) -> IngestStats:
    """`files`: for a CSV source, the files to read by their paths below the glob's root (a partition's key);
    None: every file."""
    return Ingest(spec, warehouse, run_id, files).run()
