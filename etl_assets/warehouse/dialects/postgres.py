"""PostgreSQL: batches by binary COPY into a staging table, then an anti-join INSERT and an UPDATE of the changed
rows; DDL under an advisory lock; wide tables laid out by alignment; the rate limiter's SQL on the database's
clock."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..sqltypes import kind_of, kinds
from . import pg_copy
from .base import set_clause

_WIDTH = {"integer": 8, "float": 8, "timestamp": 8, "date": 4, "boolean": 1}  # PostgreSQL: size = alignment
PG_PAGE_SHARE = 4096  # bytes of a row's values beyond which padding is worth saving (a row must fit 8160)


class Postgres:
    name = "postgresql"

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.q = engine.dialect.identifier_preparer.quote

    def prepare(self) -> None:
        pass

    def ddl_lock(self, conn: sa.Connection) -> None:
        """Workers starting together must not race to create the same table (PostgreSQL's catalog refuses the
        second CREATE even with IF NOT EXISTS)."""
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('etl-assets ddl'))"))

    def max_columns(self) -> int:
        return 1600  # MaxHeapAttributeNumber

    def layout(self, cols: list[sa.Column]) -> list[sa.Column]:
        """A wide table's columns grouped by alignment (8-byte types, then 4, 1, then text): PostgreSQL pads a value
        to its type's alignment, and a row must fit in one 8 KB page; 1000 columns alternating bigint and short text
        took 8176 bytes in source order. A narrow table keeps its source order."""

        def width(c: sa.Column) -> int:
            return _WIDTH.get(kind_of(c.type), 0)

        end = 0
        for c in cols:
            w = width(c)
            end = (
                (-(-end // w) * w + w) if w else end + 8
            )  # text: a short value and its 1-byte header, unaligned
        if end <= PG_PAGE_SHARE:
            return cols
        return sorted(cols, key=lambda c: -width(c) or 0)

    def insert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    def _binary_encodings(self, table: sa.Table) -> dict[str, str | None]:
        return {c.name: pg_copy.SQL_TYPES.get(c.type.compile(dialect=self.engine.dialect)) for c in table.c}

    def upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: list[str],
        rows: pd.DataFrame,
        lineage: dict[str, Any],
        step: list[str],
    ) -> tuple[int, int]:
        """COPY the batch into a temp staging table; INSERT the rows whose key is new (an anti-join: a plain
        insert, not ON CONFLICT's speculative one, which is slower); then, only if some keys already
        existed, UPDATE the rows where a value changed. A key inserted meanwhile by another writer fails the
        transaction (unique violation) and the batch is retried whole - never half-applied."""
        q, t, data = self.q, self.q(table.name), list(rows.columns)
        cols = data + list(lineage)
        raw = conn.connection.driver_connection
        assert raw is not None  # None only once the connection is closed
        binary = pg_copy.encode(rows, self._binary_encodings(table))
        payload = binary if binary is not None else pg_copy.encode_text(rows, kinds(table, data))
        options = "FORMAT binary" if binary is not None else "NULL ''"
        step[0] = "COPY into the staging table"
        with raw.cursor() as cur:
            # A batch is small beside the table it lands in: probe the key index per staged row (O(batch)), never
            # hash the whole table (O(table) per batch, so quadratic over a load). JIT costs more than it saves.
            cur.execute(
                "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off"
            )
            cur.execute(f"CREATE TEMP TABLE _etl_stage (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP")
            with cur.copy(
                f"COPY _etl_stage ({', '.join(q(c) for c in data)}) FROM STDIN ({options})"
            ) as copy:
                piece = 8 << 20
                view = memoryview(binary) if binary is not None else payload  # slices of a view copy nothing
                for i in range(0, len(payload), piece):
                    copy.write(view[i : i + piece])
                del view
            del payload
            match = " AND ".join(f"{t}.{q(k)} = s.{q(k)}" for k in key)
            step[0] = "INSERT of new rows"
            cur.execute(
                f"INSERT INTO {t} ({', '.join(q(c) for c in cols)}) "
                f"SELECT {', '.join('s.' + q(c) for c in data)}, %s, %s, %s FROM _etl_stage s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {match})",
                list(lineage.values()),
            )
            inserted, updated = cur.rowcount, 0
            if inserted < len(rows):  # some keys existed: rewrite those whose values changed
                _, changed = set_clause(q, table, key, cols, "s")
                sets = ", ".join(
                    [f"{q(c)} = s.{q(c)}" for c in data if c not in key] + [f"{q(c)} = %s" for c in lineage]
                )
                step[0] = "UPDATE of changed rows"
                cur.execute(
                    f"UPDATE {t} SET {sets} FROM _etl_stage s WHERE {match} AND ({changed})",
                    list(lineage.values()),
                )
                updated = cur.rowcount
            cur.execute("DROP TABLE _etl_stage")
        return int(inserted), int(updated)

    def rate_limit_grant(
        self,
        db: psycopg.Connection,
        limits: sa.Table,
        slots: sa.Table,
        source: str,
        calls: int,
        period: float,
        hold: float,
    ) -> tuple[int | None, float]:
        """As `SQLite.rate_limit_grant`, on the database's clock, under a row lock of the source's `etl_rate_limits`
        row, on the limiter's own connection."""
        slots_name, limits_name = slots.name, limits.name
        with db.cursor() as cur:
            cur.execute("BEGIN")
            row = cur.execute(
                f"SELECT extract(epoch FROM clock_timestamp()) FROM {limits_name} "
                "WHERE source = %s FOR UPDATE",
                (source,),
            ).fetchone()
            assert row is not None  # the RateLimiter made the source's row before any grant
            now = float(row[0])
            recent = [
                r[0]
                for r in cur.execute(
                    f"SELECT done_at FROM {slots_name} WHERE source = %s ORDER BY done_at DESC LIMIT %s",
                    (source, calls),
                )
            ]
            if len(recent) < calls or recent[-1] <= now - period:
                inserted = cur.execute(
                    f"WITH gc AS (DELETE FROM {slots_name} WHERE source = %s AND done_at < %s) "
                    f"INSERT INTO {slots_name} (source, at, done_at) VALUES (%s, %s, %s) RETURNING id",
                    (source, now - period, source, now, now + hold),
                ).fetchone()
                assert inserted is not None  # INSERT ... RETURNING gives its row
                slot = inserted[0]
                taken = slot, 0.0
            else:
                taken = None, recent[-1] + period - now
            cur.execute("COMMIT")
            return taken

    def rate_limit_release(self, db: psycopg.Connection, slots: sa.Table, slot: int) -> None:
        db.execute(
            f"UPDATE {slots.name} SET done_at = extract(epoch FROM clock_timestamp()) WHERE id = %s", (slot,)
        )
