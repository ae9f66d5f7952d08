"""Build the Definitions object from a sources file."""

from __future__ import annotations

from dagster import Definitions

from ..config import CsvSource, load_sources
from ..logs import dagster_loggers
from .assets import build_source_asset
from .jobs import build_jobs
from .metrics_sensor import build_metrics_sensor
from .resources import WarehouseResource
from .schedules import build_schedules
from .sensors import build_drop_sensor


def build_definitions(sources_path: str | None = None) -> Definitions:
    specs = load_sources(sources_path)
    return Definitions(
        assets=[build_source_asset(s) for s in specs.values()],
        jobs=build_jobs(list(specs)),
        schedules=build_schedules(specs),
        sensors=[*(build_drop_sensor(s) for s in specs.values() if isinstance(s, CsvSource)),
                 build_metrics_sensor(specs)],
        resources={"warehouse": WarehouseResource()},
        loggers=dagster_loggers(),  # `json`: Dagster's json_console_logger, chosen per run in its run config
    )
