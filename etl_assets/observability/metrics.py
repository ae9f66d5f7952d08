"""Every Prometheus metric of etl-assets, and how its value is computed.

Values are never counted in a process's memory (a restart would reset them, two processes would disagree):

- from the warehouse, recomputed by SQL each time: records, runs and run durations per source type (etl_runs),
  schema drift events (etl_schema_drift), rows per table, quarantined rows, checkpoint age, last success and
  consecutive failures per source;
- from the Dagster event log, folded event by event into `EventTotals`: HTTP requests by status, retries,
  rate-limit waits (materialization metadata), asset check results, Dagster runs by job and status. The totals
  carry the storage id of the last event they hold, so they continue exactly from where they stopped: the
  sensor keeps them in its cursor, the server in memory (a restarted server refolds from the start).

The module does not import dagster; `read_event_log` imports it when called.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
    UnknownMetricFamily,
)

from ..warehouse import Warehouse, checkpoints, quarantine, runs, schema_drift

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
FINISHED = ("success", "failure", "abandoned")


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter | gauge | untyped | histogram | summary
    help: str
    labels: tuple[str, ...]
    origin: str  # warehouse | events | config


METRICS: dict[str, MetricDef] = {m.name: m for m in (
    # names fixed by the service etl-assets replaces
    MetricDef("etl_records_processed_total", "counter", "Records read from sources (etl_runs).",
              ("source_type",), "warehouse"),
    MetricDef("etl_records_inserted_total", "counter", "Records inserted into warehouse tables (etl_runs).",
              ("source_type",), "warehouse"),
    MetricDef("etl_records_updated_total", "counter", "Records whose values changed on upsert (etl_runs).",
              ("source_type",), "warehouse"),
    MetricDef("etl_records_failed_total", "counter", "Records quarantined (etl_runs).", ("source_type",),
              "warehouse"),
    MetricDef("etl_runs_total", "counter", "Finished source runs by final status (etl_runs).",
              ("source_type", "status"), "warehouse"),
    MetricDef("etl_run_duration_seconds", "histogram", "Duration of finished source runs (etl_runs).",
              ("source_type",), "warehouse"),
    MetricDef("schema_drift_detected_total", "counter", "Schema drift events recorded (etl_schema_drift).",
              ("source_name",), "warehouse"),
    # a gauge by meaning; exposed untyped because `promtool check metrics` refuses a gauge named *_total
    MetricDef("db_records_total", "untyped", "Rows per warehouse table (a gauge).", ("table",), "warehouse"),
    # per source, for alerts and dashboards
    MetricDef("etl_quarantine_records", "gauge", "Rows held in etl_quarantine per source.", ("source",),
              "warehouse"),
    MetricDef("etl_checkpoint_age_seconds", "gauge", "Seconds since the source's checkpoint last moved.",
              ("source",), "warehouse"),
    MetricDef("etl_checkpoint_updated_timestamp_seconds", "gauge", "Unix time the source's checkpoint last moved.",
              ("source",), "warehouse"),
    MetricDef("etl_source_last_success_timestamp_seconds", "gauge",
              "Unix time the source's last successful run finished (0: never).", ("source",), "warehouse"),
    MetricDef("etl_source_consecutive_failures", "gauge", "Failed runs of the source since its last success.",
              ("source",), "warehouse"),
    MetricDef("etl_source_schedule_interval_seconds", "gauge",
              "Longest gap between two ticks of the source's schedule (sources.yaml).", ("source",), "config"),
    # from the Dagster event log
    MetricDef("etl_http_requests_total", "counter",
              "HTTP requests to sources by final status (retries are in etl_http_retries_total).",
              ("source", "status"), "events"),
    MetricDef("etl_http_request_duration_seconds", "summary",
              "Time in HTTP requests to sources, rate-limit waits excluded, per request.", ("source",), "events"),
    MetricDef("etl_http_retries_total", "counter", "HTTP retries (urllib3 Retry) of requests to sources.",
              ("source",), "events"),
    MetricDef("etl_rate_limit_waits_total", "counter", "Requests that waited for the source's rate limit.",
              ("source",), "events"),
    MetricDef("etl_rate_limit_wait_seconds_total", "counter", "Seconds spent waiting for the source's rate limit.",
              ("source",), "events"),
    MetricDef("etl_materializations_total", "counter", "Asset materializations per source.", ("source",),
              "events"),
    MetricDef("etl_asset_check_evaluations_total", "counter", "Asset check results per source, check and outcome.",
              ("source", "check", "outcome"), "events"),
    MetricDef("etl_dagster_runs_total", "counter", "Finished Dagster runs by job and status.",
              ("dagster_job", "status"), "events"),
    MetricDef("etl_event_log_storage_id", "gauge", "Storage id of the last Dagster event these metrics include.",
              (), "events"),
)}

# The event types the totals fold, each with its own storage-id cursor.
EVENT_TYPES = ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED")
_RUN_STATUS = {"RUN_SUCCESS": "success", "RUN_FAILURE": "failure", "RUN_CANCELED": "canceled"}


# -- the event-log side ---------------------------------------------------------------------------------------
@dataclass
class EventTotals:
    """Counter values folded from the event log, plus where each event type's fold stopped. JSON-serializable."""

    after: dict[str, int] = field(default_factory=dict)  # event type -> last storage id folded
    series: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> json(label values) -> value

    @classmethod
    def from_json(cls, raw: str | None) -> EventTotals:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(after={k: int(v) for k, v in data.get("after", {}).items()}, series=data.get("series", {}))

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "series": self.series}, sort_keys=True, separators=(",", ":"))

    def copy(self) -> EventTotals:
        return EventTotals.from_json(self.to_json())

    @property
    def last_storage_id(self) -> int:
        return max(self.after.values(), default=0)

    def add(self, metric: str, labels: tuple[str, ...], value: float) -> None:
        key = json.dumps(list(labels))
        bucket = self.series.setdefault(metric, {})
        bucket[key] = bucket.get(key, 0) + value

    def get(self, metric: str) -> dict[tuple[str, ...], float]:
        return {tuple(json.loads(k)): v for k, v in self.series.get(metric, {}).items()}

    def fold_materialization(self, source: str, metadata: Mapping[str, Any]) -> None:
        md = {k: getattr(v, "value", v) for k, v in metadata.items()}  # MetadataValue -> plain value
        self.add("etl_materializations_total", (source,), 1)
        if not md.get("http_requests"):
            return  # a file source: no HTTP series for it
        statuses = md.get("http_statuses") or {}
        for status, n in statuses.items():
            self.add("etl_http_requests_total", (source, str(status)), int(n))
        self.add("etl_http_retries_total", (source,), int(md.get("http_retries") or 0))
        self.add("etl_rate_limit_waits_total", (source,), int(md.get("rate_limit_waits") or 0))
        self.add("etl_rate_limit_wait_seconds_total", (source,), float(md.get("rate_limit_wait_seconds") or 0.0))
        if md.get("http_seconds") is not None:  # only where the metadata carries the time, so sum/count is a mean
            self.add("etl_http_request_duration_seconds:count", (source,), sum(int(n) for n in statuses.values()))
            self.add("etl_http_request_duration_seconds:sum", (source,), float(md["http_seconds"]))

    def fold_check(self, source: str, check: str, passed: bool, severity: str) -> None:
        outcome = "passed" if passed else f"failed_{severity.lower()}"
        self.add("etl_asset_check_evaluations_total", (source, check, outcome), 1)

    def fold_run(self, job: str, status: str) -> None:
        self.add("etl_dagster_runs_total", (job, status), 1)


