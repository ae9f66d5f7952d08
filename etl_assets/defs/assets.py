"""One software-defined asset per source, from one factory."""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import os
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableSchema,
    asset,
)

from ..config import CsvSource, SourceSpec
from ..errors import SourceError
from ..pipeline import ingest
from ..reconcile import DriftBlocked, required_columns
from ..redaction import redact, redact_obj
from ..run_stats import IngestStats
from ..warehouse import Warehouse, database_error
from . import metadata_keys as k
from .checks import check_specs, drift_check, table_checks
from .file_events import FileEvents
from .partitions import (
    file_keys,
    file_partitions,
    new_partition_keys,
    partitions_name,
    pool_name,
    sync_pool_limit,
)
from .resources import WarehouseResource


def warehouse_kind() -> str:
    url = os.environ.get("ETL_WAREHOUSE_URL", "")
    return "postgres" if url.startswith(("postgres", "postgresql")) else "sqlite"


def column_schema(columns: Mapping[str, str]) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=c, type=t) for c, t in columns.items()])


def definition_metadata(spec: SourceSpec, location: str) -> dict[str, Any]:
    """On the asset itself: the declared columns show in the UI's Columns panel before the first run."""
    meta: dict[str, Any] = {"source_location": location, "table": spec.table_name}
    if spec.columns:
        meta[k.COLUMN_SCHEMA] = MetadataValue.table_schema(column_schema(spec.columns))
    return meta


def materialization_metadata(
    stats: IngestStats,
    row_count: int,
    location: str,
    schema: TableSchema | None = None,
    table_name: str | None = None,
) -> dict[str, Any]:
    """The same keys with the same types every run of a source, so the UI can plot them over time. The HTTP and
    rate-limit series only where the source makes HTTP requests (not CSV); the column schema is `schema` (this
    run's, else the one carried forward), never an empty one."""
    loc = (
        MetadataValue.url(location)
        if location.startswith(("http://", "https://"))
        else MetadataValue.path(location)
    )
    meta: dict[str, Any] = {
        k.RECORDS_PROCESSED: stats.processed,
        k.RECORDS_INSERTED: stats.inserted,
        k.RECORDS_UPDATED: stats.updated,
        k.RECORDS_UNCHANGED: stats.unchanged,
        k.RECORDS_FAILED: stats.failed,
        k.BATCHES: stats.batches,
        k.DURATION_SECONDS: MetadataValue.float(float(stats.duration_seconds)),
        k.SOURCE_LOCATION: loc,
        k.CHECKPOINT: MetadataValue.json(redact_obj(stats.checkpoint or {})),  # this run's files or position
        k.TABLE_NAME: table_name or stats.table,
        k.ROW_COUNT: row_count,
        k.DRIFT_EVENTS: stats.drift_events,
    }
    if stats.source_type != "csv":
        meta |= {
            k.HTTP_REQUESTS: stats.http_requests,
            k.HTTP_RETRIES: stats.http_retries,
            k.HTTP_STATUSES: MetadataValue.json(stats.http_statuses),
            k.HTTP_SECONDS: MetadataValue.float(float(stats.http_seconds)),
            k.RATE_LIMIT_WAITS: stats.rate_limit_waits,
            k.RATE_LIMIT_WAIT_SECONDS: MetadataValue.float(float(stats.rate_limit_wait_seconds)),
        }
    schema = column_schema(stats.schema) if stats.schema else schema
    if schema is not None and schema.columns:
        meta[k.COLUMN_SCHEMA] = schema
    return meta


def _last_metadata(context: AssetExecutionContext, page: int = 100) -> Mapping[str, Any]:
    """The last run's own materialization: not a per-file one (FILE_OF_RUN) of a run without a partition."""
    cursor = None
    while True:
        result = context.instance.fetch_materializations(context.asset_key, limit=page, cursor=cursor)
        for rec in result.records:  # newest first
            md = rec.asset_materialization.metadata if rec.asset_materialization else {}
            if k.FILE_OF_RUN not in md:
                return md
        if not result.has_more:
            return {}
        cursor = result.cursor


def _row_count(context: AssetExecutionContext, wh: Warehouse, table: str, stats: IngestStats) -> int:
    """The table's rows after the run. A run that inserted none carries the last materialization's count forward:
    counting a 21M-row table took longer than the rest of a rerun on unchanged input."""
    if stats.inserted == 0:
        last = _last_metadata(context).get(k.ROW_COUNT)
        if last is not None:
            return int(last.value)
    return wh.row_count(table)


def _schema(context: AssetExecutionContext, spec: SourceSpec, stats: IngestStats) -> TableSchema | None:
    """The columns to show when this run saw no header (no new data): the last materialization's, else the
    declared ones."""
    if stats.schema:
        return None  # this run's own
    last = _last_metadata(context).get(k.COLUMN_SCHEMA)
    if last is not None and getattr(last, "schema", None) is not None and last.schema.columns:
        return last.schema
    return column_schema(spec.columns) if spec.columns else None


