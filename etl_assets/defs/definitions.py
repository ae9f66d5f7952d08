"""Build the Definitions object from a sources file.

One bad source never takes the code location down: the valid sources load, and each invalid one is still an
asset of its name (group `invalid_sources`) that fails at once with its config lines, so the UI shows what to fix.
"""

from __future__ import annotations

import logging

from dagster import AssetsDefinition, DagsterInvalidDefinitionError, Definitions, Failure, asset

from ..config import NAME_RE, RESERVED_NAMES, CsvSource
from ..config_load import load_sources
from ..logs import event_fields
from .assets import build_source_asset
from .executors import ingest_all_executor
from .jobs import build_jobs
from .loggers import dagster_loggers
from .metrics_sensor import build_metrics_sensor
from .resources import WarehouseResource
from .schedules import build_schedules, with_freshness
from .sensors import build_drop_sensor

log = logging.getLogger(__name__)


def build_config_error_asset(name: str, problems: list[str]) -> AssetsDefinition:
    """An asset standing for a source the sources file does not define well: materializing it fails at once with
    the config lines (no retry: only an edit of the file fixes it)."""
    description = "\n".join(problems)

    @asset(
        name=name, group_name="invalid_sources", description=f"Not loaded, fix sources.yaml: {description}"
    )
    def _invalid_source(context) -> None:  # Dagster finds `context` by its name
        context.log.error(description)
        raise Failure(description=description, allow_retries=False)

    return _invalid_source


def build_definitions(sources_path: str | None = None) -> Definitions:
    loggers = dagster_loggers()  # `json`: Dagster's json_console_logger, chosen per run in its run config
    specs, problems = load_sources(sources_path, lenient=True)  # a missing or non-YAML file still raises
    assets: list[AssetsDefinition] = []
    schedules, drop_sensors, valid = [], [], {}
    for name, spec in specs.items():
        try:  # a rule only Dagster checks fails this source, not the code location
            built = (
                with_freshness(build_source_asset(spec), spec),
                build_schedules({name: spec}),
                [build_drop_sensor(spec)] if isinstance(spec, CsvSource) else [],
            )
        except DagsterInvalidDefinitionError as exc:
            problems[name] = [
                f"source '{name}': Dagster refuses its definition: {' '.join(str(exc).split())}"
            ]
            continue
        assets.append(built[0])
        schedules += built[1]
        drop_sensors += built[2]
        valid[name] = spec
    for name, lines in problems.items():
        stand_in = None
        if (
            NAME_RE.match(name) and name not in RESERVED_NAMES
        ):  # ingest_all is taken; Dagster refuses the others
            try:
                stand_in = build_config_error_asset(name, lines)
            except DagsterInvalidDefinitionError:
                pass
        fate = f"its asset {name} fails until this is fixed" if stand_in else "no asset can have this name"
        for line in lines:
            log.error("%s (%s)", line, fate, extra=event_fields("source_invalid", source=name))
        if stand_in:
            assets.append(stand_in)
    return Definitions(
        assets=assets,
        jobs=build_jobs([a.key.path[-1] for a in assets]),
        schedules=schedules,
        sensors=[*drop_sensors, build_metrics_sensor(valid)],
        resources={"warehouse": WarehouseResource()},
        loggers=loggers,
        executor=ingest_all_executor(),  # the UI's asset backfills and materializations: Celery when chosen
    )
