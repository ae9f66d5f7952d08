"""ingest_all and one ingest_<source> job per source."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job


def build_jobs(names: list[str]) -> list:
    jobs = [define_asset_job("ingest_all", selection=AssetSelection.assets(*names),
                             description="Ingest every configured source.")]
    jobs += [define_asset_job(f"ingest_{n}", selection=AssetSelection.assets(n), description=f"Ingest source {n}.",
                              tags={"etl/source": n})
             for n in names]
    return jobs
