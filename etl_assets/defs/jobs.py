"""ingest_all and one ingest_<source> job per source."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster._core.definitions.assets.job.asset_job import build_asset_job, get_asset_graph_for_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .executors import ingest_all_executor, source_job_executor


class _EverySourceJob(UnresolvedAssetJobDefinition):
    """An asset job over assets of different partitions definitions (each CSV source has its own), run without a
    partition key: every asset reads all of its input. `define_asset_job` refuses such a selection, although
    Dagster's own implicit asset job allows it; this resolves the selection the way that job does (Dagster
    1.13's internal `allow_different_partitions_defs`, pinned with the release train)."""

    def resolve(self, asset_graph, default_executor_def=None, resource_defs=None):
        graph = get_asset_graph_for_job(asset_graph, self.selection, allow_different_partitions_defs=True)
        return build_asset_job(
            self.name,
            asset_graph=graph,
            description=self.description,
            tags=self.tags,
            run_tags=self.run_tags,
            executor_def=self.executor_def or default_executor_def,
            resource_defs=resource_defs,
            allow_different_partitions_defs=True,
        )


def every_source_job(names: list[str]) -> UnresolvedAssetJobDefinition:
    job = define_asset_job(
        "ingest_all",
        selection=AssetSelection.assets(*names),
        description="Ingest every configured source (one process per source, in parallel; every file of each "
        "CSV source).",
        executor_def=ingest_all_executor(),  # ETL_EXECUTOR=celery: on Celery workers
    )
    return _EverySourceJob(**{f: getattr(job, f) for f in UnresolvedAssetJobDefinition.__annotations__})


def build_jobs(names: list[str]) -> list:
    jobs = [every_source_job(names)]
    # One asset, one step: running it in the run's own process saves spawning a step process that imports
    # everything again (about half of a small run's wall time). Pools are enforced by this executor too.
    # A CSV source's job is partitioned (one file per run, as the sensor and backfills launch it); launched
    # without a partition it reads every new file.
    jobs += [
        define_asset_job(
            f"ingest_{n}",
            selection=AssetSelection.assets(n),
            description=f"Ingest source {n}.",
            tags={"etl/source": n},
            executor_def=source_job_executor(),
        )
        for n in names
    ]
    return jobs
