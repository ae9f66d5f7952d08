"""The warehouse as a Dagster resource."""

from __future__ import annotations

from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from ..warehouse import Warehouse


@lru_cache(maxsize=8)
def _warehouse(url: str | None) -> Warehouse:
    # One engine (and connection pool) per process and URL, shared by every asset in the process.
    return Warehouse(url)


class WarehouseResource(ConfigurableResource):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default ETL_WAREHOUSE_URL, else the SQLite file under .etl/.",
    )

    def get(self) -> Warehouse:
        return _warehouse(self.url)
