"""The yardstick of `overhead.py`: a one-asset Dagster job that does nothing, run in-process like every
`ingest_<source>` job (`dagster job execute -f benchmarks/_trivial_job.py -j trivial`)."""

from dagster import Definitions, asset, define_asset_job, in_process_executor


@asset
def trivial() -> int:
    return 1


defs = Definitions(
    assets=[trivial],
    jobs=[define_asset_job("trivial", selection=[trivial], executor_def=in_process_executor)],
)
