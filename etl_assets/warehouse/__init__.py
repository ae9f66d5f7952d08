"""The warehouse: the `Warehouse` store, its system tables, SQL types and dialects (see DESIGN.md, warehouse/)."""

from __future__ import annotations

from .errors import database_error, statement_error
from .records import DriftEvent, QuarantinedRow
from .schema_state import SchemaState
from .sqltypes import kind_of, sql_type
from .store import DEFAULT_DIR, LoadResult, Warehouse, default_url, normalize_url
from .tables import (
    LINEAGE,
    ROW_ID,
    SYSTEM_TABLES,
    checkpoints,
    file_row_prefix,
    metadata,
    quarantine,
    runs,
    schema_drift,
    schemas,
)

Store = Warehouse

__all__ = [
    "DEFAULT_DIR",
    "LINEAGE",
    "ROW_ID",
    "SYSTEM_TABLES",
    "DriftEvent",
    "LoadResult",
    "QuarantinedRow",
    "SchemaState",
    "Store",
    "Warehouse",
    "checkpoints",
    "default_url",
    "file_row_prefix",
    "kind_of",
    "metadata",
    "normalize_url",
    "quarantine",
    "runs",
    "schema_drift",
    "schemas",
    "sql_type",
    "database_error",
    "statement_error",
]
