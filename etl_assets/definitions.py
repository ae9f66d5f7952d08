"""The module `dagster job execute -m etl_assets.definitions` and `dagster dev` load.

The sources file comes from ETL_SOURCES (default: sources.yaml in the working directory).
"""

from .arrow_pool import configure_arrow
from .defs import build_definitions

configure_arrow()
defs = build_definitions()
