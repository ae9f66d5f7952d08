"""What every extractor yields: a batch of raw records and the position after it; and what it counted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypeAlias, TypedDict

if TYPE_CHECKING:  # a run with nothing to read never imports pandas
    import pandas as pd

from .pagination import Request


class CsvFileState(TypedDict):
    """How far one file has landed."""

    sha256: str  # the content version the rows are from
    rows: int  # rows read up to the end of the last batch
    complete: bool  # the whole version has landed


class CsvPosition(TypedDict):
    files: dict[str, CsvFileState]  # by path


class ApiPosition(TypedDict):
    next: Request | None  # the request a rerun resumes at; None: the pass ended
    watermark: Any  # the incremental field's value the last finished pass reached (None: none yet)
    pending_watermark: NotRequired[Any]  # the highest value the pass under way has read


class FeedPosition(TypedDict):
    etag: NotRequired[str]  # the validators the server sent, for a conditional GET
    modified: NotRequired[str]
    sha256: str  # the content's, for a server without validators and for a feed file


# A source's checkpoint, as its extractor writes it and the warehouse stores it (JSON)
Position: TypeAlias = CsvPosition | ApiPosition | FeedPosition


@dataclass
class Batch:
    frame: pd.DataFrame  # raw values; index = row numbers within `location` (files: stable row identity)
    position: Position  # the source's checkpoint once this batch has landed (JSON-serialisable)
    location: str  # file path or URL the rows came from, for lineage, errors and quarantine
    rejected: list[tuple[int, str, str]] = field(
        default_factory=list
    )  # (row, raw text, reason) unparseable rows
    # Row identity without a primary key (README "Row identity"), whatever the batching:
    version: str | None = None  # files: the content's SHA-256; a row is location + version + row number
    replaces: bool = (
        False  # files: the first batch of a version; the location's other versions' rows go with it
    )
    row_ids: list[str] | None = None  # APIs and feeds: one content hash per row (`content_id`), frame order


def this_run(so_far: Mapping[str, Any] | None, batch: Batch) -> Mapping[str, Any]:
    """The run's checkpoint after `batch`: for a file source, this run's files only (the whole map is in the
    warehouse); for any other, the batch's position."""
    files = batch.position.get("files")
    if isinstance(files, dict) and batch.location in files:
        return {"files": {**(so_far or {}).get("files", {}), batch.location: files[batch.location]}}
    return batch.position


def content_id(record: Any) -> str:
    """A record's identity from its content alone: canonical JSON (sorted keys, no spaces), 160-bit BLAKE2b.
    The same record has the same id on any page, in any batch, in any run."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


@dataclass
class ExtractorStats:
    """What an extractor counted while reading (zero for a source read from files), for the run's stats."""

    http_requests: int = 0  # attempts, retries included
    http_retries: int = 0
    http_statuses: dict[str, int] = field(default_factory=dict)  # final status per request ("error": none)
    http_seconds: float = 0.0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0


def http_stats(http: Any) -> ExtractorStats:
    """The counts of a SourceHttp (None: nothing read over HTTP) and of its rate limiter."""
    if http is None:
        return ExtractorStats()
    out = ExtractorStats(http.requests, http.retries, dict(http.statuses), round(http.seconds, 3))
    if http.limiter is not None:
        out.rate_limit_waits, out.rate_limit_wait_seconds = (
            http.limiter.waits,
            round(http.limiter.waited_seconds, 3),
        )
    return out


class Extractor(Protocol):
    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        """Yield batches starting after `checkpoint` (None: from the beginning)."""
        ...

    def stats(self) -> ExtractorStats:
        """What it counted so far (HTTP requests, retries, statuses, time; rate-limit waits)."""
        ...
