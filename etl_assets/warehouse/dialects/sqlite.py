"""SQLite: WAL and a busy timeout on every connection, BEGIN IMMEDIATE as the write lock, batches as multi-row
INSERT ... ON CONFLICT DO UPDATE ... WHERE <changed> within this build's statement limits, the rate limiter's SQL
on the local clock."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from .. import sqltypes
from .base import set_clause

if TYPE_CHECKING:  # a batch brings them (values.py): creating the warehouse needs neither
    import numpy as np
    import pandas as pd

SQLITE_MAX_VARIABLES = (
    32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
)  # bound parameters per statement


class SQLite:
    name = "sqlite"

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.q = engine.dialect.identifier_preparer.quote

    def prepare(self) -> None:
        sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads, then writes,
        # fails at once with "database is locked" when another process wrote in between.
        sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    def ddl_lock(self, conn: sa.Connection) -> None:
        """BEGIN IMMEDIATE already serialises workers creating the same table."""

    def max_columns(self) -> int:
        """SQLITE_LIMIT_COLUMN of this build (2000 by default)."""
        with self.engine.connect() as conn:
            return _limit(conn, sqlite3.SQLITE_LIMIT_COLUMN)

    def layout(self, cols: list[sa.Column]) -> list[sa.Column]:
        return cols

    def insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    def _variables(self, conn: sa.Connection) -> int:
        """Bound parameters one statement may hold: this build's SQLITE_LIMIT_VARIABLE_NUMBER (capped)."""
        return min(SQLITE_MAX_VARIABLES, _limit(conn, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))

    def upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: list[str],
        rows: pd.DataFrame,
        lineage: dict[str, Any],
        step: list[str],
    ) -> tuple[int, int]:
        """A batch of new keys (`_above_largest`) as plain INSERTs; any other as INSERT ... ON CONFLICT DO UPDATE
        ... WHERE <changed> straight into the table (a staging copy cost more), as many rows per statement as
        its bound parameters allow; the keys already present are counted first, in one statement. The <changed> test is a balanced tree (`_any`): a chain of 1000 ORs
        is deeper than SQLite's expression limit (SQLITE_MAX_EXPR_DEPTH, 1000)."""
        q, data, t = self.q, list(rows.columns), self.q(table.name)
        cols = data + list(lineage)
        values = _columns(rows, sqltypes.kinds(table, data))
        if self._above_largest(conn, table, key, rows, step):  # new keys: a plain INSERT, nothing to count
            return self._insert(conn, table, cols, values, lineage, "", step), 0
        if len(key) == 1:  # a flat JSON array: json_each's value is the key itself (faster than extracting)
            keys = json.dumps(values[data.index(key[0])].tolist())
            match = f"{t}.{q(key[0])} = j.value"
        else:
            keys = json.dumps(list(zip(*(values[data.index(k)] for k in key), strict=True)))
            match = " AND ".join(f"{t}.{q(k)} = json_extract(j.value, '$[{i}]')" for i, k in enumerate(key))
        step[0] = "SELECT of the keys present"
        existing = conn.exec_driver_sql(
            f"SELECT count(*) FROM json_each(?) j WHERE EXISTS (SELECT 1 FROM {t} WHERE {match})", (keys,)
        ).scalar_one()
        sets, changed = set_clause(q, table, key, cols, "excluded")
        changed = changed.replace("IS DISTINCT FROM", "IS NOT")
        action = f"DO UPDATE SET {sets} WHERE {changed}" if sets else "DO NOTHING"
        step[0] = "INSERT ... ON CONFLICT DO UPDATE (upsert)"
        tail = f" ON CONFLICT ({', '.join(q(k) for k in key)}) {action}"
        changes = self._insert(conn, table, cols, values, lineage, tail, step)
        inserted = len(rows) - int(existing)
        return inserted, int(changes - inserted)

    def _above_largest(
        self, conn: sa.Connection, table: sa.Table, key: list[str], rows: pd.DataFrame, step: list[str]
    ) -> bool:
        """A single integer key whose every value is above the table's largest (one probe of the rowid B-tree):
        all new, and BEGIN IMMEDIATE keeps any other writer out until the commit."""
        if (
            len(key) != 1
            or rows[key[0]].dtype.kind not in "iu"
            or sqltypes.kind_of(table.c[key[0]].type) != "integer"
        ):
            return False
        step[0] = "SELECT of the table's largest key"
        top = conn.exec_driver_sql(f"SELECT max({self.q(key[0])}) FROM {self.q(table.name)}").scalar()
        return top is None or (isinstance(top, int) and int(rows[key[0]].min()) > top)

    def _insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        cols: list[str],
        values: list[np.ndarray],
        lineage: dict[str, Any],
        tail: str,
        step: list[str],
    ) -> int:
        """The rows as multi-row INSERTs (+ `tail`, the ON CONFLICT clause); the rows changed."""
        before = conn.exec_driver_sql("SELECT total_changes()").scalar_one()
        constants = [repeat(v.isoformat() if isinstance(v, datetime) else v) for v in lineage.values()]
        records = list(zip(*values, *constants))  # noqa: B905 - the constants repeat
        # Many rows per statement, not executemany: sqlite3 lets go of the GIL around every step, and with the
        # loader's other threads busy each row then waited for it again.
        per = max(1, self._variables(conn) // len(cols))
        row = "(" + ", ".join("?" for _ in cols) + ")"
        head = f"INSERT INTO {self.q(table.name)} ({', '.join(self.q(c) for c in cols)}) VALUES "
        if not tail:
            step[0] = "INSERT of new rows"
        for i in range(0, len(records), per):
            part = records[i : i + per]
            conn.exec_driver_sql(head + ", ".join([row] * len(part)) + tail, tuple(chain.from_iterable(part)))
        return int(conn.exec_driver_sql("SELECT total_changes()").scalar_one() - before)

    def rate_limit_grant(
        self,
        db: sa.Engine,
        limits: sa.Table,
        slots: sa.Table,
        source: str,
        calls: int,
        period: float,
        hold: float,
    ) -> tuple[int | None, float]:
        """Take a slot: (slot id, 0), or (None, seconds until one frees up). BEGIN IMMEDIATE is the lock."""
        s = slots
        with db.begin() as conn:
            now = time.time()
            recent = (
                conn.execute(
                    sa.select(s.c.done_at)
                    .where(s.c.source == source)
                    .order_by(s.c.done_at.desc())
                    .limit(calls)
                )
                .scalars()
                .all()
            )
            if len(recent) < calls or recent[-1] <= now - period:
                slot = conn.execute(
                    s.insert().values(source=source, at=now, done_at=now + hold).returning(s.c.id)
                ).scalar()
                conn.execute(s.delete().where(s.c.source == source, s.c.done_at < now - period))
                return slot, 0.0
            return None, recent[-1] + period - now

    def rate_limit_release(self, db: sa.Engine, slots: sa.Table, slot: int) -> None:
        with db.begin() as conn:
            conn.execute(slots.update().where(slots.c.id == slot).values(done_at=time.time()))


def _limit(conn: sa.Connection, which: int) -> int:
    """One of this SQLite build's limits (`sqlite3.Connection.getlimit`), read on the connection's DBAPI one."""
    driver = conn.connection.driver_connection
    assert driver is not None  # None only once the connection is closed
    return int(driver.getlimit(which))


def _columns(rows: pd.DataFrame, kinds: dict[str, str | None]) -> list[np.ndarray]:
    """Plain Python values per column for SQLite's statements; timestamps and dates as ISO text."""
    from .values import column_values

    return [column_values(rows[c], kinds.get(c), "sqlite") for c in rows.columns]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (the UI, stats) work while a run writes; a busy timeout rides out a second writer.
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see SQLite.prepare)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL's NORMAL: a commit is atomic and survives a crash of the process; only a power loss may take back the
    # last commits, rows and checkpoint together (they share each transaction), so a rerun lands them again.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
