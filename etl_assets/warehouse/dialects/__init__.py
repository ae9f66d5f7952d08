"""The warehouse's dialects: one strategy object each, behind the `Dialect` protocol."""

from __future__ import annotations

import sqlalchemy as sa

from .base import Dialect

__all__ = ["Dialect", "dialect_for"]


def dialect_for(engine: sa.Engine) -> Dialect:
    """PostgreSQL's strategy on PostgreSQL; SQLite's otherwise (the `else` of the branches it replaced). Each is
    imported when first used: a SQLite run never imports psycopg, numpy or the COPY encoder for PostgreSQL."""
    if engine.dialect.name == "postgresql":
        from .postgres import Postgres

        return Postgres(engine)
    from .sqlite import SQLite

    return SQLite(engine)
