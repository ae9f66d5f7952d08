"""Warehouse facts: what the metrics and the JSON view know from the warehouse, recomputed by SQL on each read.

The raw queries over the system tables (etl_runs, etl_schema_drift, etl_checkpoints, etl_quarantine) and the row
counts, read through a `Warehouse`: records, runs and run durations per source type, drift events, rows per table,
quarantined rows, checkpoint age, last success and consecutive failures per source. Nothing is counted in memory,
so a restart resets nothing and two processes agree.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..warehouse import Warehouse, checkpoints, quarantine, runs, schema_drift

FINISHED = ("success", "failure", "abandoned")


def _timestamp(value: datetime | str) -> float:
    """A timestamp column's value as Unix time; SQLite gives naive datetimes, and the warehouse writes UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _epoch(value: datetime | str | None) -> float | None:
    """`_timestamp` of a nullable column."""
    return None if value is None else _timestamp(value)


def _iso(value: datetime | str | None) -> str | None:
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
    sums = [
        sa.func.coalesce(sa.func.sum(getattr(r, f"records_{k}")), 0)
        for k in ("processed", "inserted", "updated", "failed")
    ]
    by_type: dict[str, dict[str, int]] = {}
    runs_by_type: dict[tuple[str, str], int] = {}
    durations: dict[str, list[float]] = {}
    sources: dict[str, dict[str, Any]] = {}
    with wh.engine.connect() as conn:
        for st, source, status, n, *rec in conn.execute(
            sa.select(r.source_type, r.source, r.status, sa.func.count(), *sums).group_by(
                r.source_type, r.source, r.status
            )
        ):
            st = st or "unknown"
            agg = by_type.setdefault(st, dict.fromkeys(("processed", "inserted", "updated", "failed"), 0))
            src = sources.setdefault(
                source,
                {
                    "source_type": st,
                    "runs": {},
                    "records": dict.fromkeys(agg, 0),
                    "consecutive_failures": 0,
                    "last_success_at": None,
                    "last_run": None,
                },
            )
            src["runs"][status] = int(n)
            for k, v in zip(agg, rec, strict=True):
                agg[k] += int(v)
                src["records"][k] += int(v)
            if status in FINISHED:
                runs_by_type[(st, status)] = runs_by_type.get((st, status), 0) + int(n)
        for st, started, finished in conn.execute(
            sa.select(r.source_type, r.started_at, r.finished_at).where(
                r.status.in_(FINISHED), r.finished_at.is_not(None), r.started_at.is_not(None)
            )
        ):
            durations.setdefault(st or "unknown", []).append(
                max(0.0, _timestamp(finished) - _timestamp(started))
            )
        for source, last in conn.execute(
            sa.select(r.source, sa.func.max(r.finished_at)).where(r.status == "success").group_by(r.source)
        ):
            sources[source]["last_success_at"] = _epoch(last)
        # failures after the last success (all failures when there is none)
        s = runs.alias("s")
        last_ok = (
            sa.select(sa.func.max(s.c.started_at))
            .where(s.c.source == r.source, s.c.status == "success")
            .scalar_subquery()
        )
        for source, n in conn.execute(
            sa.select(r.source, sa.func.count())
            .where(r.status == "failure", sa.or_(last_ok.is_(None), r.started_at > last_ok))
            .group_by(r.source)
        ):
            sources[source]["consecutive_failures"] = int(n)
        latest = sa.select(r.source, sa.func.max(r.started_at).label("at")).group_by(r.source).subquery()
        for row in conn.execute(
            sa.select(runs).join(latest, sa.and_(r.source == latest.c.source, r.started_at == latest.c.at))
        ):
            m = row._mapping
            sources[m["source"]]["last_run"] = {
                "run_id": m["run_id"],
                "status": m["status"],
                "started_at": _iso(m["started_at"]),
                "finished_at": _iso(m["finished_at"]),
                "records_processed": m["records_processed"],
                "records_inserted": m["records_inserted"],
                "records_updated": m["records_updated"],
                "records_failed": m["records_failed"],
                "error": m["error"],
            }
        drift: dict[str, dict[str, int]] = {}
        for source, decision, n in conn.execute(
            sa.select(schema_drift.c.source, schema_drift.c.decision, sa.func.count()).group_by(
                schema_drift.c.source, schema_drift.c.decision
            )
        ):
            drift.setdefault(source, {})[decision] = int(n)
        cps = {}
        for source, position, run_id, updated in conn.execute(
            sa.select(
                checkpoints.c.source, checkpoints.c.position, checkpoints.c.run_id, checkpoints.c.updated_at
            )
        ):
            at = _timestamp(updated)  # NOT NULL
            cps[source] = {
                "position": json.loads(position),
                "run_id": run_id,
                "updated_at": _iso(updated),
                "updated_timestamp": at,
                "age_seconds": round(max(0.0, now - at), 3),
            }
        quarantined = {
            src: int(n)
            for src, n in conn.execute(
                sa.select(quarantine.c.source, sa.func.count()).group_by(quarantine.c.source)
            )
        }
    return WarehouseFacts(
        now, by_type, runs_by_type, durations, sources, drift, wh.row_counts(), cps, quarantined
    )
