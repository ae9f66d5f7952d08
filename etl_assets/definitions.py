"""The module `dagster job execute -m etl_assets.definitions` and `dagster dev` load.

The sources file comes from ETL_SOURCES (default: sources.yaml in the working directory).
"""

from .defs import build_definitions

defs = build_definitions()
