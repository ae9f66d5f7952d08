"""A schedule per source that sets `schedule` (a cron expression), and the freshness policy it implies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from dagster import (
    AssetsDefinition,
    DefaultScheduleStatus,
    FreshnessPolicy,
    ScheduleDefinition,
    apply_freshness_policy,
)

from ..config import SourceSpec
from ..cron import schedule_interval

# A scheduled source is late past this many schedule intervals (the longest gap between two ticks) since its last
# materialization: one missed tick warns, two fail (a tick's run itself takes some of the window).
WARN_INTERVALS = 1.5
FAIL_INTERVALS = 2.0


def build_schedules(specs: Mapping[str, SourceSpec]) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            name=f"{n}_schedule",
            job_name=f"ingest_{n}",
            cron_schedule=s.schedule,
            default_status=DefaultScheduleStatus.STOPPED,
            description=f"Ingest {n} on '{s.schedule}'.",
        )
        for n, s in specs.items()
        if s.schedule
    ]


def freshness_policy(spec: SourceSpec) -> FreshnessPolicy | None:
    """About two schedule intervals since the last materialization; None for an unscheduled source."""
    interval = schedule_interval(spec.schedule) if spec.schedule else None
    if not interval:
        return None
    return FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=FAIL_INTERVALS * interval),
        warn_window=timedelta(seconds=WARN_INTERVALS * interval),
    )


def with_freshness(asset_def: AssetsDefinition, spec: SourceSpec) -> AssetsDefinition:
    """The source's asset with its freshness policy (shown on the asset page, evaluated by the daemon)."""
    policy = freshness_policy(spec)
    if policy is None:
        return asset_def
    return asset_def.map_asset_specs(lambda s: apply_freshness_policy(s, policy))
