"""The ingest loop's two overlaps: read the next batches while one lands, type the next batch while the
database commits the last. Both keep batches in order, so checkpoints move exactly as without threads."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .extract.base import Batch


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def read_ahead(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Read the next batches on a thread while the current one lands: parsing (or the source's latency and rate
    limit) overlaps the database's work. Batches still land one by one, in order, so checkpoints are unchanged."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failed(exc))

    # the copied context carries the bound source/run id to the reader's log lines
    threading.Thread(
        target=contextvars.copy_context().run, args=(produce,), name="etl-read-ahead", daemon=True
    ).start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()


@contextmanager
def write_behind(commit: Callable[[Any], None]) -> Iterator[Callable[[Any], None]]:
    """Commit items on a writer thread while the caller prepares the next one: typing batch N+1 (Python, holding
    the GIL) overlaps the database's work on batch N (psycopg and sqlite3 release the GIL while they wait). Items
    commit one at a time and in order, so the checkpoint still moves batch by batch. When the caller fails, what
    it handed over before still commits (as it would have without the thread); a commit's error is raised at
    the next hand-over or on leaving the block."""
    q: queue.Queue = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def work() -> None:
        while (item := q.get()) is not _DONE:
            if not failed:  # after a failure, later items are dropped: the checkpoint stays before them
                try:
                    commit(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                    failed.append(exc)

    def hand_over(item: Any) -> None:
        if failed:
            raise failed[0]
        q.put(item)

    writer = threading.Thread(
        target=contextvars.copy_context().run, args=(work,), name="etl-write-behind", daemon=True
    )
    writer.start()
    try:
        yield hand_over
    finally:
        q.put(_DONE)
        writer.join()
    if failed:
        raise failed[0]
