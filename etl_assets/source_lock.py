"""Who is running a source, for telling a live run from a dead one.

Every run of a source holds its lock in shared mode, so runs of one source may still overlap (they share the
source's rate limit and its checkpoint; a key two of them land at the same instant fails one transaction, which a
retry lands again). A run that starts alone, which it knows by getting the lock exclusively for a moment, knows that
every run of the source still `started` in `etl_runs` is dead: it marks them abandoned. The lock dies with its
holder (a PostgreSQL session lock, an flock on SQLite), so a run killed with SIGKILL never keeps it.

A run of a file source also holds the lock of each file it reads, exclusively: partitions of different files
run at once, two runs of the same file wait for each other (the second finds the file landed: a no-op).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import IO

import sqlalchemy as sa

log = logging.getLogger(__name__)
_KEY = "hashtext('etl-assets source'), hashtext(:s)"
_FILE_KEY = "hashtext('etl-assets file ' || :s), CAST(:b AS integer)"
# A file's lock is one of 64 per source: a run of all files holds at most 64 locks (PostgreSQL's lock table is
# small), and two files sharing one only wait for each other.
FILE_BUCKETS = 64


def file_bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % FILE_BUCKETS


class SourceLock:
    def __init__(self, engine: sa.Engine, source: str):
        self.engine, self.source = engine, source
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None
        self._buckets: list[int] = []  # file locks held (PostgreSQL)
        self._bucket_files: list[IO[bytes]] = []  # file locks held (SQLite)

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

    def hold_files(self, keys: Iterable[str]) -> None:
        """Hold the files' locks exclusively (after `acquire`), waiting for a run that holds one: runs of
        different files of the source run at once, two runs of the same file never do. Taken in one order, so
        a run of many files and runs of one file never wait for each other in a circle."""
        buckets = sorted({file_bucket(k) for k in keys})
        for b in buckets:
            if not self._lock_bucket(b, wait=False):
                log.info("source %s: waiting for another run of the same file(s) to finish", self.source)
                self._lock_bucket(b, wait=True)

    def _lock_bucket(self, b: int, wait: bool) -> bool:
        if self._conn is not None:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = self._conn.execute(
                sa.text(f"SELECT {fn}({_FILE_KEY})"), {"s": self.source, "b": b}
            ).scalar()
            if wait or got:
                self._buckets.append(b)
            return wait or bool(got)
        path = self._lock_path()
        if path is None:
            return True
        f = open(f"{path}.files-{b:02d}", "ab")  # noqa: SIM115 - held for the run, as the source's lock
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return False
        self._bucket_files.append(f)
        return True

    def release(self) -> None:
        for f in self._bucket_files:
            f.close()
        self._bucket_files = []
        if self._conn is not None:
            try:
                for b in self._buckets:
                    self._conn.execute(
                        sa.text(f"SELECT pg_advisory_unlock({_FILE_KEY})"), {"s": self.source, "b": b}
                    )
                self._conn.execute(sa.text(f"SELECT pg_advisory_unlock_shared({_KEY})"), {"s": self.source})
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                self._conn.invalidate()  # the session is gone, and its lock with it
            self._conn, self._buckets = None, []
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def _lock_path(self) -> str | None:
        db = self.engine.url.database
        if not db or db == ":memory:":
            return None
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.source)
        return f"{os.path.abspath(db)}.{safe}.lock"
