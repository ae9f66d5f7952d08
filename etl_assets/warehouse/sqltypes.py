"""Column kinds (`etl_assets.types`) to SQL types and back."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def sql_type(kind: str, dialect: str) -> sa.types.TypeEngine:
    if kind == "json":  # SQLite's JSON type name has NUMERIC affinity and would turn '1' into 1
        return postgresql.JSONB() if dialect == "postgresql" else sa.Text()
    by_kind: dict[str, sa.types.TypeEngine] = {
        "string": sa.Text(),
        "integer": sa.BigInteger().with_variant(
            sa.Integer(), "sqlite"
        ),  # SQLite: a sole INTEGER key is the rowid
        "float": sa.Float(precision=53),
        "boolean": sa.Boolean(),
        "timestamp": sa.DateTime(timezone=True),
        "date": sa.Date(),
    }
    return by_kind[kind]


def kind_of(column_type: sa.types.TypeEngine) -> str:
    name = type(column_type).__name__.upper()
    if "JSON" in name:
        return "json"
    if "INT" in name:
        return "integer"
    if any(t in name for t in ("FLOAT", "DOUBLE", "REAL", "NUMERIC")):
        return "float"
    if "BOOL" in name:
        return "boolean"
    if "TIMESTAMP" in name or "DATETIME" in name:
        return "timestamp"
    if name == "DATE":
        return "date"
    return "string"


def kinds(table: sa.Table, cols: list[str]) -> dict[str, str | None]:
    """The kind of each of the batch's columns in the table (None for one the table lacks)."""
    return {c: kind_of(table.c[c].type) if c in table.c else None for c in cols}
