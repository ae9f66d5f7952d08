"""One run per source at a time, whatever started it (Dagster, `etl-assets ingest`, a script).

Dagster's pools keep two of its own steps of a source apart; this lock also covers every other caller. It dies
with its holder (a PostgreSQL session lock, an flock on SQLite), so a run killed with SIGKILL never keeps it, and
whoever holds it knows that every `started` run of the source left in `etl_runs` is abandoned.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

import sqlalchemy as sa


class SourceLock:
    def __init__(self, engine: sa.Engine, source: str):
        self.engine, self.source = engine, source
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock at once, or return False when another run holds it."""
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext('etl-assets source'), hashtext(:s))"),
                               {"s": self.source}).scalar()
            if got:
                self._conn = conn
            else:
                conn.close()
            return bool(got)
        path = self._lock_path()
        if path is None:  # an in-memory database has one process by construction
            return True
        f = open(path, "ab")  # noqa: SIM115 - held open for the run: the lock lives as long as the file handle
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('etl-assets source'), hashtext(:s))"),
                                   {"s": self.source})
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
