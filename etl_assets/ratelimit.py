"""Per-source rate limit that holds across processes and machines: at most `calls` requests in any window of
`period_seconds`, counted in the warehouse database that every worker already shares.

A sliding-window log in `etl_rate_limit_slots`: one row per request, stamped when its response came back. A new
request is granted once the `calls`-th most recent request finished at least `period_seconds` ago. Counting from
the response, not from the grant, makes the guarantee hold where it matters, at the server: however late a request
travels, the server received it before its response left, so any window the server sees holds at most `calls`.
A request still in flight counts as finishing `IN_FLIGHT_HOLD` seconds later (a crashed worker's slot expires).
The source's row in `etl_rate_limits` is locked while a slot is taken (SELECT ... FOR UPDATE on PostgreSQL, BEGIN
IMMEDIATE on SQLite), so two workers never take the same slot. On PostgreSQL the clock is the database's, so
machines with skewed clocks still agree. The limiter owns its two tables; their SQL is the warehouse dialect's
(`rate_limit_grant`, `rate_limit_release` in etl_assets.warehouse.dialects).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .logs import event_fields

if TYPE_CHECKING:
    import psycopg

    from .warehouse.dialects import Dialect

log = logging.getLogger(__name__)

IN_FLIGHT_HOLD = 60.0

metadata = sa.MetaData()  # created with the warehouse's system tables (warehouse.tables.create_system_tables)
rate_limits = sa.Table(
    "etl_rate_limits",
    metadata,  # one row per rate-limited source: its settings, and the lock its workers share
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("period_seconds", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
rate_limit_slots = sa.Table(
    "etl_rate_limit_slots",
    metadata,  # requests of the current window (epoch seconds)
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.Float(precision=53), nullable=False),  # granted
    sa.Column("done_at", sa.Float(precision=53), nullable=False),  # response in (until then: a hold)
)


class RateLimiter:
    def __init__(self, engine: sa.Engine, dialect: Dialect, name: str, calls: int, period_seconds: float):
        self.engine, self.dialect, self.limits, self.slots = engine, dialect, rate_limits, rate_limit_slots
        self.name, self.calls, self.period = name, calls, period_seconds
        self.postgres = dialect.name == "postgresql"
        self.waits = 0
        self.waited_seconds = 0.0
        self._lock = threading.Lock()  # threads of one process queue here before the database
        self._db_lock = threading.Lock()  # guards the limiter's own connection (PostgreSQL)
        self._raw: Any = None
        values = {
            "source": name,
            "calls": calls,
            "period_seconds": period_seconds,
            "updated_at": datetime.now(UTC),
        }
        # Dialect.insert returns its dialect's INSERT, which has on_conflict_do_update (warehouse.dialects.base)
        ins = dialect.insert(self.limits).values(**values)
        with engine.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["source"], set_={k: v for k, v in values.items() if k != "source"}
                )
            )

    def _pg(self) -> Any:
        """PostgreSQL: the limiter's own connection, in autocommit with explicit transactions: through the pool
        each request also paid a ping and a BEGIN per checkout and the clock apart. A slot is visible to every
        worker the moment it commits; its durability across a server crash can wait for the WAL writer (such a
        crash restarts every worker), hence no fsync per slot."""
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
        import psycopg  # only PostgreSQL limiters get here: a SQLite run never imports the driver

        reused = self._raw is not None
        try:
            with self._db_lock:
                return work(self._pg())
        except psycopg.Error as exc:
            self._drop_connection()  # broken, or left mid-transaction: the next call starts a fresh session
            if not (reused and isinstance(exc, psycopg.OperationalError)):
                raise
            log.warning(
                "rate limit %s: the limiter's database session was lost (%s); reconnecting",
                self.name,
                str(exc).strip().splitlines()[0],
            )
        with self._db_lock:
            return work(self._pg())

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """Run the dialect's SQL where the limiter's lock lives: PostgreSQL, on the limiter's own session (a row
        lock); SQLite, through the engine's pool (BEGIN IMMEDIATE)."""
        return self._on_pg(work) if self.postgres else work(self.engine)

    def _grant(self, db: Any) -> tuple[int | None, float]:
        return self.dialect.rate_limit_grant(
            db, self.limits, self.slots, self.name, self.calls, self.period, IN_FLIGHT_HOLD
        )

    def acquire(self) -> int:
        """Block until a request is allowed; return its slot, to `release` when the response is in."""
        waited = 0.0
        with self._lock:
            while (taken := self._run(self._grant))[0] is None:
                time.sleep(taken[1])
                waited += taken[1]
        if waited:
            self.waits += 1
            self.waited_seconds += waited
            log.info(
                "rate limit %s: waited %.3fs for a slot (%d calls per %gs)",
                self.name,
                waited,
                self.calls,
                self.period,
                extra=event_fields(
                    "rate_limit_wait",
                    source=self.name,
                    wait_seconds=round(waited, 3),
                    rate_limit_waits=self.waits,
                    calls=self.calls,
                    period_seconds=self.period,
                ),
            )
        return taken[0]

    def release(self, slot: int) -> None:
        """The response is in: the slot's window starts now."""
        self._run(lambda db: self.dialect.rate_limit_release(db, self.slots, slot))