def qualified_table_name(wh: Warehouse, table: str) -> str:
    """dagster/table_name: database.schema.table on PostgreSQL (tables land in the session's current schema);
    SQLite has no schemas, so the bare name."""
    if wh.dialect != "postgresql":
        return table
    with wh.engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    return f"{wh.engine.url.database}.{schema}.{table}"


def _files(context: AssetExecutionContext, spec: SourceSpec) -> list[str] | None:
    """The partition's file; None (every file) for a run without a partition, which also adds the files it
    finds as partitions, so each has its row on the partitions page."""
    if not isinstance(spec, CsvSource):
        return None
    sync_pool_limit(context.instance, spec)
    if context.has_partition_key:
        return [context.partition_key]
    try:
        new = new_partition_keys(context.instance, spec, file_keys(spec))
    except SourceError:
        return None  # the ingest reports it, as one line
    if new:
        context.instance.add_dynamic_partitions(partitions_name(spec.name), new)
    return None


def _file_failure(per_file: FileEvents | None, wh: Warehouse, spec: SourceSpec, place: str) -> Iterator[Any]:
    """A failed run without a partition: the files it landed before the failure, and the failing file's
    partition marked failed (file_events.py)."""
    if per_file is None:
        return
    try:
        after = wh.checkpoint(spec.name)
    except sa.exc.SQLAlchemyError:
        return  # the warehouse went away: the run's own error says it
    yield from per_file.landed_before_failure(after)
    per_file.failed(place)


def build_source_asset(spec: SourceSpec) -> AssetsDefinition:
    location = redact(spec.location)

    @asset(
        name=spec.name,
        group_name=f"{spec.kind}_sources",
        kinds={spec.kind, warehouse_kind()},
        description=spec.description
        or f"{spec.kind} source '{spec.name}' landing in table {spec.table_name}",
        retry_policy=RetryPolicy(
            max_retries=spec.retry.max_retries,
            delay=spec.retry.delay_seconds,
            backoff=Backoff.EXPONENTIAL,
            jitter=Jitter.PLUS_MINUS,
        ),
        pool=pool_name(spec.name),
        partitions_def=file_partitions(spec),  # CSV: one partition per file; a run without one reads them all
        metadata=definition_metadata(spec, location),
        check_specs=check_specs(spec.name),
    )
    def _source_asset(context: AssetExecutionContext, warehouse: WarehouseResource):
        try:
            wh = warehouse.get()
        except sa.exc.SQLAlchemyError as exc:
            err = database_error(
                spec.name, redact(warehouse.url or os.environ.get("ETL_WAREHOUSE_URL") or "(default)"), exc
            )
            context.log.error(str(err))
            raise Failure(description=str(err), allow_retries=True) from None
        files = _files(context, spec)
        per_file = FileEvents.of(context, spec, lambda: wh.checkpoint(spec.name))
        try:
            stats = ingest(spec, wh, context.run_id, files)
        except DriftBlocked as exc:
            context.log.error(str(exc))
            yield from _file_failure(per_file, wh, spec, exc.place)
            yield drift_check([exc.report], blocked=exc.problem, files=[exc.place])
            # the other checks on what the warehouse holds: never evaluated would show as failed in the UI
            yield from table_checks(spec, None, wh, required_columns(spec), context.run_id)
            raise Failure(description=str(exc), allow_retries=False) from None
        except SourceError as exc:
            context.log.error(str(exc))
            yield from _file_failure(per_file, wh, spec, exc.place)
            # Retrying a 404 or a bad file only delays the error; a dropped connection deserves the retry.
            raise Failure(description=str(exc), allow_retries=exc.retryable) from None
        except Exception as exc:
            shown = redact(str(exc))
            if shown != str(exc):  # an unexpected error quoting a secret: its text, masked, and no traceback
                context.log.error(shown)
                raise Failure(description=f"source '{spec.name}': {type(exc).__name__}: {shown}") from None
            raise
        if per_file is not None:  # first: the run's own below stays the asset's latest (the UI's overview)
            yield from per_file.landed((stats.checkpoint or {}).get("files", {}))
        yield MaterializeResult(
            metadata=materialization_metadata(
                stats,
                _row_count(context, wh, spec.table_name, stats),
                location,
                schema=_schema(context, spec, stats),
                table_name=qualified_table_name(wh, spec.table_name),
            ),
            check_results=[
                drift_check(stats.drift, files=stats.drift_files),
                *table_checks(spec, stats, wh, required_columns(spec)),
            ],
        )

    return _source_asset
