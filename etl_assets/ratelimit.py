"""Per-source rate limit that holds across processes and machines: at most `calls` requests in any window of
`period_seconds`, counted in the warehouse database that every worker already shares.

A sliding-window log in `etl_rate_limit_slots`: one row per request, stamped when its response came back. A new
request is granted once the `calls`-th most recent request finished at least `period_seconds` ago. Counting from
the response, not from the grant, makes the guarantee hold where it matters, at the server: however late a request
travels, the server received it before its response left, so any window the server sees holds at most `calls`.
A request still in flight counts as finishing `IN_FLIGHT_HOLD` seconds later (a crashed worker's slot expires).
The source's row in `etl_rate_limits` is locked while a slot is taken (SELECT ... FOR UPDATE on PostgreSQL, BEGIN
IMMEDIATE on SQLite), so two workers never take the same slot. On PostgreSQL the clock is the database's, so
machines with skewed clocks still agree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from .logs import event_fields

log = logging.getLogger(__name__)

IN_FLIGHT_HOLD = 60.0


class RateLimiter:
    def __init__(self, engine: sa.Engine, limits: sa.Table, slots: sa.Table, name: str, calls: int,
                 period_seconds: float):
        self.engine, self.limits, self.slots = engine, limits, slots
        self.name, self.calls, self.period = name, calls, period_seconds
        self.postgres = engine.dialect.name == "postgresql"
        self.waits = 0
        self.waited_seconds = 0.0
        self._lock = threading.Lock()  # threads of one process queue here before the database
        self._db_lock = threading.Lock()  # guards the limiter's own connection (PostgreSQL)
        self._raw: Any = None
        values = {"source": name, "calls": calls, "period_seconds": period_seconds, "updated_at": datetime.now(UTC)}
        ins = (sa.dialects.postgresql.insert if self.postgres else sa.dialects.sqlite.insert)(limits).values(**values)
        with engine.begin() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=["source"],
                                                   set_={k: v for k, v in values.items() if k != "source"}))

    def _pg(self) -> Any:
        """PostgreSQL: the limiter's own connection, in autocommit with explicit transactions. Through the pool a
        request cost 13 round trips (a ping and a BEGIN per checkout, the clock apart); here a grant costs five and
        a release one. A slot is visible to every worker the moment it commits; its durability across a server
        crash can wait for the WAL writer (such a crash restarts every worker), hence no fsync per slot."""
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            self._raw.driver_connection.autocommit = True
            self._raw.driver_connection.execute("SET synchronous_commit = off")
        return self._raw.driver_connection

    def _drop_connection(self) -> None:
        if self._raw is not None:
            self._raw.invalidate()  # never back to the pool: its session settings are the limiter's
            self._raw = None

    def close(self) -> None:
        with self._db_lock:
            self._drop_connection()

    def _on_pg(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        """Run `work` on the limiter's connection; a session lost since its last use (a restarted server, a
        terminated backend) is replaced once. A slot the lost session may have taken only makes us slower."""
        reused = self._raw is not None
        try:
            with self._db_lock:
                return work(self._pg())
        except psycopg.Error as exc:
            self._drop_connection()  # broken, or left mid-transaction: the next call starts a fresh session
            if not (reused and isinstance(exc, psycopg.OperationalError)):
                raise
            log.warning("rate limit %s: the limiter's database session was lost (%s); reconnecting", self.name,
                        str(exc).strip().splitlines()[0])
        with self._db_lock:
            return work(self._pg())

    def _grant_pg(self, conn: psycopg.Connection) -> tuple[int | None, float]:
        """As `_grant_sqlite`, on the database's clock, under a row lock of the source's `etl_rate_limits` row."""
        slots, limits = self.slots.name, self.limits.name
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            now = float(cur.execute(f"SELECT extract(epoch FROM clock_timestamp()) FROM {limits} "
                                    "WHERE source = %s FOR UPDATE", (self.name,)).fetchone()[0])
            recent = [r[0] for r in cur.execute(f"SELECT done_at FROM {slots} WHERE source = %s "
                                                "ORDER BY done_at DESC LIMIT %s", (self.name, self.calls))]
            if len(recent) < self.calls or recent[-1] <= now - self.period:
                slot = cur.execute(
                    f"WITH gc AS (DELETE FROM {slots} WHERE source = %s AND done_at < %s) "
                    f"INSERT INTO {slots} (source, at, done_at) VALUES (%s, %s, %s) RETURNING id",
                    (self.name, now - self.period, self.name, now, now + IN_FLIGHT_HOLD)).fetchone()[0]
                taken = slot, 0.0
            else:
                taken = None, recent[-1] + self.period - now
            cur.execute("COMMIT")
            return taken

    def _grant_sqlite(self) -> tuple[int | None, float]:
        """Take a slot: (slot id, 0), or (None, seconds until one frees up). BEGIN IMMEDIATE is the lock."""
        s = self.slots
        with self.engine.begin() as conn:
            now = time.time()
            recent = conn.execute(sa.select(s.c.done_at).where(s.c.source == self.name)
                                  .order_by(s.c.done_at.desc()).limit(self.calls)).scalars().all()
            if len(recent) < self.calls or recent[-1] <= now - self.period:
                slot = conn.execute(s.insert().values(source=self.name, at=now, done_at=now + IN_FLIGHT_HOLD)
                                    .returning(s.c.id)).scalar()
                conn.execute(s.delete().where(s.c.source == self.name, s.c.done_at < now - self.period))
                return slot, 0.0
            return None, recent[-1] + self.period - now

    def acquire(self) -> int:
        """Block until a request is allowed; return its slot, to `release` when the response is in."""
        waited = 0.0
        take = (lambda: self._on_pg(self._grant_pg)) if self.postgres else self._grant_sqlite
        with self._lock:
            while (taken := take())[0] is None:
                time.sleep(taken[1])
                waited += taken[1]
        if waited:
            self.waits += 1
            self.waited_seconds += waited
            log.info("rate limit %s: waited %.3fs for a slot (%d calls per %gs)", self.name, waited, self.calls,
                     self.period, extra=event_fields("rate_limit_wait", source=self.name, wait_seconds=round(waited, 3),
                                                     rate_limit_waits=self.waits, calls=self.calls,
                                                     period_seconds=self.period))
        return taken[0]

    def release(self, slot: int) -> None:
        """The response is in: the slot's window starts now."""
        if self.postgres:
            self._on_pg(lambda conn: conn.execute(
                f"UPDATE {self.slots.name} SET done_at = extract(epoch FROM clock_timestamp()) WHERE id = %s", (slot,)))
            return
        with self.engine.begin() as conn:
            conn.execute(self.slots.update().where(self.slots.c.id == slot).values(done_at=time.time()))
