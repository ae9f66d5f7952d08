"""The warehouse's dialects: one strategy object each, behind the `Dialect` protocol."""

from __future__ import annotations

import sqlalchemy as sa

from .base import Dialect
from .postgres import Postgres
from .sqlite import SQLite

__all__ = ["Dialect", "Postgres", "SQLite", "dialect_for"]


def dialect_for(engine: sa.Engine) -> Dialect:
    """PostgreSQL's strategy on PostgreSQL; SQLite's otherwise (the `else` of the branches it replaced)."""
    return Postgres(engine) if engine.dialect.name == "postgresql" else SQLite(engine)
