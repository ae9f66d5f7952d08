"""One software-defined asset per source, from one factory."""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import os
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

from ..config import SourceSpec
from ..errors import SourceError
from ..pipeline import ingest
from ..reconcile import DriftBlocked, required_columns
from ..redaction import redact, redact_obj
from ..run_stats import IngestStats
from ..warehouse import Warehouse, database_error
from . import metadata_keys as k
from .checks import check_specs, drift_check, table_checks
from .resources import WarehouseResource


def pool_name(source: str) -> str:
    return f"etl/{source}"


def warehouse_kind() -> str:
    url = os.environ.get("ETL_WAREHOUSE_URL", "")
    return "postgres" if url.startswith(("postgres", "postgresql")) else "sqlite"


def materialization_metadata(stats: IngestStats, row_count: int, location: str) -> dict[str, Any]:
    # The same keys with the same types every run, so the UI can plot them over time.
    loc = (
        MetadataValue.url(location)
        if location.startswith(("http://", "https://"))
        else MetadataValue.path(location)
    )
    return {
        k.RECORDS_PROCESSED: stats.processed,
        k.RECORDS_INSERTED: stats.inserted,
        k.RECORDS_UPDATED: stats.updated,
        k.RECORDS_UNCHANGED: stats.unchanged,
        k.RECORDS_FAILED: stats.failed,
        k.BATCHES: stats.batches,
        k.DURATION_SECONDS: MetadataValue.float(float(stats.duration_seconds)),
        k.SOURCE_LOCATION: loc,
        k.CHECKPOINT: MetadataValue.json(redact_obj(stats.checkpoint or {})),
        k.TABLE_NAME: stats.table,
        k.ROW_COUNT: row_count,
        k.DRIFT_EVENTS: stats.drift_events,
        k.HTTP_REQUESTS: stats.http_requests,
        k.HTTP_RETRIES: stats.http_retries,
        k.HTTP_STATUSES: MetadataValue.json(stats.http_statuses),
        k.HTTP_SECONDS: MetadataValue.float(float(stats.http_seconds)),
        k.RATE_LIMIT_WAITS: stats.rate_limit_waits,
        k.RATE_LIMIT_WAIT_SECONDS: MetadataValue.float(float(stats.rate_limit_wait_seconds)),
        k.COLUMN_SCHEMA: TableSchema(columns=[TableColumn(name=c, type=t) for c, t in stats.schema.items()]),
    }


def _row_count(context: AssetExecutionContext, wh: Warehouse, table: str, stats: IngestStats) -> int:
    """The table's rows after the run. A run that inserted none carries the last materialization's count forward:
    counting a 21M-row table took longer than the rest of a rerun on unchanged input."""
    if stats.inserted == 0:
        event = context.instance.get_latest_materialization_event(context.asset_key)
        last = (
            event.asset_materialization.metadata.get(k.ROW_COUNT)
            if event and event.asset_materialization
            else None
        )
        if last is not None:
            return int(last.value)
    return wh.row_count(table)


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
        metadata={"source_location": location, "table": spec.table_name},
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
        try:
            stats = ingest(spec, wh, context.run_id)
        except DriftBlocked as exc:
            context.log.error(str(exc))
            yield drift_check([exc.report], blocked=exc.problem)
            raise Failure(description=str(exc), allow_retries=False) from None
        except SourceError as exc:
            context.log.error(str(exc))
            # Retrying a 404 or a bad file only delays the error; a dropped connection deserves the retry.
            raise Failure(description=str(exc), allow_retries=exc.retryable) from None
        except Exception as exc:
            shown = redact(str(exc))
            if shown != str(exc):  # an unexpected error quoting a secret: its text, masked, and no traceback
                context.log.error(shown)
                raise Failure(description=f"source '{spec.name}': {type(exc).__name__}: {shown}") from None
            raise
        yield MaterializeResult(
            metadata=materialization_metadata(
                stats, _row_count(context, wh, spec.table_name, stats), location
            ),
            check_results=[drift_check(stats.drift), *table_checks(spec, stats, wh, required_columns(spec))],
        )

    return _source_asset
