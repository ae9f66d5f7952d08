"""What the warehouse and the rate limiter ask of a database beyond SQLAlchemy's common ground: one strategy
object per dialect (`postgres.Postgres`, `sqlite.SQLite`), as pagination has one per style."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..tables import LINEAGE

if TYPE_CHECKING:
    import pandas as pd

UpsertInsert: TypeAlias = postgresql.Insert | sqlite.Insert  # each dialect's INSERT has its ON CONFLICT


class Dialect(Protocol):
    name: str  # SQLAlchemy's dialect name

    def prepare(self) -> None:
        """Settings every connection of the engine needs (once, right after the engine is made)."""

    def ddl_lock(self, conn: sa.Connection) -> None:
        """Serialise DDL between workers for the rest of the transaction."""

    def max_columns(self) -> int:
        """Columns a table may have."""

    def layout(self, cols: list[sa.Column]) -> list[sa.Column]:
        """The order a new table's columns are created in."""

    def insert(self, table: sa.Table) -> UpsertInsert:
        """An INSERT construct with `on_conflict_do_update`."""

    def upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: list[str],
        rows: pd.DataFrame,
        lineage: dict[str, Any],
        step: list[str],
    ) -> tuple[int, int]:
        """Land a batch (one row per key) by key: (inserted, updated). `step[0]` names the statement under way."""

    def rate_limit_grant(
        self, db: Any, limits: sa.Table, slots: sa.Table, source: str, calls: int, period: float, hold: float
    ) -> tuple[int | None, float]:
        """Take a slot: (slot id, 0), or (None, seconds until one frees up). `db`: see `RateLimiter._run`."""

    def rate_limit_release(self, db: Any, slots: sa.Table, slot: int) -> None:
        """The response is in: the slot's window starts now."""


def _any(terms: list[str]) -> str:
    """`a OR b OR ...` as a balanced tree: its depth grows with log2 of the terms, not with their number."""
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    return f"({_any(terms[:mid])} OR {_any(terms[mid:])})"


def set_clause(q: Any, table: sa.Table, key: list[str], cols: list[str], excluded: str) -> tuple[str, str]:
    """An upsert's `SET` list from `excluded`, and its test that some value changed (TRUE with no data columns)."""
    t = q(table.name)
    data = [c for c in cols if c not in key and c not in LINEAGE]
    sets = ", ".join(f"{q(c)} = {excluded}.{q(c)}" for c in cols if c not in key)
    if not data:
        return sets, "TRUE"
    changed = _any([f"{t}.{q(c)} IS DISTINCT FROM {excluded}.{q(c)}" for c in data])
    return sets, changed
