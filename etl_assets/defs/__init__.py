"""The Dagster layer: it maps source specs to Dagster objects and ingest results to metadata. Thin on purpose."""

from .definitions import build_definitions

__all__ = ["build_definitions"]
