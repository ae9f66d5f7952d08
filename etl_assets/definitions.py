"""The module `dagster job execute -m etl_assets.definitions` and `dagster dev` load.

The sources file comes from ETL_SOURCES (default: sources.yaml in the working directory).
"""

from .defs import build_definitions

# No import of pandas or pyarrow here: a run imports them with its first batch (arrow_pool, pipeline).
defs = build_definitions()