def read_event_log(instance: Any, totals: EventTotals | None = None, page: int = 1000) -> EventTotals:
    """Fold every event after `totals`' cursors into a copy of them; `totals=None` folds the whole log."""
    from dagster import DagsterEventType, EventRecordsFilter

    out = totals.copy() if totals is not None else EventTotals()
    for name in EVENT_TYPES:
        while True:
            with warnings.catch_warnings():
                # fetch_materializations wants one asset key per query; this reads every asset's in storage order
                warnings.filterwarnings("ignore", message="Use fetch_")
                records = instance.get_event_records(
                    EventRecordsFilter(event_type=DagsterEventType[name], after_cursor=out.after.get(name)),
                    limit=page, ascending=True)
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
        out.fold_materialization(mat.asset_key.path[-1], mat.metadata)
    elif name == "ASSET_CHECK_EVALUATION":
        ev = entry.dagster_event.event_specific_data
        out.fold_check(ev.asset_key.path[-1], ev.check_name, ev.passed, ev.severity.value)
    else:
        out.fold_run(entry.job_name or "", _RUN_STATUS[name])


# -- the warehouse side ---------------------------------------------------------------------------------------
def _epoch(value: Any) -> float | None:
    """A timestamp column as Unix time; SQLite gives naive datetimes, and the warehouse writes UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _iso(value: Any) -> str | None:
    ts = _epoch(value)
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class WarehouseFacts:
    now: float
    by_type: dict[str, dict[str, int]]  # source_type -> records_* sums
    runs_by_type: dict[tuple[str, str], int]  # (source_type, status) -> finished runs
    durations: dict[str, list[float]]  # source_type -> durations of finished runs
    sources: dict[str, dict[str, Any]]  # source -> runs by status, records, last run, last success, ...
    drift: dict[str, dict[str, int]]  # source -> decision -> events
    tables: dict[str, int]
    checkpoints: dict[str, dict[str, Any]]
    quarantined: dict[str, int]


def warehouse_facts(wh: Warehouse, now: float | None = None) -> WarehouseFacts:
    now = time.time() if now is None else now
    r = runs.c
    sums = [sa.func.coalesce(sa.func.sum(getattr(r, f"records_{k}")), 0) for k in
            ("processed", "inserted", "updated", "failed")]
    by_type: dict[str, dict[str, int]] = {}
    runs_by_type: dict[tuple[str, str], int] = {}
    durations: dict[str, list[float]] = {}
    sources: dict[str, dict[str, Any]] = {}
    with wh.engine.connect() as conn:
        for st, source, status, n, *rec in conn.execute(
                sa.select(r.source_type, r.source, r.status, sa.func.count(), *sums)
                .group_by(r.source_type, r.source, r.status)):
            st = st or "unknown"
            agg = by_type.setdefault(st, dict.fromkeys(("processed", "inserted", "updated", "failed"), 0))
            src = sources.setdefault(source, {"source_type": st, "runs": {}, "records": dict.fromkeys(agg, 0),
                                              "consecutive_failures": 0, "last_success_at": None, "last_run": None})
            src["runs"][status] = int(n)
            for k, v in zip(agg, rec, strict=True):
                agg[k] += int(v)
                src["records"][k] += int(v)
            if status in FINISHED:
                runs_by_type[(st, status)] = runs_by_type.get((st, status), 0) + int(n)
        for st, started, finished in conn.execute(
                sa.select(r.source_type, r.started_at, r.finished_at)
                .where(r.status.in_(FINISHED), r.finished_at.is_not(None), r.started_at.is_not(None))):
            durations.setdefault(st or "unknown", []).append(max(0.0, _epoch(finished) - _epoch(started)))
        for source, last in conn.execute(sa.select(r.source, sa.func.max(r.finished_at))
                                         .where(r.status == "success").group_by(r.source)):
            sources[source]["last_success_at"] = _epoch(last)
        # failures after the last success (all failures when there is none)
        s = runs.alias("s")
        last_ok = (sa.select(sa.func.max(s.c.started_at)).where(s.c.source == r.source, s.c.status == "success")
                   .scalar_subquery())
        for source, n in conn.execute(
                sa.select(r.source, sa.func.count()).where(r.status == "failure",
                                                           sa.or_(last_ok.is_(None), r.started_at > last_ok))
                .group_by(r.source)):
            sources[source]["consecutive_failures"] = int(n)
        latest = sa.select(r.source, sa.func.max(r.started_at).label("at")).group_by(r.source).subquery()
        for row in conn.execute(sa.select(runs).join(latest, sa.and_(r.source == latest.c.source,
                                                                      r.started_at == latest.c.at))):
            m = row._mapping
            sources[m["source"]]["last_run"] = {
                "run_id": m["run_id"], "status": m["status"], "started_at": _iso(m["started_at"]),
                "finished_at": _iso(m["finished_at"]), "records_processed": m["records_processed"],
                "records_inserted": m["records_inserted"], "records_updated": m["records_updated"],
                "records_failed": m["records_failed"], "error": m["error"]}
        drift: dict[str, dict[str, int]] = {}
        for source, decision, n in conn.execute(
                sa.select(schema_drift.c.source, schema_drift.c.decision, sa.func.count())
                .group_by(schema_drift.c.source, schema_drift.c.decision)):
            drift.setdefault(source, {})[decision] = int(n)
        cps = {}
        for source, position, run_id, updated in conn.execute(
                sa.select(checkpoints.c.source, checkpoints.c.position, checkpoints.c.run_id, checkpoints.c.updated_at)):
            at = _epoch(updated)
            cps[source] = {"position": json.loads(position), "run_id": run_id, "updated_at": _iso(updated),
                           "updated_timestamp": at, "age_seconds": round(max(0.0, now - at), 3)}
        quarantined = {src: int(n) for src, n in conn.execute(
            sa.select(quarantine.c.source, sa.func.count()).group_by(quarantine.c.source))}
    return WarehouseFacts(now, by_type, runs_by_type, durations, sources, drift, wh.row_counts(), cps, quarantined)


# -- sources.yaml side ----------------------------------------------------------------------------------------
def schedule_interval(cron: str) -> float | None:
    """Longest gap between two consecutive ticks within a week of ticks (a weekday-only cron spans a weekend)."""
    try:
        from dagster._utils.schedules import cron_string_iterator  # cron arithmetic already in a dependency
    except ImportError:
        return None
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # fixed: the same answer on every tick
    ticks = cron_string_iterator(start, cron, "UTC")
    prev, longest = next(ticks).timestamp(), 0.0
    for tick in ticks:
        ts = tick.timestamp()
        longest = max(longest, ts - prev)
        if ts - start > 8 * 86400:
            break
        prev = ts
    return longest or None


# -- exposition -----------------------------------------------------------------------------------------------
def _family(d: MetricDef) -> Metric:
    cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "untyped": UnknownMetricFamily,
           "histogram": HistogramMetricFamily, "summary": SummaryMetricFamily}[d.kind]
    return cls(d.name, d.help, labels=list(d.labels))


def families(facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, Any] | None = None) -> list[Metric]:
    """Every metric of METRICS, in that order, with the values of the warehouse facts and event totals."""
    fam = {name: _family(d) for name, d in METRICS.items()}
    for st, agg in sorted(facts.by_type.items()):
        for k in ("processed", "inserted", "updated", "failed"):
            fam[f"etl_records_{k}_total"].add_metric([st], agg[k])
    for (st, status), n in sorted(facts.runs_by_type.items()):
        fam["etl_runs_total"].add_metric([st, status], n)
    for st, values in sorted(facts.durations.items()):
        cumulative = [(_le(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
        fam["etl_run_duration_seconds"].add_metric([st], cumulative + [("+Inf", len(values))], sum(values))
    for source, decisions in sorted(facts.drift.items()):
        fam["schema_drift_detected_total"].add_metric([source], sum(decisions.values()))
    for table, n in sorted(facts.tables.items()):
        fam["db_records_total"].add_metric([table], n)
    known = set(facts.sources) | set(facts.checkpoints) | set(specs or ())
    for source in sorted(known):
        fam["etl_quarantine_records"].add_metric([source], facts.quarantined.get(source, 0))
        cp = facts.checkpoints.get(source)
        if cp:
            fam["etl_checkpoint_age_seconds"].add_metric([source], cp["age_seconds"])
            fam["etl_checkpoint_updated_timestamp_seconds"].add_metric([source], cp["updated_timestamp"])
        info = facts.sources.get(source, {})
        fam["etl_source_last_success_timestamp_seconds"].add_metric([source], info.get("last_success_at") or 0)
        fam["etl_source_consecutive_failures"].add_metric([source], info.get("consecutive_failures", 0))
    for source, spec in sorted((specs or {}).items()):
        interval = schedule_interval(spec.schedule) if getattr(spec, "schedule", None) else None
        if interval:
            fam["etl_source_schedule_interval_seconds"].add_metric([source], interval)
    for name, d in METRICS.items():
        if d.origin != "events" or d.kind == "summary" or not d.labels:
            continue
        for labels, value in sorted(totals.get(name).items()):
            fam[name].add_metric(list(labels), value)
    sums = totals.get("etl_http_request_duration_seconds:sum")
    for labels, count in sorted(totals.get("etl_http_request_duration_seconds:count").items()):
        fam["etl_http_request_duration_seconds"].add_metric(list(labels), count, sums.get(labels, 0.0))
    fam["etl_event_log_storage_id"].add_metric([], totals.last_storage_id)
    return list(fam.values())


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if float(bound).is_integer() else repr(bound)


class _Snapshot:
    """A collector that yields fixed families: one registry per computation, nothing left in process state."""

    def __init__(self, fams: Iterable[Metric]):
        self.fams = list(fams)

    def collect(self) -> Iterable[Metric]:
        return iter(self.fams)


def registry(facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, Any] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snapshot(families(facts, totals, specs)))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


def sample_values(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} — what a test compares with the warehouse and the gateway."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() for s in m.samples}


# -- the JSON view --------------------------------------------------------------------------------------------
def as_json(facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Runs per source with success/failure, records, drift, checkpoints, rate-limit settings and waits, HTTP."""
    http = totals.get("etl_http_requests_total")
    per = {name: totals.get(name) for name in ("etl_http_retries_total", "etl_rate_limit_waits_total",
                                               "etl_rate_limit_wait_seconds_total", "etl_materializations_total")}
    names = sorted(set(facts.sources) | set(facts.checkpoints) | set(specs or ()))
    out: dict[str, Any] = {}
    for source in names:
        info = facts.sources.get(source, {})
        spec = (specs or {}).get(source)
        limit = getattr(spec, "rate_limit", None) if spec is not None else None
        runs_by_status = info.get("runs", {})
        key = (source,)
        out[source] = {
            "source_type": info.get("source_type") or getattr(spec, "kind", None),
            "runs": {"success": runs_by_status.get("success", 0), "failure": runs_by_status.get("failure", 0),
                     "running": runs_by_status.get("started", 0),
                     "consecutive_failures": info.get("consecutive_failures", 0),
                     "last_success_at": _iso_ts(info.get("last_success_at")), "last": info.get("last_run")},
            "records": info.get("records", dict.fromkeys(("processed", "inserted", "updated", "failed"), 0)),
            "quarantined_rows": facts.quarantined.get(source, 0),
            "materializations": int(per["etl_materializations_total"].get(key, 0)),
            "drift": {"events": sum(facts.drift.get(source, {}).values()),
                      "by_decision": dict(sorted(facts.drift.get(source, {}).items()))},
            "checkpoint": facts.checkpoints.get(source),
            "rate_limit": ({"calls": limit.calls, "period_seconds": limit.period_seconds} if limit else None),
            "rate_limit_waits": int(per["etl_rate_limit_waits_total"].get(key, 0)),
            "rate_limit_wait_seconds": round(per["etl_rate_limit_wait_seconds_total"].get(key, 0.0), 3),
            "http": {"requests": {s: int(n) for (src, s), n in sorted(http.items()) if src == source},
                     "retries": int(per["etl_http_retries_total"].get(key, 0))},
            "schedule": getattr(spec, "schedule", None) if spec is not None else None,
        }
    by_type = {st: {**agg, "runs": {s: n for (t, s), n in facts.runs_by_type.items() if t == st}}
               for st, agg in sorted(facts.by_type.items())}
    dagster_runs = {f"{job}:{status}": int(n) for (job, status), n in
                    sorted(totals.get("etl_dagster_runs_total").items())}
    return {"generated_at": _iso_ts(facts.now), "sources": out, "source_types": by_type, "tables": facts.tables,
            "dagster_runs": dagster_runs, "event_log_storage_id": totals.last_storage_id}


def _iso_ts(ts: float | None) -> str | None:
    return None if ts is None or math.isnan(ts) else datetime.fromtimestamp(ts, UTC).isoformat()
