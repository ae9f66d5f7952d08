"""PostgreSQL: a batch of new keys by binary COPY straight into the table, any other by binary COPY into a
staging table, then an anti-join INSERT and an UPDATE of the changed rows; DDL under an advisory lock; wide
tables laid out by alignment; the rate limiter's SQL on the database's clock."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..sqltypes import kind_of, kinds
from ..tables import ROW_ID
from . import pg_copy
from .base import set_clause

_WIDTH = {"integer": 8, "float": 8, "timestamp": 8, "date": 4, "boolean": 1}  # PostgreSQL: size = alignment
PG_PAGE_SHARE = 4096  # bytes of a row's values beyond which padding is worth saving (a row must fit 8160)


class Postgres:
    name = "postgresql"

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.q = engine.dialect.identifier_preparer.quote
        self._conflicted: dict[str, Any] = {}  # table -> the run whose direct COPY met an existing row id
        self.batches = {"direct": 0, "staged": 0}  # how the batches of this process landed

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
        """A batch whose keys are all new (`_all_new`) is COPYed straight into the table, in a savepoint: a key
        another writer landed meanwhile is a unique violation, and the batch goes the staged way instead. Any
        other batch is COPYed into a temp staging table; the rows whose key is new are INSERTed (an anti-join:
        a plain insert, not ON CONFLICT's speculative one, which is slower); then, only if some keys already
        existed, the rows where a value changed are UPDATEd. A key inserted meanwhile by another writer during
        the staged way fails the transaction (unique violation) and the batch is retried whole - never
        half-applied. Either way the caller's transaction (rows and checkpoint together) is the only one."""
        raw = conn.connection.driver_connection
        assert raw is not None  # None only once the connection is closed
        encodings = self._binary_encodings(table)
        with raw.cursor() as cur:
            if self._all_new(cur, table, key, rows, lineage, step):
                landed = self._copy_direct(cur, table, rows, encodings, lineage, step)
                if landed:
                    self.batches["direct"] += 1
                    return len(rows), 0
                if landed is False:  # a key was there after all: this run's next batches are staged
                    self._conflicted[table.name] = lineage.get("_etl_run_id")
            self.batches["staged"] += 1
            return self._staged(cur, table, key, rows, lineage, encodings, step)

    def _all_new(
        self,
        cur: psycopg.Cursor,
        table: sa.Table,
        key: list[str],
        rows: pd.DataFrame,
        lineage: dict[str, Any],
        step: list[str],
    ) -> bool:
        """Whether the batch's keys are (very likely) all new, from one index probe: a single integer key above
        the table's largest one, or an empty table. Row ids (no primary key: a file version's path and row
        numbers, a record's content hash) are new unless this run already met one that was not."""
        t = self.q(table.name)
        step[0] = "SELECT of the table's largest key"
        if len(key) == 1 and rows[key[0]].dtype.kind in "iu" and kind_of(table.c[key[0]].type) == "integer":
            top = cur.execute(f"SELECT max({self.q(key[0])}) FROM {t}").fetchone()
            return top is None or top[0] is None or int(rows[key[0]].min()) > int(top[0])
        row = cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {t})").fetchone()
        if row is not None and row[0]:
            return True
        return key == [ROW_ID] and self._conflicted.get(table.name) != lineage.get("_etl_run_id")

    def _copy_direct(
        self,
        cur: psycopg.Cursor,
        table: sa.Table,
        rows: pd.DataFrame,
        encodings: dict[str, str | None],
        lineage: dict[str, Any],
        step: list[str],
    ) -> bool | None:
        """COPY the batch (lineage included) into the table in a savepoint: True once it landed; False, with
        nothing of it left, when a key was there after all; None when a column is not ours to encode in binary.
        (One payload per batch: encoding it in pieces while psycopg sent the last one was slower, 3.7 s vs 3.1 s
        on 1M rows, as the pieces and the sending thread fought for the GIL.)"""
        payload = pg_copy.encode(rows, encodings, [(encodings.get(c), v) for c, v in lineage.items()])
        if payload is None:
            return None
        cols = ", ".join(self.q(c) for c in [*rows.columns, *lineage])
        step[0] = "COPY into the table"
        cur.execute("SAVEPOINT _etl_direct")
        try:
            with cur.copy(f"COPY {self.q(table.name)} ({cols}) FROM STDIN (FORMAT binary)") as copy:
                _write(copy, payload)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT _etl_direct")
            return False
        cur.execute("RELEASE SAVEPOINT _etl_direct")
        return True

    def _staged(
        self,
        cur: psycopg.Cursor,
        table: sa.Table,
        key: list[str],
        rows: pd.DataFrame,
        lineage: dict[str, Any],
        encodings: dict[str, str | None],
        step: list[str],
    ) -> tuple[int, int]:
        q, t, data = self.q, self.q(table.name), list(rows.columns)
        cols = data + list(lineage)
        binary = pg_copy.encode(rows, encodings)
        payload = binary if binary is not None else pg_copy.encode_text(rows, kinds(table, data))
        options = "FORMAT binary" if binary is not None else "NULL ''"
        step[0] = "COPY into the staging table"
        # A batch is small beside the table it lands in: probe the key index per staged row (O(batch)), never
        # hash the whole table (O(table) per batch, so quadratic over a load). JIT costs more than it saves.
        cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off")
        cur.execute(f"CREATE TEMP TABLE _etl_stage (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY _etl_stage ({', '.join(q(c) for c in data)}) FROM STDIN ({options})") as copy:
            _write(copy, payload)
        del payload, binary
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


def _write(copy: psycopg.Copy, payload: bytes | str) -> None:
    """The payload in pieces of 8 MB (slices of a memoryview copy nothing)."""
    piece = 8 << 20
    view = memoryview(payload) if isinstance(payload, bytes) else payload
    for i in range(0, len(payload), piece):
        copy.write(view[i : i + piece])
