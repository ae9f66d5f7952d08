"""The Prometheus sensor: each tick folds the Dagster events since its cursor and pushes every metric.

Exact and restart-safe: the cursor holds the event-log totals together with the storage ids they stop at, and
the warehouse half is recomputed by SQL each tick. A re-evaluated tick starts again from the same cursor, so it
pushes the same figures (plus whatever happened since); a daemon restart resumes from the stored cursor. Every
push uses one fixed grouping key, so it replaces the previous one instead of adding to it.
"""

import os
from collections.abc import Mapping

from dagster import DefaultSensorStatus, SensorDefinition, SensorEvaluationContext, SkipReason, sensor

from ..config import SourceSpec
from ..observability.event_totals import EventTotals
from ..observability.facts import warehouse_facts
from .event_fold import read_event_log
from .resources import _warehouse

PUSH_JOB = "etl_assets"
GROUPING_KEY = {"instance": "dagster"}  # fixed: a push replaces the group, never adds a second copy


def build_metrics_sensor(
    specs: Mapping[str, SourceSpec] | None = None, minimum_interval_seconds: int = 30
) -> SensorDefinition:
    @sensor(
        name="etl_metrics_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Pushes the etl-assets metrics (warehouse + Dagster event log) to $ETL_PUSHGATEWAY_URL.",
    )
    def etl_metrics_sensor(context: SensorEvaluationContext):
        url = os.environ.get("ETL_PUSHGATEWAY_URL")
        if not url:
            return SkipReason("ETL_PUSHGATEWAY_URL is not set: no Pushgateway to push the metrics to")
        # prometheus_client is imported on a tick, not at definitions load
        from prometheus_client import push_to_gateway

        from ..observability.exposition import registry

        totals = read_event_log(context.instance, EventTotals.from_json(context.cursor))
        facts = warehouse_facts(_warehouse(os.environ.get("ETL_WAREHOUSE_URL") or None))
        reg = registry(facts, totals, specs)
        # A failed push raises: the tick fails visibly and the cursor stays, so the next tick pushes it all.
        push_to_gateway(url, job=PUSH_JOB, registry=reg, grouping_key=GROUPING_KEY, timeout=10)
        context.update_cursor(totals.to_json())
        return SkipReason(f"pushed metrics to {url} (event log up to storage id {totals.last_storage_id})")

    return etl_metrics_sensor
