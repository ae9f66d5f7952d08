"""ingest_all and one ingest_<source> job per source."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor


def build_jobs(names: list[str]) -> list:
    jobs = [
        define_asset_job(
            "ingest_all",
            selection=AssetSelection.assets(*names),
            description="Ingest every configured source (one process per source, in parallel).",
        )
    ]
    # One asset, one step: running it in the run's own process saves spawning a step process that imports
    # everything again (about half of a small run's wall time). Pools are enforced by this executor too.
    jobs += [
        define_asset_job(
            f"ingest_{n}",
            selection=AssetSelection.assets(n),
            description=f"Ingest source {n}.",
            tags={"etl/source": n},
            executor_def=in_process_executor,
        )
        for n in names
    ]
    return jobs
