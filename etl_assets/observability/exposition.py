"""Exposition: the catalogue's metric families filled from warehouse facts and event totals, as a Prometheus registry.

One registry per computation (nothing left in process state); `render` gives the text format the server returns
and the sensor pushes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
    UnknownMetricFamily,
)

from ..config import SourceSpec
from ..cron import schedule_interval
from .catalogue import DURATION_BUCKETS, METRICS, MetricDef
from .event_totals import EventTotals
from .facts import WarehouseFacts


def _family(d: MetricDef) -> Metric:
    cls = {
        "counter": CounterMetricFamily,
        "gauge": GaugeMetricFamily,
        "untyped": UnknownMetricFamily,
        "histogram": HistogramMetricFamily,
        "summary": SummaryMetricFamily,
    }[d.kind]
    return cls(d.name, d.help, labels=list(d.labels))


_OneValue = CounterMetricFamily | GaugeMetricFamily | UnknownMetricFamily  # add_metric(labels, value)


def _one(fam: Mapping[str, Metric], name: str) -> _OneValue:
    """The family `name`, one value per label set (a counter, gauge or untyped metric of METRICS)."""
    family = fam[name]
    assert isinstance(family, _OneValue), name
    return family


def families(
    facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, SourceSpec] | None = None
) -> list[Metric]:
    """Every metric of METRICS, in that order, with the values of the warehouse facts and event totals."""
    fam = {name: _family(d) for name, d in METRICS.items()}
    durations, requests = fam["etl_run_duration_seconds"], fam["etl_http_request_duration_seconds"]
    assert isinstance(durations, HistogramMetricFamily) and isinstance(requests, SummaryMetricFamily)
    for st, agg in sorted(facts.by_type.items()):
        for k in ("processed", "inserted", "updated", "failed"):
            _one(fam, f"etl_records_{k}_total").add_metric([st], agg[k])
    for (st, status), n in sorted(facts.runs_by_type.items()):
        _one(fam, "etl_runs_total").add_metric([st, status], n)
    for st, values in sorted(facts.durations.items()):
        cumulative = [(_le(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
        durations.add_metric([st], cumulative + [("+Inf", len(values))], sum(values))
    for source, decisions in sorted(facts.drift.items()):
        _one(fam, "schema_drift_detected_total").add_metric([source], sum(decisions.values()))
    for table, n in sorted(facts.tables.items()):
        _one(fam, "db_records_total").add_metric([table], n)
    known = set(facts.sources) | set(facts.checkpoints) | set(specs or ())
    for source in sorted(known):
        _one(fam, "etl_quarantine_records").add_metric([source], facts.quarantined.get(source, 0))
        cp = facts.checkpoints.get(source)
        if cp:
            _one(fam, "etl_checkpoint_age_seconds").add_metric([source], cp["age_seconds"])
            _one(fam, "etl_checkpoint_updated_timestamp_seconds").add_metric(
                [source], cp["updated_timestamp"]
            )
        info = facts.sources.get(source, {})
        _one(fam, "etl_source_last_success_timestamp_seconds").add_metric(
            [source], info.get("last_success_at") or 0
        )
        _one(fam, "etl_source_consecutive_failures").add_metric([source], info.get("consecutive_failures", 0))
    for source, spec in sorted((specs or {}).items()):
        interval = schedule_interval(spec.schedule) if spec.schedule else None
        if interval:
            _one(fam, "etl_source_schedule_interval_seconds").add_metric([source], interval)
    for name, d in METRICS.items():
        if d.origin != "events" or d.kind == "summary" or not d.labels:
            continue
        for labels, value in sorted(totals.get(name).items()):
            _one(fam, name).add_metric(list(labels), value)
    sums = totals.get("etl_http_request_duration_seconds:sum")
    for labels, count in sorted(totals.get("etl_http_request_duration_seconds:count").items()):
        requests.add_metric(list(labels), int(count), sums.get(labels, 0.0))  # a count, stored as a float
    _one(fam, "etl_event_log_storage_id").add_metric([], totals.last_storage_id)
    return list(fam.values())


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if float(bound).is_integer() else repr(bound)


class _Snapshot:
    """A collector that yields fixed families: one registry per computation, nothing left in process state."""

    def __init__(self, fams: Iterable[Metric]):
        self.fams = list(fams)

    def collect(self) -> Iterable[Metric]:
        return iter(self.fams)


def registry(
    facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, SourceSpec] | None = None
) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snapshot(families(facts, totals, specs)))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


def sample_values(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} — what a test compares with the warehouse and the gateway."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() for s in m.samples}
