"""The metric catalogue: every Prometheus metric of etl-assets, its kind, help, labels and where its value comes from.

`origin` says which side computes it: `warehouse` (SQL over the system tables, facts.py), `events` (folded from the
Dagster event log into `EventTotals`), `config` (sources.yaml). Exposition and the Grafana test read this list.
"""

from __future__ import annotations

from dataclasses import dataclass

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter | gauge | untyped | histogram | summary
    help: str
    labels: tuple[str, ...]
    origin: str  # warehouse | events | config


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        # names fixed by the service etl-assets replaces
        MetricDef(
            "etl_records_processed_total",
            "counter",
            "Records read from sources (etl_runs).",
            ("source_type",),
            "warehouse",
        ),
        MetricDef(
            "etl_records_inserted_total",
            "counter",
            "Records inserted into warehouse tables (etl_runs).",
            ("source_type",),
            "warehouse",
        ),
        MetricDef(
            "etl_records_updated_total",
            "counter",
            "Records whose values changed on upsert (etl_runs).",
            ("source_type",),
            "warehouse",
        ),
        MetricDef(
            "etl_records_failed_total",
            "counter",
            "Records quarantined (etl_runs).",
            ("source_type",),
            "warehouse",
        ),
        MetricDef(
            "etl_runs_total",
            "counter",
            "Finished source runs by final status (etl_runs).",
            ("source_type", "status"),
            "warehouse",
        ),
        MetricDef(
            "etl_run_duration_seconds",
            "histogram",
            "Duration of finished source runs (etl_runs).",
            ("source_type",),
            "warehouse",
        ),
        MetricDef(
            "schema_drift_detected_total",
            "counter",
            "Schema drift events recorded (etl_schema_drift).",
            ("source_name",),
            "warehouse",
        ),
        # a gauge by meaning; exposed untyped because `promtool check metrics` refuses a gauge named *_total
        MetricDef(
            "db_records_total", "untyped", "Rows per warehouse table (a gauge).", ("table",), "warehouse"
        ),
        # per source, for alerts and dashboards
        MetricDef(
            "etl_quarantine_records",
            "gauge",
            "Rows held in etl_quarantine per source.",
            ("source",),
            "warehouse",
        ),
        MetricDef(
            "etl_checkpoint_age_seconds",
            "gauge",
            "Seconds since the source's checkpoint last moved.",
            ("source",),
            "warehouse",
        ),
        MetricDef(
            "etl_checkpoint_updated_timestamp_seconds",
            "gauge",
            "Unix time the source's checkpoint last moved.",
            ("source",),
            "warehouse",
        ),
        MetricDef(
            "etl_source_last_success_timestamp_seconds",
            "gauge",
            "Unix time the source's last successful run finished (0: never).",
            ("source",),
            "warehouse",
        ),
        MetricDef(
            "etl_source_consecutive_failures",
            "gauge",
            "Failed runs of the source since its last success.",
            ("source",),
            "warehouse",
        ),
        MetricDef(
            "etl_source_schedule_interval_seconds",
            "gauge",
            "Longest gap between two ticks of the source's schedule (sources.yaml).",
            ("source",),
            "config",
        ),
        # from the Dagster event log
        MetricDef(
            "etl_http_requests_total",
            "counter",
            "HTTP requests to sources by final status (retries are in etl_http_retries_total).",
            ("source", "status"),
            "events",
        ),
        MetricDef(
            "etl_http_request_duration_seconds",
            "summary",
            "Time in HTTP requests to sources, rate-limit waits excluded, per request.",
            ("source",),
            "events",
        ),
        MetricDef(
            "etl_http_retries_total",
            "counter",
            "HTTP retries (urllib3 Retry) of requests to sources.",
            ("source",),
            "events",
        ),
        MetricDef(
            "etl_rate_limit_waits_total",
            "counter",
            "Requests that waited for the source's rate limit.",
            ("source",),
            "events",
        ),
        MetricDef(
            "etl_rate_limit_wait_seconds_total",
            "counter",
            "Seconds spent waiting for the source's rate limit.",
            ("source",),
            "events",
        ),
        MetricDef(
            "etl_materializations_total",
            "counter",
            "Asset materializations per source.",
            ("source",),
            "events",
        ),
        MetricDef(
            "etl_asset_check_evaluations_total",
            "counter",
            "Asset check results per source, check and outcome.",
            ("source", "check", "outcome"),
            "events",
        ),
        MetricDef(
            "etl_dagster_runs_total",
            "counter",
            "Finished Dagster runs by job and status.",
            ("dagster_job", "status"),
            "events",
        ),
        MetricDef(
            "etl_event_log_storage_id",
            "gauge",
            "Storage id of the last Dagster event these metrics include.",
            (),
            "events",
        ),
    )
}
