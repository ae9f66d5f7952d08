"""The JSON view (`/observability/metrics/json`): the same warehouse facts and event totals, per source."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..config import SourceSpec
from .event_totals import EventTotals
from .facts import WarehouseFacts


def as_json(
    facts: WarehouseFacts, totals: EventTotals, specs: Mapping[str, SourceSpec] | None = None
) -> dict[str, Any]:
    """Runs per source with success/failure, records, drift, checkpoints, rate-limit settings and waits, HTTP."""
    http = totals.get("etl_http_requests_total")
    per = {
        name: totals.get(name)
        for name in (
            "etl_http_retries_total",
            "etl_rate_limit_waits_total",
            "etl_rate_limit_wait_seconds_total",
            "etl_materializations_total",
        )
    }
    names = sorted(set(facts.sources) | set(facts.checkpoints) | set(specs or ()))
    out: dict[str, Any] = {}
    for source in names:
        info = facts.sources.get(source, {})
        spec = (specs or {}).get(source)
        limit = spec.rate_limit if spec is not None else None
        runs_by_status = info.get("runs", {})
        key = (source,)
        out[source] = {
            "source_type": info.get("source_type") or (spec.kind if spec is not None else None),
            "runs": {
                "success": runs_by_status.get("success", 0),
                "failure": runs_by_status.get("failure", 0),
                "running": runs_by_status.get("started", 0),
                "consecutive_failures": info.get("consecutive_failures", 0),
                "last_success_at": _iso_ts(info.get("last_success_at")),
                "last": info.get("last_run"),
            },
            "records": info.get("records", dict.fromkeys(("processed", "inserted", "updated", "failed"), 0)),
            "quarantined_rows": facts.quarantined.get(source, 0),
            "materializations": int(per["etl_materializations_total"].get(key, 0)),
            "drift": {
                "events": sum(facts.drift.get(source, {}).values()),
                "by_decision": dict(sorted(facts.drift.get(source, {}).items())),
            },
            "checkpoint": facts.checkpoints.get(source),
            "rate_limit": ({"calls": limit.calls, "period_seconds": limit.period_seconds} if limit else None),
            "rate_limit_waits": int(per["etl_rate_limit_waits_total"].get(key, 0)),
            "rate_limit_wait_seconds": round(per["etl_rate_limit_wait_seconds_total"].get(key, 0.0), 3),
            "http": {
                "requests": {s: int(n) for (src, s), n in sorted(http.items()) if src == source},
                "retries": int(per["etl_http_retries_total"].get(key, 0)),
            },
            "schedule": spec.schedule if spec is not None else None,
        }
    by_type = {
        st: {**agg, "runs": {s: n for (t, s), n in facts.runs_by_type.items() if t == st}}
        for st, agg in sorted(facts.by_type.items())
    }
    dagster_runs = {
        f"{job}:{status}": int(n) for (job, status), n in sorted(totals.get("etl_dagster_runs_total").items())
    }
    return {
        "generated_at": _iso_ts(facts.now),
        "sources": out,
        "source_types": by_type,
        "tables": facts.tables,
        "dagster_runs": dagster_runs,
        "event_log_storage_id": totals.last_storage_id,
    }


def _iso_ts(ts: float | None) -> str | None:
    return None if ts is None or math.isnan(ts) else datetime.fromtimestamp(ts, UTC).isoformat()
