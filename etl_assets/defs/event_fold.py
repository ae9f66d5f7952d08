"""The Dagster event-log fold: materializations, asset check results and finished runs into `EventTotals`.

The only Dagster-aware part of the metrics. It reads only with the queries every event log answers with a
storage-id cursor, the SQLite one sharded per run (the embedded default) included: `fetch_materializations` per
asset key (each key with its own cursor) and `fetch_run_status_changes` per final run status. A run's asset
check results are folded with its final status (`get_records_for_run` reads one run's own events), so they count
once the run has finished. The totals carry every cursor, so the sensor (totals in its cursor) and `etl-assets
serve` (totals in memory) continue exactly. The materialization metadata is read by the keys `assets.py` writes
(metadata_keys.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    RunStatusChangeRecordsFilter,
)

from ..observability.event_totals import EventTotals
from . import metadata_keys as k

# Totals made by another version of this fold hold other cursors: they are refolded from the start (exact).
FOLD_VERSION = 2
MATERIALIZATION = "ASSET_MATERIALIZATION"  # cursor name: "ASSET_MATERIALIZATION <asset key>"
RunEnd = Literal[DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED]
_RUN_STATUS: dict[RunEnd, str] = {
    DagsterEventType.RUN_SUCCESS: "success",
    DagsterEventType.RUN_FAILURE: "failure",
    DagsterEventType.RUN_CANCELED: "canceled",
}


def fold_materialization(totals: EventTotals, source: str, metadata: Mapping[str, Any]) -> None:
    md = {key: getattr(v, "value", v) for key, v in metadata.items()}  # MetadataValue -> plain value
    if k.FILE_OF_RUN in md:
        return  # a file's partition, beside its run's own materialization: the run is counted once
    totals.add("etl_materializations_total", (source,), 1)
    if not md.get(k.HTTP_REQUESTS):
        return  # a file source: no HTTP series for it
    statuses = md.get(k.HTTP_STATUSES) or {}
    for status, n in statuses.items():
        totals.add("etl_http_requests_total", (source, str(status)), int(n))
    totals.add("etl_http_retries_total", (source,), int(md.get(k.HTTP_RETRIES) or 0))
    totals.add("etl_rate_limit_waits_total", (source,), int(md.get(k.RATE_LIMIT_WAITS) or 0))
    totals.add(
        "etl_rate_limit_wait_seconds_total", (source,), float(md.get(k.RATE_LIMIT_WAIT_SECONDS) or 0.0)
    )
    if md.get(k.HTTP_SECONDS) is not None:  # only where the metadata carries the time, so sum/count is a mean
        totals.add(
            "etl_http_request_duration_seconds:count", (source,), sum(int(n) for n in statuses.values())
        )
        totals.add("etl_http_request_duration_seconds:sum", (source,), float(md[k.HTTP_SECONDS]))


def fold_check(totals: EventTotals, source: str, check: str, passed: bool, severity: str) -> None:
    outcome = "passed" if passed else f"failed_{severity.lower()}"
    totals.add("etl_asset_check_evaluations_total", (source, check, outcome), 1)


def fold_run(totals: EventTotals, job: str, status: str) -> None:
    totals.add("etl_dagster_runs_total", (job, status), 1)


def read_event_log(instance: Any, totals: EventTotals | None = None, page: int = 1000) -> EventTotals:
    """Fold every event after `totals`' cursors into a copy of them; `totals=None` folds the whole log."""
    current = totals is not None and totals.fold == FOLD_VERSION
    out = totals.copy() if current and totals is not None else EventTotals(fold=FOLD_VERSION)
    for key in instance.get_asset_keys():
        _fold_materializations(instance, out, key, page)
    for event_type, status in _RUN_STATUS.items():
        _fold_runs(instance, out, event_type, status, page)
    return out


def _after(out: EventTotals, cursor: str, fetch: Callable[[int | None], Any]) -> Iterator[Any]:
    """Every record `fetch(after_storage_id)` pages through, in storage order, from the totals' `cursor` on; the
    cursor moves past each record as it is handed out."""
    while True:
        result = fetch(out.after.get(cursor))
        for rec in result.records:
            yield rec
            out.after[cursor] = rec.storage_id
        if not result.has_more or not result.records:
            return


def _fold_materializations(instance: Any, out: EventTotals, key: AssetKey, page: int) -> None:
    def fetch(after: int | None) -> Any:
        f = AssetRecordsFilter(asset_key=key, after_storage_id=after)
        return instance.fetch_materializations(f, limit=page, ascending=True)

    for rec in _after(out, f"{MATERIALIZATION} {key.to_user_string()}", fetch):
        if rec.asset_materialization is not None:
            fold_materialization(out, key.path[-1], rec.asset_materialization.metadata)


def _fold_runs(instance: Any, out: EventTotals, event_type: RunEnd, status: str, page: int) -> None:
    def fetch(after: int | None) -> Any:
        f = RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after)
        return instance.fetch_run_status_changes(f, limit=page, ascending=True)

    for rec in _after(out, event_type.name, fetch):
        entry = rec.event_log_entry
        fold_run(out, entry.job_name or "", status)
        _fold_run_checks(instance, out, entry.run_id, page)


def _fold_run_checks(instance: Any, out: EventTotals, run_id: str, page: int) -> None:
    cursor = None
    while True:
        conn = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=page
        )
        for rec in conn.records:
            ev = rec.event_log_entry.dagster_event.event_specific_data
            fold_check(out, ev.asset_key.path[-1], ev.check_name, ev.passed, ev.severity.value)
        if not conn.has_more:
            return
        cursor = conn.cursor


def current_instance() -> DagsterInstance:
    """The instance `etl-assets serve` reads when none is given: $DAGSTER_HOME/dagster.yaml."""
    return DagsterInstance.get()
