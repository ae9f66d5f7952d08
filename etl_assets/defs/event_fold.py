"""The Dagster event-log fold: materializations, asset check results and finished runs into `EventTotals`.

The only Dagster-aware part of the metrics. Each event type is read with its own storage-id cursor, from where the
totals stopped, so the sensor (totals in its cursor) and `etl-assets serve` (totals in memory) continue exactly.
The materialization metadata is read by the keys `assets.py` writes (metadata_keys.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

from ..observability.event_totals import EventTotals
from . import metadata_keys as k

# The event types the totals fold, each with its own storage-id cursor.
EVENT_TYPES = (
    "ASSET_MATERIALIZATION",
    "ASSET_CHECK_EVALUATION",
    "RUN_SUCCESS",
    "RUN_FAILURE",
    "RUN_CANCELED",
)
_RUN_STATUS = {"RUN_SUCCESS": "success", "RUN_FAILURE": "failure", "RUN_CANCELED": "canceled"}


def fold_materialization(totals: EventTotals, source: str, metadata: Mapping[str, Any]) -> None:
    md = {key: getattr(v, "value", v) for key, v in metadata.items()}  # MetadataValue -> plain value
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
    out = totals.copy() if totals is not None else EventTotals()
    for name in EVENT_TYPES:
        while True:
            with warnings.catch_warnings():
                # fetch_materializations wants one asset key per query; this reads every asset's in storage order
                warnings.filterwarnings("ignore", message="Use fetch_")
                records = instance.get_event_records(
                    EventRecordsFilter(event_type=DagsterEventType[name], after_cursor=out.after.get(name)),
                    limit=page,
                    ascending=True,
                )
            for rec in records:
                _fold_record(out, name, rec)
                out.after[name] = rec.storage_id
            if len(records) < page:
                break
    return out


def _fold_record(out: EventTotals, name: str, rec: Any) -> None:
    entry = rec.event_log_entry
    if name == "ASSET_MATERIALIZATION":
        mat = rec.asset_materialization
        fold_materialization(out, mat.asset_key.path[-1], mat.metadata)
    elif name == "ASSET_CHECK_EVALUATION":
        ev = entry.dagster_event.event_specific_data
        fold_check(out, ev.asset_key.path[-1], ev.check_name, ev.passed, ev.severity.value)
    else:
        fold_run(out, entry.job_name or "", _RUN_STATUS[name])


def current_instance() -> DagsterInstance:
    """The instance `etl-assets serve` reads when none is given: $DAGSTER_HOME/dagster.yaml."""
    return DagsterInstance.get()
