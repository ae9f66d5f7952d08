"""Who is running a source, for telling a live run from a dead one.

Every run of a source holds its lock in shared mode, so runs of one source may still overlap (they share the
source's rate limit and its checkpoint; a key two of them land at the same instant fails one transaction, which a
retry lands again). A run that starts alone, which it knows by getting the lock exclusively for a moment, knows that
every run of the source still `started` in `etl_runs` is dead: it marks them abandoned. The lock dies with its
holder (a PostgreSQL session lock, an flock on SQLite), so a run killed with SIGKILL never keeps it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from typing import IO

import sqlalchemy as sa

_KEY = "hashtext('etl-assets source'), hashtext(:s)"


class SourceLock:
    def __init__(self, engine: sa.Engine, source: str):
        self.engine, self.source = engine, source
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None

    def acquire(self, when_alone: Callable[[], None]) -> None:
        """Hold the lock shared; call `when_alone` first if no other run of the source holds it."""
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
            if conn.execute(sa.text(f"SELECT pg_try_advisory_lock({_KEY})"), {"s": self.source}).scalar():
                try:
                    when_alone()
                finally:  # shared first, then the exclusive hold goes: no instant without the lock
                    conn.execute(sa.text(f"SELECT pg_advisory_lock_shared({_KEY})"), {"s": self.source})
                    conn.execute(sa.text(f"SELECT pg_advisory_unlock({_KEY})"), {"s": self.source})
            else:
                conn.execute(sa.text(f"SELECT pg_advisory_lock_shared({_KEY})"), {"s": self.source})
            return
        path = self._lock_path()
        if path is None:  # an in-memory database has one process by construction
            when_alone()
            return
        f = self._file = open(path, "ab")  # noqa: SIM115 - held for the run: the lock lives with the descriptor
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(f, fcntl.LOCK_SH)
            return
        try:
            when_alone()
        finally:
            fcntl.flock(f, fcntl.LOCK_SH)  # converted in place

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text(f"SELECT pg_advisory_unlock_shared({_KEY})"), {"s": self.source})
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                self._conn.invalidate()  # the session is gone, and its lock with it
            self._conn = None
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def _lock_path(self) -> str | None:
        db = self.engine.url.database
        if not db or db == ":memory:":
            return None
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.source)
        return f"{os.path.abspath(db)}.{safe}.lock"
