"""A schedule per source that sets `schedule` (a cron expression)."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DefaultScheduleStatus, ScheduleDefinition

from ..config import SourceSpec


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
